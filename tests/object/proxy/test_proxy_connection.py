"""What a raw client sees on the wire from the real (gunicorn) proxy: a request whose body
is refused unread is answered ``Connection: close`` and the connection really closes, while
a good request keeps the connection alive."""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from soko.object.proxy.constraints import MAX_FILE_SIZE

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock: socket.socket) -> bool:
    """True if the server closes (EOF or reset) while the client still holds its body."""
    sock.settimeout(10)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.fixture
def conn(cluster):
    parts = urlsplit(cluster.proxy_url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    yield sock
    sock.close()


def new_container(cluster, conn: socket.socket) -> tuple[str, str]:
    """Creates a container over ``conn``; returns its path and the auth header lines."""
    storage_url, token = cluster.auth()
    container = urlsplit(storage_url).path + f"/c-{uuid.uuid4().hex[:8]}"
    auth = f"Host: x\r\nX-Auth-Token: {token}\r\n"
    conn.sendall(f"PUT {container} HTTP/1.1\r\n{auth}Content-Length: 0\r\n\r\n".encode())
    assert read_response(conn)[0] == 201
    return container, auth


def test_refused_unread_body_closes_the_connection(cluster, conn):
    container, auth = new_container(cluster, conn)
    conn.sendall(f"PUT {container}/big HTTP/1.1\r\n{auth}"
                 f"Content-Length: {MAX_FILE_SIZE + 1}\r\n\r\n".encode() + b"x" * 65536)
    status, headers, _ = read_response(conn)
    assert status == 413 and headers["connection"] == "close"
    assert closed_by_server(conn)


def test_unauthenticated_body_closes_but_good_requests_keep_alive(cluster, conn):
    container, auth = new_container(cluster, conn)
    conn.sendall(f"PUT {container}/o HTTP/1.1\r\n{auth}Content-Length: 5\r\n\r\nhello".encode())
    status, headers, _ = read_response(conn)  # the same connection, still alive
    # HTTP/1.1 keeps the connection unless told otherwise (Swift says nothing either)
    assert status == 201 and "connection" not in headers
    conn.sendall(f"PUT {container}/o HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
                 .encode() + b"y" * 1000)
    status, headers, _ = read_response(conn)
    assert status == 401 and headers["connection"] == "close"
    assert closed_by_server(conn)


def test_large_body_and_a_pipelined_request_in_one_write(cluster, conn):
    """The body's first bytes come with the head and the rest is read straight from the
    socket: the object is the exact body, and the request behind it is served."""
    container, auth = new_container(cluster, conn)
    body = os.urandom(3 * 2**20 + 17)  # reads of 1 MiB and a rest
    conn.sendall(f"PUT {container}/big HTTP/1.1\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
                 .encode() + body
                 + f"GET {container}/big HTTP/1.1\r\n{auth}Connection: close\r\n\r\n".encode())
    answers = b""
    while chunk := conn.recv(1 << 20):
        answers += chunk
    put_head, _, get_answer = answers.partition(b"\r\n\r\n")  # the 201 has no body
    get_head, _, stored = get_answer.partition(b"\r\n\r\n")
    assert put_head.startswith(b"HTTP/1.1 201 ") and get_head.startswith(b"HTTP/1.1 200 ")
    assert stored == body
