"""``/crossdomain.xml`` through the real proxy, and rate limits: the proxy app built in
process from the session cluster's config with limits added (the cluster's own proxy has
none, as Swift's default), on the cluster's real storage nodes."""

from __future__ import annotations

import uuid

import falcon.testing
import pytest
import requests

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def test_crossdomain_policy_as_swift_serves_it(cluster):
    r = requests.get(f"{cluster.proxy_url}/crossdomain.xml", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"] == "application/xml"
    assert r.text == ('<?xml version="1.0"?>\n<!DOCTYPE cross-domain-policy SYSTEM '
                      '"http://www.adobe.com/xml/dtds/cross-domain-policy.dtd" >\n'
                      '<cross-domain-policy>\n<allow-access-from domain="*" secure="false" />\n'
                      '</cross-domain-policy>')
    assert requests.post(f"{cluster.proxy_url}/crossdomain.xml", timeout=10).status_code == 412
    info = requests.get(f"{cluster.proxy_url}/info", timeout=10).json()
    assert info["crossdomain"] == {}
    assert info["ratelimit"] == {"account_ratelimit": 0.0, "max_sleep_time_seconds": 60.0,
                                 "container_ratelimits": [], "container_listing_ratelimits": []}


@pytest.fixture(scope="module")
def limited(inprocess_proxy) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(inprocess_proxy(
        account_ratelimit=1.0, container_ratelimits=[[1, 1.0]], max_sleep_time_seconds=0.5,
        cross_domain_policy="<allow-none />"))


def test_writes_over_the_rate_are_refused_with_498(cluster, limited):
    url, token = cluster.auth()
    path, auth = url.split("/", 3)[3], {"X-Auth-Token": token}
    assert limited.simulate_get("/crossdomain.xml").text.count("<allow-none />") == 1
    container = f"/{path}/rl-{uuid.uuid4().hex[:6]}"
    assert limited.simulate_put(container, headers=auth).status_code == 201
    r = limited.simulate_put(container + "-2", headers=auth)  # 1 per second per account
    assert (r.status_code, r.text) == (498, "Slow down")
    # an empty container's objects are not limited (as Swift); from one object on, 1/s
    assert limited.simulate_put(container + "/a", headers=auth, body=b"a").status_code == 201
    assert limited.simulate_put(container + "/b", headers=auth, body=b"b").status_code == 201
    r = limited.simulate_put(container + "/c", headers=auth, body=b"c")
    assert (r.status_code, r.text) == (498, "Slow down")
    assert limited.simulate_get(container, headers=auth).text.split() == ["a", "b"]
