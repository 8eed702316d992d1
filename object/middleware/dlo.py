"""Dynamic large objects (Swift's ``dlo`` middleware): an object with
``X-Object-Manifest: <container>/<prefix>`` is served as the concatenation, in name order,
of the objects the container lists under that prefix at the time of the GET.

As in Swift: the ETag is the quoted MD5 of the segments' ETags and the Content-Length their
sum when the listing fits one page (10,000 objects); beyond that the answer streams every
page without either, and ignores a Range. One Range is honoured, If-* apply to the whole;
``?multipart-manifest=get`` returns the manifest object itself. Segments are not checked
against the listing's ETags (the listing may lag a rewrite, as Swift allows), only against
its sizes: a segment that shrank or grew cuts the answer rather than misplace bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from soko.common.errors import BadRequest, SokoError
from soko.object.middleware.copies import copy_request, copy_whole, source_head
from soko.object.middleware.segments import Segment, SegmentedBody, stream, within
from soko.object.middleware.subrequest import (
    Answer,
    call,
    from_wsgi,
    header_names,
    object_path,
    query_value,
    subrequest,
)
from soko.object.proxy.constraints import CONTAINER_LISTING_LIMIT
from soko.object.shared.internal import IGNORE_RANGE_HEADER
from soko.object.shared.ranges import Unsatisfiable, parse_range, precondition_status

IGNORE_RANGE_KEY = "HTTP_" + IGNORE_RANGE_HEADER.upper().replace("-", "_")
REPLACED = frozenset({"etag", "content-length", "content-range"})


class ListingError(SokoError):
    """The segments' container could not be listed as the caller: its status passed on."""

    def __init__(self, answer: Answer):
        super().__init__(answer.read(4096).decode("utf-8", "replace"))
        self.status = answer.status
        self.title = answer.status_line.partition(" ")[2]


def check_manifest_header(environ: dict) -> None:
    value = environ.get("HTTP_X_OBJECT_MANIFEST")
    if value is None:
        return
    container, _, prefix = value.partition("/")
    if not container or not prefix or "?" in value or "&" in value or prefix.startswith("/"):
        raise BadRequest("X-Object-Manifest must be in the format container/prefix")


class DynamicLargeObjects:
    def __init__(self, app, section=None):
        self.app = app

    @classmethod
    def swift_info(cls, section=None) -> dict:
        """No limit to publish (Swift publishes none): the listing is paged through."""
        return {}

    def __call__(self, environ, start_response):
        path = object_path(environ)
        if path is None:
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        copy = copy_request(environ)
        if copy is not None and query_value(environ, "multipart-manifest") != "get" and \
                "x-object-manifest" in source_head(self.app, environ, *copy[:2]).headers:
            return copy_whole(self, environ, start_response, *copy)
        if method in ("PUT", "POST"):
            check_manifest_header(environ)
        elif method in ("GET", "HEAD") and query_value(environ, "multipart-manifest") != "get":
            return self.read(environ, start_response, path, method)
        return self.app(environ, start_response)

    def read(self, environ, start_response, path, method: str):
        header_names(environ, IGNORE_RANGE_KEY, "X-Object-Manifest")
        answer = call(self.app, environ)
        manifest = answer.headers.get("x-object-manifest")
        if manifest is None or answer.status != 200:
            start_response(answer.status_line, answer.header_list)
            return answer.body
        answer.close()
        container, _, prefix = unquote(from_wsgi(manifest)).partition("/")
        account_path = f"/{path[0]}/{path[1]}"
        first_page = self.page(environ, account_path, container, prefix, "")
        headers = [(k, v) for k, v in answer.header_list if k.lower() not in REPLACED]
        if len(first_page) >= CONTAINER_LISTING_LIMIT:  # more pages: streamed as it comes
            start_response("200 OK", headers)
            if method == "HEAD":
                return []
            segments = self.segments(environ, account_path, container, prefix, first_page)
            return SegmentedBody(stream(self.app, environ, account_path, segments, "DLO"),
                                 "/".join(path[2:]), environ.get("HTTP_X_TRANS_ID"))
        size = sum(entry["bytes"] for entry in first_page)
        etag = hashlib.md5("".join(e["hash"].strip('"') for e in first_page).encode()
                           ).hexdigest()
        headers.append(("Etag", f'"{etag}"'))
        modified = answer.headers.get("last-modified")
        last_modified = math.ceil(parsedate_to_datetime(modified).timestamp()) if modified else 0
        conditions = {k[5:].replace("_", "-"): v for k, v in environ.items()
                      if k.startswith("HTTP_IF_")}
        status = precondition_status(conditions, etag, last_modified)
        if status is not None:
            start_response("304 Not Modified" if status == 304 else "412 Precondition Failed",
                           [*headers, ("Content-Length", "0")])
            return []
        try:
            ranges = parse_range(environ.get("HTTP_RANGE"), size)
        except Unsatisfiable:
            start_response("416 Requested Range Not Satisfiable",
                           [*headers, ("Content-Length", "0"),
                            ("Content-Range", f"bytes */{size}")])
            return []
        start, end, status = 0, size - 1, "200 OK"
        if ranges is not None and len(ranges) == 1:
            (start, stop), status = ranges[0], "206 Partial Content"
            end = stop - 1
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        if method == "HEAD":
            start_response(status, [*headers, ("Content-Length", str(end - start + 1))])
            return []
        pieces = ((entry, 0, entry["bytes"] - 1) for entry in first_page)
        segments = (Segment(f"/{container}/{entry['name']}", first, last, size=entry["bytes"])
                    for entry, first, last in within(pieces, start, end))
        body = SegmentedBody(stream(self.app, environ, account_path, segments, "DLO"),
                             "/".join(path[2:]), environ.get("HTTP_X_TRANS_ID"))
        start_response(status, [*headers, ("Content-Length", str(end - start + 1))])
        return body

    def page(self, environ, account_path: str, container: str, prefix: str,
             marker: str) -> list[dict]:
        """One page of the segments' listing, as the caller may list it."""
        query = f"format=json&prefix={quote(prefix)}"
        if marker:
            query += f"&marker={quote(marker)}"
        answer = subrequest(self.app, environ, "GET", f"{account_path}/{container}",
                            query=query, source="DLO")
        if answer.status == 404:
            answer.close()
            return []
        if answer.status // 100 != 2:
            raise ListingError(answer)
        return json.loads(answer.read(64 * 1024 * 1024) or b"[]") if answer.status == 200 \
            else []

    def segments(self, environ, account_path: str, container: str, prefix: str,
                 page: list[dict]) -> Iterator[Segment]:
        """Every listed object, page after page, as whole segments."""
        while page:
            for entry in page:
                yield Segment(f"/{container}/{entry['name']}", 0, entry["bytes"] - 1,
                              size=entry["bytes"])
            if len(page) < CONTAINER_LISTING_LIMIT:
                return
            page = self.page(environ, account_path, container, prefix, page[-1]["name"])
