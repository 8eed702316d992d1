"""``/v1/<account>/<container>/<object>``: PUT, GET, HEAD, POST, DELETE and COPY.

A PUT streams the client's body to every replica in bounded chunks (never the whole object
in memory) and answers once a quorum made it durable. Each object replica is told which
container replica to update (same replica index), so the listing follows the write.
GET/HEAD pass the node's answer through, ranges and preconditions included.
"""

from __future__ import annotations

import mimetypes
import re
import time
from collections.abc import Iterator
from urllib.parse import quote, unquote_to_bytes

import falcon

from soko.common.errors import (
    BadRequest,
    ClientDisconnect,
    LengthRequired,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    ServiceUnavailable,
    SokoError,
    Unprocessable,
)
from soko.object.proxy.constraints import (
    MAX_DELETE_AT,
    MAX_FILE_SIZE,
    PLAIN,
    check_content_type,
    check_metadata,
    check_names,
    check_object_size,
)
from soko.object.proxy.controllers.account import user_metadata
from soko.object.proxy.controllers.base import (
    ProxyState,
    authorize_container,
    backend_headers,
    node_message,
    refuse_if_bad_request,
)
from soko.object.proxy.controllers.container import node_address
from soko.object.proxy.cors import preflight
from soko.object.proxy.replicas import best_status
from soko.object.proxy.swift_errors import swift_page
from soko.object.shared.footer import FOOTER_HEADER, FOOTER_KIND, FOOTER_SIZE, FooterBody
from soko.object.shared.internal import (
    CONTENT_TYPE_OF_304,
    ETAG_IS_AT_HEADER,
    IGNORE_RANGE_HEADER,
    OBJECT_SYSMETA_PREFIX,
    OBJECT_SYSTEM_HEADERS,
)
from soko.object.shared.nodeclient import STREAM_CHUNK
from soko.object.shared.ranges import etag_set
from soko.object.shared.timestamps import Timestamp

READ_HEADERS = ("Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since",
                ETAG_IS_AT_HEADER, IGNORE_RANGE_HEADER)
# System metadata goes up to the middlewares; the pipeline's front keeps it from clients.
ANSWER_PREFIXES = ("x-object-meta-", "etag", "last-modified", "x-timestamp", "accept-ranges",
                   "content-range", "content-disposition", "content-encoding", "cache-control",
                   "content-language", "expires", "x-robots-tag", "x-delete-at",
                   "x-object-manifest", "x-static-large-object", OBJECT_SYSMETA_PREFIX.lower())
ANSWER_STATUSES = (200, 206, 304, 412)


class RangeNotSatisfiable(SokoError):
    status, title = 416, "Requested Range Not Satisfiable"


def client_body(req: falcon.Request, length: int | None) -> Iterator[bytes]:
    """The request body in bounded chunks; a short body (client gone) raises."""
    received = 0
    while length is None or received < length:
        want = STREAM_CHUNK if length is None else min(STREAM_CHUNK, length - received)
        chunk = req.stream.read(want)
        if not chunk:
            break
        received += len(chunk)
        if received > MAX_FILE_SIZE:
            raise PayloadTooLarge()
        yield chunk
    if length is not None and received < length:
        raise ClientDisconnect()


def delete_at_header(req: falcon.Request) -> dict[str, str]:
    """``X-Delete-At`` (or ``X-Delete-After`` turned into one), with Swift's 400s.

    Only a plain decimal integer is a time (no ``inf``, ``1e10``, ``+5`` or ``1_000``, which
    Python's parsers would take); a later one than Swift's largest, ``MAX_DELETE_AT``, is
    clamped to it, as Swift's ``normalize_delete_at_timestamp`` does.
    """
    now = time.time()
    after, at = req.get_header("X-Delete-After"), req.get_header("X-Delete-At")
    if after is not None:
        name, value = "X-Delete-After", whole_seconds(after, "X-Delete-After") + int(now)
    elif at is not None:
        name, value = "X-Delete-At", whole_seconds(at, "X-Delete-At")
    else:
        return {}
    if value <= now:
        raise BadRequest(f"{name} in past", content_type=PLAIN)
    return {"X-Delete-At": str(min(value, MAX_DELETE_AT))}


