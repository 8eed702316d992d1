"""The ``guest-agent`` step kind of block's quiesce plans (block/quiesce.py): freezes the
filesystems a running instance has on the volume, through compute and the instance's
qemu-guest-agent, so ``soko volume snapshot-create --force --quiesce`` of a volume attached
to a server is consistent without anything installed on the storage host.

The step runs in the block service and calls the compute API with the snapshot caller's
token (compute checks that the caller may touch the server). Thawing is guaranteed twice:
block thaws the step on every path (and its watchdog), and compute's own freeze has a
watchdog and a durable record of its own, set a second after block's deadline. A step
rebuilt from a freeze record after a crash has no token; it leaves the thaw to compute,
which thaws at that deadline whatever happens.

Imports no libvirt: it runs where block runs.
"""

from __future__ import annotations

import dataclasses
import logging

import requests

from soko.block.quiesce import QuiesceError, Target
from soko.common.validation import is_id

log = logging.getLogger("soko.compute.quiesce_step")

SLACK = 1.0  # compute's watchdog fires this long after block's: block's thaw comes first


def compute_call(url: str, token: str, server_id: str, body: dict, timeout: float) -> dict:
    if not is_id(server_id):  # it becomes part of a URL: an id, or nothing is sent
        raise QuiesceError(f"the volume's server {server_id!r} is not a server id")
    try:
        resp = requests.post(f"{url.rstrip('/')}/servers/{server_id}/action", json=body,
                             headers={"X-Auth-Token": token}, timeout=timeout)
    except requests.RequestException as exc:
        raise QuiesceError(f"compute at {url} did not answer: {exc.__class__.__name__}") from None
    if resp.status_code >= 400:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.reason
        raise QuiesceError(f"compute refused ({resp.status_code}): {message}")
    return resp.json()


@dataclasses.dataclass
class GuestAgentStep:
    compute_url: str
    server_id: str
    volume_id: str
    token: str | None = dataclasses.field(default=None, repr=False)  # never recorded

    @classmethod
    def build(cls, table: dict, target: Target | None) -> GuestAgentStep:
        url = table.get("compute_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise QuiesceError("guest-agent needs compute_url, the compute API "
                               "(http://host:8774/v2.1)")
        if target is None:  # rebuilt from a freeze record
            return cls(url, str(table.get("server_id")), str(table.get("volume_id")))
        if target.server_id is None:
            raise QuiesceError(f"volume {target.volume_id} is not attached to a server, so "
                               "there is no guest agent to freeze it with")
        if not target.token:
            raise QuiesceError("guest-agent freezes as the caller and needs the caller's token")
        return cls(url, target.server_id, target.volume_id, target.token)

    def freeze(self, timeout: float) -> None:
        body = {"soko-quiesce": {"volume_id": self.volume_id, "max_seconds": timeout + SLACK}}
        try:
            compute_call(self.compute_url, self.token, self.server_id, body, timeout)
        except QuiesceError as exc:
            try:  # a freeze whose answer was lost may have happened: leave nothing frozen
                self.thaw(timeout)
            except QuiesceError:
                log.warning("thaw after a failed freeze of %s failed too", self.server_id)
            raise QuiesceError(f"guest agent of server {self.server_id}: {exc}") from None

    def thaw(self, timeout: float) -> None:
        if self.token is None:
            log.warning("server %s: compute's freeze watchdog thaws its guest", self.server_id)
            return
        compute_call(self.compute_url, self.token, self.server_id, {"soko-unquiesce": {}},
                     timeout)

    def record(self) -> dict:
        return {"kind": "guest-agent", "compute_url": self.compute_url,
                "server_id": self.server_id, "volume_id": self.volume_id}
