"""The Swift API surface through the real proxy: ACLs, ranges, preconditions, copies,
expiry, chunked uploads, listings and constraints."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.object.test_cluster import Api
from tests.support import wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module")
def api(cluster) -> Api:
    return Api(*cluster.auth())


@pytest.fixture
def c(api) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    assert api.put(f"{api.base}/{name}").status_code == 201
    return f"{api.base}/{name}"


def test_info_and_trans_id(cluster):
    r = requests.get(f"{cluster.proxy_url}/info", timeout=10)
    assert r.json()["swift"]["max_object_name_length"] == 1024
    assert r.headers["x-trans-id"].startswith("tx")


def test_public_read_acl(api, cluster, c):
    api.put(f"{c}/pub", data=b"public")
    anon = Api(api.base, None)
    assert anon.get(f"{c}/pub").status_code == 401
    other = Api(api.base, cluster.auth("other:otheruser")[1])
    assert other.get(f"{c}/pub").status_code == 403
    api.post(c, headers={"X-Container-Read": ".r:*"})
    assert anon.get(f"{c}/pub").content == b"public"
    assert anon.get(c).status_code == 401  # listing needs .rlistings
    api.post(c, headers={"X-Container-Read": ".r:*,.rlistings"})
    assert anon.get(c).text == "pub\n"
    assert anon.put(f"{c}/x", data=b"x").status_code == 401
    api.post(c, headers={"X-Container-Write": "other:otheruser"})
    assert other.put(f"{c}/from-other", data=b"hi").status_code == 201
    assert api.post(c, headers={"X-Container-Read": ".bogus:x"}).status_code == 400


def test_ranges_and_preconditions(api, c):
    api.put(f"{c}/r", data=b"0123456789")
    assert api.get(f"{c}/r", headers={"Range": "bytes=2-4"}).content == b"234"
    r = api.get(f"{c}/r", headers={"Range": "bytes=0-0,-1"})
    assert r.status_code == 206 and b"\r\n0\r\n" in r.content and b"\r\n9\r\n" in r.content
    assert api.get(f"{c}/r", headers={"Range": "bytes=20-"}).status_code == 416
    head = api.head(f"{c}/r")
    assert head.headers["content-length"] == "10" and head.headers["accept-ranges"] == "bytes"
    etag, modified = head.headers["etag"], head.headers["last-modified"]
    assert api.get(f"{c}/r", headers={"If-None-Match": etag}).status_code == 304
    assert api.get(f"{c}/r", headers={"If-Match": "other"}).status_code == 412
    assert api.get(f"{c}/r", headers={"If-Modified-Since": modified}).status_code == 304
    assert api.put(f"{c}/r", data=b"x", headers={"If-None-Match": "*"}).status_code == 412


def test_copy_and_post(api, c):
    api.put(f"{c}/src", data=b"copy me", headers={"X-Object-Meta-A": "1",
                                                  "Content-Type": "text/plain"})
    r = api.put(f"{c}/dst", headers={"X-Copy-From": f"{c.rsplit('/', 1)[1]}/src",
                                     "Content-Length": "0"})
    assert r.status_code == 201, r.text
    r = api.get(f"{c}/dst")
    assert r.content == b"copy me" and r.headers["x-object-meta-a"] == "1"
    assert r.headers["content-type"] == "text/plain"
    r = api.request("COPY", f"{c}/src", headers={"Destination": f"{c.rsplit('/', 1)[1]}/dst2"})
    assert r.status_code == 201 and api.get(f"{c}/dst2").content == b"copy me"
    assert api.post(f"{c}/src", headers={"X-Object-Meta-B": "2"}).status_code == 202
    r = api.head(f"{c}/src")
    assert r.headers["x-object-meta-b"] == "2" and "x-object-meta-a" not in r.headers


def test_expiry(api, c):
    r = api.put(f"{c}/soon", data=b"x", headers={"X-Delete-After": "1"})
    assert r.status_code == 201
    assert api.put(f"{c}/past", data=b"x", headers={"X-Delete-At": "1000"}).status_code == 400
    time.sleep(1.1)
    wait_for(lambda: api.get(f"{c}/soon").status_code == 404, timeout=3, what="expiry")


def test_chunked_upload(api, c):
    r = api.put(f"{c}/chunked", data=iter([b"a" * 70000, b"b" * 5]))
    assert r.status_code == 201, r.text
    assert api.get(f"{c}/chunked").content == b"a" * 70000 + b"b" * 5
    assert api.put(f"{c}/nolen", headers={"Content-Length": None}).status_code in (201, 411)


def test_listings_and_container_lifecycle(api, c):
    for name in ("a/1", "a/2", "b", "c"):
        api.put(f"{c}/{name}", data=b"12")
    assert api.get(f"{c}?delimiter=/").text == "a/\nb\nc\n"
    assert api.get(f"{c}?prefix=a/&format=json").json()[1]["name"] == "a/2"
    assert api.get(f"{c}?marker=a/2&end_marker=c").text == "b\n"
    assert api.get(f"{c}?reverse=true&limit=2").text == "c\nb\n"
    xml = api.get(f"{c}?format=xml&delimiter=/").text
    assert '<subdir name="a/"><name>a/</name></subdir>' in xml
    assert api.get(f"{c}?limit=10001").status_code == 412
    head = api.head(c)
    assert head.headers["x-container-object-count"] == "4"
    assert head.headers["x-container-bytes-used"] == "8"
    assert api.delete(c).status_code == 409
    for name in ("a/1", "a/2", "b", "c"):
        assert api.delete(f"{c}/{name}").status_code == 204
    assert api.delete(f"{c}/b").status_code == 404
    assert api.get(c).status_code == 204
    assert api.delete(c).status_code == 204
    assert api.head(c).status_code == 404
    assert api.put(f"{c}/x", data=b"x").status_code == 404


def test_account_stats_and_metadata(api, c):
    api.put(f"{c}/stat", data=b"12345")
    assert api.post(api.base, headers={"X-Account-Meta-Team": "blue"}).status_code == 204
    name = c.rsplit("/", 1)[1]

    def listed():
        entries = api.get(f"{api.base}?format=json&prefix={name}").json()
        return entries and entries[0]["bytes"] == 5

    wait_for(listed, timeout=10, what="the account listing to catch up")
    head = api.head(api.base)
    assert head.headers["x-account-meta-team"] == "blue"
    assert int(head.headers["x-account-container-count"]) >= 1


def test_constraints(api, c):
    assert api.put(f"{api.base}/{'x' * 257}").status_code == 400
    assert api.put(f"{c}/m", data=b"x",
                   headers={"X-Object-Meta-" + "k" * 129: "v"}).status_code == 400
    assert api.put(f"{c}/m", data=b"x",
                   headers={"X-Object-Meta-K": "v" * 257}).status_code == 400
    too_big = {"Content-Length": str(6 << 30), "Connection": "close", **api.headers}
    assert requests.put(f"{c}/big", headers=too_big, timeout=10).status_code == 413
    assert api.get(f"{c}/%FF").status_code == 412
    assert api.get(f"{c}/a%00b").status_code == 412
    assert api.get(f"{api.base}x/c/o").status_code == 403  # another account
