"""Requests sent byte for byte: a raw UTF-8 (or invalid) path, raw header bytes, no header a
client library would add (requests quotes paths and adds Content-Length)."""

from __future__ import annotations

import dataclasses
import http.client


@dataclasses.dataclass
class RawAnswer:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # as sent: names as written, values as latin-1
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def text(self) -> str:
        return self.body.decode()


def raw(port: int, method: str, path: bytes, headers=(), body: bytes | None = None
        ) -> RawAnswer:
    """``headers``: (name, str or bytes) pairs; ``body`` adds its Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn._encode_request = lambda line: line.encode("latin-1")  # raw bytes in the path
    try:
        conn.putrequest(method, path.decode("latin-1"), skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return RawAnswer(resp.status, resp.reason, resp.getheaders(), resp.read())
    finally:
        conn.close()
