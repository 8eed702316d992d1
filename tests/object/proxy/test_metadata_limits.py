"""Metadata at every one of Swift's limits, through the real proxy and storage nodes.

Swift's constraints (``swift/common/constraints.py``, published at ``/info``):
``max_meta_count`` 90, ``max_meta_name_length`` 128, ``max_meta_value_length`` 256,
``max_meta_overall_size`` 4096. Anything within them is stored and must read back whole —
a storage node's answer then carries over 100 headers, which ``http.client`` refuses by
default (Swift's ``common/bufferedhttp.py`` raises ``_MAXHEADERS`` for the same reason).
One past a limit is a 400; for accounts and containers the limits hold for the stored
total too (Swift's ``DatabaseBroker.validate_metadata``, called by the account and
container servers on PUT and POST).
"""

from __future__ import annotations

import uuid

import pytest
import swiftclient

from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def at_limit(kind: str) -> dict[str, dict[str, str]]:
    """Metadata sets each exactly at one limit, keyed by which."""
    prefix = f"X-{kind}-Meta-"
    return {
        "count": {f"{prefix}K{i:02d}": f"v{i}" for i in range(90)},
        "name": {f"{prefix}{'n' * 128}": "v"},
        "value": {f"{prefix}Long": "v" * 256},
        # 16 items of a 128-byte name and a 128-byte value: 4096 bytes exactly
        "size": {f"{prefix}{i:x}{'s' * 127}": "v" * 128 for i in range(16)},
    }


def one_over(kind: str) -> dict[str, dict[str, str]]:
    prefix = f"X-{kind}-Meta-"
    return {
        "count": {f"{prefix}K{i:02d}": "v" for i in range(91)},
        "name": {f"{prefix}{'n' * 129}": "v"},
        "value": {f"{prefix}Long": "v" * 257},
        "size": {f"{prefix}{i:x}{'s' * 127}": "v" * 128 + ("v" if i == 0 else "")
                 for i in range(16)},
    }


def assert_reads_back(headers, meta: dict[str, str]) -> None:
    got = {k.lower(): v for k, v in headers.items()}
    assert {k.lower(): got.get(k.lower()) for k in meta} == {k.lower(): v for k, v in
                                                            meta.items()}


@pytest.fixture(scope="module")
def conn(cluster) -> swiftclient.Connection:
    return swiftclient.Connection(f"{cluster.proxy_url}/auth/v1.0", "test:tester",
                                  "testing123", retries=0)


@pytest.fixture
def bare_account(conn):
    """The shared account without user metadata, for tests that fill it to a limit: other
    tests on the session cluster may have left some (a CORS or a quota key), which would
    count against the limit."""
    left = [k for k in conn.head_account() if k.startswith("x-account-meta-")]
    if left:
        conn.post_account({k: "" for k in left})


@pytest.mark.parametrize("limit", ["count", "name", "value", "size"])
def test_object_metadata_at_each_limit_reads_back(conn, cluster_container, limit):
    meta = at_limit("Object")[limit]
    conn.put_object(cluster_container, "o", b"data", headers=meta)
    headers, body = conn.get_object(cluster_container, "o")
    assert body == b"data"
    assert_reads_back(headers, meta)
    assert_reads_back(conn.head_object(cluster_container, "o"), meta)


@pytest.mark.parametrize("limit", ["count", "name", "value", "size"])
def test_container_metadata_at_each_limit_reads_back(conn, limit):
    name = f"m-{uuid.uuid4().hex[:8]}"
    meta = at_limit("Container")[limit]
    conn.put_container(name, headers=meta)
    assert_reads_back(conn.head_container(name), meta)
    headers, listing = conn.get_container(name)
    assert_reads_back(headers, meta) and listing == []
    assert name in [c["name"] for c in conn.get_account()[1]]


@pytest.mark.parametrize("limit", ["count", "name", "value", "size"])
def test_account_metadata_at_each_limit_reads_back(conn, bare_account, cluster_container, limit):
    meta = at_limit("Account")[limit]
    conn.post_account(meta)
    try:
        assert_reads_back(conn.head_account(), meta)
        headers, listing = conn.get_account()
        assert_reads_back(headers, meta)
        assert cluster_container in [c["name"] for c in listing]  # not an empty account
    finally:
        conn.post_account({k: "" for k in meta})
        assert not any(k.startswith("x-account-meta-") for k in conn.head_account())


@pytest.mark.parametrize("kind", ["Object", "Container", "Account"])
@pytest.mark.parametrize("limit", ["count", "name", "value", "size"])
def test_one_past_each_limit_is_400(cluster, cluster_container, kind, limit):
    api = Api(*cluster.auth())
    url = {"Object": f"{api.base}/{cluster_container}/o", "Account": api.base,
           "Container": f"{api.base}/{cluster_container}"}[kind]
    r = api.request("PUT" if kind == "Object" else "POST", url,
                    headers=one_over(kind)[limit], data=b"x" if kind == "Object" else None)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("kind", ["Container", "Account"])
def test_stored_total_over_the_limits_is_400(conn, bare_account, cluster, kind):
    """Swift's ``validate_metadata`` counts what the DB holds after the update: 90 items
    stored, one more in a later POST is ``400 Too many metadata items; max 90``; items
    removed (empty value) make room again."""
    api = Api(*cluster.auth())
    url = api.base if kind == "Account" else f"{api.base}/m-{uuid.uuid4().hex[:8]}"
    if kind == "Container":
        assert api.put(url).status_code == 201
    full = at_limit(kind)["count"]
    assert api.post(url, headers=full).status_code == 204
    try:
        r = api.post(url, headers={f"X-{kind}-Meta-One-More": "v"})
        assert r.status_code == 400 and "Too many metadata items; max 90" in r.text
        assert f"x-{kind.lower()}-meta-one-more" not in api.head(url).headers
        removed = next(iter(full))
        r = api.post(url, headers={removed: "", f"X-{kind}-Meta-One-More": "v"})
        assert r.status_code == 204
    finally:  # a request may name at most 90 items, removals included
        api.post(url, headers={f"X-{kind}-Meta-One-More": ""})
        assert api.post(url, headers={k: "" for k in full}).status_code == 204
