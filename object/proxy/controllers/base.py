"""What the proxy's controllers share: the rings' replicas, who may do what, backend
headers, and the per-worker container-info cache."""

from __future__ import annotations

import json
import threading
import time

import falcon

from soko.common.errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from soko.object.proxy.acl import may_access
from soko.object.proxy.replicas import Replicas
from soko.object.shared.nodeclient import ConnectionPool
from soko.object.shared.timestamps import Timestamp

RESELLER_PREFIX = "AUTH_"


class ProxyState:
    """What every controller uses: the three rings' replicas and the container-info cache."""

    def __init__(self, rings: dict, pool: ConnectionPool, container_info_ttl: float):
        self.accounts = Replicas("account", rings["account"], pool)
        self.containers = Replicas("container", rings["container"], pool)
        self.objects = Replicas("object", rings["object"], pool)
        self.container_info_ttl = container_info_ttl
        self.cache: dict[tuple[str, str], tuple[float, dict]] = {}
        self.cache_lock = threading.Lock()
        self.last_timestamp = 0
        self.timestamp_lock = threading.Lock()

    def new_timestamp(self) -> Timestamp:
        """Strictly increasing within a process, so two quick writes never tie."""
        with self.timestamp_lock:
            ts = Timestamp.now()
            ts.ticks = max(ts.ticks, self.last_timestamp + 1)
            self.last_timestamp = ts.ticks
            return ts

    def container_info(self, req: falcon.Request, account: str, container: str,
                       use_cache: bool) -> dict | None:
        """The container's ACLs and placement (None if it does not exist)."""
        key = (account, container)
        if use_cache:
            with self.cache_lock:
                cached = self.cache.get(key)
            if cached and cached[0] > time.monotonic():
                return cached[1]
        answer = self.containers.read("HEAD", key, backend_headers(req))
        if answer.status == 404:
            self.forget_container(account, container)
            return None
        if answer.status // 100 != 2:
            raise ServiceUnavailable("the container's replicas did not answer")
        info = {
            "read": answer.headers.get("x-container-read"),
            "write": answer.headers.get("x-container-write"),
        }
        with self.cache_lock:
            self.cache[key] = (time.monotonic() + self.container_info_ttl, info)
        return info

    def forget_container(self, account: str, container: str) -> None:
        with self.cache_lock:
            self.cache.pop((account, container), None)


def refuse_if_bad_request(responses: list, status: int) -> None:
    """A 400 the replicas agree on (e.g. stored metadata over the limits) is the client's:
    passed on with the node's message."""
    if status != 400:
        return
    for response in responses:
        if response.status == 400:
            try:
                message = json.loads(response.body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                continue
            raise BadRequest(message)
    raise BadRequest()  # no text a node gave: Swift's page


def backend_headers(req: falcon.Request, timestamp: Timestamp | None = None) -> dict[str, str]:
    headers = {"X-Trans-Id": req.context.trans_id}
    if timestamp is not None:
        headers["X-Timestamp"] = timestamp.normal
    return headers


def is_owner(req: falcon.Request, account: str) -> bool:
    auth = req.context.auth
    return auth is not None and (account == RESELLER_PREFIX + auth.project_id or auth.is_admin)


def deny(req: falcon.Request) -> None:
    if req.context.auth is None:
        raise Unauthorized("This request needs a token (X-Auth-Token) or a container ACL.")
    raise Forbidden("This token may not do that on this account.")


def require_owner(req: falcon.Request, account: str) -> None:
    if not is_owner(req, account):
        deny(req)


def authorize_container(state: ProxyState, req: falcon.Request, account: str, container: str,
                        *, write: bool, listing: bool = False) -> dict | None:
    """Owner, or a container ACL granting this: the container's info (None if absent)."""
    owner = is_owner(req, account)
    info = state.container_info(req, account, container, use_cache=owner)
    if owner:
        return info
    auth = req.context.auth
    allowed = info is not None and may_access(
        info["write" if write else "read"], auth, listing=listing, referer=req.referer,
        own_project=auth is not None and account == RESELLER_PREFIX + auth.project_id)
    if not allowed:
        deny(req)
    return info
