"""HTTP ranges and preconditions for object GET/HEAD, applied by the storage node.

The node holds the file, so it answers ``Range`` (one range, or several as
``multipart/byteranges``) and ``If-*`` itself and the proxy passes the answer through: the
proxy never buffers an object to cut a range out of it.
"""

from __future__ import annotations

import email.utils
import secrets
from collections.abc import Callable, Iterable, Iterator

MAX_RANGES = 100


class Unsatisfiable(Exception):
    """No requested range overlaps the object: 416."""


def parse_range(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """``[(start, end_exclusive), ...]``, or None to ignore the header (absent or malformed,
    as RFC 7233 says); raises Unsatisfiable when no range fits."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        return None
    ranges = []
    for part in spec.split(","):
        first, dash, last = part.strip().partition("-")
        if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
            return None
        if first == "":
            if last == "":
                return None
            length = int(last)
            if length == 0:
                continue
            ranges.append((max(0, size - length), size))
            continue
        start = int(first)
        end = size if last == "" else int(last) + 1
        if last and end <= start:
            return None
        if start < size:
            ranges.append((start, min(end, size)))
    if len(ranges) > MAX_RANGES:
        return None
    if not ranges:
        raise Unsatisfiable()
    return ranges


def multipart_byteranges(ranges: list[tuple[int, int]], size: int, content_type: str,
                         read: Callable[[int, int], Iterable[bytes]]) -> tuple[str, int, Iterator[bytes]]:
    """(Content-Type, Content-Length, body) of a ``multipart/byteranges`` answer."""
    boundary = secrets.token_hex(16)
    heads = [
        (f"--{boundary}\r\nContent-Type: {content_type}\r\n"
         f"Content-Range: bytes {start}-{end - 1}/{size}\r\n\r\n").encode()
        for start, end in ranges
    ]
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(h) + (end - start) + 2 for h, (start, end) in zip(heads, ranges, strict=True))
    length += len(tail)

    def body() -> Iterator[bytes]:
        for head, (start, end) in zip(heads, ranges, strict=True):
            yield head
            yield from read(start, end)
            yield b"\r\n"
        yield tail

    return f"multipart/byteranges;boundary={boundary}", length, body()


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]


def _http_time(header: str | None) -> float | None:
    if not header:
        return None
    try:
        return email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def precondition_status(headers: dict[str, str], etag: str, last_modified: float) -> int | None:
    """304 or 412 when an ``If-*`` header says so, else None (RFC 7232's order).

    ``last_modified`` is in whole seconds, as the ``Last-Modified`` header says it.
    """
    if_match = headers.get("IF-MATCH")
    if if_match is not None:
        if "*" not in _etags(if_match) and etag not in _etags(if_match):
            return 412
    else:
        since = _http_time(headers.get("IF-UNMODIFIED-SINCE"))
        if since is not None and last_modified > since:
            return 412
    if_none_match = headers.get("IF-NONE-MATCH")
    if if_none_match is not None:
        if "*" in _etags(if_none_match) or etag in _etags(if_none_match):
            return 304
    else:
        since = _http_time(headers.get("IF-MODIFIED-SINCE"))
        if since is not None and last_modified <= since:
            return 304
    return None
