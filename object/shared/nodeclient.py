"""HTTP between soko's object processes (proxy → storage nodes, node → node): pooled
keep-alive ``http.client`` connections with a short connect timeout and a longer read one.

A connection idle longer than the server's keep-alive (gunicorn's is 5 s) may already be
closed on the far side; it is dropped rather than reused, so a streamed PUT never starts on
a dead socket. Small requests are retried once on a fresh connection when a reused one
turns out dead.

A pool may error-limit a node that keeps failing to connect or to answer in time, as
Swift's proxy does: after ``error_limit`` such errors, each within ``error_interval`` of the
last, the pool refuses it at once (``ErrorLimited``) until ``error_interval`` passes without
a new error, so a dead or cut-off node does not cost every request a timeout. Off by default
(``error_limit=0``): the proxy turns it on; a storage node's listing updates keep trying, so
a container node that came back gets them at once rather than as async pendings.

A node's answer may carry every user metadata item the API allows (90) plus its own headers:
more than the 100 ``http.client`` reads by default, which would make an object or account
with full metadata read as missing. The limit is raised for the process, as Swift's
``bufferedhttp`` does (``http.client`` has no per-connection setting).
"""

from __future__ import annotations

import collections
import http.client
import socket
import threading
import time
from urllib.parse import quote

from soko.object.shared.limits import MAX_META_COUNT

MAX_IDLE_AGE = 2.0
MAX_IDLE_PER_NODE = 32
STREAM_CHUNK = 1024 * 1024  # bounded memory per stream, few syscalls and Python steps per MiB
# Swift's MAX_HEADER_COUNT (the metadata items + 36 others) with its 1.6 margin
MAX_NODE_HEADERS = int((MAX_META_COUNT + 36) * 1.6)
http.client._MAXHEADERS = max(http.client._MAXHEADERS, MAX_NODE_HEADERS)


def read_head(fp) -> http.client.HTTPMessage:
    """The header lines up to the blank one, into the ``HTTPMessage`` that ``http.client``
    gives (same names, values, order and limits), without its ``email`` feed parser: that
    costs about 0.3 ms of CPU per answer here, 9 % of the proxy's CPU per 4 KiB PUT and most
    of a node's container update. A folded line continues the header before it."""
    fields: list[list[str]] = []
    for _ in range(http.client._MAXHEADERS):
        line = fp.readline(http.client._MAXLINE + 1)
        if len(line) > http.client._MAXLINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            headers = http.client.HTTPMessage()
            for name, value in fields:
                headers[name] = value
            return headers
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + text.strip(" \t")
            continue
        name, colon, value = text.partition(":")
        if colon:
            fields.append([name, value.lstrip(" \t")])
    raise http.client.HTTPException(f"got more than {http.client._MAXHEADERS} headers")


class NodeResponse(http.client.HTTPResponse):
    """``http.client``'s response with :func:`read_head` for the headers (the rest of
    ``begin`` as the stdlib's: 100 Continue skipped, chunked, keep-alive, length)."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            read_head(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if not version.startswith("HTTP/1.") and version != "HTTP/0.9":
            raise http.client.UnknownProtocol(version)
        self.version = 10 if version in ("HTTP/1.0", "HTTP/0.9") else 11
        self.headers = self.msg = read_head(self.fp)
        self.chunked = (self.headers.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        length = self.headers.get("content-length")
        self.length = int(length) if length and length.isdigit() and not self.chunked \
            else None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) \
                or 100 <= status < 200 or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


class NodeConnection(http.client.HTTPConnection):
    response_class = NodeResponse
    idle_since = 0.0


class ErrorLimited(ConnectionError):
    """The node failed too often lately; it is skipped without trying."""


def is_node_error(exc: BaseException) -> bool:
    """A failure that says the node is down or stuck (not a stale keep-alive connection)."""
    return isinstance(exc, OSError) and not isinstance(
        exc, (ErrorLimited, ConnectionResetError, BrokenPipeError))


class ConnectionPool:
    """Idle connections per ``(ip, port)``, shared by a process's threads."""

    def __init__(self, conn_timeout: float = 0.5, node_timeout: float = 10.0,
                 error_limit: int = 0, error_interval: float = 30.0):
        self.conn_timeout = conn_timeout
        self.node_timeout = node_timeout
        self.error_limit = error_limit
        self.error_interval = error_interval
        self.idle: dict[tuple[str, int], collections.deque] = collections.defaultdict(
            collections.deque)
        self.errors: dict[tuple[str, int], tuple[int, float]] = {}  # (count, last error)
        self.lock = threading.Lock()

    def error(self, ip: str, port: int) -> None:
        """Counts a connect failure or timeout against the node."""
        now = time.monotonic()
        with self.lock:
            count, last = self.errors.get((ip, port), (0, now))
            if now - last > self.error_interval:
                count = 0
            self.errors[(ip, port)] = (count + 1, now)

    def limited(self, ip: str, port: int) -> bool:
        if not self.error_limit:
            return False
        count, last = self.errors.get((ip, port), (0, 0.0))
        return count >= self.error_limit and time.monotonic() - last <= self.error_interval

    def acquire(self, ip: str, port: int, force: bool = False) -> tuple[NodeConnection, bool]:
        """A connected connection and whether it was reused; raises OSError if unreachable
        (``ErrorLimited`` at once for a node that keeps failing, unless ``force``)."""
        if not force and self.limited(ip, port):
            raise ErrorLimited(f"{ip}:{port} is error-limited after repeated failures")
        now = time.monotonic()
        with self.lock:
            idle = self.idle[(ip, port)]
            while idle:
                conn = idle.pop()
                if now - conn.idle_since < MAX_IDLE_AGE:
                    return conn, True
                conn.close()
        conn = NodeConnection(ip, port, timeout=self.conn_timeout)
        try:
            conn.connect()
        except OSError:
            self.error(ip, port)
            raise
        conn.sock.settimeout(self.node_timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def release(self, conn: NodeConnection, response: http.client.HTTPResponse | None) -> None:
        """Returns a connection whose response was read to the end; closes any other."""
        if response is None or response.will_close or not response.isclosed():
            conn.close()
            return
        conn.idle_since = time.monotonic()
        with self.lock:
            idle = self.idle[(conn.host, conn.port)]
            # acquire takes the newest, so under steady load the oldest would never be
            # popped: they sit there closed by the node (CLOSE-WAIT), holding descriptors.
            while idle and conn.idle_since - idle[0].idle_since >= MAX_IDLE_AGE:
                idle.popleft().close()
            if len(idle) < MAX_IDLE_PER_NODE:
                idle.append(conn)
                return
        conn.close()

    def request(self, node: dict, method: str, path: str, headers: dict[str, str],
                body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """One small request, answer read whole; raises OSError/HTTPException if it fails."""
        for attempt in (0, 1):
            conn, reused = self.acquire(node["ip"], node["port"])
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                conn.close()
                if reused and attempt == 0:
                    continue
                raise
            except BaseException as exc:
                conn.close()
                if is_node_error(exc):
                    self.error(node["ip"], node["port"])
                raise
            self.release(conn, response)
            return response.status, dict(response.getheaders()), data
        raise AssertionError("unreachable")


def backend_path(kind: str, node: dict, partition: int | str, account: str,
                 container: str | None = None, obj: str | None = None) -> str:
    """``/<kind>/<device>/<partition>/<account>[/<container>[/<object>]]``, quoted."""
    parts = [kind, node["device"], str(partition), account]
    parts += [p for p in (container, obj) if p is not None]
    return "/" + "/".join(quote(p, safe="") for p in parts)
