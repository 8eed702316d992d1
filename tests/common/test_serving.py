"""soko's gunicorn worker (common/worker.py) on real processes: slow clients cannot stall a
service, heads and bodies time out, gunicorn's own refusals carry soko's error body, and
workers die with their master. Identity is the service under test (the proxy's turn is in
tests/object/test_proxy_serving.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from soko.common import services
from soko.identity.bootstrap import bootstrap
from tests.support import (
    free_port,
    healthy,
    parse_answer,
    raw_exchange,
    running_service,
    stalled_clients,
    stalled_requests,
    wait_for,
)


def start_identity(tmp_path_factory, name: str, extra: str = ""):
    data_dir = tmp_path_factory.mktemp(name) / "soko"
    data_dir.mkdir()
    port = free_port()
    (data_dir / "soko.toml").write_text(
        f"[identity]\nport = {port}\nworkers = 2\nscrypt_log2_n = 10\n{extra}")
    config = services.load(None, data_dir)
    bootstrap(config)
    return running_service("identity", config)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    with start_identity(tmp_path_factory, "serving") as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def quick_identity(tmp_path_factory):
    """Identity with 1 s head and body timeouts, so a test sees them fire."""
    with start_identity(tmp_path_factory, "serving-quick",
                        "header_timeout = 1.0\nclient_timeout = 1.0\n") as endpoint:
        yield endpoint


def address(endpoint: str) -> tuple[str, int]:
    host, port = endpoint.removeprefix("http://").split(":")
    return host, int(port)


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as resp:
        resp.read()
        return resp.status, time.monotonic() - started


def test_a_thousand_stalled_clients_do_not_stop_identity(identity):
    requests = stalled_requests("/v3/auth/tokens", "Content-Type: application/json\r\n",
                                "POST")
    with stalled_clients(address(identity), 1000, requests):
        # Taking in the burst (1,000 requests parsed, 666 bodies begun) costs the workers
        # about a second of CPU on a 2-core machine; then the stalls are just held.
        wait_for(lambda: healthy(f"{identity}/healthcheck"), timeout=10, what="burst taken in")
        for _ in range(10):
            for path in ("/healthcheck", "/v3"):
                status, seconds = timed_get(f"{identity}{path}")
                assert status == 200 and seconds < 1.0, (path, seconds)


def json_error(answer: bytes) -> tuple[int, dict]:
    status, headers, body = parse_answer(answer)
    assert headers["content-type"] == "application/json", answer[:300]
    assert headers["connection"] == "close"
    assert headers["x-trans-id"].startswith("tx")
    error = json.loads(body)["error"]
    assert error["code"] == status and error["trans_id"] == headers["x-trans-id"]
    return status, error


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET / HTTP/9.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(201))
     + b"\r\n", 431),
    (b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nExpect: magic\r\nContent-Length: 2\r\n\r\n{}",
     417),
    (b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     b"5\r\nhello\r\n0\r\n\r\n", 501),
    (b"GET /v3 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    (b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    (b"POST /v3/auth/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Content-Length: 3\r\n\r\n{}", 400),
    (b"GET /v3/\xc3\xa9 HTTP/1.1\r\nHost: x\r\nX-A: a\x00\r\n\r\n", 400),
], ids=["bad-version", "bad-target", "line-too-long", "headers-too-large", "expect", "gzip",
        "obs-fold", "chunked-and-length", "two-lengths", "raw-utf8-target-nul-header"])
def test_http_layer_refusals_are_soko_json_errors(identity, request_bytes, status):
    """With gunicorn_h1c (ASCII request lines) as with gunicorn's Python parser (the
    others: common/worker.py ``SokoRequest``)."""
    answer, seconds = raw_exchange(address(identity), request_bytes)
    assert json_error(answer)[0] == status
    assert seconds < 1.0


def test_incomplete_head_is_408_after_header_timeout(quick_identity):
    answer, seconds = raw_exchange(address(quick_identity), b"GET /v3 HTTP/1.1\r\nHost: x\r\n")
    status, error = json_error(answer)
    assert status == 408 and "head" in error["message"]
    assert 0.9 < seconds < 3.0


def test_a_trickled_head_times_out_too(quick_identity):
    """A head sent a byte at a time still has to be complete in time (slowloris)."""
    import socket

    with socket.create_connection(address(quick_identity), timeout=5) as sock:
        started = time.monotonic()
        answer = b""
        for byte in b"GET /v3 HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"y" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
            if time.monotonic() - started > 2.5:
                break
        answer = sock.recv(65536)
    assert json_error(answer)[0] == 408
    assert time.monotonic() - started < 3.0


def test_idle_connection_is_closed_without_an_answer(quick_identity):
    answer, seconds = raw_exchange(address(quick_identity), b"")
    assert answer == b"" and 0.9 < seconds < 3.0


def test_stalled_body_is_408_after_client_timeout(quick_identity):
    """(Chunked bodies: identity reads none; the proxy's test stalls one.)"""
    request_bytes = stalled_requests("/v3/auth/tokens", "Content-Type: application/json\r\n",
                                     "POST")[1]
    answer, seconds = raw_exchange(address(quick_identity), request_bytes)
    status, error = json_error(answer)
    assert status == 408 and "body" in error["message"]
    assert 0.9 < seconds < 3.0


def test_served_after_timeouts(quick_identity):
    assert healthy(f"{quick_identity}/healthcheck")


# -- processes: workers die with their master, no shared control socket ---------------------


def sample_argv(port: int, data_dir) -> list[str]:
    from tests.tools.sample_service import serve_argv

    return serve_argv(port, data_dir)


def group_members(pgid: int) -> list[int]:
    from tests.tools.test_supervisor import group_members as members

    return members(pgid)


def test_workers_die_with_their_master_and_leave_no_control_socket(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(home)
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen(sample_argv(port, tmp_path / "data"), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthcheck"), timeout=30,
                 what="sample service")
        wait_for(lambda: len(group_members(proc.pid)) == 3, what="master and two workers")
        with stalled_clients(("127.0.0.1", port), 4, stalled_requests("/healthcheck")):
            time.sleep(0.3)  # the workers hold connections: before, they lingered 10 s
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            started = time.monotonic()
            wait_for(lambda: group_members(proc.pid) == [], timeout=5, what="orphans gone")
            assert time.monotonic() - started < 1.0
        assert not list(home.rglob("*.ctl")) and not (home / ".gunicorn").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in group_members(proc.pid):
            os.kill(pid, signal.SIGKILL)


# -- chunked request bodies ------------------------------------------------------------------


def chunked_post(endpoint: str, path: str, body: bytes) -> tuple[int, dict]:
    pieces = [body[i:i + 16] for i in range(0, len(body), 16)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    request = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    status, _headers, answer = parse_answer(
        raw_exchange(address(endpoint), request + chunks + b"0\r\n\r\n")[0])
    return status, json.loads(answer)


def test_a_chunked_json_body_is_read_whole(identity):
    """falcon took a body without Content-Length for an empty one: a client streaming its
    JSON got 'no body' (400); read whole, a wrong password is what is wrong (401)."""
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "not-the-password"}}}}}
    status, answer = chunked_post(identity, "/v3/auth/tokens", json.dumps(auth).encode())
    assert status == 401, answer
    status, answer = chunked_post(identity, "/v3/auth/tokens", b"{" * 10 + b" ")
    assert status == 400 and "JSON" in answer["error"]["message"], answer
    status, answer = chunked_post(identity, "/v3/auth/tokens", b" " * (1 << 20) + b"{}")
    assert status == 413, answer
