"""The proxy's reads and the pool's error limiting against nodes that misbehave on purpose.

The misbehaving nodes are tiny raw-socket HTTP servers: a body that breaks off at an exact
byte or carries a wrong ETag can't be timed reliably with a real node (the netns tests in
``test_netns_durability.py`` cause those faults for real, but with racy timing).
Connection refusals are real (a closed loopback port).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import pytest

from soko.object.proxy.node_answers import BodyError
from soko.object.proxy.replicas import Replicas
from soko.object.shared.nodeclient import STREAM_CHUNK, ConnectionPool, ErrorLimited
from tests.support import free_port


class RawNode:
    """Answers every request on its port with ``head`` + ``body`` then closes."""

    def __init__(self, status: str, body: bytes, *, length: int | None = None,
                 etag: str | None = None):
        length = len(body) if length is None else length
        etag = etag or hashlib.md5(body).hexdigest()
        self.response = (f"HTTP/1.1 {status}\r\nContent-Length: {length}\r\nETag: {etag}\r\n"
                         "X-Timestamp: 1700000000.00000\r\nConnection: close\r\n\r\n"
                         ).encode() + body
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(self.response)

    @property
    def node(self) -> dict:
        return {"ip": "127.0.0.1", "port": self.port, "device": "d0"}

    def close(self) -> None:
        self.sock.close()


class OneRing:
    """A ring with fixed primaries and handoffs for one partition."""

    def __init__(self, primaries: list[dict], handoffs: list[dict]):
        self.primaries, self.handoffs = primaries, handoffs

    def get_nodes(self, *names):
        return 0, list(self.primaries)

    def handoff_nodes(self, part):
        return iter(self.handoffs)


@pytest.fixture
def nodes():
    made: list[RawNode] = []

    def make(*args, **kwargs) -> RawNode:
        made.append(RawNode(*args, **kwargs))
        return made[-1]

    yield make
    for node in made:
        node.close()


def read(primaries, handoffs):
    replicas = Replicas("object", OneRing(primaries, handoffs), ConnectionPool(0.5, 2.0))
    return replicas.read("GET", ("a", "c", "o"), {})


def test_get_fails_over_when_a_body_breaks_off_before_any_byte_went_out(nodes):
    good = b"g" * 5000
    broken = nodes("200 OK", b"b" * 100, length=5000)  # closes after 100 of 5000 bytes
    answer = read([broken.node], [nodes("200 OK", good).node])
    assert answer.status == 200 and answer.read_all() == good


def test_get_fails_over_when_a_small_body_fails_its_md5(nodes):
    good = b"g" * 5000
    rotten = nodes("200 OK", b"x" * 5000, etag=hashlib.md5(good).hexdigest())
    answer = read([rotten.node], [nodes("200 OK", good).node])
    assert answer.read_all() == good


def test_get_fails_over_on_507_and_refused_connections(nodes):
    good = b"g" * 10
    refused = {"ip": "127.0.0.1", "port": free_port(), "device": "d9"}
    answer = read([refused, nodes("507 Insufficient Storage", b"").node],
                  [nodes("200 OK", good).node])
    assert answer.read_all() == good


def test_corrupt_large_body_is_cut_before_its_last_chunk(nodes):
    body = bytes(range(256)) * (3 * STREAM_CHUNK // 256)
    rotten = nodes("200 OK", body, etag="0" * 32)
    answer = read([rotten.node], [])
    received = bytearray()
    with pytest.raises(BodyError, match="ETag"):
        for chunk in answer:
            received += chunk
    assert 0 < len(received) < len(body)


def test_error_limited_node_is_skipped_until_the_interval_passes():
    port = free_port()  # nothing listens: every connect is refused
    pool = ConnectionPool(0.5, 2.0, error_limit=2, error_interval=0.5)
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            pool.acquire("127.0.0.1", port)
    with pytest.raises(ErrorLimited):
        pool.acquire("127.0.0.1", port)
    with pytest.raises(ConnectionRefusedError):  # a last resort may still try it
        pool.acquire("127.0.0.1", port, force=True)
    time.sleep(0.6)
    with pytest.raises(ConnectionRefusedError):  # quiet for the interval: tried again
        pool.acquire("127.0.0.1", port)
