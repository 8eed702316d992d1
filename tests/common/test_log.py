"""The access line operators read: its exact format, the same whether soko's handler writes
it straight or through ``logging``, whole under threads, and still given to a handler added
to the logger."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

import falcon.testing
import pytest

from soko.common.app import log_access, make_base_app
from soko.common.log import LineHandler, current_trans_id, setup_logging, sole_line_handler

TX = "tx0123456789abcdef01234-0065f0a1b2"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


@pytest.fixture
def service_log(tmp_path):
    """Sets soko's logging up as a service has it, on a file, when the test calls it (pytest
    attaches its capture handler to soko's logger at each phase: the set-up drops it, as a
    service has none); undone after."""
    soko = logging.getLogger("soko")
    saved = soko.level, soko.propagate
    path = tmp_path / "service.log"
    with path.open("a") as stream:
        def set_up():
            setup_logging("info", stream=stream)
            return path
        try:
            yield set_up
        finally:
            for handler in soko.handlers[:]:
                if isinstance(handler, LineHandler):
                    soko.removeHandler(handler)
            soko.level, soko.propagate = saved


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_a_request_is_logged_in_the_access_format(service_log):
    log_file = service_log()
    client = falcon.testing.TestClient(make_base_app())
    r = client.simulate_head("/healthcheck", query_string="x=1&y=%20",
                             headers={"X-Trans-Id": TX}, remote_addr="10.1.2.3")
    assert r.status_code == 200
    [line] = lines(log_file)
    assert re.fullmatch(rf'{STAMP} {os.getpid()} soko\.access INFO \[{TX}\] 10\.1\.2\.3 {TX} '
                        r'"HEAD /healthcheck\?x=1&y=%20" 200 \d+\.\d{4}', line), line


def test_the_line_is_the_one_logging_writes(service_log):
    log_file = service_log()
    assert sole_line_handler(logging.getLogger("soko.access"), logging.INFO) is not None
    token = current_trans_id.set(TX)
    try:
        log_access("127.0.0.1", TX, "PUT", "/v1/AUTH_a/c/o%20p", "201", 0.01234,
                   transferred=(5, 0), source="SLO")
        log_access(None, TX, "GET", "/v1/AUTH_a/c", 404, 2.5)
        # The same messages through logging's own record, format and emit.
        logging.getLogger("soko.access").info(
            f'127.0.0.1 {TX} "PUT /v1/AUTH_a/c/o%20p" 201 0.0123 5 0 (SLO)')
        logging.getLogger("soko.access").info(f'None {TX} "GET /v1/AUTH_a/c" 404 2.5000')
    finally:
        current_trans_id.reset(token)
    written = [line.split(" ", 2) for line in lines(log_file)]
    assert all(re.fullmatch(STAMP, f"{day} {time}") for day, time, _ in written), written
    direct, through_logging = [rest for *_, rest in written[:2]], [rest for *_, rest in written[2:]]
    assert direct == through_logging
    assert direct[0] == (f'{os.getpid()} soko.access INFO [{TX}] 127.0.0.1 {TX} '
                         '"PUT /v1/AUTH_a/c/o%20p" 201 0.0123 5 0 (SLO)')


def test_lines_from_many_threads_are_whole(service_log):
    log_file = service_log()
    def requests(n: int) -> None:
        for i in range(500):
            log_access("127.0.0.1", TX, "HEAD", f"/sda/1/a/c/{n}-{i}", "204", 0.001)

    threads = [threading.Thread(target=requests, args=(n,)) for n in range(8)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)
    written = lines(log_file)
    assert len(written) == 8 * 500
    shape = re.compile(rf'{STAMP} \d+ soko\.access INFO \[-\] 127\.0\.0\.1 {TX} '
                       r'"HEAD /sda/1/a/c/(\d+-\d+)" 204 0\.0010')
    assert len({shape.fullmatch(line).group(1) for line in written}) == 8 * 500


def test_a_handler_added_to_the_access_log_gets_the_line_too(service_log):
    log_file = service_log()
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    access = logging.getLogger("soko.access")
    access.addHandler(handler)
    try:
        log_access("127.0.0.1", TX, "HEAD", "/sda/1/a/c/o", "204", 0.001)
    finally:
        access.removeHandler(handler)
    assert [r.getMessage() for r in records] == [f'127.0.0.1 {TX} "HEAD /sda/1/a/c/o" 204 0.0010']
    assert lines(log_file)[0].endswith(f'] 127.0.0.1 {TX} "HEAD /sda/1/a/c/o" 204 0.0010')
