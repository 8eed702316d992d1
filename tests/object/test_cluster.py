"""Integration: the Swift API through a real proxy onto 3 real storage nodes."""

from __future__ import annotations

import hashlib

import pytest
import requests

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module")
def api(cluster):
    url, token = cluster.auth()
    session = requests.Session()
    session.headers["X-Auth-Token"] = token
    session.base = url
    return session


def test_put_get_roundtrip(api, cluster):
    assert api.put(f"{api.base}/c1").status_code == 201
    body = b"x" * 1000
    r = api.put(f"{api.base}/c1/o1", data=body, headers={"X-Object-Meta-Color": "red"})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == hashlib.md5(body).hexdigest()
    r = api.get(f"{api.base}/c1/o1")
    assert r.content == body and r.headers["x-object-meta-color"] == "red"
    account = api.base.rsplit("/", 1)[1]
    assert len(cluster.object_files(account, "c1", "o1")) == 3
    assert api.get(f"{api.base}/c1?format=json").json()[0]["name"] == "o1"
