"""soko's gunicorn worker: gthread, hardened against slow and broken clients.

gunicorn's gthread worker hands a connection to a thread as soon as any byte arrives, and
that thread then blocks without a timeout on the rest of the head and on the body: 80
clients that send half a request stop a service. This worker changes three things:

- **Request heads are read by the event loop**, not by a thread: a connection costs a
  thread only once its head is complete. A head must be complete ``header_timeout`` after
  its first byte (a new connection: after it was accepted), or it is answered 408 and closed.
- **Every thread's socket reads and writes time out** after ``client_timeout`` (Swift's):
  a body that stops arriving is answered 408, and nothing is stored (the app sees the
  error in the middle of its read, as for any broken body).
- **Threads start on demand** (``ElasticPool``) up to ``max_clients`` connections per
  worker, so the requests that do stall (bodies) cannot starve the others.

Errors found by the HTTP layer itself (a malformed head or chunked body, a head too long,
an unsupported transfer coding, a body that stalls) are answered by the app
(``common/refusals.py``), never with gunicorn's HTML pages. A worker also dies with its master (``PR_SET_PDEATHSIG``): an
orphan would keep the port and stop the next master from binding it.
"""

from __future__ import annotations

import ctypes
import email.utils
import errno
import logging
import os
import re
import resource
import selectors
import signal
import socket
import struct
import time
from functools import partial

from gunicorn.http import errors as http_errors
from gunicorn.http import wsgi
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.message import Request
from gunicorn.workers.gthread import TConn, ThreadWorker

from soko.common.elastic_pool import ElasticPool
from soko.common.errors import RequestTimeout, SokoError, Unimplemented
from soko.common.refusals import guard_body, http_refusal, refusal_answer

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
HEAD_READ = 64 * 1024
ACCEPT_BATCH = 64
LINGER_SECONDS, LINGER_BYTES = 2.0, 64 * 1024  # gunicorn's close_graceful()'s
# A chunk larger than any file the OS can hold is a broken size line, not a big chunk.
MAX_CHUNK_SIZE = 2**63 - 1
HIGH_BYTE = re.compile(rb"[\x80-\xff]")
# Reads of a body of known length at least this large come straight from the socket.
DIRECT_READ = 64 * 1024
TRUSTED_PEERS: dict[str, bool] = {}  # peer address: may it set forwarding headers
MAX_TRUSTED_PEERS = 4096


class ClientSocket(socket.socket):
    """A client connection whose blocking reads and writes give up after ``client_timeout``.

    The timeout is the kernel's (``SO_RCVTIMEO``, ``SO_SNDTIMEO``): a read or write that
    waited that long fails with ``EAGAIN`` (``BlockingIOError``). A Python socket timeout
    would do the same with a ``poll()`` before every call (two trips through the GIL instead
    of one, each a chance for a busy thread to keep it for up to 5 ms), and gunicorn clears
    Python timeouts when it puts a connection back in blocking mode.
    ``head_line`` keeps the request line, to answer a refused request.
    """

    head_line: bytes = b""

    @classmethod
    def adopt(cls, sock: socket.socket, io_timeout: float) -> ClientSocket:
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        seconds = int(io_timeout)
        timeval = struct.pack("ll", seconds, int((io_timeout - seconds) * 1_000_000))
        adopted.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        adopted.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        return adopted


class BoundedChunkedReader(ChunkedReader):
    """Refuses an absurd chunk size at once instead of waiting for its bytes."""

    def parse_chunk_size(self, unreader, data=None):
        size, rest = super().parse_chunk_size(unreader, data)
        if size > MAX_CHUNK_SIZE:
            raise http_errors.InvalidChunkSize(b"chunk size over 2**63 - 1")
        return size, rest