def whole_seconds(value: str, name: str) -> int:
    match = re.fullmatch(r"\s*(-?)0*([0-9]+)\s*", value)
    if match is None:
        raise BadRequest(f"Non-integer {name}", content_type=PLAIN)
    sign, digits = match.groups()
    magnitude = int(digits) if len(digits) <= 19 else 10**19  # only compared with times
    return -magnitude if sign else magnitude


def header_name(req: falcon.Request, header: str) -> str | None:
    """A name given in a header, percent-decoded and held to the rules of names in the path:
    valid UTF-8 without NUL, else 412 as Swift answers (WSGI hands headers over as latin-1)."""
    raw = req.get_header(header)
    if raw is None:
        return None
    try:
        name = unquote_to_bytes(raw.encode("latin-1")).decode("utf-8")
    except UnicodeError:
        raise PreconditionFailed("Invalid UTF8 or contains NULL") from None
    if "\x00" in name:
        raise PreconditionFailed("Invalid UTF8 or contains NULL")
    return name


def object_in_header(req: falcon.Request, header: str) -> tuple[str, str]:
    """``(container, object)`` from ``Destination`` or ``X-Copy-From``: ``[/]<c>/<o>``."""
    container, _, obj = header_name(req, header).removeprefix("/").partition("/")
    if not container or not obj:
        raise PreconditionFailed(f"{header} header must be of the form "
                                 "<container name>/<object name>")
    return container, obj


def account_in_header(req: falcon.Request, header: str, *,
                      empty_is_none: bool = False) -> str | None:
    """The account of ``Destination-Account`` or ``X-Copy-From-Account`` (None if not given;
    an empty ``X-Copy-From-Account`` is not given, for Swift's copy middleware)."""
    account = header_name(req, header)
    if empty_is_none and not account:
        return None
    if account is not None and not account:
        raise PreconditionFailed("Account name cannot be empty")
    if account is not None and "/" in account:
        raise PreconditionFailed("Account name cannot contain slashes")
    return account


def object_metadata(req: falcon.Request) -> dict[str, str]:
    """The metadata a PUT or POST sets: user metadata, Swift's settable system headers and
    the system metadata of the middlewares (storage nodes take on a POST what a POST may
    change)."""
    check_metadata(req.headers, "object")
    headers = user_metadata(req, "X-Object-Meta-")
    for name in OBJECT_SYSTEM_HEADERS:
        if name != "X-Delete-At" and req.get_header(name) is not None:
            headers[name] = req.get_header(name)
    headers.update(user_metadata(req, OBJECT_SYSMETA_PREFIX))
    headers.update(delete_at_header(req))
    return headers


def content_type(req: falcon.Request, obj: str) -> str:
    given = req.content_type
    if given and (req.get_header("X-Detect-Content-Type") or "").lower() != "true":
        check_content_type(given)
        return given
    return mimetypes.guess_type(obj)[0] or "application/octet-stream"


