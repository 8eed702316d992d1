"""A ``multipart/form-data`` body read part by part as it arrives: each part's headers, then
its body in bounded reads, so a form's files are never held whole in memory (FormPost)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from soko.common.errors import ClientDisconnect

READ_CHUNK = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024  # one part's headers
# ``kind; name=value; name="quoted value"`` (a Content-Type or Content-Disposition).
PARAMETER = re.compile(r';\s*([\w.-]+)\s*=\s*(?:"([^"]*)"|([^;]*))')


class InvalidStart(ValueError):
    """The body does not open with the boundary its Content-Type names."""


class BadPart(ValueError):
    """A part's headers are not headers."""


def parse_parameters(value: str) -> tuple[str, dict[str, str]]:
    """``('form-data', {'name': 'file1', 'filename': 'a.txt'})`` from a header's value."""
    kind, _, rest = value.partition(";")
    params = {match[1].lower(): match[2] if match[2] or not match[3] else match[3].strip()
              for match in PARAMETER.finditer(";" + rest)}
    return kind.strip().lower(), params


class FormParts:
    """Iterating gives each part's headers (lower-case names); ``read`` gives that part's
    body until it ends. The body must open with ``--<boundary>`` (blank lines before it
    aside); one that ends before its closing boundary is a client gone (``truncated``)."""

    def __init__(self, stream, boundary: bytes):
        self.stream = stream
        self.boundary = b"--" + boundary
        self.delimiter = b"\r\n" + self.boundary
        self.buffer = b""
        self.truncated = False

    def fill(self) -> None:
        chunk = self.stream.read(READ_CHUNK)
        if not chunk:
            self.truncated = True
            raise ClientDisconnect("the form ended before its closing boundary")
        self.buffer += chunk

    def __iter__(self) -> Iterator[dict[str, str]]:
        self.open()
        while True:
            while len(self.buffer) < 2:
                self.fill()
            if self.buffer.startswith(b"--"):
                return  # the closing boundary
            yield self.headers()
            while self.read():
                pass  # what the reader left of this part
            self.buffer = self.buffer[len(self.delimiter):]

    def open(self) -> None:
        while len(self.buffer) < len(self.boundary) + 2:
            try:
                self.fill()
            except ClientDisconnect:
                break
            self.buffer = self.buffer.lstrip(b"\r\n")
        if not self.buffer.startswith(self.boundary):
            raise InvalidStart()
        self.truncated = False
        self.buffer = self.buffer[len(self.boundary):]

    def headers(self) -> dict[str, str]:
        """The part's headers, after the rest of the boundary's line."""
        while (end := self.buffer.find(b"\r\n\r\n")) == -1:
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise BadPart("a part's headers are too long")
            self.fill()
        block, self.buffer = self.buffer[:end], self.buffer[end + 4:]
        try:
            lines = block.decode("utf-8").split("\r\n")[1:]
        except UnicodeDecodeError:
            raise BadPart("a part's headers are not UTF-8") from None
        headers = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise BadPart("a part's header has no ':'")
            headers[name.strip().lower()] = value.strip()
        return headers

    def read(self, size: int = READ_CHUNK) -> bytes:
        """Up to ``size`` bytes of the current part's body; b'' once it ended."""
        while True:
            at = self.buffer.find(self.delimiter)
            end = at if at >= 0 else len(self.buffer) - len(self.delimiter) + 1
            if end > 0:
                data = self.buffer[:min(end, size)]
                self.buffer = self.buffer[len(data):]
                return data
            if at == 0:
                return b""
            self.fill()
