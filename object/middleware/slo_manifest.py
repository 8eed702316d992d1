"""An SLO manifest PUT (``?multipart-manifest=put``): the client's segment list checked
entry by entry, every segment HEADed as the caller, and the manifest stored as Swift stores
it (a JSON list of ``name, bytes, hash, content_type, last_modified[, range, sub_slo]``),
with the SLO's ETag and size as system metadata.

Nothing is stored unless every segment checks out: a bad entry is a 400 naming it (Swift's
``Index N: ...`` lines), a bad segment a 400 with Swift's ``Errors:`` list.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

from soko.common.errors import (
    BadRequest,
    LengthRequired,
    MethodNotAllowed,
    PayloadTooLarge,
)
from soko.object.middleware.report import accepted_format, report_body
from soko.object.middleware.subrequest import Answer, call, subrequest, to_wsgi
from soko.object.shared.ranges import Unsatisfiable, parse_range

SLO_KEYS = frozenset({"path", "etag", "size_bytes", "range"})
SYSMETA_ETAG = "X-Object-Sysmeta-Slo-Etag"
SYSMETA_SIZE = "X-Object-Sysmeta-Slo-Size"
ANY_SIZE = 2**63
HEARTBEAT_SEPARATOR = b"\r\n\r\n"
BAD_REQUEST_TEXT = ("Bad Request\nThe server could not comply with the request since it is "
                    "either malformed or otherwise incorrect.")


def entry_problem(entry, index: int, count: int, own_path: str) -> str | None:
    """What is wrong with one entry of the client's list, as Swift words it (None: fine)."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    if "path" not in entry:
        return "expected keys to include one of 'path'"
    extraneous = sorted(key for key in entry if key not in SLO_KEYS)
    if extraneous:
        return "extraneous keys " + ", ".join(json.dumps(key) for key in extraneous)
    if not isinstance(entry["path"], str):
        return '"path" must be a string'
    if entry.get("etag") is not None and not isinstance(entry["etag"], str):
        return '"etag" must be a string or null (if provided)'
    if "/" not in entry["path"].strip("/"):
        return "path does not refer to an object. Path must be of the form /container/object."
    size = entry.get("size_bytes")
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, (int, str)) \
                or not str(size).strip().isdigit():
            return "invalid size_bytes"
        entry["size_bytes"] = size = int(size)
        if size < 1 and index != count - 1:
            return "too small; each segment must be at least 1 byte."
    if "/" + entry["path"].lstrip("/") == own_path:
        return "manifest must not include itself as a segment"
    if entry.get("range"):
        try:
            ranges = parse_range(f"bytes={entry['range']}", ANY_SIZE)
        except Unsatisfiable:
            ranges = None
        if ranges is None or not isinstance(entry["range"], str):
            return "invalid range"
        if len(ranges) > 1:
            return "multiple ranges (only one allowed)"
        if size is not None and not satisfiable(entry["range"], size):
            return "unsatisfiable range"
    return None


def satisfiable(spec: str, size: int) -> bool:
    try:
        return parse_range(f"bytes={spec}", size) is not None
    except Unsatisfiable:
        return False


def parse_manifest(body: bytes, own_path: str, max_segments: int) -> list[dict]:
    try:
        entries = json.loads(body)
    except ValueError:
        raise BadRequest("Manifest must be valid JSON.\n") from None
    if not isinstance(entries, list):
        raise BadRequest("Manifest must be a list.\n")
    problems = [f"Index {index}: {problem}\n" for index, entry in enumerate(entries)
                if (problem := entry_problem(entry, index, len(entries), own_path))]
    if problems:
        raise BadRequest("".join(problems))
    if len(entries) > max_segments:
        raise PayloadTooLarge(f"Number of object-backed segments must be <= {max_segments}")
    return entries


def stored_entry(entry: dict, head: Answer, last: bool, problems: list) -> tuple[dict, int]:
    """What the manifest keeps of a segment the HEAD found, and its length; appends what
    does not match the client's entry to ``problems``."""
    path = entry["path"]
    size = int(head.headers.get("content-length", 0))
    etag = head.headers.get("etag", "").strip('"')
    length, stored = size, {}
    if entry.get("range"):
        try:
            ((start, end),) = parse_range(f"bytes={entry['range']}", size)
            length = end - start
            if length != size:
                stored["range"] = f"{start}-{end - 1}"
        except Unsatisfiable:
            problems.append([path, "Unsatisfiable Range"])
    if length < 1 and not last:
        problems.append([path, "Too small; each segment must be at least 1 byte."])
    if entry.get("size_bytes") is not None and entry["size_bytes"] != size:
        problems.append([path, "Size Mismatch"])
    if entry.get("etag") is not None and entry["etag"].strip('"') != etag:
        problems.append([path, "Etag Mismatch"])
    modified = head.headers.get("last-modified")
    return {"name": "/" + path.lstrip("/"), "bytes": size, "hash": etag,
            "content_type": head.headers.get("content-type", ""),
            "last_modified": parsedate_to_datetime(modified).strftime("%Y-%m-%dT%H:%M:%S.%f")
            if modified else "",
            **stored,
            **({"sub_slo": True} if head.headers.get("x-static-large-object", "").lower()
               == "true" else {})}, length


