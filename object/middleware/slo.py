"""Static large objects (Swift's ``slo`` middleware): a manifest listing segments, each an
object (or a range of one, or another SLO), served as their concatenation.

- ``PUT ?multipart-manifest=put``: ``slo_manifest.ManifestPut``.
- ``GET``/``HEAD``: the segments streamed in order as the caller reads them; Range (one or
  several) and If-* apply to the whole (the storage node evaluates If-* against the SLO's
  ETag and ignores the Range for a manifest, see ``object/shared/internal.py``).
- ``?multipart-manifest=get``: the stored manifest (``&format=raw``: as it was put).
- ``DELETE ?multipart-manifest=delete``: the segments (those of nested SLOs too), then the
  manifest, answered with a bulk-delete report.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Iterator

from soko.common.errors import BadRequest, Conflict
from soko.object.middleware.copies import (
    copied_from,
    copy_request,
    copy_whole,
    object_url,
    source_head,
    target_environ,
)
from soko.object.middleware.report import accepted_format, report_body
from soko.object.middleware.segments import (
    Segment,
    SegmentedBody,
    SegmentError,
    ranged,
    stream,
    within,
)
from soko.object.middleware.slo_manifest import SYSMETA_ETAG, SYSMETA_SIZE, ManifestPut
from soko.object.middleware.subrequest import (
    Answer,
    call,
    header_names,
    object_path,
    query_value,
    subrequest,
)
from soko.object.shared.internal import ETAG_IS_AT_HEADER, IGNORE_RANGE_HEADER
from soko.object.shared.ranges import Unsatisfiable, multipart_byteranges, parse_range

log = logging.getLogger(__name__)

MAX_MANIFEST_SEGMENTS = 1000
MAX_MANIFEST_SIZE = 8 * 1024 * 1024
MIN_SEGMENT_SIZE = 1
YIELD_FREQUENCY = 10  # seconds between heartbeats of a manifest PUT
MAX_NESTING = 10  # SLOs within SLOs
MANIFEST_GET = "multipart-manifest=get"  # a manifest itself, past the DLO layer too
ETAG_IS_AT_KEY = "HTTP_" + ETAG_IS_AT_HEADER.upper().replace("-", "_")
IGNORE_RANGE_KEY = "HTTP_" + IGNORE_RANGE_HEADER.upper().replace("-", "_")
# What a manifest's Content-Type carries for listings (the S3 API's multipart ETag too).
CONTENT_TYPE_PARAMS = ("swift_bytes", "slo_etag", "s3_etag")
# What the answer for the whole object says differently from the manifest's.
REPLACED = frozenset({"etag", "content-length", "content-type", "content-range"})


def is_slo(headers: dict[str, str]) -> bool:
    return headers.get("x-static-large-object", "").lower() == "true"


def without_params(content_type: str, *names: str) -> str:
    """The Content-Type without the ``;name=value`` parameters the manifest keeps there."""
    kept = [part for part in content_type.split(";")
            if part.strip().partition("=")[0].lower() not in names]
    return ";".join(kept)


def entry_bounds(entry: dict) -> tuple[int, int]:
    if "range" in entry:
        first, _, last = entry["range"].partition("-")
        return int(first), int(last)
    return 0, int(entry["bytes"]) - 1


class StaticLargeObjects:
    def __init__(self, app, section=None):
        self.app = app
        self.max_manifest_segments = getattr(section, "slo_max_manifest_segments",
                                             MAX_MANIFEST_SEGMENTS)
        self.max_manifest_size = MAX_MANIFEST_SIZE
        self.yield_frequency = YIELD_FREQUENCY

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {"max_manifest_segments": getattr(section, "slo_max_manifest_segments",
                                                 MAX_MANIFEST_SEGMENTS),
                "max_manifest_size": MAX_MANIFEST_SIZE,
                "min_segment_size": MIN_SEGMENT_SIZE,
                "yield_frequency": YIELD_FREQUENCY}

    def __call__(self, environ, start_response):
        path = object_path(environ)
        if path is None:
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        mode = query_value(environ, "multipart-manifest")
        if method == "PUT" and mode == "put":
            heartbeat = (query_value(environ, "heartbeat") or "").lower() in ("on", "true", "1",
                                                                              "yes")
            return ManifestPut(self, environ, *path, heartbeat).answer(start_response)
        copy = copy_request(environ)
        if copy is not None and is_slo(source_head(self.app, environ, *copy[:2]).headers):
            if mode == "get":
                return self.copy_manifest(environ, start_response, *copy)
            return copy_whole(self, environ, start_response, *copy)
        if method == "PUT" and "HTTP_X_STATIC_LARGE_OBJECT" in environ:
            raise BadRequest("X-Static-Large-Object is a reserved header. To create a static "
                             "large object add query param multipart-manifest=put.")
        if method == "POST":
            environ.pop("HTTP_X_STATIC_LARGE_OBJECT", None)
        if method in ("GET", "HEAD"):
            if mode == "get":
                return self.manifest(environ, start_response, method)
            return self.read(environ, start_response, path, method)
        if method == "DELETE" and mode == "delete":
            return self.delete(environ, start_response, path)
        return self.app(environ, start_response)

    # -- reads -----------------------------------------------------------------------------

    def read(self, environ, start_response, path, method: str):
        header_names(environ, ETAG_IS_AT_KEY, SYSMETA_ETAG)
        header_names(environ, IGNORE_RANGE_KEY, "X-Static-Large-Object")
        answer = call(self.app, environ)
        if not is_slo(answer.headers) or answer.status not in (200, 304, 412):
            start_response(answer.status_line, answer.header_list)
            return answer.body
        etag = answer.headers.get(SYSMETA_ETAG.lower(), "")
        base = [(k, v) for k, v in answer.header_list if k.lower() not in REPLACED]
        base += [("Etag", f'"{etag}"'),
                 ("X-Manifest-Etag", answer.headers.get("etag", "").strip('"'))]
        content_type = without_params(answer.headers.get("content-type", ""),
                                      *CONTENT_TYPE_PARAMS)
        size = int(answer.headers.get(SYSMETA_SIZE.lower(), 0))
        if answer.status != 200 or method == "HEAD":
            answer.close()
            length = size if answer.status == 200 else 0
            start_response(answer.status_line,
                           [*base, ("Content-Type", content_type),
                            ("Content-Length", str(length))])
            return []
        try:
            entries = self.manifest_entries(answer)
        except SegmentError as error:
            raise Conflict(f"{'/'.join(path[2:])}: {error}") from None
        account_path = "/".join(("", path[0], path[1]))
        trans_id = environ.get("HTTP_X_TRANS_ID")
        name = "/".join(path[2:])

        def read(start: int, end: int) -> Iterator[bytes]:
            return stream(self.app, environ, account_path,
                          self.leaves(environ, account_path, entries, start, end, 0), "SLO")

        try:
            ranges = parse_range(environ.get("HTTP_RANGE"), size)
        except Unsatisfiable:
            start_response("416 Requested Range Not Satisfiable",
                           [*base, ("Content-Type", content_type), ("Content-Length", "0"),
                            ("Content-Range", f"bytes */{size}")])
            return []
        if ranges is None:
            status, headers, length, chunks = "200 OK", [], size, read(0, size - 1)
        elif len(ranges) == 1:
            (start, end), status = ranges[0], "206 Partial Content"
            headers = [("Content-Range", f"bytes {start}-{end - 1}/{size}")]
            length, chunks = end - start, read(start, end - 1)
        else:
            status, headers = "206 Partial Content", []
            content_type, length, chunks = multipart_byteranges(ranges, size, content_type,
                                                                ranged(read))
        body = SegmentedBody(chunks, name, trans_id)
        start_response(status, [*base, *headers, ("Content-Type", content_type),
                                ("Content-Length", str(length))])
        return body

    def manifest_entries(self, answer: Answer) -> list[dict]:
        body = answer.read(self.max_manifest_size)
        try:
            entries = json.loads(body)
        except ValueError:
            raise SegmentError("the manifest is not JSON") from None
        return entries

    def leaves(self, environ, account_path: str, entries: list[dict], start: int, end: int,
               depth: int) -> Iterator[Segment]:
        """The object segments holding bytes ``start..end`` of the SLO, nested SLOs opened
        as they are reached (a range skips those before it unread)."""
        pieces = ((entry, *entry_bounds(entry)) for entry in entries)
        for entry, first, last in within(pieces, start, end):
            if not entry.get("sub_slo"):
                yield Segment(entry["name"], first, last, entry["hash"], entry["bytes"])
                continue
            if depth + 1 >= MAX_NESTING:
                raise SegmentError(f"{entry['name']}: SLOs nested more than {MAX_NESTING} deep")
            answer = subrequest(self.app, environ, "GET", account_path + entry["name"],
                                query=MANIFEST_GET, source="SLO")
            if answer.status != 200 or not is_slo(answer.headers) \
                    or answer.headers.get(SYSMETA_ETAG.lower()) != entry["hash"]:
                answer.close()
                raise SegmentError(f"{entry['name']}: the nested SLO is gone or changed "
                                   f"({answer.status_line})")
            yield from self.leaves(environ, account_path, self.manifest_entries(answer),
                                   first, last, depth + 1)

    def manifest(self, environ, start_response, method: str):
        """``?multipart-manifest=get``: the manifest as stored, or (``format=raw``) as put."""
        answer = call(self.app, environ)
        if not is_slo(answer.headers) or answer.status != 200:
            start_response(answer.status_line, answer.header_list)
            return answer.body
        headers = [(k, v) for k, v in answer.header_list if k.lower() not in REPLACED]
        if query_value(environ, "format") != "raw":
            start_response(answer.status_line, [
                *headers, ("Content-Type", "application/json; charset=utf-8"),
                ("Etag", answer.headers.get("etag", "")),
                ("Content-Length", answer.headers.get("content-length", "0"))])
            return answer.body
        raw = json.dumps([{"etag": e["hash"], "path": e["name"], "size_bytes": e["bytes"],
                           **({"range": e["range"]} if "range" in e else {})}
                          for e in self.manifest_entries(answer)]).encode()
        start_response(answer.status_line, [
            *headers, ("Content-Type", without_params(answer.headers.get("content-type", ""),
                                                      *CONTENT_TYPE_PARAMS)),
            ("Etag", hashlib.md5(raw).hexdigest()), ("Content-Length", str(len(raw)))])
        return [] if method == "HEAD" else [raw]

    def copy_manifest(self, environ, start_response, version: str, source, target):
        """A copy of the manifest, not of the data (``?multipart-manifest=get``): the
        manifest put again at the target, as it was put, its segments checked again."""
        raw = subrequest(self, environ, "GET", object_url(version, source),
                         query="multipart-manifest=get&format=raw", source="COPY")
        if raw.status != 200:
            start_response(raw.status_line, raw.header_list)
            return raw.body
        body = raw.read(self.max_manifest_size)
        env = target_environ(environ, version, target, raw, query="multipart-manifest=put")
        env.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))})
        answer = call(self, env)
        start_response(answer.status_line, copied_from(answer.header_list, source, target))
        return answer.body

    # -- delete ----------------------------------------------------------------------------

    def delete(self, environ, start_response, path):
        """The segments, then the manifest; a report of what was deleted, not found, refused."""
        account_path = "/".join(("", path[0], path[1]))
        manifest_path = "/" + "/".join(path[2:])
        counts, errors = {"deleted": 0, "not found": 0}, []
        for segment_path in self.to_delete(environ, account_path, manifest_path, 0, errors):
            answer = subrequest(self.app, environ, "DELETE", account_path + segment_path,
                                source="SLO")
            answer.close()
            if answer.status // 100 == 2:
                counts["deleted"] += 1
            elif answer.status == 404:
                counts["not found"] += 1
            else:
                errors.append([segment_path, answer.status_line])
        status = "400 Bad Request" if errors else "200 OK"
        fields = {"Number Deleted": counts["deleted"], "Number Not Found": counts["not found"],
                  "Response Status": status, "Response Body": ""}
        fmt = accepted_format(environ)
        body = report_body(fmt, fields, errors, "delete")
        start_response("200 OK", [("Content-Type", fmt), ("Content-Length", str(len(body)))])
        return [body]

    def to_delete(self, environ, account_path: str, manifest_path: str, depth: int,
                  errors: list) -> Iterator[str]:
        """The objects a manifest delete removes: segments (recursively), then the manifest.
        A manifest that cannot be read is reported, and nothing under it deleted."""
        answer = subrequest(self.app, environ, "GET", account_path + manifest_path,
                            query=MANIFEST_GET, source="SLO")
        if answer.status == 200 and is_slo(answer.headers):
            if depth >= MAX_NESTING:
                answer.close()
                errors.append([manifest_path, "Max recursion depth exceeded"])
                return
            try:
                entries = self.manifest_entries(answer)
            except SegmentError:
                errors.append([manifest_path, "Unable to load SLO manifest"])
                return
            for entry in entries:
                if entry.get("sub_slo"):
                    yield from self.to_delete(environ, account_path, entry["name"], depth + 1,
                                              errors)
                else:
                    yield entry["name"]
        elif answer.status // 100 not in (2, 4) or answer.status in (401, 403):
            answer.close()
            errors.append([manifest_path, answer.status_line])
            return
        answer.close()
        yield manifest_path
