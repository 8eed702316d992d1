"""The proxy's pool of idle node connections keeps none past their age: under steady load
the newest is always taken, and the oldest were left open (closed by the node, CLOSE-WAIT)."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from soko.object.shared import nodeclient
from soko.object.shared.nodeclient import ConnectionPool


class KeepAlive(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def keep_alive_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        server.server_close()


def used(pool: ConnectionPool, conns: list) -> None:
    """Each connection asks once and goes back to the pool."""
    for conn in conns:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        pool.release(conn, response)


def test_aged_connections_are_closed_while_newer_ones_are_reused(monkeypatch):
    monkeypatch.setattr(nodeclient, "MAX_IDLE_AGE", 0.2)
    pool = ConnectionPool()
    with keep_alive_server() as (host, port):
        conns = [pool.acquire(host, port)[0] for _ in range(4)]
        old, fresh = conns[:3], conns[3]
        used(pool, old)
        time.sleep(0.3)
        used(pool, [fresh])  # the newest, on top of three aged ones
        for _ in range(5):  # steady load: the newest is taken every time
            conn, reused = pool.acquire(host, port)
            assert reused and conn is fresh
            used(pool, [conn])
        assert all(conn.sock is None for conn in old)
        assert list(pool.idle[(host, port)]) == [fresh]
