"""``/v1/<account>``: stats, metadata and the container listing of one project's account.

Accounts are created on first use (Swift's ``account_autocreate``): one that no replica
has yet reads as empty, and a POST creates it.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

import falcon

from soko.common.errors import ServiceUnavailable
from soko.object.proxy.access import OWNER_HEADERS
from soko.object.proxy.acl import clean_account_acl
from soko.object.proxy.constraints import DEFAULT_POLICY, check_metadata, check_names
from soko.object.proxy.controllers.base import (
    ACCOUNT_ACL_SYSMETA,
    ProxyState,
    authorize_account,
    backend_headers,
    refuse_if_bad_request,
)
from soko.object.proxy.cors import preflight
from soko.object.proxy.listing_format import listing_content_type, listing_query, render
from soko.object.proxy.replicas import best_status

PASS_PREFIXES = ("x-account-", "x-timestamp")  # not x-put-timestamp: Swift's don't
SYSMETA_PREFIXES = ("x-account-sysmeta-", "x-container-sysmeta-")


def pass_headers(req: falcon.Request, resp: falcon.Response, headers: dict[str, str],
                 prefixes=PASS_PREFIXES) -> None:
    """The node's headers a client sees: never system metadata, and Swift's owner-only
    headers only to the owner (``req.context.swift_owner``), the account ACL among them."""
    owner = req.context.swift_owner
    for key, value in headers.items():
        if key == ACCOUNT_ACL_SYSMETA and owner:
            resp.set_header("X-Account-Access-Control", value)
        elif key.startswith(prefixes) and not key.startswith(SYSMETA_PREFIXES) and (
                owner or key not in OWNER_HEADERS):
            resp.set_header(key, value)


def user_metadata(req: falcon.Request, prefix: str) -> dict[str, str]:
    return {k.title(): v for k, v in req.headers.items() if k.startswith(prefix.upper())}


def metadata_updates(req: falcon.Request, kind: str, removable: tuple[str, ...] = ()) -> dict:
    """``X-<Kind>-Meta-*`` to set, and each ``X-Remove-<Kind>-Meta-*`` (or ``X-Remove-`` of a
    ``removable`` header) as an empty value, which removes it (Swift's ``transfer_headers``)."""
    removals = (f"X-REMOVE-{kind.upper()}-META-", *(f"X-REMOVE-{h[2:].upper()}" for h in removable))
    updates = {("X-" + key[len("X-REMOVE-"):]).title(): "" for key in req.headers
               if key.startswith(removals)}
    return {**updates, **user_metadata(req, f"X-{kind}-Meta-")}


class AccountController:
    allow_anonymous = True  # the controller decides: owners, and account ACLs

    def __init__(self, state: ProxyState):
        self.state = state

    def on_options(self, req, resp, account):
        preflight(self.state, req, resp, account)

    def on_head(self, req, resp, account):
        self.answer(req, resp, account, "HEAD")

    def on_get(self, req, resp, account):
        self.answer(req, resp, account, "GET")

    def answer(self, req, resp, account: str, method: str) -> None:
        content_type = listing_content_type(req)
        authorize_account(self.state, req, account, write=False)
        check_names(account)
        query = urlencode(listing_query(req, "account")) if method == "GET" else ""
        answer = self.state.accounts.read(method, (account,), backend_headers(req), query=query)
        entries = []
        if answer.status == 404:  # not created yet: reads as empty (autocreate)
            for key in ("Container-Count", "Object-Count", "Bytes-Used"):
                resp.set_header(f"X-Account-{key}", "0")
        elif answer.status // 100 == 2:
            pass_headers(req, resp, answer.headers)
            if method == "GET":
                entries = json.loads(answer.read_all() or b"[]")
        else:
            raise ServiceUnavailable("the account's replicas did not answer")
        for entry in entries:  # one policy: every container is in the default one
            if "subdir" not in entry:
                entry["storage_policy"] = DEFAULT_POLICY
        render(req, resp, entries if method == "GET" else None, "account", account,
               content_type)

    def on_post(self, req, resp, account):
        acl = req.get_header("X-Account-Access-Control")
        acl = None if acl is None else clean_account_acl(acl)  # 400 even for others (tempauth)
        authorize_account(self.state, req, account, write=True)
        check_names(account)
        check_metadata(req.headers, "account")
        updates = metadata_updates(req, "Account")
        if acl is not None:
            updates[ACCOUNT_ACL_SYSMETA.title()] = acl
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
