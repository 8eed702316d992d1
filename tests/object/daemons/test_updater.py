"""The updater on the real cluster: a listing update that could not reach a stopped
container node is replayed from its async-pending record once the node is back."""

from __future__ import annotations

import pytest
import requests

from soko.object.daemons.db_replicator import DBReplicator
from soko.object.daemons.updater import Updater
from soko.object.node.diskfile import name_hash
from tests.object.inprocess_daemons import ring, run_pass

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def pending_for(cluster, account, container, obj) -> list:
    digest = name_hash(account, container, obj)
    return list(cluster.data_dir.glob(f"object/devices/node*/d*/async_pending/{digest[-3:]}/"
                                      f"{digest}-*"))


def listed_on(cluster, node: int, account, container) -> list[str]:
    container_ring = ring(cluster, "container")
    part, nodes = container_ring.get_nodes(account, container)
    (dev,) = [n for n in nodes if n["port"] == cluster.storage_port + node]
    r = requests.get(f"http://127.0.0.1:{dev['port']}/container/{dev['device']}/{part}/"
                     f"{account}/{container}", timeout=5)
    assert r.status_code == 200, r.text
    return [e["name"] for e in r.json()]


def test_async_pending_is_replayed(cluster, cluster_api, cluster_container):
    api, container = cluster_api, cluster_container
    run_pass(cluster, DBReplicator)  # the container on every primary (even if the proxy
    # skipped node 2 as recently failed when it made the container)
    with cluster.node_stopped(2):
        assert api.put(f"{api.base}/{container}/late", data=b"late").status_code == 201
    records = pending_for(cluster, api.account, container, "late")
    assert len(records) == 1
    assert "late" not in listed_on(cluster, 2, api.account, container)
    stats = run_pass(cluster, Updater)
    assert sum(s["successes"] for s in stats) >= 1
    assert pending_for(cluster, api.account, container, "late") == []
    assert "late" in listed_on(cluster, 2, api.account, container)