class SokoRequest(Request):
    """gunicorn's request with soko's rules: only the chunked transfer coding (Swift
    answers 501 to ``gzip, chunked``: the body would be stored still compressed), and raw
    bytes over 0x7f in the request target taken, as Swift takes them. Heads are parsed by
    gunicorn_h1c (C, a dependency: 30 to 45 % less CPU per head than the Python parser),
    except a head whose request line has such bytes."""

    def parse_request_line(self, line_bytes):
        """gunicorn refuses a target with a byte outside printable ASCII; Swift serves a raw
        UTF-8 name and answers 412 to other bytes (its proxy's ``check_utf8``), so the app
        must see them. Percent-encoded they pass, and ``PATH_INFO`` (decoded) is the same."""
        return super().parse_request_line(HIGH_BYTE.sub(percent_encoded, line_bytes))

    def _parse_fast(self, unreader, buf):
        """gunicorn_h1c (the C parser gunicorn uses when it is installed) parses the whole
        head without ``parse_request_line``, and gunicorn then refuses a byte over 0x7f in
        its target: a head whose request line has one, or is not all there yet, goes to the
        Python parser, which reads the rest of the line and takes it as before."""
        if not ascii_request_line(buf):
            return self._parse_python(unreader, buf)
        return super()._parse_fast(unreader, buf)

    def _peer_is_trusted_proxy(self):
        """gunicorn parses ``forwarded_allow_ips`` against the peer's address on every
        request (3 % of a storage node's CPU); the answer per address is kept (the
        settings do not change while the worker runs)."""
        if not isinstance(self.peer_addr, tuple):
            return super()._peer_is_trusted_proxy()
        address = self.peer_addr[0]
        trusted = TRUSTED_PEERS.get(address)
        if trusted is None:
            if len(TRUSTED_PEERS) >= MAX_TRUSTED_PEERS:
                TRUSTED_PEERS.clear()  # many clients: bounded, not an LRU
            trusted = TRUSTED_PEERS[address] = super()._peer_is_trusted_proxy()
        return trusted

    def set_body_reader(self):
        for name, value in self.headers:
            if name == "TRANSFER-ENCODING":
                codings = [c.strip(" \t").lower() for c in value.split(",")]
                if any(c != "chunked" for c in codings):
                    error = http_errors.UnsupportedTransferCoding(value)
                    error.req = self
                    raise error
        super().set_body_reader()
        if isinstance(self.body.reader, ChunkedReader):
            self.body = Body(BoundedChunkedReader(self, self.unreader))
        elif isinstance(self.body.reader, LengthReader) and hasattr(self.unreader, "sock"):
            self.body = DirectBody(self.body.reader)


class DirectBody(Body):
    """A body of known length whose large reads come straight from the socket.

    gunicorn's readers pass every byte through two ``BytesIO`` buffers and slice it on the
    way out, copying each byte of a PUT several times over (most of a node's CPU). A
    read of ``DIRECT_READ`` bytes or more takes what the head's read left over, then asks
    the socket for no more than the rest of the read: the bytes ``recv`` returns are those
    handed to the app (joined only when they came in several pieces). Smaller reads, and
    reads after a ``readline`` left bytes in the buffer, take gunicorn's path.
    """

    def read(self, size=None):
        if size is None or size < DIRECT_READ or self.buf.tell():
            return super().read(size)
        try:
            return self.read_direct(size)
        except Exception:
            self.failed = True
            raise

    def read_direct(self, size: int) -> bytes:
        reader = self.reader
        size = min(size, reader.length)
        parts = []
        got = 0
        held = reader.unreader.take_buffered()
        if held:
            if len(held) > size:
                reader.unreader.unread(held[size:])
                held = held[:size]
            parts.append(held)
            got = len(held)
        sock = reader.unreader.sock
        while got < size:
            data = sock.recv(size - got)
            if not data:
                break  # the client is gone: a short read, as gunicorn's
            parts.append(data)
            got += len(data)
        reader.length -= got
        return b"".join(parts)  # one piece: that very object, not a copy


def percent_encoded(match: re.Match) -> bytes:
    return b"%%%02X" % match.group()[0]


def ascii_request_line(head: bytearray) -> bool:
    """The head holds its whole request line (after the one empty line RFC 9112 allows
    before it), all ASCII."""
    start = 2 if head[:2] == b"\r\n" else 0
    end = head.find(b"\r\n", start)
    return end >= 0 and head[start:end].isascii()


class SokoResponse(wsgi.Response):
    """gunicorn's response writer, writing the headers Swift's server writes (clients' tests
    compare the Swift API's header sets): no ``Server``, no ``Connection: keep-alive`` to
    an HTTP/1.1 client (persistence is its default), and ``Content-Length: 0`` kept on a
    204, which Swift sends (RFC 9110 says not to; clients ignore it)."""

    def default_headers(self):
        major, minor = self.req.version
        headers = [f"HTTP/{major}.{minor} {self.status}\r\n", f"Date: {http_date()}\r\n"]
        if self.upgrade:
            headers.append("Connection: upgrade\r\n")
        elif self.should_close():
            headers.append("Connection: close\r\n")
        elif (major, minor) < (1, 1):
            headers.append("Connection: keep-alive\r\n")
        if self.chunked:
            headers.append("Transfer-Encoding: chunked\r\n")
        return headers

    @staticmethod
    def _response_forbids_content_length(status):
        return status is not None and 100 <= status < 200


