"""What a storage node answered, as the proxy reads it: whole (``NodeResponse``), or a body
left on the connection to stream (``StreamedResponse``), checked as it goes and continued
from another replica when it breaks off (``replicas`` says when and why)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
from collections.abc import Iterator

from soko.object.shared.nodeclient import (
    STREAM_CHUNK,
    ConnectionPool,
    NodeConnection,
    is_node_error,
)
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

log = logging.getLogger(__name__)


@dataclasses.dataclass
class NodeResponse:
    node: dict
    status: int
    headers: dict[str, str]
    body: bytes = b""
    unreachable: bool = False  # connect failure or timeout: the whole host is suspect

    def read_all(self) -> bytes:
        return self.body

    @property
    def failed(self) -> bool:
        return self.status >= 500 or self.status == 507

    @property
    def timestamp(self) -> Timestamp:
        for key in ("x-backend-timestamp", "x-backend-put-timestamp", "x-timestamp"):
            try:
                return Timestamp.parse(self.headers.get(key))
            except InvalidTimestamp:
                continue
        return Timestamp(0)


class BodyError(Exception):
    """A node's body broke off, came up short or failed its MD5."""


class StreamedResponse:
    """A node's answer whose body streams to the client; returns the connection at the end."""

    def __init__(self, pool: ConnectionPool, conn: NodeConnection,
                 response: http.client.HTTPResponse, node: dict):
        self.pool, self.conn, self.response, self.node = pool, conn, response, node
        self.status = response.status
        self.headers = lower_headers(response)
        length = self.headers.get("content-length", "")
        self.expected = int(length) if length.isdigit() else None
        self.received = 0
        self.complete = False
        whole = self.status == 200 and "content-range" not in self.headers
        # A node that checks the MD5 itself as it sends (and cuts the body short on a
        # mismatch) says so: hashing again here cost 95 ms of proxy CPU per 64 MiB GET.
        checked = self.headers.get("x-backend-body-verified") == "md5"
        self.md5 = hashlib.md5(usedforsecurity=False) \
            if whole and "etag" in self.headers and not checked else None
        # Where the body starts in the object (None: multipart, which is not continued).
        self.offset = 0 if whole else range_start(self.headers.get("content-range", ""))
        self.resume = None  # set by Replicas.read: the rest of the body from another replica
        self.first = self.read_chunk()  # raises BodyError: the caller tries another node

    def read_chunk(self) -> bytes:
        """The next chunk, b"" after the end; checks length and MD5 on reaching the end."""
        if self.complete:
            return b""
        want = STREAM_CHUNK if self.expected is None else min(STREAM_CHUNK,
                                                              self.expected - self.received)
        try:
            chunk = self.response.read(want)
        except (OSError, http.client.HTTPException) as exc:
            if is_node_error(exc):
                self.pool.error(self.node["ip"], self.node["port"])
            if self.continue_elsewhere(f"body broke off: {exc!r}"):
                return self.read_chunk()
            raise BodyError(f"{self.where}: body broke off: {exc!r}") from exc
        self.received += len(chunk)
        if self.md5 is not None:
            self.md5.update(chunk)
        # A buffered read returns less than asked only at the end of the stream.
        if not chunk or self.received == self.expected or (
                self.expected is not None and len(chunk) < want):
            if self.expected is not None and self.received < self.expected:
                if self.continue_elsewhere(f"body ended at {self.received}"):
                    return chunk or self.read_chunk()
                self.complete = True
                raise BodyError(f"{self.where}: body ended at {self.received} of "
                                f"{self.expected} bytes")
            self.complete = True
            if self.md5 is not None and self.md5.hexdigest() != self.headers["etag"].strip('"'):
                raise BodyError(f"{self.where}: body does not match its ETag (corrupt)")
        return chunk

    def continue_elsewhere(self, reason: str) -> bool:
        """Swaps in another replica's answer for the rest of the body, asked as a Range from
        the first missing byte with ``If-Match`` this ETag (so it is the same object): a node
        that cut its body short (a bad block it would not send, a crash) costs the client
        nothing. False if no replica could (the client's connection is then cut)."""
        if self.resume is None or self.offset is None or self.expected is None \
                or "etag" not in self.headers:
            return False
        start = self.offset + self.received
        found = self.resume(start, self.offset + self.expected - 1, self.headers["etag"])
        if found is None:
            return False
        log.warning("%s: %s; continuing from byte %d on %s:%s/%s", self.where, reason, start,
                    found[2]["ip"], found[2]["port"], found[2]["device"])
        self.conn.close()
        self.conn, self.response, self.node = found
        return True

    @property
    def where(self) -> str:
        return f"{self.node['ip']}:{self.node['port']}/{self.node['device']}"

    def __iter__(self) -> Iterator[bytes]:
        try:
            chunk = self.first
            while chunk:
                following = self.read_chunk()  # read ahead: the last chunk waits for the MD5
                yield chunk
                chunk = following
        except BodyError as exc:
            log.error("cutting the client off: %s", exc)
            raise
        finally:
            self.close()

    def read_all(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        """Called by the WSGI server when the client is done (or gone)."""
        if self.conn is not None:
            self.pool.release(self.conn, self.response)
            self.conn = None

    @property
    def timestamp(self) -> Timestamp:
        return NodeResponse(self.node, self.status, self.headers).timestamp


def range_start(content_range: str) -> int | None:
    """The first byte of a ``Content-Range: bytes <first>-<last>/<size>``, else None."""
    first = content_range.removeprefix("bytes ").partition("-")[0]
    return int(first) if content_range.startswith("bytes ") and first.isdigit() else None


def lower_headers(response: http.client.HTTPResponse) -> dict[str, str]:
    return {k.lower(): v for k, v in response.getheaders()}
