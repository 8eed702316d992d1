"""Names and header values beyond ASCII, and request heads as large as Swift reads.

Swift keeps header values as the bytes sent ("WSGI strings", ``swift/common/swob.py``) and
answers them byte for byte; it counts metadata limits in those bytes
(``swift/common/constraints.py`` ``check_metadata``); it serves raw UTF-8 in the request
target and answers 412 to invalid UTF-8 (``swift/proxy/server.py`` ``handle_request``);
its listings carry the content type as text; its copy middleware quotes ``X-Copied-From``
(``swift/common/middleware/copy.py``). Its server reads heads of up to 200 header lines of
8 KiB (``swift/common/wsgi.py``, ``bufferedhttp.py``), so a request over the metadata limits
gets ``check_metadata``'s 400. Each expectation was checked against Swift 2.38.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.object.proxy.raw_http import raw

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

SNOW = "café ☃".encode()


@pytest.fixture
def target(cluster, cluster_api, cluster_container):
    """(port, token header, container path as bytes)."""
    path = urlsplit(f"{cluster_api.base}/{cluster_container}").path.encode()
    return cluster.proxy_port, ("X-Auth-Token", cluster_api.headers["X-Auth-Token"]), path


def test_utf8_metadata_and_content_type_round_trip_byte_exact(target):
    port, token, c = target
    content_type = "text/plain; name=ünï".encode()
    assert raw(port, "PUT", c + b"/o", [token, ("X-Object-Meta-Snow", SNOW),
                                        ("Content-Type", content_type)], b"x").status == 201
    for method in ("HEAD", "GET"):
        answer = raw(port, method, c + b"/o", [token])
        assert answer.header("X-Object-Meta-Snow").encode("latin-1") == SNOW
        assert answer.header("Content-Type").encode("latin-1") == content_type
    assert raw(port, "POST", c, [token, ("X-Container-Meta-Snow", SNOW)]).status == 204
    assert raw(port, "HEAD", c, [token]).header("X-Container-Meta-Snow").encode(
        "latin-1") == SNOW
    listing = raw(port, "GET", c + b"?format=json", [token])
    assert '"content_type": "text/plain; name=\\u00fc' in listing.text  # text, not mojibake
    assert raw(port, "PUT", c + b"/bad", [token, ("Content-Type", b"text/\xff")],
               b"x").text == "Invalid Content-Type"


def test_non_ascii_metadata_counts_its_bytes_once(target):
    """128 ``é`` are 256 bytes: at ``max_meta_value_length``, not over it."""
    port, token, c = target
    at_limit = ("é" * 128).encode()
    assert raw(port, "PUT", c + b"/o", [token, ("X-Object-Meta-E", at_limit)], b"x"
               ).status == 201
    over = raw(port, "PUT", c + b"/o", [token, ("X-Object-Meta-E", at_limit + b"e")], b"x")
    assert (over.status, over.text) == (400, "Metadata value longer than 256: x-object-meta-E")
    # 16 items of a 128-byte name and 64 é (128 bytes): 4096 bytes, Swift's overall limit,
    # which the container server checks again for what it would store
    full = [(f"X-Container-Meta-{i:x}{'s' * 127}", ("é" * 64).encode()) for i in range(16)]
    assert raw(port, "POST", c, [token, *full]).status == 204
    assert raw(port, "POST", c, [token, *[(k, b"") for k, _ in full]]).status == 204
    bad = raw(port, "POST", c, [token, ("X-Container-Meta-Bad", b"\xff")])
    assert (bad.status, bad.text) == (400, "Metadata must be valid UTF-8")


def test_raw_utf8_in_the_request_line_is_served(target):
    port, token, c = target
    assert raw(port, "PUT", c + "/été".encode(), [token], b"raw").status == 201
    assert raw(port, "GET", c + b"/%C3%A9t%C3%A9", [token]).body == b"raw"
    assert raw(port, "GET", c + "/été".encode(), [token]).body == b"raw"
    invalid = raw(port, "GET", c + b"/caf\xff", [token])
    assert (invalid.status, invalid.text) == (412, "Invalid UTF8 or contains NULL")


def test_copy_names_are_quoted_and_decoded_once(target):
    port, token, c = target
    container = c.rsplit(b"/", 1)[1].decode()
    assert raw(port, "PUT", c + b"/100%25", [token], b"pct").status == 201
    assert raw(port, "PUT", c + "/été".encode(), [token], b"utf8").status == 201
    copied = raw(port, "COPY", c + b"/100%25", [token, ("Destination", f"{container}/a")])
    assert copied.header("X-Copied-From") == f"{container}/100%25"
    copied = raw(port, "PUT", c + b"/b", [token, ("X-Copy-From", f"{container}/100%25")], b"")
    assert copied.header("X-Copied-From") == f"{container}/100%25"
    copied = raw(port, "PUT", c + b"/d", [token, ("X-Copy-From",
                                                  f"{container}/été".encode())], b"")
    assert (copied.status, copied.header("X-Copied-From")) == (
        201, f"{container}/%C3%A9t%C3%A9")
    assert copied.header("X-Copied-From-Last-Modified")
    assert [raw(port, "GET", c + name, [token]).body for name in (b"/a", b"/b", b"/d")] == [
        b"pct", b"pct", b"utf8"]


def test_heads_swift_reads_reach_the_metadata_checks(target):
    port, token, c = target
    many = [(f"X-Object-Meta-K{i}", "v") for i in range(120)]
    r = raw(port, "PUT", c + b"/o", [token, *many], b"x")
    assert (r.status, r.text) == (400, "Too many metadata items; max 90")
    filler = [(f"X-Other-{i}", "v") for i in range(197 - 3)]  # 200 lines with Host & co.
    r = raw(port, "PUT", c + b"/o", [token, *filler, *many[:3]], b"x")
    assert r.status == 201, r.text
    r = raw(port, "PUT", c + b"/o", [token, ("X-Object-Meta-Big", "v" * 8000)], b"x")
    assert (r.status, r.text) == (400, "Metadata value longer than 256: x-object-meta-Big")
    r = raw(port, "PUT", c + b"/o", [token, ("X-Object-Meta-Big", "v" * (8191 - 21))], b"x")
    assert r.status == 400  # a line of 8191 bytes with its CRLF: Swift's longest
    long_target = c + b"?marker=" + b"~" * (8000 - len(c))  # after every name
    assert raw(port, "GET", long_target, [token]).status == 204
