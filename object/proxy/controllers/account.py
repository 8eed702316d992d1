"""``/v1/<account>``: stats, metadata and the container listing of one project's account.

Accounts are created on first use (Swift's ``account_autocreate``): one that no replica
has yet reads as empty, and a POST creates it.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import falcon

from soko.common.errors import ServiceUnavailable
from soko.object.proxy.constraints import check_metadata, check_names
from soko.object.proxy.controllers.base import (
    ProxyState,
    backend_headers,
    refuse_if_bad_request,
    require_owner,
)
from soko.object.proxy.listing_format import listing_query, render
from soko.object.proxy.replicas import best_status

PASS_PREFIXES = ("x-account-", "x-timestamp", "x-put-timestamp")


def pass_headers(resp: falcon.Response, headers: dict[str, str], prefixes=PASS_PREFIXES) -> None:
    for key, value in headers.items():
        if key.startswith(prefixes):
            resp.set_header(key, value)


def user_metadata(req: falcon.Request, prefix: str) -> dict[str, str]:
    return {k.title(): v for k, v in req.headers.items() if k.startswith(prefix.upper())}


class AccountController:
    allow_anonymous = True  # the controller decides: owners only

    def __init__(self, state: ProxyState):
        self.state = state

    def on_head(self, req, resp, account):
        self.answer(req, resp, account, "HEAD")

    def on_get(self, req, resp, account):
        self.answer(req, resp, account, "GET")

    def answer(self, req, resp, account: str, method: str) -> None:
        require_owner(req, account)
        check_names(account)
        query = urlencode(listing_query(req)) if method == "GET" else ""
        answer = self.state.accounts.read(method, (account,), backend_headers(req), query=query)
        entries = []
        if answer.status == 404:  # not created yet: reads as empty (autocreate)
            for key in ("Container-Count", "Object-Count", "Bytes-Used"):
                resp.set_header(f"X-Account-{key}", "0")
        elif answer.status // 100 == 2:
            pass_headers(resp, answer.headers)
            if method == "GET":
                entries = json.loads(answer.read_all() or b"[]")
        else:
            raise ServiceUnavailable("the account's replicas did not answer")
        if method == "HEAD":
            resp.status = falcon.HTTP_204
            return
        render(req, resp, entries, "account", account)

    def on_post(self, req, resp, account):
        require_owner(req, account)
        check_names(account)
        check_metadata(req.headers, "account")
        updates = user_metadata(req, "X-Account-Meta-")
        timestamp = self.state.new_timestamp()
        part, nodes = self.state.accounts.nodes(account)
        responses = self.state.accounts.write(
            part, nodes, "PUT", (account,),
            lambda node, index: {**backend_headers(req, timestamp), **updates})
        status = best_status(responses, self.state.accounts.replica_count)
        refuse_if_bad_request(responses, status)
        if status // 100 != 2:
            raise ServiceUnavailable("the account's replicas did not take the update")
        resp.status = falcon.HTTP_204
