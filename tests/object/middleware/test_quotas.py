"""Container and account quotas through the real proxy: set only by who may, bad values
refused with nothing changed, and every kind of write that would go over (PUT, copy, SLO
manifest, archive extraction) refused with Swift's 413 and nothing stored."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import uuid

import pytest
import requests

from soko.object.shared.rings import load_rings
from tests.object.test_cluster import Api
from tests.support import wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

EXCEEDED = "Upload exceeds quota."
RESELLER = ("ops:reseller", "resellerpass1", "ResellerAdmin")  # as tests/object/proxy's


def listing(api, url: str) -> list[str]:
    return [e["name"] for e in api.get(f"{url}?format=json").json()]


def test_info_advertises_both(cluster):
    info = requests.get(f"{cluster.proxy_url}/info", timeout=10).json()
    assert info["container_quotas"] == {} and info["account_quotas"] == {}


def test_container_quota_values_are_whole_numbers(api, c):
    assert api.post(c, headers={"X-Container-Meta-Quota-Bytes": "100"}).status_code == 204
    for header, value, text in [("Bytes", "abc", "Invalid bytes quota."),
                                ("Bytes", "-1", "Invalid bytes quota."),
                                ("Count", "1.5", "Invalid count quota.")]:
        r = api.post(c, headers={f"X-Container-Meta-Quota-{header}": value})
        assert (r.status_code, r.text) == (400, text)
        assert r.headers["content-type"] == "text/html; charset=UTF-8"
    r = api.put(f"{c}-new", headers={"X-Container-Meta-Quota-Count": "x"})
    assert r.status_code == 400 and api.head(f"{c}-new").status_code == 404
    head = api.head(c).headers
    assert head["x-container-meta-quota-bytes"] == "100"
    assert "x-container-meta-quota-count" not in head


def test_container_quota_refuses_every_write_that_would_exceed(api, c):
    name = c.rsplit("/", 1)[1]
    # The quota is set before the first write (see the account test).
    assert api.post(c, headers={"X-Container-Meta-Quota-Bytes": "100"}).status_code == 204
    assert api.put(f"{c}/seg", data=b"s" * 30).status_code == 201
    assert api.put(f"{c}/a", data=b"a" * 60).status_code == 201  # 90 of 100
    r = api.put(f"{c}/b", data=b"b" * 11)
    assert (r.status_code, r.text) == (413, EXCEEDED)
    assert r.headers["content-type"] == "text/html; charset=UTF-8"
    assert api.put(f"{c}/c", data=b"c" * 10).status_code == 201  # exactly 100
    # a copy counts its source's size, however it is asked for
    r = api.put(f"{c}/copied", headers={"X-Copy-From": f"{name}/seg"})
    assert (r.status_code, r.text) == (413, EXCEEDED)
    r = api.request("COPY", f"{c}/seg", headers={"Destination": f"{name}/copied"})
    assert r.status_code == 413
    # a manifest counts its own bytes (as Swift: the quota sees the request, before SLO)
    manifest = json.dumps([{"path": f"/{name}/seg", "etag": hashlib.md5(b"s" * 30).hexdigest(),
                            "size_bytes": 30}])
    r = api.put(f"{c}/man?multipart-manifest=put", data=manifest)
    assert (r.status_code, r.text) == (413, EXCEEDED)
    assert listing(api, c) == ["a", "c", "seg"]
    # an anonymous writer is told it may not write, not what the quota is
    r = requests.put(f"{c}/anon", data=b"x" * 200, timeout=10)
    assert r.status_code == 401
    assert api.post(c, headers={"X-Container-Meta-Quota-Count": "3"}).status_code == 204
    r = api.post(c, headers={"X-Remove-Container-Meta-Quota-Bytes": "x"})
    assert r.status_code == 204
    assert api.put(f"{c}/d", data=b"").status_code == 413  # 3 objects already
    assert listing(api, c) == ["a", "c", "seg"]


def test_container_quota_applies_to_each_file_of_an_archive(api, c):
    name = c.rsplit("/", 1)[1]
    assert api.post(c, headers={"X-Container-Meta-Quota-Count": "1"}).status_code == 204
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for member in ("one", "two"):
            info = tarfile.TarInfo(f"{name}/{member}")
            info.size = 3
            archive.addfile(info, io.BytesIO(b"abc"))
    r = api.put(f"{api.base}?extract-archive=tar", data=out.getvalue())
    assert r.text == ("Number Files Created: 1\nResponse Body: \n"
                      "Response Status: 400 Bad Request\n"
                      f"Errors:\n{name}/two, 413 Request Entity Too Large\n")
    assert listing(api, c) == ["one"]


@pytest.fixture(scope="module")
def accounts(cluster) -> tuple[Api, Api]:
    """An account of its own (quotas on it must not cap other tests), and a reseller."""
    cluster.add_user("quota:quotaowner", "quotapass1", "member")  # names are global
    cluster.add_user(*RESELLER)
    owner = Api(*cluster.auth("quota:quotaowner"))
    return owner, Api(owner.base, cluster.auth(RESELLER[0])[1])


def usage_on_every_replica(cluster, owner: Api) -> int | None:
    """The account's bytes used once all its replicas agree on a non-zero figure."""
    account = owner.base.rsplit("/", 1)[1]
    part, nodes = load_rings(cluster.config)["account"].get_nodes(account)
    used = {requests.head(f"http://{n['ip']}:{n['port']}/account/{n['device']}/{part}/{account}",
                          timeout=10).headers.get("X-Account-Bytes-Used") for n in nodes}
    return int(used.pop()) if len(used) == 1 and None not in used and "0" not in used else None


