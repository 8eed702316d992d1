"""The expirer on the real cluster: an object past its X-Delete-At is gone from every
replica's disk (a tombstone at the X-Delete-At time) and from the listing."""

from __future__ import annotations

import time

import pytest

from soko.object.daemons.auditor import Auditor
from soko.object.daemons.db_replicator import DBReplicator
from soko.object.daemons.expirer import Expirer
from soko.object.daemons.replicator import ObjectReplicator
from soko.object.node.diskfile import name_hash
from tests.object.daemons.test_updater import listed_on
from tests.object.inprocess_daemons import run_pass

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def test_expired_object_leaves_disk_and_listing(cluster, cluster_api, cluster_container):
    api, container = cluster_api, cluster_container
    delete_at = int(time.time()) + 5  # room for one expirer pass before it expires
    r = api.put(f"{api.base}/{container}/brief", data=b"soon gone",
                headers={"X-Delete-At": str(delete_at)})
    assert r.status_code == 201
    assert sum(s["expired"] for s in run_pass(cluster, Expirer)) == 0  # not yet
    api.put(f"{api.base}/{container}/stays", data=b"here")
    # Copies the proxy put on handoffs (a node error-limited by an earlier test) go home:
    # the objects, and the container DB the listing checks below read on every primary.
    run_pass(cluster, ObjectReplicator)
    run_pass(cluster, DBReplicator)
    time.sleep(max(0.0, delete_at - time.time()) + 0.2)
    stats = run_pass(cluster, Expirer)
    assert sum(s["expired"] for s in stats) == 3
    assert cluster.object_files(api.account, container, "brief") == []
    digest = name_hash(api.account, container, "brief")
    names = {p.name for p in cluster.data_dir.glob(
        f"object/devices/node*/d*/objects/*/{digest[-3:]}/{digest}/*")}
    assert names == {f"{delete_at:010d}.00000.ts"}  # the same tombstone on every replica
    listing = [e["name"] for e in api.get(f"{api.base}/{container}?format=json").json()]
    assert listing == ["stays"]
    for node in range(3):
        assert listed_on(cluster, node, api.account, container) == ["stays"]
    assert sum(s["expired"] for s in run_pass(cluster, Expirer)) == 0


def test_an_index_entry_lost_is_restored_by_the_auditor(cluster, cluster_api, cluster_container):
    api, container = cluster_api, cluster_container
    delete_at = int(time.time()) + 2
    r = api.put(f"{api.base}/{container}/unindexed", data=b"x",
                headers={"X-Delete-At": str(delete_at)})
    assert r.status_code == 201
    digest = name_hash(api.account, container, "unindexed")
    entries = list(cluster.data_dir.glob(f"object/devices/node*/d*/expiring/*/*-{digest}"))
    assert len(entries) == 3  # one per replica
    for entry in entries:
        entry.unlink()  # as after a crash: the index is not fsynced
    time.sleep(max(0.0, delete_at - time.time()) + 0.2)
    run_pass(cluster, Expirer)
    assert len(cluster.object_files(api.account, container, "unindexed")) == 3  # unseen
    assert api.get(f"{api.base}/{container}/unindexed").status_code == 404  # yet expired
    run_pass(cluster, Auditor, auditor_files_per_second=0, auditor_bytes_per_second=0)
    assert sum(s["expired"] for s in run_pass(cluster, Expirer)) == 3
    assert cluster.object_files(api.account, container, "unindexed") == []