class ObjectController:
    allow_anonymous = True  # public containers (ACL .r:*) are read without a token

    def __init__(self, state: ProxyState):
        self.state = state

    # -- writes ----------------------------------------------------------------------------

    def on_put(self, req, resp, account, container, obj):
        check_names(account, container, obj, creating=True)
        if req.get_header("X-Copy-From") is not None:
            source = (account_in_header(req, "X-Copy-From-Account", empty_is_none=True)
                      or account, *object_in_header(req, "X-Copy-From"))
            self.copy(req, resp, source, (account, container, obj))
            return
        if authorize_container(self.state, req, account, container, write=True) is None:
            raise NotFound(f"container {container} does not exist")
        if req.get_header("If-None-Match") not in (None, "*"):
            raise BadRequest("If-None-Match only supports *", content_type=PLAIN)
        length = req.content_length
        chunked = "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        if length is None and not chunked:
            raise LengthRequired("Missing Content-Length header.", content_type=PLAIN)
        check_object_size(length)
        headers = {**object_metadata(req), "Content-Type": content_type(req, obj)}
        for name in ("ETag", "If-None-Match"):
            if req.get_header(name):
                headers[name] = req.get_header(name)
        self.store(req, resp, account, container, obj, headers, client_body(req, length), length)

    def store(self, req, resp, account, container, obj, headers: dict[str, str], body,
              length: int | None) -> None:
        timestamp = self.state.new_timestamp()
        container_part, container_nodes = self.state.containers.nodes(account, container)
        part, nodes = self.state.objects.nodes(account, container, obj)
        # The MD5 is computed here once, not on every replica (footer.py says why).
        body, headers[FOOTER_HEADER] = FooterBody(body), FOOTER_KIND
        if length is not None:
            length += FOOTER_SIZE
            headers["Content-Length"] = str(length)

        def headers_for(node: dict, index: int) -> dict[str, str]:
            target = container_nodes[index % len(container_nodes)]
            return {**backend_headers(req, timestamp), **headers,
                    "X-Container-Host": node_address(target),
                    "X-Container-Device": target["device"],
                    "X-Container-Partition": str(container_part)}

        responses = self.state.objects.write(part, nodes, "PUT", (account, container, obj),
                                             headers_for, body, length)
        status = best_status(responses, self.state.objects.replica_count)
        if status == 422:
            raise Unprocessable()
        if status == 412:
            raise PreconditionFailed()
        if status == 409:
            status = 202  # a newer write already won on a quorum: nothing to add
        if status // 100 != 2:
            raise ServiceUnavailable("Too few replicas stored the object.")
        etags = {r.headers.get("etag") for r in responses if r.status == 201}
        resp.status = status
        if len(etags) == 1:
            resp.set_header("ETag", etags.pop())
        resp.set_header("Last-Modified", timestamp.http_date)

    def copy(self, req, resp, source: tuple[str, str, str],
             target: tuple[str, str, str]) -> None:
        """Server-side copy as Swift's copy middleware does it: the source is read first
        (the newest replica, with the request's ``Range`` and preconditions: a range copies
        just those bytes), then streamed into the target's replicas. The target keeps the
        source's metadata under the request's (``X-Fresh-Metadata: true``: only the
        request's), and its type unless the request gives one."""
        if req.content_length:
            raise BadRequest("Copy requests require a zero byte body")
        check_names(*source)
        metadata = object_metadata(req)  # refused before the source is read
        src_account, src_container, src_obj = source
        if authorize_container(self.state, req, src_account, src_container, write=False) is None:
            raise NotFound(f"container {src_container} does not exist")
        answer = self.state.objects.read("GET", source, read_headers(req), newest=True)
        if answer.status // 100 != 2:
            self.serve(req, resp, answer, "HEAD")  # Swift answers as the source's GET
            return
        try:
            if authorize_container(self.state, req, *target[:2], write=True) is None:
                raise NotFound(f"container {target[1]} does not exist")
            fresh = (req.get_header("X-Fresh-Metadata") or "").lower() == "true"
            headers = {} if fresh else {k.title(): v for k, v in answer.headers.items()
                                        if is_object_metadata(k)}
            headers.update(metadata)
            headers["Content-Type"] = req.content_type or answer.headers["content-type"]
            self.store(req, resp, *target, headers, answer,
                       int(answer.headers["content-length"]))
        finally:
            answer.close()
        # Quoted, as Swift's copy middleware does: a name may hold any UTF-8 (or a %).
        resp.set_header("X-Copied-From-Account", quote(src_account))
        resp.set_header("X-Copied-From", quote(f"{src_container}/{src_obj}"))
        resp.set_header("X-Copied-From-Last-Modified", answer.headers["last-modified"])
        for key, value in headers.items():
            if key.startswith("X-Object-Meta-") or key == "X-Delete-At":
                resp.set_header(key, value)

    def on_copy(self, req, resp, account, container, obj):
        if not req.get_header("Destination"):
            raise PreconditionFailed("Destination header required")
        target = (account_in_header(req, "Destination-Account") or account,
                  *object_in_header(req, "Destination"))
        check_names(*target, creating=True)
        self.copy(req, resp, (account, container, obj), target)

    def on_post(self, req, resp, account, container, obj):
        check_names(account, container, obj)
        if authorize_container(self.state, req, account, container, write=True) is None:
            raise NotFound(f"container {container} does not exist")
        headers = object_metadata(req)
        if req.content_type:
            headers["Content-Type"] = req.content_type
        status = self.simple_write(req, "POST", account, container, obj, headers, update=True)
        if status == 404:
            raise NotFound("no such object")
        resp.status = falcon.HTTP_202
        resp.text = swift_page(202)  # Swift's object POST answers swob's page

    def on_delete(self, req, resp, account, container, obj):
        check_names(account, container, obj)
        if authorize_container(self.state, req, account, container, write=True) is None:
            raise NotFound(f"container {container} does not exist")
        condition = req.get_header("X-If-Delete-At")
        status = self.simple_write(req, "DELETE", account, container, obj,
                                   {} if condition is None else {"X-If-Delete-At": condition},
                                   update=True)
        if status == 404:
            raise NotFound("no such object")
        resp.status = falcon.HTTP_204

    def simple_write(self, req, method, account, container, obj, headers, update=False) -> int:
        timestamp = self.state.new_timestamp()
        container_part, container_nodes = self.state.containers.nodes(account, container)
        part, nodes = self.state.objects.nodes(account, container, obj)

        def headers_for(node: dict, index: int) -> dict[str, str]:
            extra = {}
            if update:
                target = container_nodes[index % len(container_nodes)]
                extra = {"X-Container-Host": node_address(target),
                         "X-Container-Device": target["device"],
                         "X-Container-Partition": str(container_part)}
            return {**backend_headers(req, timestamp), **headers, **extra}

        responses = self.state.objects.write(part, nodes, method, (account, container, obj),
                                             headers_for)
        status = best_status(responses, self.state.objects.replica_count)
        refuse_if_bad_request(responses, status)
        if status == 412:
            raise PreconditionFailed(node_message(responses, 412))
        if status != 404 and status // 100 != 2:
            raise ServiceUnavailable(f"Too few replicas took the {method}.")
        return status

    # -- reads -----------------------------------------------------------------------------

    def on_options(self, req, resp, account, container, obj):
        preflight(self.state, req, resp, account, container, obj=True)

    def on_get(self, req, resp, account, container, obj):
        self.answer(req, resp, account, container, obj, "GET")

    def on_head(self, req, resp, account, container, obj):
        self.answer(req, resp, account, container, obj, "HEAD")

    def answer(self, req, resp, account, container, obj, method: str) -> None:
        check_names(account, container, obj)
        if authorize_container(self.state, req, account, container, write=False) is None:
            raise NotFound(f"container {container} does not exist")
        newest = (req.get_header("X-Newest") or "").lower() == "true"
        answer = self.state.objects.read(method, (account, container, obj), read_headers(req),
                                         newest=newest)
        self.serve(req, resp, answer, method)

    def serve(self, req, resp, answer, method: str) -> None:
        """Passes the replicas' answer to a GET or HEAD on (ranges and preconditions are
        the node's, ``object/shared/ranges.py``)."""
        if answer.status == 404 and "*" in etag_set(req.get_header("If-Match") or ""):
            resp.status, resp.content_length = falcon.HTTP_412, 0  # RFC 7232 3.1, as swob
            return
        if answer.status == 404:
            raise NotFound("The resource could not be found.")
        if answer.status == 416:
            raise RangeNotSatisfiable(headers={  # Swift's page
                key: value for key, value in answer.headers.items()
                if key.startswith(ANSWER_PREFIXES)})
        if answer.status not in ANSWER_STATUSES:
            raise ServiceUnavailable("the object's replicas did not answer")
        resp.status = answer.status
        for key, value in answer.headers.items():
            if key.startswith(ANSWER_PREFIXES):
                resp.set_header(key, value)
        if answer.status in (304, 412):  # no body, as Swift (a 304 keeps the type)
            if answer.status == 304 and CONTENT_TYPE_OF_304.lower() in answer.headers:
                resp.content_type = answer.headers[CONTENT_TYPE_OF_304.lower()]
            resp.content_length = 0
            return
        if "content-type" in answer.headers:
            resp.content_type = answer.headers["content-type"]
        if "content-length" in answer.headers:
            resp.content_length = int(answer.headers["content-length"])
        if method == "GET" and hasattr(answer, "close"):
            resp.stream = answer
        elif method == "GET":
            resp.data = answer.body
        if answer.status == 200 and method == "GET":
            resp.set_header("Last-Modified", Timestamp.parse(answer.headers["x-timestamp"]).http_date)


def read_headers(req: falcon.Request) -> dict[str, str]:
    """What a read tells the replicas: the request's range and preconditions."""
    headers = backend_headers(req)
    headers.update({h: req.get_header(h) for h in READ_HEADERS if req.get_header(h)})
    return headers


def is_object_metadata(header: str) -> bool:
    """What a copy keeps of its source (lower-case names): user metadata and the settable
    system headers (Swift's ``copy_header_subset``, less the ETag, type and times)."""
    return header.startswith("x-object-meta-") or header.title() in OBJECT_SYSTEM_HEADERS
