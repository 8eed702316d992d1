"""Which parser reads a request head in soko's worker (common/worker.py): gunicorn_h1c, the C
parser, for every head whose request line is ASCII (most of a storage node's request
parsing CPU otherwise); gunicorn's Python parser, with soko's percent-encoding of raw bytes
over 0x7f, for a raw UTF-8 target. The served behaviour is in tests/common/test_serving.py
and tests/object/proxy/test_non_ascii.py; this checks the choice, with soko's own gunicorn
settings, by counting the calls into the real C parser."""

from __future__ import annotations

import gunicorn_h1c
import pytest
from gunicorn.http.unreader import IterUnreader

from soko.common import services
from soko.common.serve import ServiceApplication
from soko.common.worker import SokoRequest


@pytest.fixture(scope="module")
def storage_settings(tmp_path_factory):
    """The gunicorn settings a storage node runs with."""
    data_dir = tmp_path_factory.mktemp("parser")
    config = services.load(None, data_dir)
    return ServiceApplication(services.spec_named("storage"), config).cfg


@pytest.fixture
def c_parser_calls(monkeypatch) -> list[bytes]:
    """The heads handed to gunicorn_h1c (it still parses them)."""
    calls = []
    real = gunicorn_h1c.parse_request

    def counted(data, *args, **kwargs):
        calls.append(data)
        return real(data, *args, **kwargs)

    monkeypatch.setattr(gunicorn_h1c, "parse_request", counted)
    return calls


def parsed(settings, head: bytes) -> SokoRequest:
    return SokoRequest(settings, IterUnreader([head]), ("127.0.0.1", 40000))


def test_an_ascii_head_is_parsed_by_the_c_parser(storage_settings, c_parser_calls):
    head = (b"PUT /d1/7/AUTH_demo/c/caf%C3%A9?multipart-manifest=put HTTP/1.1\r\n"
            b"Host: x\r\nContent-Length: 3\r\nX-Timestamp: 1.00000\r\n\r\n")
    request = parsed(storage_settings, head + b"abc")
    assert c_parser_calls == [head + b"abc"]
    assert (request.method, request.path, request.query) == (
        "PUT", "/d1/7/AUTH_demo/c/caf%C3%A9", "multipart-manifest=put")
    assert ("X-TIMESTAMP", "1.00000") in request.headers
    assert request.body.read() == b"abc"


@pytest.mark.parametrize("line", [
    "GET /v1/AUTH_demo/c/été HTTP/1.1".encode(),
    "\r\nGET /v1/AUTH_demo/c/été HTTP/1.1".encode(),  # the empty line RFC 9112 allows first
])
def test_a_raw_utf8_target_is_percent_encoded_by_the_python_parser(storage_settings,
                                                                    c_parser_calls, line):
    request = parsed(storage_settings, line + b"\r\nHost: x\r\n\r\n")
    assert c_parser_calls == []
    assert request.path == "/v1/AUTH_demo/c/%C3%A9t%C3%A9"
    assert request.headers == [("HOST", "x")]
