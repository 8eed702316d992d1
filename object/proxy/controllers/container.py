"""``/v1/<account>/<container>``: create, update, delete, stat and list containers.

Each container replica is told which account replica to report to (same replica index),
so container PUT/DELETE reach the account listing. ACL headers are checked here and only
the account's owner sees or sets them (a read-write account ACL lets others create, update
and delete containers; what they send of the owner's headers is dropped, as in Swift).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import falcon

from soko.common.errors import Conflict, NotFound, ServiceUnavailable
from soko.object.proxy.access import OWNER_HEADERS
from soko.object.proxy.acl import clean_acl
from soko.object.proxy.constraints import (
    DEFAULT_POLICY,
    check_metadata,
    check_names,
    check_policy,
)
from soko.object.proxy.controllers.account import metadata_updates, pass_headers, user_metadata
from soko.object.proxy.controllers.base import (
    ProxyState,
    authorize_account,
    authorize_container,
    backend_headers,
    refuse_if_bad_request,
)
from soko.object.proxy.cors import preflight
from soko.object.proxy.listing_format import listing_content_type, listing_query, render
from soko.object.proxy.replicas import best_status
from soko.object.shared.internal import ALLOW_RESERVED_HEADER, CONTAINER_SYSMETA_PREFIX
from soko.object.shared.timestamps import Timestamp

ACL_HEADERS = ("X-Container-Read", "X-Container-Write")


def node_address(node: dict) -> str:
    return f"{node['ip']}:{node['port']}"


class ContainerController:
    allow_anonymous = True  # public containers (ACL .r:*) are read without a token

    def __init__(self, state: ProxyState):
        self.state = state

    def container_updates(self, req: falcon.Request, owner: bool) -> dict[str, str]:
        """What a PUT or POST sets (400 if bad); an owner's headers only from the owner."""
        check_metadata(req.headers, "container")
        updates = metadata_updates(req, "Container", ACL_HEADERS)
        # The middlewares' settings (the pipeline's front drops a client's).
        updates.update(user_metadata(req, CONTAINER_SYSMETA_PREFIX))
        for header in ACL_HEADERS:
            value = req.get_header(header)
            if value is not None:
                updates[header] = clean_acl(header, value)
        if not owner:
            updates = {k: v for k, v in updates.items() if k.lower() not in OWNER_HEADERS}
        return updates

    def write(self, req, account: str, container: str, method: str,
              updates: dict[str, str]) -> int:
        timestamp = self.state.new_timestamp()
        account_part, account_nodes = self.state.accounts.nodes(account)
        part, nodes = self.state.containers.nodes(account, container)

        def headers_for(node: dict, index: int) -> dict[str, str]:
            target = account_nodes[index % len(account_nodes)]
            return {**backend_headers(req, timestamp), **updates,
                    "X-Account-Host": node_address(target),
                    "X-Account-Device": target["device"],
                    "X-Account-Partition": str(account_part)}

        responses = self.state.containers.write(part, nodes, method, (account, container),
                                                headers_for)
        self.state.forget_container(account, container)
        status = best_status(responses, self.state.containers.replica_count)
        refuse_if_bad_request(responses, status)
        return status

    def on_put(self, req, resp, account, container):
        owner = authorize_account(self.state, req, account, write=True, container=True)
        check_names(account, container, creating=True)
        check_policy(req.get_header("X-Storage-Policy"))
        status = self.write(req, account, container, "PUT", self.container_updates(req, owner))
        if status // 100 != 2:
            raise ServiceUnavailable("the container's replicas did not take the write")
        resp.status = status

    def on_post(self, req, resp, account, container):
        owner = authorize_account(self.state, req, account, write=True, container=True)
        check_names(account, container)
        status = self.write(req, account, container, "POST", self.container_updates(req, owner))
        if status == 404:
            raise NotFound("no such container")
        if status // 100 != 2:
            raise ServiceUnavailable("the container's replicas did not take the update")
        resp.status = falcon.HTTP_204

    def on_delete(self, req, resp, account, container):
        authorize_account(self.state, req, account, write=True, container=True)
        check_names(account, container)
        status = self.write(req, account, container, "DELETE", {})
        if status == 404:
            raise NotFound("no such container")
        if status == 409:
            raise Conflict()  # not empty (Swift says no more)
        if status // 100 != 2:
            raise ServiceUnavailable("the container's replicas did not take the delete")
        resp.status = falcon.HTTP_204

    def on_options(self, req, resp, account, container):
        preflight(self.state, req, resp, account, container)

    def on_head(self, req, resp, account, container):
        self.answer(req, resp, account, container, "HEAD")

    def on_get(self, req, resp, account, container):
        self.answer(req, resp, account, container, "GET")

    def answer(self, req, resp, account: str, container: str, method: str) -> None:
        content_type = listing_content_type(req)
        check_names(account, container)
        if authorize_container(self.state, req, account, container, write=False,
                               listing=True) is None:
            raise NotFound("no such container")
        query = urlencode(listing_query(req, "container")) if method == "GET" else ""
        newest = (req.get_header("X-Newest") or "").lower() == "true"
        headers = backend_headers(req)
        if req.get_header(ALLOW_RESERVED_HEADER):  # a middleware's (object versions)
            headers[ALLOW_RESERVED_HEADER] = req.get_header(ALLOW_RESERVED_HEADER)
        answer = self.state.containers.read(method, (account, container), headers,
                                            query=query, newest=newest)
        if answer.status == 404:
            raise NotFound("no such container")
        if answer.status // 100 != 2:
            raise ServiceUnavailable("the container's replicas did not answer")
        pass_headers(req, resp, answer.headers, ("x-container-", "x-timestamp"))
        for key, value in answer.headers.items():  # for the middlewares, not the client
            if key.startswith(CONTAINER_SYSMETA_PREFIX.lower()):
                resp.set_header(key, value)
        resp.set_header("X-Storage-Policy", DEFAULT_POLICY)
        resp.set_header("Last-Modified",
                        Timestamp.parse(answer.headers.get("x-put-timestamp")).http_date)
        entries = None
        if method == "GET":
            try:
                entries = json.loads(answer.read_all() or b"[]")
            except ValueError:
                raise ServiceUnavailable("the container listing could not be read") from None
        render(req, resp, entries, "container", container, content_type)