def slo_etag(stored: list[dict]) -> str:
    """Swift's SLO ETag: the MD5 of the segments' ETags (``etag:range;`` for a range)."""
    digest = hashlib.md5()
    for entry in stored:
        part = f"{entry['hash']}:{entry['range']};" if "range" in entry else entry["hash"]
        digest.update(part.encode())
    return digest.hexdigest()


class ManifestPut:
    """One manifest PUT: read and checked by the constructor (errors raised before any
    answer), then ``answer`` HEADs the segments and stores the manifest."""

    def __init__(self, slo, environ: dict, version: str, account: str, container: str,
                 obj: str, heartbeat: bool):
        self.slo, self.environ, self.heartbeat = slo, environ, heartbeat
        self.account_path = f"/{version}/{account}"
        self.obj = obj
        if environ.get("HTTP_X_COPY_FROM"):
            raise MethodNotAllowed("Multipart Manifest PUTs cannot be COPY requests")
        length = environ.get("CONTENT_LENGTH")
        if not length and "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise LengthRequired("Length Required")
        limit = slo.max_manifest_size
        if length and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge(f"Manifest File > {limit} bytes")
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(f"Manifest File > {limit} bytes")
        self.entries = parse_manifest(body, f"/{container}/{obj}", slo.max_manifest_segments)
        self.format = accepted_format(environ)

    def answer(self, start_response):
        if self.heartbeat:
            start_response("202 Accepted", [("Content-Type", self.format)])
        return self.steps(start_response)

    def steps(self, start_response) -> Iterator[bytes]:
        if self.heartbeat:
            yield b" "
        last_beat = time.monotonic()
        stored, problems, total, heads = [], [], 0, {}
        for index, entry in enumerate(self.entries):
            head = heads.get(entry["path"])
            if head is None:
                head = heads[entry["path"]] = self.head(entry["path"])
            if head.status // 100 != 2:
                problems.append([entry["path"], head.status_line])
                continue
            kept, length = stored_entry(entry, head, index == len(self.entries) - 1, problems)
            stored.append(kept)
            total += length
            if self.heartbeat and time.monotonic() - last_beat > self.slo.yield_frequency:
                yield b" "
                last_beat = time.monotonic()
        if problems:
            yield from self.refuse(start_response, "400 Bad Request", BAD_REQUEST_TEXT, problems)
            return
        etag = slo_etag(stored)
        client_etag = self.environ.get("HTTP_ETAG", "").strip('"')
        if client_etag and client_etag != etag:
            yield from self.refuse(start_response, "422 Unprocessable Entity",
                                   "Unable to process the contained instructions", [])
            return
        answer = self.store(stored, etag, total)
        yield from self.finish(start_response, answer, etag)

    def head(self, path: str) -> Answer:
        """The segment as the caller sees it through the SLO layer (a nested SLO with its
        whole size and ETag)."""
        answer = subrequest(self.slo, self.environ, "HEAD",
                            f"{self.account_path}/{path.lstrip('/')}", source="SLO")
        answer.close()
        return answer

    def refuse(self, start_response, status: str, text: str, problems: list):
        if self.heartbeat:
            fields = {"Response Status": status, "Response Body": text}
            yield HEARTBEAT_SEPARATOR + report_body(self.format, fields, problems, "upload")
            return
        start_response(status, [("Content-Type", self.format)])
        yield report_body(self.format, {}, problems, "upload") if problems else text.encode()

    def store(self, stored: list[dict], etag: str, total: int) -> Answer:
        """The manifest PUT to the app below, with the client's headers."""
        body = json.dumps(stored).encode()
        env = self.environ
        given = env.get("CONTENT_TYPE")
        if not given or env.get("HTTP_X_DETECT_CONTENT_TYPE", "").lower() == "true":
            given = mimetypes.guess_type(self.obj)[0] or "application/octet-stream"
        env.pop("HTTP_TRANSFER_ENCODING", None)
        env.update({
            "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": to_wsgi(f"{given};swift_bytes={total};slo_etag={etag}"),
            "HTTP_ETAG": hashlib.md5(body).hexdigest(),
            "HTTP_X_STATIC_LARGE_OBJECT": "True",
            "HTTP_" + SYSMETA_ETAG.upper().replace("-", "_"): etag,
            "HTTP_" + SYSMETA_SIZE.upper().replace("-", "_"): str(total),
        })
        return call(self.slo.app, env)

    def finish(self, start_response, answer: Answer, etag: str):
        if answer.status // 100 == 2:
            headers = [(k, f'"{etag}"' if k.lower() == "etag" else v)
                       for k, v in answer.header_list]
        else:
            headers = answer.header_list
        if not self.heartbeat:
            start_response(answer.status_line, headers)
            yield from answer
            return
        body = answer.read(64 * 1024)
        fields = {"Response Status": answer.status_line,
                  "Response Body": "" if answer.status // 100 == 2 else body.decode(
                      "utf-8", "replace")}
        if answer.status // 100 == 2:
            fields.update({"Etag": f'"{etag}"',
                           "Last Modified": answer.headers.get("last-modified", "")})
        yield HEARTBEAT_SEPARATOR + report_body(self.format, fields, [], "upload")
