"""The proxy → node body footer: the node stores exactly the body the proxy hashed, under the
proxy's MD5, and refuses (leaving nothing) a body that differs from its footer."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from soko.object.shared.footer import (
    FOOTER_HEADER,
    FOOTER_KIND,
    FooterBody,
    FooterMismatch,
    FooterReader,
)
from soko.object.shared.timestamps import Timestamp
from tests.object.node_app import node_app

OBJ = "/object/d0/5/AUTH_a/c/o"
FOOTER = {FOOTER_HEADER: FOOTER_KIND}



@pytest.fixture
def node(tmp_path):
    return node_app(tmp_path)


def ts(n: int) -> dict[str, str]:
    return {"X-Timestamp": Timestamp.parse(1_700_000_000 + n).normal}


def wire(body: bytes) -> bytes:
    return b"".join(FooterBody([body]))


def splits(data: bytes, rng: random.Random) -> list[bytes]:
    """``data`` cut at random places, including pieces shorter than the footer."""
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 6))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


@pytest.mark.parametrize("size", [0, 1, 31, 32, 33, 1000, 70_000])
def test_reader_gives_back_the_body_whatever_the_chunking(size):
    rng = random.Random(size)
    body = os.urandom(size)
    for _ in range(20):
        reader = FooterReader(splits(wire(body), rng))
        assert b"".join(bytes(p) for p in reader) == body
        assert reader.etag == hashlib.md5(body).hexdigest()


def test_reader_refuses_a_changed_body_or_a_missing_footer():
    data = bytearray(wire(b"x" * 100))
    data[10] ^= 1
    reader = FooterReader([bytes(data)])
    list(reader)
    with pytest.raises(FooterMismatch, match="checksum"):
        _ = reader.etag
    reader = FooterReader([b"short"])
    list(reader)
    with pytest.raises(FooterMismatch, match="ended before"):
        _ = reader.etag


def test_node_stores_the_body_under_the_proxys_md5(node):
    body = os.urandom(3 * 1024 * 1024 + 5)
    r = node.simulate_put(OBJ, body=wire(body), headers={**ts(1), **FOOTER})
    assert r.status_code == 201 and r.headers["etag"] == hashlib.md5(body).hexdigest()
    r = node.simulate_get(OBJ)
    assert r.content == body and r.headers["etag"] == hashlib.md5(body).hexdigest()
    assert int(r.headers["content-length"]) == len(body)


def test_node_refuses_a_body_that_differs_from_its_footer(node):
    data = bytearray(wire(b"payload" * 1000))
    data[3] ^= 0xFF  # damaged on the way: the footer's checksum no longer matches
    r = node.simulate_put(OBJ, body=bytes(data), headers={**ts(1), **FOOTER})
    assert r.status_code == 499 and "checksum" in r.text, r.text
    wrong_etag = {**ts(2), **FOOTER, "ETag": hashlib.md5(b"else").hexdigest()}
    assert node.simulate_put(OBJ, body=wire(b"body"), headers=wrong_etag).status_code == 422
    assert node.simulate_get(OBJ).status_code == 404
    leftovers = [p for p in node.device.rglob("*") if p.is_file()]
    assert leftovers == []


def test_a_body_of_many_chunks_is_hashed_in_order():
    """From its second chunk on a body is hashed in a helper thread: the same MD5."""
    chunks = [os.urandom(n) for n in (1000, 70_000, 1, 5000, 1 << 20)]
    body, sent = b"".join(chunks), FooterBody(chunks)
    data = b"".join(sent)
    assert data[:-32] == body and data[-32:-16] == hashlib.md5(body).digest()
    assert sent.etag == hashlib.md5(body).hexdigest()