_date_now: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header's value, formatted once a second rather than once a response (a
    storage node answers several hundred a second; formatting was 2 % of its CPU)."""
    global _date_now
    now = int(time.time())
    if _date_now[0] != now:
        _date_now = (now, email.utils.formatdate(now, usegmt=True))
    return _date_now[1]


class ClientConn(TConn):
    """A connection with the bytes of its next request head, read by the event loop."""

    def __init__(self, cfg, sock, client, server, linger):
        super().__init__(cfg, sock, client, server)
        self.head = bytearray()
        self.linger = linger
        self.drained = 0

    def close(self, graceful=False):
        """gunicorn closes gracefully on its event loop, lingering up to 2 s for the client
        to close first: one silent client stopped the loop that long. Here the linger
        waits on the loop's poller instead."""
        if graceful:
            self.linger(self)
        else:
            super().close()

    def init(self):
        fresh = not self.initialized
        super().init()
        if fresh and hasattr(self.parser, "mesg_class"):
            self.parser.mesg_class = SokoRequest


def head_complete(head: bytes) -> bool:
    """The head ends, or has a bare LF gunicorn refuses at once (no use waiting for more)."""
    return b"\r\n\r\n" in head or head.count(b"\n") != head.count(b"\r\n")


class SokoWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        section = self.app.section
        self.client_timeout = float(section.client_timeout)
        self.header_timeout = float(section.header_timeout)
        self.awaiting_head: set[ClientConn] = set()
        self.lingering: set[ClientConn] = set()
        self.next_expiry_scan = 0.0
        # gunicorn's own limits: a head this long is refused by its parser without reading more.
        self.head_limit = (self.cfg.limit_request_line + 4 + self.cfg.limit_request_fields
                           * (self.cfg.limit_request_field_size + 2))

    def init_process(self):
        die_with_parent(self.ppid)
        # gthread's handle_request builds its writer from this module attribute, with no
        # other way in; this process runs only this worker.
        wsgi.Response = SokoResponse
        # A proxy request may hold a connection to each of 3 replicas besides its client's.
        raise_open_files_limit(4 * self.worker_connections + 256)
        super().init_process()

    def get_thread_pool(self):
        return ElasticPool(core=self.cfg.threads, limit=self.worker_connections)

    # -- the event loop reads request heads ---------------------------------------------

    def accept(self, listener):
        """Takes every waiting connection (up to ``ACCEPT_BATCH``), not one per turn of the
        loop: a burst of clients must not wait in the listen queue behind the loop's work."""
        for _ in range(ACCEPT_BATCH):
            if self.nr_conns >= self.worker_connections:
                return
            try:
                sock, addr = listener.accept()
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                    raise
                return
            self.nr_conns += 1
            conn = ClientConn(self.cfg, ClientSocket.adopt(sock, self.client_timeout), addr,
                              listener.getsockname(), self.linger)
            conn.timeout = time.monotonic() + self.header_timeout
            self.read_head(conn)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection starts its next request: read its head here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.timeout = time.monotonic() + self.header_timeout
        self.read_head(conn)

    def read_head(self, conn: ClientConn) -> None:
        """Takes what arrived of the head: complete, it goes to a thread; else the connection
        waits on the poller. (Touching the poller only when a head is incomplete matters:
        every system call here lets a busy request thread take the GIL for up to 5 ms.)"""
        try:
            data = conn.sock.recv(HEAD_READ)
        except (BlockingIOError, InterruptedError):
            self.await_head(conn)
            return
        except OSError:
            data = b""
        if not data:
            # The client closed: what it sent (if anything) goes to the parser, which
            # refuses a partial head without an answer, as for any client gone.
            self.stop_awaiting(conn)
            if conn.head:
                self.enqueue_req(conn)
            else:
                self.close_conn(conn)
            return
        if not conn.head:
            conn.timeout = time.monotonic() + self.header_timeout
        conn.head += data
        if head_complete(conn.head) or len(conn.head) > self.head_limit:
            self.stop_awaiting(conn)
            conn.sock.head_line = bytes(conn.head.partition(b"\r\n")[0][:2048])
            self.enqueue_req(conn)
        else:
            self.await_head(conn)

    def await_head(self, conn: ClientConn) -> None:
        if conn not in self.awaiting_head:
            self.awaiting_head.add(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self.on_head_bytes, conn))

    def on_head_bytes(self, conn: ClientConn, _sock) -> None:
        self.read_head(conn)

    def stop_awaiting(self, conn: ClientConn) -> None:
        if conn in self.awaiting_head:
            self.awaiting_head.discard(conn)
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def close_conn(self, conn: ClientConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def linger(self, conn: ClientConn) -> None:
        """Sends FIN, then reads (and drops) what the client still sends until it closes,
        64 KiB came or 2 s passed: closing with unread bytes would make the kernel send a
        reset, which can destroy the answer before the client read it."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            conn.sock.close()
            return
        conn.sock.setblocking(False)
        conn.timeout = time.monotonic() + LINGER_SECONDS
        self.lingering.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_linger_bytes, conn))

    def on_linger_bytes(self, conn: ClientConn, _sock) -> None:
        try:
            data = conn.sock.recv(HEAD_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained >= LINGER_BYTES:
            self.end_linger(conn)

    def end_linger(self, conn: ClientConn) -> None:
        self.lingering.discard(conn)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        conn.sock.close()

    def murder_pending(self):
        """Also expires heads not complete in time (408 if they had begun, else just
        closed) and lingering closes."""
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_expiry_scan:
            return
        self.next_expiry_scan = now + 0.25  # a scan per turn of the loop is O(clients²)
        for conn in [c for c in self.lingering if c.timeout <= now]:
            self.end_linger(conn)
        for conn in [c for c in self.awaiting_head if c.timeout <= now]:
            self.stop_awaiting(conn)
            if conn.head and self.alive:
                line = bytes(conn.head.partition(b"\r\n")[0][:2048])
                self.answer_refusal(conn.sock, RequestTimeout(
                    f"The request head was not complete within {self.header_timeout:g} s."),
                    line, conn.client, blocking=False)
            self.close_conn(conn)

    def _cap_keepalive(self, deadline):
        """A stopping worker gives heads in progress (and idle new connections) as long as
        gunicorn gives kept-alive connections, not its whole header timeout."""
        super()._cap_keepalive(deadline)
        self.next_expiry_scan = 0.0
        for conn in self.awaiting_head:
            conn.timeout = min(conn.timeout, deadline)

    def handle(self, conn):
        """In a request thread: the head the event loop read goes to the parser first."""
        if conn.head:
            conn.init()
            conn.parser.unreader.unread(bytes(conn.head))
            conn.head.clear()
        return super().handle(conn)

    def _keepalive_after(self, conn, keepalive):
        """A body the app left unread is drained before the next request; if it is broken,
        the connection just closes (the app has answered already)."""
        try:
            return super()._keepalive_after(conn, keepalive)
        except (http_errors.ParseException, http_errors.NoMoreData, OSError):
            return False

    def handle_request(self, req, conn):
        try:
            return super().handle_request(req, conn)
        except (TimeoutError, BlockingIOError):
            # The client stopped reading the answer: nothing more can be said to it.
            log.info("client %s stopped reading the answer to %s %s for %g s; closed",
                     conn.client[0] if conn.client else "?", req.method, req.path,
                     self.client_timeout)
            return False

    # -- errors -------------------------------------------------------------------------

    def load_wsgi(self):
        super().load_wsgi()
        self.wsgi = guard_body(self.wsgi, self.client_timeout)

    def handle_error(self, req, client, addr, exc):
        """gunicorn's own refusals (malformed head, unsupported coding...) answered by the app."""
        error = http_refusal(exc)
        if error.status >= 500 and not isinstance(error, Unimplemented):
            self.log.exception("error handling a request")
        line = b""
        if req is None:
            req = getattr(exc, "req", None)
        if req is not None and getattr(req, "method", None):
            line = f"{req.method} {req.uri} HTTP/1.1".encode("latin-1", "replace")
        else:
            line = getattr(client, "head_line", b"")
        self.answer_refusal(client, error, line, addr, blocking=True)

    def answer_refusal(self, sock, error: SokoError, line: bytes, addr, *, blocking: bool):
        """Writes the app's answer to a request refused before it reached the app."""
        try:
            data = refusal_answer(self.wsgi, error, line, addr, sock)
            if blocking:
                sock.sendall(data)
            else:
                sock.send(data)
        except OSError:
            pass  # the client is gone or not reading: the connection closes anyway
        except Exception:
            self.log.exception("answering a refused request failed")


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when the thread that forked it (gunicorn's master) dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    if os.getppid() != parent_pid:  # the master died before the line above
        os._exit(1)


def raise_open_files_limit(wanted: int) -> None:
    """Every client is a file descriptor: raise the soft limit up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("open files limited to %d (hard limit): fewer than %d clients per worker "
                    "can be served", hard, wanted)
