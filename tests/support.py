"""Helpers for tests: free ports, real service processes, WSGI apps over real HTTP, tool
checks, polling.

Privileged tests need root and real system components. Where one is missing they skip
with the reason, except under ``SOKO_REQUIRE_PRIVILEGED=1`` (set by CI), where the skip
becomes a failure so CI can't go green without exercising the real thing.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from soko.common.config import Config
from soko.common.procs import stop_process_group


def require_privileged() -> bool:
    return os.environ.get("SOKO_REQUIRE_PRIVILEGED") == "1"


def skip_or_fail(reason: str) -> None:
    if require_privileged():
        pytest.fail(f"SOKO_REQUIRE_PRIVILEGED=1 but {reason}")
    pytest.skip(reason)


def skip_without_kernel_feature(path: str, reason: str) -> None:
    """Skips, even under CI, where the kernel lacks a feature (device-mapper, configfs):
    unlike a missing package, no install step can provide it on this host."""
    if not os.path.exists(path):
        pytest.skip(f"{reason} ({path} is missing on this host's kernel)")


def require_root() -> None:
    if os.geteuid() != 0:
        skip_or_fail("this test needs root")


def require_tools(*names: str) -> None:
    """Skips (or fails under CI) unless every named executable is installed."""
    require_root()
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        skip_or_fail(f"missing {', '.join(missing)} (run tools/install-system-deps.sh)")


# Below the kernel's ephemeral range (32768-60999 by default): a port the OS picked for us
# could be taken by any outgoing connection before the service binds it.
PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()  # never the same port twice in a session


def free_ports(count: int = 1) -> int:
    """A base port with ``count`` consecutive loopback ports free and not handed out yet."""
    for _ in range(500):
        base = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - count)
        ports = set(range(base, base + count))
        if ports & _handed_out:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in ports:
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.update(ports)
        return base
    raise RuntimeError(f"no {count} free consecutive ports in {PORT_RANGE}")


def free_port() -> int:
    return free_ports(1)


def port_env(data_dir: Path) -> dict[str, str]:
    """The environment for ``soko up``: every service on free ports (storage nodes listen
    on port, port + 1, ...) and its own external network (the host holds its gateway), so
    it clashes with nothing else running."""
    from soko.common import services

    env = dict(os.environ, SOKO_DATA_DIR=str(data_dir),
               SOKO_NET_PUBLIC_CIDR=f"172.24.{random.randrange(16, 250)}.0/24")
    for spec in services.all_specs():
        fields = spec.section.__dataclass_fields__
        if "port" in fields:
            nodes = fields["nodes"].default if "nodes" in fields else 1
            env[f"SOKO_{spec.name.upper().replace('-', '_')}_PORT"] = str(free_ports(nodes))
    return env


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05,
             what: str = "condition"):
    """Polls ``predicate`` until it returns something truthy; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def running_service(name: str, config: Config, timeout: float = 30.0) -> Iterator[str]:
    """Runs ``soko serve NAME`` as a real gunicorn process; yields its endpoint."""
    section = config.section(name)
    endpoint = section.endpoint
    log_path = Path(config.data_dir) / f"{name}-{section.port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "soko.tools.cli", "serve", name, "--data-dir", str(config.data_dir)]
    if config.path is not None:
        argv += ["--config", str(config.path)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not healthy(f"{endpoint}/healthcheck"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        yield endpoint
    finally:
        stop_process_group(proc)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def served(app, port: int = 0) -> Iterator[str]:
    """Serves a WSGI app over real HTTP on a loopback port (a thread per request, like
    gunicorn's gthread): its base URL."""
    server = make_server("127.0.0.1", port, app, server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def raise_open_files_limit(wanted: int = 8192) -> None:
    """A test that holds many connections needs as many file descriptors."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def stalled_requests(path: str, headers: str = "", method: str = "PUT") -> list[bytes]:
    """The three ways a slow client stalls a request: the head cut after one header, a body
    that declares 100 bytes and sends 50, a chunked body that stops after one chunk."""
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}"
    return [
        f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode(),
        f"{head}Content-Length: 100\r\n\r\n".encode() + b"x" * 50,
        f"{head}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n".encode(),
    ]


@contextlib.contextmanager
def stalled_clients(address: tuple[str, int], count: int, requests: list[bytes]):
    """``count`` connections to ``address``, each sending one of ``requests`` (in turn) and
    then nothing; all closed on exit."""
    raise_open_files_limit(count + 1024)
    socks = []
    try:
        for i in range(count):
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(requests[i % len(requests)])
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def raw_exchange(address: tuple[str, int], data: bytes, *, timeout: float = 10.0,
                 half_close: bool = False) -> tuple[bytes, float]:
    """Sends ``data`` on a new connection and reads until the server closes it: (answer,
    seconds taken). A server that keeps the connection open past ``timeout`` fails the test."""
    with socket.create_connection(address, timeout=timeout) as sock:
        started = time.monotonic()
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no end of the answer within {timeout} s; got {answer[:300]!r}")
        except ConnectionResetError:
            pass
        return answer, time.monotonic() - started


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one raw HTTP/1.1 answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body