def test_account_quota_set_only_by_a_reseller_and_enforced(accounts, cluster):
    owner, reseller = accounts
    for header in ("X-Account-Meta-Quota-Bytes", "X-Account-Quota-Bytes",
                   "X-Remove-Account-Meta-Quota-Bytes"):
        r = owner.post(owner.base, headers={header: "1000000"})
        assert r.status_code == 403 and "<h1>Forbidden</h1>" in r.text
    r = reseller.post(owner.base, headers={"X-Account-Meta-Quota-Bytes": "ten"})
    assert r.status_code == 400
    assert "x-account-meta-quota-bytes" not in owner.head(owner.base).headers
    # Set before the first write: a worker that saw the account without a quota trusts
    # that for container_info_ttl (the proxy has two workers).
    r = reseller.post(owner.base, headers={"X-Account-Meta-Quota-Bytes": "1000000"})
    assert r.status_code == 204
    container = f"{owner.base}/q-{uuid.uuid4().hex[:6]}"
    assert owner.put(container).status_code == 201
    assert owner.put(f"{container}/first", data=b"x" * 40).status_code == 201
    # The account's usage is reported by its containers after the write, replica by replica
    # (as in Swift), and a write's quota check reads whichever replica answers: the quota
    # below is set against the usage once every replica counts the first object.
    used = wait_for(lambda: usage_on_every_replica(cluster, owner),
                    what="every account replica to count the first object")
    r = reseller.post(owner.base, headers={"X-Account-Quota-Bytes": str(used + 10)})
    assert r.status_code == 204
    head = owner.head(owner.base).headers
    assert head["x-account-quota-bytes"] == head["x-account-meta-quota-bytes"] == str(used + 10)
    r = owner.put(f"{container}/over", data=b"x" * 11)
    assert (r.status_code, r.text) == (413, EXCEEDED)
    assert owner.put(f"{container}/fits", data=b"x" * 10).status_code == 201
    assert reseller.put(f"{container}/by-reseller", data=b"x" * 11).status_code == 201
    assert listing(owner, container) == ["by-reseller", "first", "fits"]
    r = reseller.post(owner.base, headers={"X-Remove-Account-Quota-Bytes": "x"})
    assert r.status_code == 204
    assert "x-account-quota-bytes" not in owner.head(owner.base).headers
    assert owner.put(f"{container}/over", data=b"x" * 11).status_code == 201
