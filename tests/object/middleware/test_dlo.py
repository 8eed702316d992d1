"""Dynamic large objects through the real proxy: X-Object-Manifest GET, HEAD, ranges,
conditions, the manifest itself, and a bad manifest header."""

from __future__ import annotations

import hashlib

import pytest

from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

PARTS = [b"x" * 3, b"y" * 4, b"z" * 5]
WHOLE = b"".join(PARTS)


def dlo(api, c: str) -> str:
    for index, data in enumerate(PARTS):
        api.put(f"{c}/segs/{index:02d}", data=data)
    api.put(f"{c}/segsX", data=b"not under the prefix")
    name = c.rsplit("/", 1)[1]
    r = api.put(f"{c}/dlo", data=b"", headers={"X-Object-Manifest": f"{name}/segs/"})
    assert r.status_code == 201, r.text
    return f"{c}/dlo"


def test_get_head_concatenate_the_listing(api, c):
    url = dlo(api, c)
    joined = "".join(hashlib.md5(p).hexdigest() for p in PARTS)
    etag = f'"{hashlib.md5(joined.encode()).hexdigest()}"'
    r = api.get(url)
    assert r.status_code == 200 and r.content == WHOLE and r.headers["etag"] == etag
    assert r.headers["x-object-manifest"].endswith("/segs/")
    head = api.head(url)
    assert head.headers["content-length"] == str(len(WHOLE)) and head.headers["etag"] == etag
    assert api.get(url, headers={"If-None-Match": etag}).status_code == 304
    api.put(f"{c}/segs/03", data=b"!")  # a new segment joins at once
    assert api.get(url).content == WHOLE + b"!"


def test_ranges(api, c):
    url = dlo(api, c)
    for first, last in [(2, 4), (0, 11), (3, 6), (7, 7), (5, 11)]:
        r = api.get(url, headers={"Range": f"bytes={first}-{last}"})
        assert r.status_code == 206 and r.content == WHOLE[first:last + 1], (first, last)
        assert r.headers["content-range"] == f"bytes {first}-{last}/{len(WHOLE)}"
    assert api.get(url, headers={"Range": "bytes=-3"}).content == WHOLE[-3:]
    assert api.get(url, headers={"Range": "bytes=40-"}).status_code == 416


def test_manifest_get_and_bad_header(api, c):
    url = dlo(api, c)
    r = api.get(f"{url}?multipart-manifest=get")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["etag"] == hashlib.md5(b"").hexdigest()
    r = api.put(f"{c}/bad", data=b"", headers={"X-Object-Manifest": "nosep"})
    assert r.status_code == 400
    assert r.text == "X-Object-Manifest must be in the format container/prefix"
    assert api.head(f"{c}/bad").status_code == 404
    name = c.rsplit("/", 1)[1]
    r = api.put(f"{c}/empty", data=b"", headers={"X-Object-Manifest": f"{name}/none-"})
    assert api.get(f"{c}/empty").content == b""


def test_segments_need_the_callers_read_access(api, cluster, c):
    """A DLO in a readable container, naming a container the reader may not list: the
    reader gets no segment bytes (sub-requests act as the caller)."""
    url = dlo(api, c)
    other = Api(api.base, cluster.auth("other:otheruser")[1])
    assert other.get(url).status_code == 403
    api.post(c, headers={"X-Container-Read": "other:otheruser"})
    assert other.get(url).content == WHOLE
    anon = Api(api.base, None)
    api.post(c, headers={"X-Container-Read": ".r:*"})  # objects, not listings
    assert anon.get(url).status_code in (401, 403)


def test_copy_of_a_dlo_is_the_whole_object(api, c):
    url = dlo(api, c)
    name = c.rsplit("/", 1)[1]
    r = api.put(f"{c}/flat", headers={"X-Copy-From": f"{name}/dlo"})
    assert r.status_code == 201, r.text
    r = api.get(f"{c}/flat")
    assert r.content == WHOLE and "x-object-manifest" not in r.headers
    r = api.request("COPY", f"{url}?multipart-manifest=get",
                    headers={"Destination": f"{name}/manifest-copy"})
    assert r.status_code == 201
    assert api.get(f"{c}/manifest-copy").content == WHOLE  # still a DLO
    assert api.get(f"{c}/manifest-copy?multipart-manifest=get").content == b""
