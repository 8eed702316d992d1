"""Bit rot on the real cluster: a flipped byte is never served, the auditor quarantines the
copy, the replicator restores it; a broken container DB is quarantined too."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from pathlib import Path

import pytest
import requests
import urllib3

from soko.object.daemons.auditor import Auditor, db_problem
from soko.object.daemons.db_replicator import DBReplicator
from soko.object.daemons.replicator import ObjectReplicator
from soko.object.node.diskfile import name_hash
from tests.object.inprocess_daemons import run_pass

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

LARGE = 5 * 1024 * 1024  # above the node's verify-before-sending threshold


def flip_byte(path: Path, offset: int) -> None:
    """Corrupts one byte in place (the metadata xattr, with the old ETag, stays)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0xFF]))


def data_files(cluster, api, container, name) -> list[Path]:
    return cluster.object_files(api.account, container, name)


def node_of(path: Path) -> int:
    return int(path.parts[-7].removeprefix("node"))


def direct_url(cluster, api, container, name, path: Path) -> str:
    device, part = path.parts[-6], path.parts[-4]
    return (f"http://127.0.0.1:{cluster.storage_port + node_of(path)}/object/{device}/{part}/"
            f"{api.account}/{container}/{name}")


def quarantined(cluster, node: int) -> list[Path]:
    return list(cluster.data_dir.glob(f"object/devices/node{node}/d*/quarantined/objects/*"))


def test_auditor_quarantines_and_replicator_restores(cluster_api, cluster, cluster_container):
    api, container = cluster_api, cluster_container
    body = uuid.uuid4().bytes * 1000
    assert api.put(f"{api.base}/{container}/rot", data=body).status_code == 201
    bad = data_files(cluster, api, container, "rot")[0]
    flip_byte(bad, 100)
    before = len(quarantined(cluster, node_of(bad)))
    (stats,) = run_pass(cluster, Auditor, node_of(bad))
    assert stats["quarantined"] == 1 and stats["objects"] >= 1
    assert not bad.exists() and len(quarantined(cluster, node_of(bad))) == before + 1
    for _ in range(6):  # whichever replica the proxy reads, the bytes are right
        assert api.get(f"{api.base}/{container}/rot").content == body
    run_pass(cluster, ObjectReplicator)
    restored = [p for p in data_files(cluster, api, container, "rot") if node_of(p) == node_of(bad)]
    assert len(restored) == 1 and restored[0].read_bytes() == body
    (stats,) = run_pass(cluster, Auditor, node_of(bad))
    assert stats["quarantined"] == 0


def test_small_corrupt_copy_is_never_served(cluster_api, cluster, cluster_container):
    api, container = cluster_api, cluster_container
    body = b"small and precious" * 100
    api.put(f"{api.base}/{container}/small", data=body)
    bad = data_files(cluster, api, container, "small")[0]
    flip_byte(bad, 5)
    r = requests.get(direct_url(cluster, api, container, "small", bad), timeout=5)
    assert r.status_code == 404 and body[:5] not in r.content
    assert not bad.exists()  # quarantined on read
    for _ in range(6):
        assert api.get(f"{api.base}/{container}/small").content == body


def test_large_corrupt_copy_is_cut_off_before_its_end(cluster_api, cluster, cluster_container):
    api, container = cluster_api, cluster_container
    body = uuid.uuid4().bytes * (LARGE // 16)
    api.put(f"{api.base}/{container}/large", data=body)
    bad = data_files(cluster, api, container, "large")[0]
    flip_byte(bad, LARGE - 10)
    with requests.get(direct_url(cluster, api, container, "large", bad), timeout=10,
                      stream=True) as r:
        assert r.status_code == 200
        received = b""
        with pytest.raises(urllib3.exceptions.ProtocolError, match="IncompleteRead"):
            for chunk in r.raw.stream(65536, decode_content=False):
                received += chunk
    assert len(received) < LARGE and not bad.exists()
    for _ in range(4):
        r = api.get(f"{api.base}/{container}/large")
        assert r.status_code == 200 and hashlib.md5(r.content).digest() == \
            hashlib.md5(body).digest()


def test_db_quick_check(tmp_path):
    import sqlite3

    good = tmp_path / "good.db"
    with sqlite3.connect(good) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(5000)])
    assert db_problem(good) is None
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not SQLite at all" * 200)
    assert db_problem(broken)


def test_broken_container_db_is_quarantined_and_rebuilt(cluster, cluster_api, cluster_container):
    api, container = cluster_api, cluster_container
    for i in range(3):
        api.put(f"{api.base}/{container}/o{i}", data=b"x")
    run_pass(cluster, DBReplicator)  # every primary has the DB, whatever the proxy skipped
    digest = name_hash(api.account, container)
    db = sorted(cluster.data_dir.glob(f"object/devices/node*/d*/containers/*/{digest[-3:]}/"
                                      f"{digest}/{digest}.db"))[0]
    node, device, part = node_of(db), db.parts[-6], db.parts[-4]  # laid out like a .data
    db.write_bytes(b"rot" * 4096)
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    (stats,) = run_pass(cluster, Auditor, node)
    assert stats["dbs_quarantined"] == 1 and not db.exists()
    run_pass(cluster, DBReplicator)
    assert db.exists() and db_problem(db) is None
    r = requests.get(f"http://127.0.0.1:{cluster.storage_port + node}/container/{device}/"
                     f"{part}/{api.account}/{container}", timeout=5)
    assert [e["name"] for e in r.json()] == ["o0", "o1", "o2"]
    assert r.headers["X-Container-Object-Count"] == "3"


def test_the_daemon_spreads_a_pass_over_its_interval(cluster, cluster_api, cluster_container):
    """The daemon reads each object and DB once per ``auditor_interval`` (#19): its pass
    goes at count / (0.9 x interval) files per second, at most ``auditor_files_per_second``;
    a one-off pass (``soko object pass``) is not slowed down."""
    from tests.object.inprocess_daemons import node_context

    api = cluster_api
    assert api.put(f"{api.base}/{cluster_container}/paced", data=b"x").status_code == 201
    node = node_context(cluster, 0, auditor_interval=1000.0, auditor_files_per_second=20)
    auditor = Auditor(node)
    assert auditor.pace() is auditor.files_limiter
    node.background = True
    count = sum(1 for _ in auditor.targets())
    assert count > 0
    assert auditor.pace().rate == pytest.approx(count / 900.0)
    node.settings = dataclasses.replace(node.settings, auditor_interval=0.001)
    assert auditor.pace().rate == 20  # the cap, whatever the interval asks
