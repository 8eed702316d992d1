"""HTTP ranges and preconditions for object GET/HEAD.

The storage node holds the file, so it answers ``Range`` (one range, or several as
``multipart/byteranges``) and ``If-*`` itself and the proxy passes the answer through: the
proxy never buffers an object to cut a range out of it (it only reads ``If-Match`` when no
replica has the object). Both follow Swift's ``swob``
(``Range``, ``Match``, ``Response._get_conditional_response_status``), which clients of
Swift rely on where it departs from the RFCs.
"""

from __future__ import annotations

import email.utils
import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator

# Swift's limits on "egregious" range sets (RFC 7233 section 6.1): more ranges, more
# overlaps, or that many ranges out of order, and none is served (416).
MAX_RANGES = 50
MAX_RANGE_OVERLAPS = 2
MAX_NONASCENDING_RANGES = 8


class Unsatisfiable(Exception):
    """No requested range overlaps the object: 416."""


def requested_ranges(header: str | None) -> list[tuple[int | None, int | None]] | None:
    """The ``(first, last)`` byte positions a ``Range`` header asks for, or None when the
    header is to be ignored (absent or malformed), as ``swob.Range`` parses it: spaces
    anywhere are dropped (``bytes = 0- 4`` is ``bytes=0-4``), and one bad part (no dash,
    not a number, last before first, an empty part) spoils the whole header."""
    if not header:
        return None
    spec = header.replace(" ", "")
    if not spec.lower().startswith("bytes="):
        return None
    ranges = []
    for part in spec[len("bytes="):].split(","):
        first, dash, last = part.partition("-")
        if not dash or (not first and not last) or (last and not last.isdigit()):
            return None
        try:
            start = int(first) if first else None
            end = int(last) if last else None
        except ValueError:
            return None
        if start is not None and end is not None and end < start:
            return None
        ranges.append((start, end))
    return ranges


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """``[(start, end_exclusive), ...]`` to serve of an object of ``size`` bytes, or None to
    ignore the header and serve it whole; raises Unsatisfiable (416) when no range fits or
    the set is egregious (``swob.Range.ranges_for_length``)."""
    requested = requested_ranges(header)
    if requested is None:
        return None
    ranges = []
    for start, end in requested:
        if start is None:
            if end:  # bytes=-0 asks for nothing
                ranges.append((max(0, size - end), size))
        elif start < size:
            ranges.append((start, size if end is None else min(end + 1, size)))
    overlaps = sum(1 for (s1, e1), (s2, e2) in itertools.combinations(ranges, 2)
                   if s1 < s2 < e1 or s1 < e2 < e1 or s2 < s1 < e2 or s2 < e1 < e2)
    ascending = all(a <= b for a, b in itertools.pairwise(ranges))
    if not ranges or len(ranges) > MAX_RANGES or overlaps > MAX_RANGE_OVERLAPS or (
            not ascending and len(ranges) >= MAX_NONASCENDING_RANGES):
        raise Unsatisfiable()
    return ranges if size else None  # a suffix of an empty object is all of it: 200


def multipart_byteranges(ranges: list[tuple[int, int]], size: int, content_type: str,
                         read: Callable[[int, int], Iterable[bytes]]) -> tuple[str, int, Iterator[bytes]]:
    """(Content-Type, Content-Length, body) of a ``multipart/byteranges`` answer, framed as
    Swift frames it (32 hex digits of boundary, no line break after the closing one)."""
    boundary = secrets.token_hex(16)
    heads = [
        (f"--{boundary}\r\nContent-Type: {content_type}\r\n"
         f"Content-Range: bytes {start}-{end - 1}/{size}\r\n\r\n").encode()
        for start, end in ranges
    ]
    tail = f"--{boundary}--".encode()
    length = sum(len(h) + (end - start) + 2 for h, (start, end) in zip(heads, ranges, strict=True))
    length += len(tail)

    def body() -> Iterator[bytes]:
        for head, (start, end) in zip(heads, ranges, strict=True):
            yield head
            yield from read(start, end)
            yield b"\r\n"
        yield tail

    return f"multipart/byteranges;boundary={boundary}", length, body()


def etag_set(header: str) -> set[str]:
    """The tags of an ``If-[None-]Match`` header as ``swob.Match`` reads them: surrounding
    quotes dropped, nothing else (a weak ``W/"..."`` tag matches no object)."""
    tags = set()
    for tag in header.split(","):
        tag = tag.strip()
        if len(tag) > 1 and tag.startswith('"') and tag.endswith('"'):
            tag = tag[1:-1]
        if tag:
            tags.add(tag)
    return tags


def matches(header: str, etag: str) -> bool:
    tags = etag_set(header)
    return "*" in tags or etag in tags


def _http_time(header: str | None) -> float | None:
    """An HTTP date in seconds; None (the header is ignored) when it is no date."""
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def precondition_status(headers: dict[str, str], etag: str, last_modified: float) -> int | None:
    """304 or 412 when an ``If-*`` header says so, else None.

    In Swift's order (``swob.Response._get_conditional_response_status``), which is not
    quite RFC 7232's: ``If-None-Match`` (304) before ``If-Match`` (412), then
    ``If-Modified-Since`` (304) even when an ``If-None-Match`` did not match, then
    ``If-Unmodified-Since`` (412) even when an ``If-Match`` did. ``last_modified`` is in
    whole seconds, as the ``Last-Modified`` header says it.
    """
    if_none_match, if_match = headers.get("IF-NONE-MATCH"), headers.get("IF-MATCH")
    if if_none_match is not None and matches(if_none_match, etag):
        return 304
    if if_match is not None and not matches(if_match, etag):
        return 412
    since = _http_time(headers.get("IF-MODIFIED-SINCE"))
    if since is not None and last_modified <= since:
        return 304
    since = _http_time(headers.get("IF-UNMODIFIED-SINCE"))
    if since is not None and last_modified > since:
        return 412
    return None
