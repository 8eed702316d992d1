"""Header values as WSGI hands them over: latin-1 strings, one character per byte sent.

Kept that way they go back out byte for byte (a node stores them, the proxy answers them),
as Swift keeps its "WSGI strings". Two things must look through to the bytes: a length
(Swift's limits count bytes; ``.encode()`` would count a UTF-8 ``é`` twice) and text that
leaves the headers, such as the content type in a listing (UTF-8, as Swift decodes it).
"""

from __future__ import annotations


def wire_length(value: str) -> int:
    """The bytes ``value`` had on the wire."""
    return len(value.encode("latin-1"))


def header_text(value: str) -> str | None:
    """The UTF-8 text ``value`` carries, or None if its bytes are not UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
