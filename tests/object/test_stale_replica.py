"""A replica that missed a write while its node was down must not answer for the object.

The loopback cluster runs no replicator, so the node comes back with exactly what it had:
its old copies stay stale for the whole test, as they would until the next replicator pass.
"""

from __future__ import annotations

import pytest

from soko.object.shared.rings import load_rings

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

NODE = 2  # the node that is down during the writes


def names_on_node(cluster, api, container: str, count: int) -> list[str]:
    """``count`` object names one of whose primaries lives on ``NODE``."""
    ring = load_rings(cluster.config)["object"]
    port = cluster.storage_port + NODE
    names = (f"o{i}" for i in range(10_000))
    return [n for n in names if any(
        d["port"] == port for d in ring.get_nodes(api.account, container, n)[1])][:count]


def stale_copies(cluster, api, container: str, name: str) -> list:
    return [p for p in cluster.object_files(api.account, container, name)
            if p.is_relative_to(cluster.node_devices(NODE))]


def test_objects_deleted_while_a_node_was_down_stay_deleted(cluster, cluster_api,
                                                           cluster_container):
    api, url = cluster_api, f"{cluster_api.base}/{cluster_container}"
    names = names_on_node(cluster, api, cluster_container, 30)
    for name in names:
        assert api.put(f"{url}/{name}", data=name.encode()).status_code == 201
    with cluster.node_stopped(NODE):
        for name in names:
            assert api.delete(f"{url}/{name}").status_code == 204
    assert all(stale_copies(cluster, api, cluster_container, n) for n in names)

    came_back = [n for n in names if api.get(f"{url}/{n}").status_code != 404]
    assert came_back == [], f"{len(came_back)} of {len(names)} deleted objects came back"
    for name in names[:10]:
        assert api.head(f"{url}/{name}").status_code == 404
        for method in (api.get, api.head):
            assert method(f"{url}/{name}", headers={"X-Newest": "true"}).status_code == 404
        copy = api.put(f"{url}/copy-{name}", headers={"X-Copy-From": f"/{cluster_container}/{name}"})
        assert copy.status_code == 404


def test_a_write_missed_by_a_node_is_never_read_back_stale(cluster, cluster_api,
                                                          cluster_container):
    """An overwrite and a metadata POST made while the node was down: every read sees them."""
    api, url = cluster_api, f"{cluster_api.base}/{cluster_container}"
    overwritten, posted = names_on_node(cluster, api, cluster_container, 2)
    for name in (overwritten, posted):
        r = api.put(f"{url}/{name}", data=b"old", headers={"X-Object-Meta-Color": "red"})
        assert r.status_code == 201
    with cluster.node_stopped(NODE):
        assert api.put(f"{url}/{overwritten}", data=b"new").status_code == 201
        assert api.post(f"{url}/{posted}",
                        headers={"X-Object-Meta-Color": "blue"}).status_code == 202
    for _ in range(15):
        assert api.get(f"{url}/{overwritten}").content == b"new"
        r = api.get(f"{url}/{posted}")
        assert (r.content, r.headers.get("x-object-meta-color")) == (b"old", "blue")
        assert api.head(f"{url}/{posted}").headers.get("x-object-meta-color") == "blue"
    r = api.get(f"{url}/{overwritten}", headers={"X-Newest": "true", "Range": "bytes=1-"})
    assert (r.status_code, r.content) == (206, b"ew")
