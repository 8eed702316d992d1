"""The object replicator on the real 3-node cluster: missed writes come back, deletes stay
deleted, handoffs go home, and an unchanged cluster costs a pass nothing."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from soko.object.daemons.replicator import ObjectReplicator
from soko.object.node.diskfile import DiskFile
from soko.object.node.suffixes import INVALID_FILE, get_hashes
from soko.object.shared.timestamps import Timestamp
from tests.object.inprocess_daemons import node_context, ring, run_pass

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def object_on_node(cluster, api, container, node: int) -> tuple[str, list[dict]]:
    """A fresh object name one of whose primaries is on ``node``, and its primaries."""
    object_ring = ring(cluster, "object")
    for i in range(1000):
        name = f"o-{uuid.uuid4().hex[:6]}-{i}"
        _, primaries = object_ring.get_nodes(api.account, container, name)
        if any(p["port"] == cluster.storage_port + node for p in primaries):
            return name, primaries
    raise AssertionError("no object maps to the node")


def holders(cluster, api, container, name, kind="data") -> set[str]:
    """``node<N>/<device>`` of every device holding a ``.<kind>`` file of the object."""
    from soko.object.node.diskfile import name_hash

    digest = name_hash(api.account, container, name)
    return {f"{p.parts[-7]}/{p.parts[-6]}" for p in cluster.data_dir.glob(
        f"object/devices/node*/d*/objects/*/{digest[-3:]}/{digest}/*.{kind}")}


def primary_places(cluster, primaries) -> set[str]:
    return {f"node{p['port'] - cluster.storage_port}/{p['device']}" for p in primaries}


def replicate_all(cluster) -> list[dict]:
    return run_pass(cluster, ObjectReplicator)


def test_missed_write_returns_and_handoff_goes_home(cluster_api, cluster, cluster_container):
    api, container = cluster_api, cluster_container
    name, primaries = object_on_node(cluster, api, container, 0)
    with cluster.node_stopped(0):
        assert api.put(f"{api.base}/{container}/{name}", data=b"missed").status_code == 201
    before = holders(cluster, api, container, name)
    assert len(before) == 3 and before != primary_places(cluster, primaries)  # one handoff
    stats = replicate_all(cluster)
    assert sum(s["objects_moved"] for s in stats) >= 1
    assert sum(s["handoffs_reverted"] for s in stats) >= 1
    assert holders(cluster, api, container, name) == primary_places(cluster, primaries)


def test_delete_while_down_stays_deleted(cluster_api, cluster, cluster_container):
    api, container = cluster_api, cluster_container
    name, primaries = object_on_node(cluster, api, container, 1)
    assert api.put(f"{api.base}/{container}/{name}", data=b"doomed").status_code == 201
    replicate_all(cluster)  # every copy on its primary, whichever nodes the proxy picked
    assert holders(cluster, api, container, name) == primary_places(cluster, primaries)
    with cluster.node_stopped(1):
        assert api.delete(f"{api.base}/{container}/{name}").status_code == 204
    assert len(holders(cluster, api, container, name)) == 1  # the node that was down
    replicate_all(cluster)
    assert holders(cluster, api, container, name) == set()
    assert holders(cluster, api, container, name, "ts") == primary_places(cluster, primaries)
    r = api.get(f"{api.base}/{container}/{name}", headers={"X-Newest": "true"})
    assert r.status_code == 404


def test_second_pass_moves_nothing(cluster_api, cluster, cluster_container):
    api, container = cluster_api, cluster_container
    for i in range(5):
        api.put(f"{api.base}/{container}/s{i}", data=b"x" * i)
    replicate_all(cluster)
    stats = replicate_all(cluster)
    assert sum(s["partitions"] for s in stats) > 0
    assert [s["suffixes_synced"] + s["bytes_moved"] + s["failures"] for s in stats] == [0] * 3


def test_suffix_hashes_are_cached_and_invalidated_by_writes(xfs_dir):
    device = xfs_dir / "d0"
    part_dir = device / "objects" / "7"
    df = DiskFile(device, "7", "AUTH_a", "c", "o")
    now = time.time()
    df.write_marker(Timestamp.parse(now), "ts", {"X-Timestamp": "1"})
    first = get_hashes(part_dir)
    assert list(first) == [df.hash_dir.parent.name]
    assert (part_dir / INVALID_FILE).read_bytes() == b""
    assert get_hashes(part_dir) == first  # cached, nothing invalid
    df.write_marker(Timestamp.parse(now + 1), "ts", {"X-Timestamp": "2"})
    assert (part_dir / INVALID_FILE).read_bytes() != b""
    assert get_hashes(part_dir) != first


def test_old_tombstones_are_reclaimed(xfs_dir):
    device = xfs_dir / "d0"
    df = DiskFile(device, "3", "AUTH_a", "c", "gone")
    df.write_marker(Timestamp.parse(1_000_000_000), "ts", {"X-Timestamp": "1"})
    assert get_hashes(device / "objects" / "3", reclaim_age=86400) == {}
    assert not df.hash_dir.exists()


def test_a_pass_sweeps_temp_files_a_crash_left(cluster):
    tmp_dir = cluster.node_devices(0) / "d0" / "tmp"
    tmp_dir.mkdir(exist_ok=True)
    stale, fresh = tmp_dir / ".tmp-crashed", tmp_dir / ".tmp-uploading"
    stale.write_bytes(b"half an object")
    fresh.write_bytes(b"an upload in progress")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    try:
        run_pass(cluster, ObjectReplicator, 0)
        assert not stale.exists() and fresh.exists()
    finally:
        fresh.unlink()


def test_idle_passes_skip_unchanged_partitions_yet_a_quarantined_object_comes_back(
        cluster_api, cluster, cluster_container):
    """An idle pass costs what changed (#19, ``sync_memory``): with each node's replicator
    kept across passes, as the daemon process keeps it, an unchanged partition asks no peer.
    Replication is push-only, so the skipping must not stop a good copy reaching a node
    whose own copy the auditor quarantined: that node's pass finds the suffix differs and
    asks the peers to look (``sync.requested``), and their next pass pushes the object."""
    api, container = cluster_api, cluster_container
    name, primaries = object_on_node(cluster, api, container, 2)
    assert api.put(f"{api.base}/{container}/{name}", data=b"keep me").status_code == 201
    replicators = [ObjectReplicator(node_context(cluster, n)) for n in range(3)]

    def pass_all() -> list[dict]:
        return [r.run_once() for r in replicators]

    pass_all()
    pass_all()  # a node's own first pass may have pushed to the others: they settle here
    idle = pass_all()
    assert sum(s["partitions"] for s in idle) == 0
    assert sum(s["partitions_skipped"] for s in idle) > 0

    part, _ = ring(cluster, "object").get_nodes(api.account, container, name)
    (device,) = [p["device"] for p in primaries if p["port"] == cluster.storage_port + 2]
    DiskFile(cluster.node_devices(2) / device, str(part), api.account, container,
             name).quarantine()
    assert f"node2/{device}" not in holders(cluster, api, container, name)
    pass_all()  # node 2's partition changed: it asks the others
    pass_all()  # they were asked: one of them pushes
    assert holders(cluster, api, container, name) == primary_places(cluster, primaries)


def test_verifies_are_batched_and_a_lost_partition_returns(cluster_api, cluster,
                                                           cluster_container):
    """A partition unchanged here is still verified with every peer within
    ``replicator_verify_interval`` (here 0.05 s), all of a peer device's partitions in one
    ``object-hashes`` call: an idle verify syncs nothing. A node that lost a partition
    without noticing (a replaced disk) asks nobody, and the verify is what brings it back."""
    import shutil

    api, container = cluster_api, cluster_container
    name, primaries = object_on_node(cluster, api, container, 1)
    assert api.put(f"{api.base}/{container}/{name}", data=b"lost").status_code == 201
    replicators = [ObjectReplicator(node_context(cluster, n, replicator_verify_interval=0.05))
                   for n in range(3)]

    def pass_all() -> list[dict]:
        time.sleep(0.06)  # every remembered partition due a verify
        return [r.run_once() for r in replicators]

    pass_all()
    pass_all()
    verified = pass_all()
    assert sum(s["partitions_verified"] for s in verified) > 0
    assert sum(s["partitions"] for s in verified) == 0  # no full sync: all agreed
    part, _ = ring(cluster, "object").get_nodes(api.account, container, name)
    (device,) = [p["device"] for p in primaries if p["port"] == cluster.storage_port + 1]
    shutil.rmtree(cluster.node_devices(1) / device / "objects" / str(part))
    pass_all()
    assert holders(cluster, api, container, name) == primary_places(cluster, primaries)
