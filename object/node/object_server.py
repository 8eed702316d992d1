"""The object half of a storage node: object files on this node's devices.

A PUT streams the body to disk computing its MD5, checks a client ETag (422 and nothing left
behind on mismatch), makes it durable, then tells one container replica about it. If that
container node cannot be reached the update is written as an async-pending record under
``<device>/async_pending/`` for the updater to replay: the object is stored either way.
"""

from __future__ import annotations

import functools
import http.client
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator

import falcon
import msgpack

from soko.common.durable import RACE_RETRIES, atomic_write
from soko.common.errors import (
    BadRequest,
    ClientDisconnect,
    Conflict,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from soko.object.node.blocksums import BlockMismatch, has_block_sums, read_verified_range
from soko.object.node.diskfile import (
    Devices,
    DiskFile,
    DiskFileError,
    ObjectState,
    read_range,
    read_verified,
)
from soko.object.shared.footer import (
    FOOTER_HEADER,
    FOOTER_KIND,
    FOOTER_SIZE,
    FooterMismatch,
    FooterReader,
)
from soko.object.shared.internal import (
    CONTENT_TYPE_OF_304,
    ETAG_IS_AT_HEADER,
    IGNORE_RANGE_HEADER,
    OBJECT_POST_HEADERS,
    OBJECT_SYSMETA_PREFIX,
    OBJECT_SYSTEM_HEADERS,
    prefixed_headers,
    request_timestamp,
    target_node,
)
from soko.object.shared.nodeclient import STREAM_CHUNK, ConnectionPool, backend_path
from soko.object.shared.ranges import (
    Unsatisfiable,
    multipart_byteranges,
    parse_range,
    precondition_status,
)
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

log = logging.getLogger(__name__)

# Up to this much of a GET's answer is read and checked (every block, see ``blocksums``)
# before any header goes out: a mismatch is quarantined and answered 404, so the proxy reads
# another replica. The rest is checked while streaming (``checked_before_sending``).
VERIFY_BEFORE_SENDING = 4 * 1024 * 1024
# Says so on every whole-object GET: a body that is not the one whose MD5 is its ETag never
# arrives complete (its blocks, or for an old .data its MD5, are checked here).
VERIFIED_HEADER = "X-Backend-Body-Verified"


def is_expired(metadata: dict[str, str], now: float | None = None) -> bool:
    delete_at = metadata.get("X-Delete-At")
    return bool(delete_at) and int(delete_at) <= (now or time.time())


def object_headers(state: ObjectState) -> dict[str, str]:
    """The response headers a GET/HEAD of this object carries."""
    meta = state.metadata
    headers = {k: v for k, v in meta.items()
               if k.startswith(("X-Object-Meta-", OBJECT_SYSMETA_PREFIX))
               or k in OBJECT_SYSTEM_HEADERS}
    changed = meta.get("X-Post-Timestamp", meta["X-Timestamp"])  # a POST modifies it (Swift)
    headers.update({
        "Content-Type": meta.get("Content-Type", "application/octet-stream"),
        "ETag": meta["ETag"],
        "X-Timestamp": changed,
        "Last-Modified": Timestamp.parse(changed).http_date,
        "X-Backend-Timestamp": state.timestamp.normal,
        "Accept-Ranges": "bytes",
    })
    return headers


def condition_etag(req: falcon.Request, metadata: dict[str, str]) -> str:
    """What If-Match/If-None-Match compare with: the ETag, or the first metadata a
    middleware named in ``X-Backend-Etag-Is-At`` that this object has."""
    for name in (req.get_header(ETAG_IS_AT_HEADER) or "").split(","):
        if name.strip().title() in metadata:
            return metadata[name.strip().title()]
    return metadata["ETag"]


def requested_range(req: falcon.Request, metadata: dict[str, str]) -> str | None:
    """The Range header, unless the object has metadata a middleware said makes it want
    the whole object (``X-Backend-Ignore-Range-If-Metadata-Present``)."""
    names = (req.get_header(IGNORE_RANGE_HEADER) or "").split(",")
    if any(name.strip().title() in metadata for name in names if name.strip()):
        return None
    return req.get_header("RANGE")


class ObjectResource:
    def __init__(self, devices: Devices, pool: ConnectionPool):
        self.devices = devices
        self.pool = pool

    def diskfile(self, device, partition, account, container, obj) -> DiskFile:
        return DiskFile(self.devices.path(device), partition, account, container, obj)

    def live_state(self, df: DiskFile, resp: falcon.Response) -> ObjectState:
        """The object's state; 404 (with the tombstone's time) if deleted, absent or expired."""
        state = df.read_state()
        if state.timestamp is not None:
            resp.set_header("X-Backend-Timestamp", state.timestamp.normal)
        if "X-Post-Timestamp" in state.metadata:  # the proxy reads the newest metadata
            resp.set_header("X-Backend-Meta-Timestamp", state.metadata["X-Post-Timestamp"])
        if not state.exists or is_expired(state.metadata):
            headers = {"X-Backend-Timestamp": state.timestamp.normal} if state.timestamp else {}
            raise NotFound("no such object", headers=headers)
        return state

    def on_put(self, req, resp, device, partition, account, container, obj):
        timestamp = request_timestamp(req)
        df = self.diskfile(device, partition, account, container, obj)
        existing = newer_write_refused(df, timestamp)
        if req.get_header("IF-NONE-MATCH") == "*" and existing.exists \
                and not is_expired(existing.metadata):
            raise PreconditionFailed("the object exists (If-None-Match: *)")
        footer = req.get_header(FOOTER_HEADER) == FOOTER_KIND  # the proxy hashed the body
        expected_length = req.content_length
        if footer and expected_length is not None:
            expected_length -= FOOTER_SIZE
        body = request_chunks(req)
        if footer:
            body = FooterReader(body)
        with df.writer(expected_length, md5=not footer) as writer:
            for chunk in body:
                writer.write(chunk)
            if expected_length is not None and writer.size != expected_length:
                raise ClientDisconnect(f"got {writer.size} of {expected_length} bytes")
            try:
                etag = body.etag if footer else writer.etag
            except FooterMismatch as exc:
                raise ClientDisconnect(str(exc)) from None
            client_etag = (req.get_header("ETAG") or "").strip('"').lower()
            if client_etag and client_etag != etag:
                raise Unprocessable(f"ETag {client_etag} does not match the body's MD5")
            metadata = {
                "name": df.name,
                "X-Timestamp": timestamp.normal,
                "Content-Type": req.content_type or "application/octet-stream",
                "Content-Length": str(writer.size),
                "ETag": etag,
                **prefixed_headers(req, "X-OBJECT-META-"),
                **prefixed_headers(req, OBJECT_SYSMETA_PREFIX.upper()),
                **{h: req.get_header(h) for h in OBJECT_SYSTEM_HEADERS if req.get_header(h)},
            }
            writer.commit(timestamp, "data", metadata)
        self.update_container(req, df, "PUT", account, container, obj, {
            "X-Size": metadata["Content-Length"], "X-Etag": etag,
            "X-Content-Type": metadata["Content-Type"],
        })
        resp.status = falcon.HTTP_201
        resp.set_header("ETag", etag)

    def on_delete(self, req, resp, device, partition, account, container, obj):
        timestamp = request_timestamp(req)
        df = self.diskfile(device, partition, account, container, obj)
        existing = newer_write_refused(df, timestamp)
        if req.get_header("X-IF-DELETE-AT") is not None:
            check_delete_at(req.get_header("X-IF-DELETE-AT"), existing)
        df.write_marker(timestamp, "ts", {"name": df.name, "X-Timestamp": timestamp.normal})
        self.update_container(req, df, "DELETE", account, container, obj, {})
        # Like Swift: the tombstone is written either way, the status says what was there.
        resp.status = falcon.HTTP_204 if existing.exists else falcon.HTTP_404

    def on_post(self, req, resp, device, partition, account, container, obj):
        timestamp = request_timestamp(req)
        df = self.diskfile(device, partition, account, container, obj)
        state = self.live_state(df, resp)
        if state.timestamp >= timestamp:
            raise Conflict("a newer write exists")
        metadata = {"X-Timestamp": timestamp.normal, **prefixed_headers(req, "X-OBJECT-META-")}
        metadata.update({h: req.get_header(h) for h in OBJECT_POST_HEADERS
                         if req.get_header(h)})
        # Swift's fast POST: a type it sets stays until another POST sets one (the .data
        # keeps its own); the listing shows it, and the POST's time as last modified.
        metadata["Content-Type"] = req.content_type or state.metadata["Content-Type"]
        df.write_marker(timestamp, "meta", metadata)
        self.update_container(req, df, "PUT", account, container, obj, {
            "X-Size": state.metadata["Content-Length"], "X-Etag": state.metadata["ETag"],
            "X-Content-Type": metadata["Content-Type"],
        })
        resp.status = falcon.HTTP_202

    def on_head(self, req, resp, device, partition, account, container, obj):
        self.answer_read(req, resp, device, partition, account, container, obj, body=False)

    def on_get(self, req, resp, device, partition, account, container, obj):
        for attempt in range(RACE_RETRIES):
            before = set(resp.headers)
            try:
                return self.answer_read(req, resp, device, partition, account, container, obj,
                                        body=True)
            except FileNotFoundError:
                # A newer write replaced the .data between reading the state and opening
                # it: read the new state (without the old one's headers).
                if attempt == RACE_RETRIES - 1:
                    raise
                for name in set(resp.headers) - before:
                    resp.delete_header(name)

    def answer_read(self, req, resp, device, partition, account, container, obj, body: bool):
        df = self.diskfile(device, partition, account, container, obj)
        state = self.live_state(df, resp)
        headers = object_headers(state)
        size = int(state.metadata["Content-Length"])
        last_modified = math.ceil(Timestamp.parse(headers["X-Timestamp"]).seconds)
        status = precondition_status(req.headers, condition_etag(req, state.metadata),
                                     last_modified)
        if status is not None:
            # No body. Swift's 304 says the object's type (WSGI allows no Content-Type on a
            # 304: it goes as a backend header); its 412 has neither type nor ranges.
            content_type = headers.pop("Content-Type")
            if status == 304:
                headers[CONTENT_TYPE_OF_304] = content_type
            else:
                del headers["Accept-Ranges"]
            resp.set_headers(headers)
            resp.status = falcon.code_to_http_status(status)
            return
        if not body:
            resp.set_headers(headers)
            resp.content_length = size
            return
        try:
            ranges = parse_range(requested_range(req, state.metadata), size)
        except Unsatisfiable:
            resp.set_headers(headers)
            resp.status = falcon.HTTP_416
            resp.set_header("Content-Range", f"bytes */{size}")
            return
        try:
            read = body_reader(df, state, size)
        except DiskFileError:
            raise quarantined(df, resp) from None
        if ranges is None:
            # The proxy need not hash it again (node_answers.StreamedResponse).
            headers[VERIFIED_HEADER] = "md5"
            length, chunks = size, read(0, size)
        elif len(ranges) == 1:
            start, end = ranges[0]
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
            length, chunks = end - start, read(start, end)
        else:
            headers["Content-Type"], length, chunks = multipart_byteranges(
                ranges, size, headers["Content-Type"], read)
        resp.stream = checked_before_sending(df, resp, chunks)
        resp.set_headers(headers)
        resp.content_length = length
        if ranges is not None:
            resp.status = falcon.HTTP_206

    def update_container(self, req, df: DiskFile, method: str, account: str, container: str,
                         obj: str, extra: dict[str, str]) -> None:
        """Tells the container replica the proxy named; on failure leaves an async pending."""
        target = target_node(req, "CONTAINER")
        if target is None:
            return
        node, partition = target
        headers = {"X-Timestamp": req.get_header("X-TIMESTAMP"),
                   "X-Trans-Id": req.context.trans_id, **extra}
        path = backend_path("container", node, partition, account, container, obj)
        try:
            status, _, _ = self.pool.request(node, method, path, headers)
            if status // 100 == 2:
                return
            reason = f"status {status}"
        except (OSError, http.client.HTTPException) as exc:
            reason = repr(exc)
        log.warning("container update %s %s failed (%s); saving async pending",
                    method, path, reason)
        save_async_pending(df, method, node, partition, path, headers)


def body_reader(df: DiskFile, state: ObjectState,
                size: int) -> Callable[[int, int], Iterable[bytes]]:
    """How to read this object's bytes ``[start, end)`` so that none goes out unchecked.

    A ``.data`` with block sums: block by block (``blocksums``). One of the older format
    (written before block sums; the auditor adds them): up to ``VERIFY_BEFORE_SENDING`` the
    whole body is MD5-checked first (raises DiskFileError); past that a whole read is
    MD5-checked as it streams, but a range of it goes out unchecked.
    """
    path, etag = state.data_path, state.metadata["ETag"]
    if has_block_sums(state.metadata):
        return functools.partial(read_verified_range, path)
    if size <= VERIFY_BEFORE_SENDING:
        whole = read_verified(path, etag)
        if whole is None:
            raise DiskFileError(f"{path}: body MD5 differs from its ETag")
        return lambda start, end: (whole[start:end],)
    return lambda start, end: read_range(path, start, end,
                                         etag if end - start == size else None, df.quarantine)


def checked_before_sending(df: DiskFile, resp, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Reads (and so checks) up to ``VERIFY_BEFORE_SENDING`` of the answer before any header
    goes out: a bad block there is quarantined and answered 404, and the proxy reads another
    replica. Past that a bad block quarantines the copy and cuts the connection short of
    its Content-Length: it is never sent, and the body never looks complete."""
    chunks = iter(chunks)
    ahead, total = [], 0
    try:
        while total < VERIFY_BEFORE_SENDING and (chunk := next(chunks, None)) is not None:
            ahead.append(chunk)
            total += len(chunk)
    except (BlockMismatch, DiskFileError):
        raise quarantined(df, resp) from None
    return itertools.chain(ahead, quarantining(df, chunks))


def quarantining(df: DiskFile, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from chunks
    except BlockMismatch as exc:
        log.error("cutting the body short: %s; quarantined", exc)
        df.quarantine()
        raise


def quarantined(df: DiskFile, resp) -> NotFound:
    """Quarantines the copy; the 404 for it carries no timestamp (this node knows nothing
    of the object now, it is not a tombstone)."""
    df.quarantine()
    resp.delete_header("X-Backend-Timestamp")
    return NotFound("the object failed its checksum here and was quarantined")


def request_chunks(req) -> Iterator[bytes]:
    """The request body as it arrives, up to ``STREAM_CHUNK`` bytes at a time."""
    while chunk := req.stream.read(STREAM_CHUNK):
        yield chunk


def save_async_pending(df: DiskFile, method: str, node: dict, partition: str, path: str,
                       headers: dict[str, str]) -> None:
    """``<device>/async_pending/<suffix>/<hash>-<timestamp>``: a listing update to replay."""
    digest = df.hash_dir.name
    record = {"method": method, "node": node, "partition": partition, "path": path,
              "headers": headers}
    target = df.device_path / "async_pending" / digest[-3:] / f"{digest}-{headers['X-Timestamp']}"
    atomic_write(target, msgpack.packb(record))


def check_delete_at(expected: str, existing: ObjectState) -> None:
    """``X-If-Delete-At`` (the expirer's guard, any client may send it): delete only the
    version due at that time. As Swift's object server: a value that is no timestamp is
    400, no trace of the object 404, another (or no) ``X-Delete-At`` 412 — a tombstone's
    included, so a deleted object is not deleted again."""
    try:
        wanted = Timestamp.parse(expected)
    except InvalidTimestamp:
        raise BadRequest("Bad X-If-Delete-At header value") from None
    if existing.timestamp is None:
        raise NotFound("no such object")
    if Timestamp.parse(existing.metadata.get("X-Delete-At") or 0) != wanted:
        raise PreconditionFailed("X-If-Delete-At and X-Delete-At do not match")


def newer_write_refused(df, timestamp):
    """The object's current state; 409 if a write at least as new as ``timestamp`` exists."""
    existing = df.read_state()
    if existing.timestamp is not None and existing.timestamp >= timestamp:
        raise Conflict("a newer write exists",
                       headers={"X-Backend-Timestamp": existing.timestamp.normal})
    return existing
