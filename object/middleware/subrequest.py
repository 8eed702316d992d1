"""Sub-requests a middleware makes to the app below it, as the caller.

A sub-request keeps who the caller is (the auth context the pipeline's front put in the
environ, the token, a service token, ``Referer`` for container ACLs) and the transaction id,
and nothing else of the caller's request: no Range, no If-*, no body. ``swift.source``
names the middleware that made it (for logs), as in Swift.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qs

from soko.common.app import SOURCE_KEY
from soko.common.errors import SokoError
from soko.object.shared.nodeclient import STREAM_CHUNK

CALLER_HEADERS = frozenset({"HTTP_X_AUTH_TOKEN", "HTTP_X_SERVICE_TOKEN", "HTTP_REFERER",
                            "HTTP_X_TRANS_ID", "HTTP_HOST", "HTTP_USER_AGENT"})


def to_wsgi(text: str) -> str:
    """A path or header value as WSGI carries it: its UTF-8 bytes as latin-1."""
    return text.encode("utf-8").decode("latin-1")


def from_wsgi(text: str) -> str:
    return text.encode("latin-1").decode("utf-8")


class Answer:
    """What the app below answered: status, headers (lower-case names), body iterator."""

    def __init__(self, status: str, header_list: list[tuple[str, str]], body: Iterable[bytes]):
        self.status_line = status
        self.status = int(status.split(" ", 1)[0])
        self.header_list = header_list
        self.headers = {name.lower(): value for name, value in header_list}
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.body
        finally:
            self.close()

    def read(self, limit: int) -> bytes:
        """The whole body if it is at most ``limit`` bytes, else the first ``limit + 1``."""
        data = bytearray()
        try:
            for chunk in self.body:
                data += chunk
                if len(data) > limit:
                    break
        finally:
            self.close()
        return bytes(data)

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


class Refused(SokoError):
    """A sub-request the app below refused, passed on to the client with its status."""

    def __init__(self, answer: Answer):
        super().__init__(answer.read(4096).decode("utf-8", "replace") or None)
        self.status = answer.status
        self.title = answer.status_line.partition(" ")[2]


def call(app, environ: dict) -> Answer:
    """Calls a WSGI app and holds its answer (start_response may come with the first chunk)."""
    started: dict = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, list(headers)
        return lambda data: None

    body = app(environ, start_response)
    if "status" not in started:
        chunks = iter(body)
        first = next(chunks, b"")
        body = ChainedBody(first, chunks, body)
    return Answer(started["status"], started["headers"], body)


class ChainedBody:
    """A first chunk already read, then the rest; closing closes the original iterable."""

    def __init__(self, first: bytes, rest: Iterator[bytes], original: Iterable[bytes]):
        self.first, self.rest, self.original = first, rest, original

    def __iter__(self) -> Iterator[bytes]:
        if self.first:
            yield self.first
        yield from self.rest

    def close(self) -> None:
        close = getattr(self.original, "close", None)
        if close is not None:
            close()


class IterableInput(io.RawIOBase):
    """``wsgi.input`` over an iterator of chunks (a streamed sub-request body)."""

    def __init__(self, chunks: Iterable[bytes]):
        self.chunks = iter(chunks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            self.pending = next(self.chunks, b"")
            if not self.pending:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def subrequest(app, environ: dict, method: str, path: str, *, source: str, query: str = "",
               headers: dict[str, str] | None = None, body: bytes | Iterable[bytes] = b"",
               length: int | None = None) -> Answer:
    """``method`` on ``path`` (text, e.g. ``/v1/AUTH_x/c/o``) through ``app`` as the caller."""
    env = {key: value for key, value in environ.items()
           if not key.startswith("HTTP_") or key in CALLER_HEADERS}
    for key in ("wsgi.file_wrapper", "CONTENT_TYPE", "CONTENT_LENGTH"):
        env.pop(key, None)
    env.update({"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": to_wsgi(path),
                "QUERY_STRING": query, SOURCE_KEY: source})
    if isinstance(body, bytes):
        env["wsgi.input"], length = io.BytesIO(body), len(body)
    else:
        env["wsgi.input"] = io.BufferedReader(IterableInput(body), STREAM_CHUNK)
    if length is not None:
        env["CONTENT_LENGTH"] = str(length)
    else:
        env["HTTP_TRANSFER_ENCODING"] = "chunked"
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        env[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = to_wsgi(value)
    return call(app, env)


def container_path(environ: dict) -> tuple[str, str, str] | None:
    """``(version, account, container)`` of a request for a container (text), else None."""
    try:
        path = from_wsgi(environ.get("PATH_INFO", ""))
    except UnicodeError:
        return None
    parts = path.removesuffix("/").split("/")
    if len(parts) != 4 or parts[0] or parts[1] not in ("v1", "v1.0") or not all(parts[2:]):
        return None
    return parts[1], parts[2], parts[3]


def object_path(environ: dict) -> tuple[str, str, str, str] | None:
    """``(version, account, container, object)`` of a request for an object (text), else
    None (not an object, or not UTF-8: the core app refuses that)."""
    try:
        path = from_wsgi(environ.get("PATH_INFO", ""))
    except UnicodeError:
        return None
    parts = path.split("/", 4)
    if len(parts) < 5 or parts[0] or parts[1] not in ("v1", "v1.0") or not all(parts[2:]):
        return None
    return parts[1], parts[2], parts[3], parts[4]


def request_path(environ: dict) -> tuple[str, str, str, str] | None:
    """``(version, account, container, object)`` of a request under an account (text; ``""``
    for what the path does not name: ``/v1/a/c/`` is the container ``c``), None for other
    paths or one that is not UTF-8."""
    try:
        parts = from_wsgi(environ.get("PATH_INFO", "")).split("/", 4)
    except UnicodeError:
        return None
    if len(parts) < 3 or parts[0] or parts[1] not in ("v1", "v1.0") or not parts[2]:
        return None
    version, account, container, obj = [*parts[1:], "", ""][:4]
    return version, account, container, obj


def query_value(environ: dict, name: str) -> str | None:
    values = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).get(name)
    return values[-1] if values else None


def header_names(environ: dict, key: str, name: str) -> None:
    """Adds ``name`` to the comma-separated list in the environ's header ``key``."""
    names = [n for n in environ.get(key, "").split(",") if n.strip()]
    environ[key] = ",".join([*names, name])
