"""What the proxy's controllers share: the rings' replicas, who may do what (decided in
``access``, with what the container and account say), backend headers, and the per-worker
container-info cache."""

from __future__ import annotations

import json
import threading

import falcon

from soko.common.errors import BadRequest, ServiceUnavailable
from soko.common.ttl_cache import TtlCache
from soko.object.proxy.access import REFUSAL_KEY, Access, signed_grant
from soko.object.proxy.cors import CorsRules
from soko.object.proxy.replicas import Replicas
from soko.object.shared.internal import CONTAINER_SYSMETA_PREFIX
from soko.object.shared.nodeclient import ConnectionPool
from soko.object.shared.timestamps import Timestamp

ACCOUNT_ACL_SYSMETA = "x-account-sysmeta-core-access-control"  # as Swift stores it
CORS_META = "x-container-meta-access-control-"


class ProxyState:
    """What every controller uses: the three rings' replicas, the container-info cache, and
    the access and CORS rules."""

    def __init__(self, rings: dict, pool: ConnectionPool, container_info_ttl: float,
                 access: Access, cors: CorsRules):
        self.access = access
        self.cors = cors
        self.accounts = Replicas("account", rings["account"], pool)
        self.containers = Replicas("container", rings["container"], pool)
        self.objects = Replicas("object", rings["object"], pool)
        self.container_infos = TtlCache(container_info_ttl)
        self.last_timestamp = 0
        self.timestamp_lock = threading.Lock()

    def new_timestamp(self) -> Timestamp:
        """Strictly increasing within a process, so two quick writes never tie."""
        with self.timestamp_lock:
            ts = Timestamp.now()
            ts.ticks = max(ts.ticks, self.last_timestamp + 1)
            self.last_timestamp = ts.ticks
            return ts

    def container_info(self, trans_id: str, account: str, container: str,
                       use_cache: bool) -> dict | None:
        """The container's ACLs, CORS settings and system metadata (None if it does not
        exist, which is not cached: a container made through another worker is seen at
        once). Without ``use_cache`` it is read afresh (and cached)."""
        key = (account, container)
        if use_cache:
            return self.container_infos.get(key, lambda: self.read_container_info(trans_id, key),
                                            keep=lambda info: info is not None)
        info = self.read_container_info(trans_id, key)
        if info is None:
            self.container_infos.forget(key)
        else:
            self.container_infos.put(key, info)
        return info

    def read_container_info(self, trans_id: str, key: tuple[str, str]) -> dict | None:
        answer = self.containers.read("HEAD", key, {"X-Trans-Id": trans_id})
        if answer.status == 404:
            return None
        if answer.status // 100 != 2:
            raise ServiceUnavailable("the container's replicas did not answer")
        return {
            "read": answer.headers.get("x-container-read"),
            "write": answer.headers.get("x-container-write"),
            "cors": {name: answer.headers.get(CORS_META + name)
                     for name in ("allow-origin", "expose-headers", "max-age")},
            "sysmeta": {k[len(CONTAINER_SYSMETA_PREFIX):]: v for k, v in answer.headers.items()
                        if k.startswith(CONTAINER_SYSMETA_PREFIX.lower())},
        }

    def account_acl(self, req: falcon.Request, account: str) -> str | None:
        """The stored account ACL, read afresh (asked only for callers who own nothing)."""
        answer = self.accounts.read("HEAD", (account,), backend_headers(req))
        if answer.status == 404:
            return None
        if answer.status // 100 != 2:
            raise ServiceUnavailable("the account's replicas did not answer")
        return answer.headers.get(ACCOUNT_ACL_SYSMETA)

    def forget_container(self, account: str, container: str) -> None:
        self.container_infos.forget((account, container))


def refuse_if_bad_request(responses: list, status: int) -> None:
    """A 400 the replicas agree on (e.g. stored metadata over the limits) is the client's:
    passed on with the node's message."""
    if status == 400:
        raise BadRequest(node_message(responses, 400))


def node_message(responses: list, status: int) -> str | None:
    """The message of the first replica's error answer of this status (the client's
    mistake the replicas agree on, said as a storage node says it)."""
    for response in responses:
        if response.status == status:
            try:
                return json.loads(response.body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                continue
    return None  # no text a node gave: the error's own (Swift's page)


def backend_headers(req: falcon.Request, timestamp: Timestamp | None = None) -> dict[str, str]:
    headers = {"X-Trans-Id": req.context.trans_id}
    if timestamp is not None:
        headers["X-Timestamp"] = timestamp.normal
    return headers


def authorize_account(state: ProxyState, req: falcon.Request, account: str, *,
                      write: bool, container: bool = False) -> bool:
    """Account requests, and container PUT/POST/DELETE (which no container ACL grants):
    whether the caller is the account's owner (it raises if the caller may not)."""
    grant = signed_grant(req)
    if grant is not None:
        owner = state.access.signed(req, grant, account, None, write=write, obj=False)
    else:
        owner = state.access.decide(req, account, write=write, container=container,
                                    obj=False, acl=None,
                                    account_acl=lambda: state.account_acl(req, account))
    req.context.swift_owner = owner
    return owner


def authorize_container(state: ProxyState, req: falcon.Request, account: str, container: str,
                        *, write: bool, listing: bool = False) -> dict | None:
    """Object requests and container reads: the owner, or a container or account ACL
    granting this. The container's info (None if absent); ``req.context.swift_owner`` says
    whether the caller owns the account."""
    grant = signed_grant(req)
    if grant is not None:
        owner = state.access.signed(req, grant, account, container, write=write,
                                    obj=not listing)
        info = state.container_info(req.context.trans_id, account, container, use_cache=True)
    else:
        owner = state.access.is_owner_by_roles(req, account)
        info = state.container_info(req.context.trans_id, account, container, use_cache=owner)
        if not owner:
            owner = state.access.granted(
                req, account, write=write, container=True, obj=not listing,
                acl=info and info["write" if write else "read"],
                account_acl=lambda: state.account_acl(req, account))
    req.context.swift_owner = owner
    refusal = req.env.get(REFUSAL_KEY)
    if write and refusal and refusal[0] == (account, container):
        raise refusal[1]
    return info
