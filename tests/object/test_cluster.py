"""Integration: the Swift API through a real proxy onto 3 real storage nodes."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest
import requests

from soko.object.shared.rings import load_rings
from soko.object.shared.timestamps import Timestamp
from soko.ring.ring import Ring

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


class Api(requests.Session):
    def __init__(self, url: str, token: str | None):
        super().__init__()
        self.base = url
        if token:
            self.headers["X-Auth-Token"] = token

    @property
    def account(self) -> str:
        return self.base.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def api(cluster) -> Api:
    return Api(*cluster.auth())


@pytest.fixture
def container(api) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    assert api.put(f"{api.base}/{name}").status_code == 201
    return name


def object_ring(cluster) -> Ring:
    """The object ring salted as the cluster's proxy salts it (object/shared/hash_secret.py)."""
    return load_rings(cluster.config)["object"]


def test_put_get_roundtrip(api, cluster, container):
    body = b"x" * 1000
    r = api.put(f"{api.base}/{container}/o1", data=body, headers={"X-Object-Meta-Color": "red"})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == hashlib.md5(body).hexdigest()
    r = api.get(f"{api.base}/{container}/o1")
    assert r.content == body and r.headers["x-object-meta-color"] == "red"
    assert len(cluster.object_files(api.account, container, "o1")) == 3
    listing = api.get(f"{api.base}/{container}?format=json").json()
    assert [e["name"] for e in listing] == ["o1"] and listing[0]["bytes"] == 1000


def test_quorum_with_a_node_down_lands_on_a_handoff(api, cluster, container):
    ring = object_ring(cluster)
    name = next(f"o{i}" for i in range(1000)
                if ring.get_nodes(api.account, container, f"o{i}")[1][0]["port"]
                == cluster.storage_port)  # node 0 holds a primary
    part, primaries = ring.get_nodes(api.account, container, name)
    with cluster.node_stopped(0):
        r = api.put(f"{api.base}/{container}/{name}", data=b"handoff")
        assert r.status_code == 201, r.text
        assert api.get(f"{api.base}/{container}/{name}").content == b"handoff"
    primary_devices = {n["device"] for n in primaries}
    holders = {p.parts[-6] for p in cluster.object_files(api.account, container, name)}
    assert len(holders) == 3 and holders - primary_devices  # one copy on a handoff
    assert not any(p.parts[-7] == "node0" for p in cluster.object_files(
        api.account, container, name))


def test_get_with_a_node_down(api, cluster, container):
    api.put(f"{api.base}/{container}/g", data=b"still here")
    for node in range(3):
        with cluster.node_stopped(node):
            assert api.get(f"{api.base}/{container}/g").content == b"still here"


def test_conflicting_writes_resolve_by_timestamp(api, cluster, container):
    _, primaries = object_ring(cluster).get_nodes(api.account, container, "race")
    part = object_ring(cluster).get_part(api.account, container, "race")
    now = time.time()
    older, newer = Timestamp.parse(now), Timestamp.parse(now + 1)
    for index, node in enumerate(primaries):
        order = [(older, b"old"), (newer, b"new")] if index % 2 else \
            [(newer, b"new"), (older, b"old")]
        for ts, body in order:
            requests.put(f"http://{node['ip']}:{node['port']}/object/{node['device']}/{part}/"
                         f"{api.account}/{container}/race", data=body,
                         headers={"X-Timestamp": ts.normal}, timeout=10)
        direct = requests.get(f"http://{node['ip']}:{node['port']}/object/{node['device']}/"
                              f"{part}/{api.account}/{container}/race", timeout=10)
        assert direct.content == b"new"
    r = api.get(f"{api.base}/{container}/race", headers={"X-Newest": "true"})
    assert r.content == b"new"
    assert len(cluster.object_files(api.account, container, "race")) == 3


def test_rejected_puts_leave_no_file(api, cluster, container):
    url = f"{api.base}/{container}"
    assert api.put(f"{url}/bad-etag", data=b"abc", headers={"ETag": "0" * 32}).status_code == 422
    assert api.put(f"{url}/{'n' * 1025}", data=b"abc").status_code == 400
    meta = {f"X-Object-Meta-K{i}": "v" * 200 for i in range(25)}
    assert api.put(f"{url}/too-much-meta", data=b"abc", headers=meta).status_code == 400
    for name in ("bad-etag", "n" * 1025, "too-much-meta"):
        assert cluster.object_files(api.account, container, name) == []
    assert not any(p.is_file() for p in cluster.data_dir.glob("object/devices/node*/d*/tmp/*"))


def test_missing_device_is_507_and_never_written(api, cluster, container):
    ring = object_ring(cluster)
    part, primaries = ring.get_nodes(api.account, container, "dev")
    node = primaries[0]
    device = cluster.node_devices(node["port"] - cluster.storage_port) / node["device"]
    hidden = device.with_name(device.name + ".gone")
    device.rename(hidden)
    try:
        r = requests.put(f"http://127.0.0.1:{node['port']}/object/{node['device']}/{part}/"
                         f"{api.account}/{container}/dev", data=b"x",
                         headers={"X-Timestamp": Timestamp.now().normal}, timeout=10)
        assert r.status_code == 507
        assert api.put(f"{api.base}/{container}/dev", data=b"x").status_code == 201
        assert not device.exists()
        assert len(cluster.object_files(api.account, container, "dev")) == 3  # a handoff
    finally:
        hidden.rename(device)
