"""The storage-node app in-process: objects, listings, accounts, and what a failure leaves."""

from __future__ import annotations

import hashlib
import json

import pytest

from soko.object.shared.timestamps import Timestamp
from tests.object.node_app import node_app
from tests.support import free_port


@pytest.fixture
def node(tmp_path):
    return node_app(tmp_path)


def ts(n: float) -> dict[str, str]:
    return {"X-Timestamp": Timestamp.parse(1_700_000_000 + n).normal}


OBJ = "/object/d0/5/AUTH_a/c/dir/o"


def test_object_put_get_head_delete(node):
    r = node.simulate_put(OBJ, body=b"hello", headers={
        **ts(1), "Content-Type": "text/plain", "X-Object-Meta-Color": "blue",
        "ETag": hashlib.md5(b"hello").hexdigest()})
    assert r.status_code == 201 and r.headers["etag"] == hashlib.md5(b"hello").hexdigest()
    r = node.simulate_get(OBJ)
    assert r.content == b"hello" and r.headers["x-object-meta-color"] == "blue"
    assert r.headers["content-type"] == "text/plain"
    assert node.simulate_get(OBJ, headers={"Range": "bytes=1-2"}).content == b"el"
    assert node.simulate_get(OBJ, headers={"Range": "bytes=9-"}).status_code == 416
    etag = r.headers["etag"]
    assert node.simulate_get(OBJ, headers={"If-None-Match": etag}).status_code == 304
    assert node.simulate_get(OBJ, headers={"If-Match": "nope"}).status_code == 412
    assert node.simulate_post(OBJ, headers={**ts(2), "X-Object-Meta-Size": "1"}).status_code == 202
    r = node.simulate_head(OBJ)
    assert r.headers["x-object-meta-size"] == "1" and "x-object-meta-color" not in r.headers
    assert node.simulate_delete(OBJ, headers=ts(3)).status_code == 204
    r = node.simulate_get(OBJ)
    assert r.status_code == 404 and r.headers["x-backend-timestamp"] == ts(3)["X-Timestamp"]


def test_multirange(node):
    node.simulate_put(OBJ, body=b"0123456789", headers=ts(1))
    r = node.simulate_get(OBJ, headers={"Range": "bytes=0-1,-2"})
    assert r.status_code == 206 and r.headers["content-type"].startswith("multipart/byteranges")
    assert b"Content-Range: bytes 0-1/10\r\n\r\n01\r\n" in r.content
    assert b"Content-Range: bytes 8-9/10\r\n\r\n89\r\n" in r.content
    assert int(r.headers["content-length"]) == len(r.content)


def test_older_write_conflicts(node):
    node.simulate_put(OBJ, body=b"new", headers=ts(5))
    r = node.simulate_put(OBJ, body=b"old", headers=ts(4))
    assert r.status_code == 409 and node.simulate_get(OBJ).content == b"new"


def test_rejected_puts_leave_nothing(node):
    r = node.simulate_put(OBJ, body=b"hello", headers={**ts(1), "ETag": "0" * 32})
    assert r.status_code == 422
    assert node.simulate_put(OBJ, body=b"x", headers={}).status_code == 400
    assert [p for p in node.device.rglob("*") if p.is_file()] == []
    r = node.simulate_put("/object/missing/5/a/c/o", body=b"x", headers=ts(1))
    assert r.status_code == 507


def test_expired_object_is_gone(node):
    node.simulate_put(OBJ, body=b"x", headers={**ts(1), "X-Delete-At": "1000"})
    assert node.simulate_get(OBJ).status_code == 404


def test_unreachable_container_leaves_async_pending(node):
    port = free_port()
    r = node.simulate_put(OBJ, body=b"x", headers={
        **ts(1), "X-Container-Host": f"127.0.0.1:{port}", "X-Container-Device": "d0",
        "X-Container-Partition": "9"})
    assert r.status_code == 201
    assert len(list((node.device / "async_pending").rglob("*-*"))) == 1


def test_container_listing_and_stats(node):
    c = "/container/d0/7/AUTH_a/c"
    assert node.simulate_put(c, headers={**ts(1), "X-Container-Meta-A": "1"}).status_code == 201
    assert node.simulate_put(c, headers=ts(2)).status_code == 202
    for name, size in (("a/1", 3), ("a/2", 4), ("b", 5)):
        r = node.simulate_put(f"{c}/{name}", headers={
            **ts(3), "X-Size": str(size), "X-Etag": "e", "X-Content-Type": "t/p"})
        assert r.status_code == 201
    r = node.simulate_get(c, params={"delimiter": "/"})
    assert [e.get("name", e.get("subdir")) for e in json.loads(r.text)] == ["a/", "b"]
    assert r.headers["x-container-object-count"] == "3"
    assert r.headers["x-container-bytes-used"] == "12"
    assert r.headers["x-container-meta-a"] == "1"
    assert node.simulate_delete(c, headers=ts(4)).status_code == 409
    for name in ("a/1", "a/2", "b"):
        node.simulate_delete(f"{c}/{name}", headers=ts(5))
    assert node.simulate_delete(c, headers=ts(6)).status_code == 204
    assert node.simulate_head(c).status_code == 404


def test_account_reports(node):
    a = "/account/d0/3/AUTH_a"
    assert node.simulate_head(a).status_code == 404
    report = {"X-Put-Timestamp": ts(1)["X-Timestamp"], "X-Delete-Timestamp": "0",
              "X-Object-Count": "2", "X-Bytes-Used": "10"}
    assert node.simulate_put(f"{a}/c1", headers=report).status_code == 400  # report time?
    assert node.simulate_head(a).status_code == 404  # and nothing was created
    r = node.simulate_put(f"{a}/c1", headers={**report, **ts(1)})
    assert r.status_code == 201
    r = node.simulate_get(a)
    assert r.headers["x-account-container-count"] == "1"
    assert r.headers["x-account-bytes-used"] == "10"
    assert json.loads(r.text)[0]["name"] == "c1"
    assert node.simulate_post(a, headers={**ts(2), "X-Account-Meta-K": "v"}).status_code == 204
    assert node.simulate_head(a).headers["x-account-meta-k"] == "v"
