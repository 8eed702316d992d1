"""Streaming a large object's segments in order, with bounded memory: what SLO and DLO share.

Each segment is read with its own sub-GET (a Range when only part of it is wanted) and
checked against what the manifest says (status, ETag, length) before and while its bytes
go out. A segment that vanished or changed stops the answer: before the first byte that is
a 409, after it the connection is cut (the client sees a short body, never wrong bytes) and
the reason logged.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator

from soko.common.errors import Conflict
from soko.object.middleware.subrequest import subrequest

log = logging.getLogger(__name__)


class SegmentError(Exception):
    """A segment is not what the manifest says: the answer cannot go on."""


@dataclasses.dataclass(frozen=True)
class Segment:
    """Bytes ``first..last`` (inclusive) of the object at ``path`` (``/<container>/<obj>``)."""

    path: str
    first: int
    last: int
    etag: str | None = None  # what the object's ETag must be (None: not checked)
    size: int | None = None  # the whole object's size, if known

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def within(pieces: Iterable[tuple[object, int, int]], start: int, end: int
           ) -> Iterator[tuple[object, int, int]]:
    """The parts of ``(item, first, last)`` pieces laid end to end that fall in the byte
    range ``start..end`` (inclusive) of the whole, as ``(item, first, last)``."""
    offset = 0
    for item, first, last in pieces:
        length = last - first + 1
        if offset > end:
            return
        if offset + length > start:
            yield (item, first + max(0, start - offset),
                   first + min(length - 1, end - offset))
        offset += length


def stream(app, environ: dict, account_path: str, segments: Iterable[Segment], source: str
           ) -> Iterator[bytes]:
    """The bytes of ``segments`` in order; raises ``SegmentError`` when one is wrong."""
    for segment in segments:
        if segment.length <= 0:
            continue
        headers = {}
        if segment.first > 0 or segment.size is None or segment.last < segment.size - 1:
            headers["Range"] = f"bytes={segment.first}-{segment.last}"
        answer = subrequest(app, environ, "GET", account_path + segment.path, source=source,
                            headers=headers)
        try:
            check(answer, segment, partial="Range" in headers)
            sent = 0
            for chunk in answer.body:
                sent += len(chunk)
                if sent > segment.length:
                    raise SegmentError(f"{segment.path} is longer than the manifest says")
                yield chunk
            if sent != segment.length:
                raise SegmentError(f"{segment.path} ended after {sent} of {segment.length} "
                                   "bytes")
        finally:
            answer.close()


def check(answer, segment: Segment, partial: bool) -> None:
    if answer.status // 100 != 2:
        raise SegmentError(f"{segment.path} answered {answer.status_line}")
    etag = answer.headers.get("etag", "").strip('"')
    if segment.etag is not None and etag != segment.etag:
        raise SegmentError(f"{segment.path} changed: ETag {etag}, the manifest says "
                           f"{segment.etag}")
    if answer.status == 200 and partial:
        size = int(answer.headers.get("content-length", -1))
        raise SegmentError(f"{segment.path} is {size} bytes, the manifest needs "
                           f"{segment.first}-{segment.last}")


class SegmentedBody:
    """An answer body made of segments: the first chunk is read before the answer starts (so
    a missing first segment is a 409, not a cut), later failures cut the answer and log."""

    def __init__(self, chunks: Iterator[bytes], name: str, trans_id: str | None):
        self.chunks, self.name, self.trans_id = chunks, name, trans_id
        try:
            self.first = next(self.chunks, b"")
        except SegmentError as error:
            self.close()
            log.warning("%s: %s: %s", trans_id, name, error)
            raise Conflict(f"A segment of {name} is missing or changed: {error}") from None

    def __iter__(self) -> Iterator[bytes]:
        if self.first:
            yield self.first
        try:
            yield from self.chunks
        except SegmentError as error:
            log.error("%s: %s: cut after the answer started: %s", self.trans_id, self.name,
                      error)
            raise

    def close(self) -> None:
        self.chunks.close()


def ranged(read: Callable[[int, int], Iterator[bytes]]) -> Callable[[int, int], Iterator[bytes]]:
    """``read(start, end_inclusive)`` as ``multipart_byteranges`` calls it (end exclusive)."""
    return lambda start, end: read(start, end - 1)
