"""The access-log line of a client's request to the Swift API, written by the pipeline's
``Front`` once its answer is done, whichever layer gave it (a middleware answering itself: a
temp URL's 401, an SLO's GET, a bulk report; or the core app), with the status, the body
bytes received from the client and those it got, as Swift's ``proxy_logging`` at the head of
its pipeline. The core app then
logs only sub-requests, marked by their source (``common.app.ACCESS_LOGGED_KEY``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from urllib.parse import parse_qsl, quote, urlencode

from soko.common.app import log_access

# Query parameters that are credentials: logged cut short, as Swift's proxy_logging does.
SENSITIVE_PARAMS = frozenset({"temp_url_sig"})
REVEALED_PREFIX = 16
PATH_SAFE = "/:@!$&'()*+,;=-._~"
# A path of only the characters ``quote`` leaves alone (most are) is logged as it is, unquoted.
UNQUOTED_PATH = re.compile(f"[A-Za-z0-9{re.escape(PATH_SAFE)}]*")


def logged_uri(environ: dict) -> str:
    """The request's path and query as the access line shows them: quoted, credentials cut
    (their names may come percent-encoded: a query with ``%`` is parsed to be sure)."""
    path = environ.get("PATH_INFO", "")
    if not UNQUOTED_PATH.fullmatch(path):
        path = quote(path.encode("latin-1"), safe=PATH_SAFE)
    query = environ.get("QUERY_STRING", "")
    if not query:
        return path
    if "%" not in query and not any(name in query for name in SENSITIVE_PARAMS):
        return f"{path}?{query}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(name in SENSITIVE_PARAMS for name, _ in pairs):
        query = urlencode([(name, value[:REVEALED_PREFIX] + "..." if name in SENSITIVE_PARAMS
                            else value) for name, value in pairs], safe="/:")
    return f"{path}?{query}"


class AccessLine:
    """Watches one request's answer (``start_response`` and the body the server iterates)
    and logs it when the server closes the body, or when the app raised instead."""

    def __init__(self, environ: dict, trans_id: str):
        self.environ, self.trans_id = environ, trans_id
        self.started = time.monotonic()
        self.status: str | None = None
        self.input = environ["wsgi.input"] = CountedInput(environ["wsgi.input"])
        self.sent = 0
        self.written = False

    def watch(self, start_response):
        def start(status, headers, exc_info=None):
            self.status = status[:3]
            write = start_response(status, headers, exc_info)

            def counted_write(data: bytes):
                self.sent += len(data)
                return write(data)
            return counted_write
        return start

    def body(self, body: Iterable[bytes]) -> LoggedBody:
        return LoggedBody(body, self)

    def write(self, status: str | None = None) -> None:
        if self.written:
            return
        self.written = True
        log_access(self.environ.get("REMOTE_ADDR"), self.trans_id,
                   self.environ.get("REQUEST_METHOD", "-"), logged_uri(self.environ),
                   status or self.status or "500", time.monotonic() - self.started,
                   transferred=(self.input.received, self.sent))


class CountedInput:
    """``wsgi.input`` counting the body bytes the layers behind read from it."""

    def __init__(self, stream):
        self.stream, self.received = stream, 0

    def counted(self, data):
        self.received += len(data)
        return data

    def read(self, size=None):
        return self.counted(self.stream.read(size))

    def readline(self, size=None):
        return self.counted(self.stream.readline(size))

    def readlines(self, hint=None):
        lines = self.stream.readlines(hint)
        self.received += sum(map(len, lines))
        return lines

    def __iter__(self):
        return iter(self.readline, b"")


class LoggedBody:
    """The answer's body as the server gets it, counted; closing it writes the line."""

    def __init__(self, body: Iterable[bytes], line: AccessLine):
        self.original, self.line = body, line

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.original:
            self.line.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.original, "close", None)
            if close is not None:
                close()
        finally:
            self.line.write()
