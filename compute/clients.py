"""The block and image APIs as compute uses them, with the user's own token (as Nova calls
Cinder and Glance): those services, not compute, decide what the user may see and use.
What only compute may do (bind a port to this host) it does with its own service user's
token (``ServiceCredential``).

Their errors come back as ``RemoteError`` carrying the remote status and message; the
compute manager turns them into its own answers (an unknown volume is a bad request to
``server create``, not a missing server). Every id put into a URL here is checked to be
one, whoever passed it.
"""

from __future__ import annotations

import math
import threading
import time

import requests

from soko.common.errors import BadRequest, Conflict, SokoError
from soko.common.validation import check_id

GiB = 1 << 30


class RemoteError(SokoError):
    """Another service refused or failed a call; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def remote_answer(exc: RemoteError, what: str) -> SokoError:
    """A block/image refusal as this API's answer: what the user named does not exist or
    cannot be used (400/409), or the other service failed (its status)."""
    if exc.status == 404:
        return BadRequest(f"{what} could not be found: {exc.message}")
    if exc.status in (400, 403, 409):
        return (Conflict if exc.status == 409 else BadRequest)(f"{what}: {exc.message}")
    return RemoteError(exc.status, f"{what}: {exc.message}") if exc.status < 500 else exc


def check_boot_image(image: dict, volume_size: int) -> None:
    """Nova's checks of a boot image, made before anything exists: it has data, and the
    new volume holds it."""
    if image.get("status") != "active":
        raise BadRequest(f"Image {image['id']} is {image.get('status')}; only an active "
                         "image can be booted from.")
    needed = math.ceil((image.get("virtual_size") or 0) / GiB)
    if volume_size < needed:
        raise BadRequest(f"volume_size {volume_size} GiB is smaller than image {image['id']} "
                         f"({image['virtual_size']} bytes): give at least {needed} GiB.")


class ServiceCredential:
    """Compute's own token: its service user's password login (Nova's ``[neutron]``
    section), kept until a minute before it expires and shared by every request."""

    def __init__(self, auth_url: str, user: str, password: str, project: str):
        self.auth_url, self.user, self.password, self.project = auth_url, user, password, project
        self.lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def token(self, *, renew: bool = False) -> str:
        from soko.identity.client import IdentityClient, IdentityClientError, parse_time

        with self.lock:
            if renew or self._token is None or time.time() > self._expires - 60:
                try:
                    token, body = IdentityClient(self.auth_url).login(
                        username=self.user, password=self.password, project_name=self.project,
                        with_catalog=False)
                except IdentityClientError as exc:  # the user's request is not at fault
                    raise RemoteError(503, f"compute's service user {self.user} could not "
                                           f"log in: {exc}") from None
                self._token, self._expires = token, parse_time(body["token"]["expires_at"])
            return self._token


class ServiceClient:
    """JSON calls to one service with one token; errors as ``RemoteError``."""

    def __init__(self, base: str, token: str, *, timeout: float = 60.0):
        self.base = base.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.http = requests.Session()

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            resp = self.http.request(method, self.base + path, timeout=self.timeout,
                                     headers={"X-Auth-Token": self.token}, **kwargs)
        except requests.RequestException as exc:
            raise RemoteError(503, f"{self.base} is unreachable: "
                                   f"{exc.__class__.__name__}") from None
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.reason
            raise RemoteError(resp.status_code, message)
        return resp.json() if resp.content else {}


class ImageClient(ServiceClient):
    """The image API (Glance v2 shape) at ``<image_url>``."""

    def get(self, image_id: str) -> dict:
        return self.call("GET", f"/v2/images/{check_id(image_id, 'image id')}")


class VolumeClient(ServiceClient):
    """One project's volumes at ``<block_url>/v3/<project_id>``."""

    def __init__(self, block_url: str, project_id: str, token: str):
        super().__init__(f"{block_url.rstrip('/')}/v3/{project_id}", token)
        self.project_id = project_id

    def get(self, volume_id: str) -> dict:
        return self.call("GET", f"/volumes/{check_id(volume_id, 'volume id')}")["volume"]

    def create(self, size: int, *, name: str, image_ref: str | None = None) -> dict:
        spec = {"size": size, "name": name, **({"imageRef": image_ref} if image_ref else {})}
        return self.call("POST", "/volumes", json={"volume": spec})["volume"]

    def wait_available(self, volume_id: str, timeout: float) -> dict:
        """Polls a new volume until it leaves ``creating`` (or whatever fills it)."""
        deadline = time.monotonic() + timeout
        while True:
            volume = self.get(volume_id)
            if volume["status"] == "available":
                return volume
            if volume["status"] not in ("creating", "downloading"):
                raise RemoteError(409, f"volume {volume_id} became {volume['status']}")
            if time.monotonic() > deadline:
                raise RemoteError(504, f"volume {volume_id} is still {volume['status']} "
                                       f"after {timeout:.0f} s")
            time.sleep(0.5)

    def attach(self, volume_id: str, *, initiator: str, server_id: str) -> dict:
        """Exports the volume to this host for ``server_id``; returns the iSCSI connection
        data (portal, IQN, LUN, CHAP credentials)."""
        body = {"os-attach": {"connector": {"initiator": initiator}, "instance_uuid": server_id}}
        return self.action(volume_id, body)["connection_info"]["data"]

    def detach(self, volume_id: str) -> None:
        self.action(volume_id, {"os-detach": {}})

    def action(self, volume_id: str, body: dict) -> dict:
        return self.call("POST", f"/volumes/{check_id(volume_id, 'volume id')}/action",
                         json=body)

    def delete(self, volume_id: str) -> None:
        self.call("DELETE", f"/volumes/{check_id(volume_id, 'volume id')}")

    def quota_usage(self) -> dict:
        """The project's block quotas with usage (Cinder's ``os-quota-sets?usage=true``)."""
        return self.call("GET", f"/os-quota-sets/{self.project_id}",
                         params={"usage": "true"})["quota_set"]
