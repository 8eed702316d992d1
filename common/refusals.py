"""What soko answers when the HTTP layer, not the app, finds a request at fault.

gunicorn refuses a malformed head, a head or chunked body it cannot parse, an unsupported
transfer coding, with its own HTML page; a body read that times out or breaks reaches the
app as an exception that would be a 500. Both become soko errors (``SokoError``) here, and
the app answers them: a refusal before the app ran through ``REFUSAL_ENVIRON_KEY`` (its
``RequestContext`` raises it), a body error by raising it from ``wsgi.input``. The client
sees the service's usual error body (JSON; on the proxy, whatever the proxy answers on that
path), with a transaction id and an access log line.
"""

from __future__ import annotations

import email.utils
import io
import sys
from urllib.parse import unquote

from gunicorn.http import errors as http_errors

from soko.common.app import REFUSAL_ENVIRON_KEY
from soko.common.errors import (
    BadRequest,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    RequestTimeout,
    SokoError,
    Unimplemented,
    URITooLong,
)

METHODS = {"GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS", "COPY"}


def http_refusal(exc: Exception) -> SokoError:
    """The client-facing error for an exception of gunicorn's HTTP parser."""
    detail = str(exc)[:200]
    if isinstance(exc, http_errors.LimitRequestLine):
        return URITooLong(f"The request line is too long ({detail}).")
    if isinstance(exc, http_errors.LimitRequestHeaders):
        return HeaderFieldsTooLarge(f"The request's header fields are too large ({detail}).")
    if isinstance(exc, http_errors.ExpectationFailed):
        return ExpectationFailed(f"Only 'Expect: 100-continue' is supported ({detail}).")
    if isinstance(exc, http_errors.UnsupportedTransferCoding):
        return Unimplemented("Unsupported Transfer-Coding header value specified in "
                             "Transfer-Encoding header (only chunked is supported).")
    if isinstance(exc, (http_errors.ParseException, http_errors.NoMoreData)):
        return BadRequest(f"Malformed request: {type(exc).__name__}: {detail}")
    return SokoError()


def body_refusal(exc: Exception, client_timeout: float) -> SokoError | None:
    """The client-facing error for a failed body read, or None for a bug of the server."""
    if isinstance(exc, (TimeoutError, BlockingIOError)):  # BlockingIOError: SO_RCVTIMEO
        return RequestTimeout(f"The request body did not arrive: nothing came for "
                              f"{client_timeout:g} s.")
    if isinstance(exc, http_errors.NoMoreData):
        return BadRequest("The request body ended before its declared end.")
    if isinstance(exc, http_errors.ParseException):
        return BadRequest(f"Malformed request body: {type(exc).__name__}: {str(exc)[:200]}")
    if isinstance(exc, OSError):
        return BadRequest(f"The request body could not be read: {exc.strerror or exc}")
    return None


class GuardedInput:
    """``wsgi.input`` whose read errors are the client's: 408 for a stall, 400 for a broken
    body, each closing the connection (where the next request would start is unknown)."""

    def __init__(self, body, client_timeout: float):
        self.body = body
        self.client_timeout = client_timeout

    def call(self, method: str, *args):
        try:
            return getattr(self.body, method)(*args)
        except Exception as exc:
            refusal = body_refusal(exc, self.client_timeout)
            if refusal is None:
                raise
            refusal.headers["Connection"] = "close"
            raise refusal from None

    def read(self, size=None):
        return self.call("read", size)

    def readline(self, size=None):
        return self.call("readline", size)

    def readlines(self, hint=None):
        return self.call("readlines", hint)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def guard_body(app, client_timeout: float):
    def wsgi(environ, start_response):
        environ["wsgi.input"] = GuardedInput(environ["wsgi.input"], client_timeout)
        return app(environ, start_response)

    return wsgi


def refusal_answer(app, error: SokoError, line: bytes, addr, sock) -> bytes:
    """The HTTP answer (``Connection: close``) the app gives to ``error`` for the request
    whose request line is ``line`` (may be partial or empty)."""
    parts = line.decode("latin-1").split(" ")
    method = parts[0] if parts[0] in METHODS else "GET"
    target = parts[1] if len(parts) > 1 else "/"
    path = unquote(target.partition("?")[0], encoding="latin-1")[:1024]
    if not path.startswith("/"):
        path = "/"
    try:
        server = sock.getsockname()
    except OSError:
        server = ("127.0.0.1", 0)
    addr = addr if isinstance(addr, tuple) else ("", 0)
    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": str(addr[0]),
        "REMOTE_PORT": str(addr[1]), "wsgi.version": (1, 0), "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "wsgi.multithread": True,
        "wsgi.multiprocess": True, "wsgi.run_once": False, REFUSAL_ENVIRON_KEY: error,
    }
    answer: dict = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=headers)

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    if method == "HEAD":
        body = b""
    lines = [f"HTTP/1.1 {answer['status']}"]
    lines += [f"{k}: {v}" for k, v in answer["headers"]
              if k.lower() not in ("connection", "content-length")]
    lines += [f"Date: {email.utils.formatdate(usegmt=True)}",
              f"Content-Length: {len(body)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
