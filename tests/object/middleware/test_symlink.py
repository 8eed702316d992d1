"""Symlinks through the real proxy: following links (and their limit), the link itself,
static links, listings, POST to a link, bad headers, and reads as the caller."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.object.middleware.test_slo import PARTS, WHOLE, put_segments
from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

EMPTY_MD5 = hashlib.md5(b"").hexdigest()


def link(api, url: str, target: str, **headers) -> None:
    r = api.put(url, data=b"", headers={"X-Symlink-Target": target, **headers})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == EMPTY_MD5


def test_links_are_followed_up_to_the_limit(api, c):
    name = c.rsplit("/", 1)[1]
    api.put(f"{c}/tgt", data=b"hello", headers={"Content-Type": "text/x-tgt"})
    for index in range(3):  # l0 -> l1 -> l2 -> tgt
        link(api, f"{c}/l{index}", f"{name}/l{index + 1}" if index < 2 else f"{name}/tgt")
    r = api.get(f"{c}/l1")
    assert r.status_code == 200 and r.content == b"hello"
    assert r.headers["content-location"] == f"/v1/{api.account}/{name}/tgt"
    assert r.headers["content-type"] == "text/x-tgt"
    assert api.get(f"{c}/l2", headers={"Range": "bytes=1-2"}).content == b"el"
    etag = r.headers["etag"]
    assert api.head(f"{c}/l2", headers={"If-Match": etag}).status_code == 200
    assert api.head(f"{c}/l2", headers={"If-None-Match": etag}).status_code == 304
    assert api.head(f"{c}/l2", headers={"If-Match": EMPTY_MD5}).status_code == 412
    r = api.get(f"{c}/l0")
    assert r.status_code == 409
    assert r.text == "Too many levels of symbolic links, maximum allowed is 2"
    r = api.head(f"{c}/l2?symlink=get")
    assert r.headers["x-symlink-target"] == f"{name}/tgt"
    assert r.headers["content-type"] == "application/symlink"
    assert r.headers["content-length"] == "0"
    assert not any(k.lower().startswith("x-object-sysmeta") for k in r.headers)
    link(api, f"{c}/broken", f"{name}/missing")
    r = api.get(f"{c}/broken")
    assert r.status_code == 404
    assert r.headers["content-location"] == f"/v1/{api.account}/{name}/missing"


def test_static_links_and_listing(api, c):
    name = c.rsplit("/", 1)[1]
    etag = api.put(f"{c}/tgt", data=b"hello").headers["etag"]
    link(api, f"{c}/soft", f"{name}/tgt")
    link(api, f"{c}/static", f"{name}/tgt", **{"X-Symlink-Target-Etag": etag})
    r = api.put(f"{c}/wrong", data=b"", headers={"X-Symlink-Target": f"{name}/tgt",
                                                "X-Symlink-Target-Etag": "nope"})
    assert r.status_code == 409
    assert r.text == f"Object Etag '{etag}' does not match X-Symlink-Target-Etag header 'nope'"
    r = api.put(f"{c}/wrong", data=b"", headers={"X-Symlink-Target": f"{name}/none",
                                                "X-Symlink-Target-Etag": etag})
    assert (r.status_code, r.text) == (409, "X-Symlink-Target does not exist")
    assert r.headers["content-location"] == f"/v1/{api.account}/{name}/none"
    listing = {e["name"]: e for e in api.get(f"{c}?format=json").json()}
    assert set(listing) == {"tgt", "soft", "static"}
    path = f"/v1/{api.account}/{name}/tgt"
    assert listing["soft"]["symlink_path"] == path and listing["soft"]["hash"] == EMPTY_MD5
    assert "symlink_etag" not in listing["soft"]
    assert listing["static"]["symlink_etag"] == etag and listing["static"]["symlink_bytes"] == 5
    assert "symlink_path" not in listing["tgt"]
    assert "symlink_" not in api.get(f"{c}?format=xml").text
    r = api.head(f"{c}/static?symlink=get")
    assert r.headers["x-symlink-target-etag"] == etag
    assert r.headers["x-symlink-target-bytes"] == "5"
    api.put(f"{c}/tgt", data=b"changed")
    r = api.get(f"{c}/static")
    assert r.status_code == 409 and r.headers["content-location"] == path
    assert api.get(f"{c}/soft").content == b"changed"


def test_post_applies_to_the_link_and_redirects(api, c):
    name = c.rsplit("/", 1)[1]
    api.put(f"{c}/tgt", data=b"hello")
    link(api, f"{c}/soft", f"{name}/tgt")
    r = api.post(f"{c}/soft", headers={"X-Object-Meta-Color": "red"}, allow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"].endswith(f"/v1/{api.account}/{name}/tgt")
    assert r.text.startswith("The requested POST was applied to a symlink.")
    assert api.head(f"{c}/soft?symlink=get").headers["x-object-meta-color"] == "red"
    assert "x-object-meta-color" not in api.head(f"{c}/tgt").headers
    assert api.get(f"{c}/soft").content == b"hello"  # still a link after the POST
    assert api.get(f"{c}?format=json").json()[0]["symlink_path"].endswith("/tgt")
    r = api.post(f"{c}/tgt", headers={"X-Symlink-Target": f"{name}/soft"})
    assert (r.status_code, r.text) == (400, "A PUT request is required to set a symlink target")


@pytest.mark.parametrize("headers, status, text", [
    ({"X-Symlink-Target": "c-only"}, 412,
     "X-Symlink-Target header must be of the form <container name>/<object name>"),
    ({"X-Symlink-Target": "/c/o"}, 412,
     "X-Symlink-Target header must be of the form <container name>/<object name>"),
    ({"X-Symlink-Target": "c/o", "X-Symlink-Target-Account": "a/b"}, 412,
     "Account name cannot contain slashes"),
    ({"X-Symlink-Target": "c/o", "X-Symlink-Target-Etag": 'a"b'}, 400,
     "Bad X-Symlink-Target-Etag format"),
])
def test_bad_headers_leave_nothing(api, c, headers, status, text):
    r = api.put(f"{c}/bad", data=b"", headers=headers)
    assert (r.status_code, r.text) == (status, text)
    assert api.head(f"{c}/bad").status_code == 404


def test_a_link_needs_an_empty_body_and_another_target(api, c):
    name = c.rsplit("/", 1)[1]
    r = api.put(f"{c}/bad", data=b"x", headers={"X-Symlink-Target": f"{name}/t"})
    assert (r.status_code, r.text) == (400, "Symlink requests require a zero byte body")
    r = api.put(f"{c}/bad", data=b"", headers={"X-Symlink-Target": f"{name}/bad"})
    assert (r.status_code, r.text) == (400, "Symlink cannot target itself")
    assert api.get(f"{c}?format=json").json() == []


def test_targets_are_read_as_the_caller(api, cluster, c):
    """A link in a container the other user may read, to one they may not: refused, both
    within the account and across accounts."""
    name = c.rsplit("/", 1)[1]
    secret = f"{name}-secret"
    assert api.put(f"{api.base}/{secret}").status_code == 201
    api.put(f"{api.base}/{secret}/tgt", data=b"secret")
    link(api, f"{c}/soft", f"{secret}/tgt")
    api.post(c, headers={"X-Container-Read": "other:otheruser"})
    other = Api(*cluster.auth("other:otheruser"))
    assert other.get(f"{c}/soft").status_code == 403
    assert other.get(f"{c}/soft?symlink=get").status_code == 200
    # The other user's own link into this account: refused too, until granted.
    mine = f"{other.base}/{name}"
    assert other.put(mine).status_code == 201
    link(other, f"{mine}/cross", f"{secret}/tgt", **{"X-Symlink-Target-Account": api.account})
    assert other.get(f"{mine}/cross").status_code == 403
    api.post(f"{api.base}/{secret}", headers={"X-Container-Read": "other:otheruser"})
    r = other.get(f"{mine}/cross")
    assert r.status_code == 200 and r.content == b"secret"
    assert r.headers["content-location"] == f"/v1/{api.account}/{secret}/tgt"


def test_copy_of_a_link_copies_its_target(api, c):
    name = c.rsplit("/", 1)[1]
    api.put(f"{c}/tgt", data=b"hello")
    link(api, f"{c}/soft", f"{name}/tgt")
    r = api.request("COPY", f"{c}/soft", headers={"Destination": f"{name}/copy"})
    assert r.status_code == 201
    assert api.get(f"{c}/copy").content == b"hello"
    assert "x-symlink-target" not in api.head(f"{c}/copy?symlink=get").headers


def test_copy_of_a_link_itself_with_symlink_get(api, c):
    """As Swift 2.38: ``?symlink=get`` copies the link (its target, static ETag and bytes),
    with the metadata the copy request gives, by COPY or by PUT with X-Copy-From."""
    name = c.rsplit("/", 1)[1]
    etag = api.put(f"{c}/tgt", data=b"hello").headers["etag"]
    link(api, f"{c}/static", f"{name}/tgt", **{"X-Symlink-Target-Etag": etag})
    r = api.request("COPY", f"{c}/static?symlink=get", headers={
        "Destination": f"{name}/by-copy", "X-Object-Meta-A": "b", "Content-Type": "text/x"})
    assert r.status_code == 201
    r = api.put(f"{c}/by-put?symlink=get", data=b"", headers={"X-Copy-From": f"{name}/static"})
    assert r.status_code == 201
    for copy in ("by-copy", "by-put"):
        r = api.head(f"{c}/{copy}?symlink=get")
        assert (r.headers["x-symlink-target"], r.headers["x-symlink-target-etag"],
                r.headers["x-symlink-target-bytes"], r.headers["content-length"]) == \
            (f"{name}/tgt", etag, "5", "0")
        assert api.get(f"{c}/{copy}").content == b"hello"
    assert api.head(f"{c}/by-copy?symlink=get").headers["x-object-meta-a"] == "b"
    listing = {e["name"]: e for e in api.get(f"{c}?format=json").json()}
    assert listing["by-put"]["symlink_path"] == f"/v1/{api.account}/{name}/tgt"
    assert listing["by-copy"]["content_type"] == "text/x"


def test_a_static_link_to_an_slo(api, c):
    """As Swift 2.38: the link's ETag is the manifest's (``X-Manifest-Etag``; the SLO's own
    is refused), its bytes the SLO's size, and its listing shows the SLO's ``slo_etag``."""
    name = c.rsplit("/", 1)[1]
    assert api.put(f"{c}/big?multipart-manifest=put",
                   data=json.dumps(put_segments(api, c, PARTS))).status_code == 201
    head = api.head(f"{c}/big")
    slo_etag, manifest_etag = head.headers["etag"].strip('"'), head.headers["x-manifest-etag"]
    r = api.put(f"{c}/wrong", data=b"", headers={"X-Symlink-Target": f"{name}/big",
                                                "X-Symlink-Target-Etag": slo_etag})
    assert (r.status_code, r.text) == (409, f"Object Etag '{manifest_etag}' does not match "
                                            f"X-Symlink-Target-Etag header '{slo_etag}'")
    link(api, f"{c}/static", f"{name}/big", **{"X-Symlink-Target-Etag": manifest_etag})
    r = api.get(f"{c}/static")
    assert r.status_code == 200 and r.content == WHOLE
    assert r.headers["etag"] == f'"{slo_etag}"'
    assert r.headers["content-location"] == f"/v1/{api.account}/{name}/big"
    r = api.head(f"{c}/static?symlink=get")
    assert r.headers["x-symlink-target-bytes"] == str(len(WHOLE))
    entry = {e["name"]: e for e in api.get(f"{c}?format=json").json()}["static"]
    assert (entry["symlink_etag"], entry["symlink_bytes"], entry["slo_etag"]) == \
        (manifest_etag, len(WHOLE), f'"{slo_etag}"')
    assert entry["hash"] == EMPTY_MD5 and entry["bytes"] == 0
    assert entry["content_type"] == head.headers["content-type"]


def test_info_advertises_symlinks(api, cluster):
    info = Api(cluster.proxy_url, None).get(f"{cluster.proxy_url}/info").json()
    assert info["symlink"] == {"symloop_max": 2, "static_links": True}
