"""Directories vanish under a storage node's writers and walkers, for real.

The replicator removes empty hash and suffix dirs and whole reverted handoff partitions,
the auditor quarantines hash dirs: each of those can land between two steps of a PUT, a
replication PUT, a GET or an auditor pass. None of them may answer 5xx or end a pass.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import types

import pytest

from soko.object.daemons.auditor import Auditor
from soko.object.daemons.service import DaemonsSection
from soko.object.node.diskfile import XATTR_NAME, DiskFile
from soko.object.shared.timestamps import Timestamp
from tests.object.node_app import node_app

pytestmark = [pytest.mark.privileged]

PART = "7"

# Removes what the replicator removes, every millisecond: empty hash and suffix dirs
# (reclaim, cleanup) and, once it holds no object any more, the partition (a revert).
REMOVER = """
import contextlib, os, sys, time
part = sys.argv[1]
while True:
    time.sleep(0.001)
    try:
        suffixes = [os.path.join(part, s) for s in os.listdir(part) if len(s) == 3]
    except FileNotFoundError:
        continue
    for suffix in suffixes:
        for name in os.listdir(suffix) if os.path.isdir(suffix) else ():
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(suffix, name))
        with contextlib.suppress(OSError):
            os.rmdir(suffix)
    for name in (".lock", "hashes.invalid", "hashes.msgpack"):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(part, name))
    with contextlib.suppress(OSError):
        os.rmdir(part)
"""



@pytest.fixture
def node(xfs_dir):
    """The storage-node app in-process on XFS (real fsyncs: the windows a race needs)."""
    return node_app(xfs_dir)


@pytest.fixture
def remover(node):
    proc = subprocess.Popen([sys.executable, "-c", REMOVER, str(node.device / "objects" / PART)])
    yield
    proc.kill()
    proc.wait()


def ts(n: int) -> dict[str, str]:
    return {"X-Timestamp": Timestamp.parse(1_700_000_000 + n).normal}


def test_writes_and_reads_never_fail_while_dirs_vanish(node, remover):
    statuses = []
    for i in range(60):
        path = f"/object/d0/{PART}/AUTH_a/c/o{i % 10}"
        statuses.append(node.simulate_put(path, body=b"x" * 100, headers=ts(2 * i)).status_code)
        statuses.append(node.simulate_get(path).status_code)
        statuses.append(node.simulate_delete(path, headers=ts(2 * i + 1)).status_code)
        df = DiskFile(node.device, PART, "AUTH_a", "c", f"r{i}")
        with df.writer() as writer:  # metadata for a replicated .data file
            writer.write(b"y")
            writer.commit(Timestamp.parse(1_700_000_000 + i), "data", {
                "name": df.name, "X-Timestamp": Timestamp.parse(1_700_000_000 + i).normal,
                "Content-Length": "1", "ETag": writer.etag})
            metadata = base64.b64encode(os.getxattr(writer.diskfile.hash_dir / os.listdir(
                writer.diskfile.hash_dir)[0], XATTR_NAME)).decode()
        df.quarantine()  # so the replicated copy is new here
        statuses.append(node.simulate_put(
            f"/replicate/object/d0/{PART}/{df.hash_dir.name}/"
            f"{Timestamp.parse(1_700_000_000 + i).normal}.data",
            body=b"y", headers={"X-Soko-Metadata": metadata}).status_code)
    failures = [s for s in statuses if s >= 500]
    assert failures == [], f"{len(failures)} of {len(statuses)} requests failed"


def test_reads_racing_overwrites_never_quarantine_the_object(node):
    """A GET lists the hash dir, a newer PUT replaces the .data it listed: the GET looks
    again; it must not take the missing file for a broken one and quarantine the object."""
    path = f"/object/d0/{PART}/AUTH_a/c/hot"
    stop = threading.Event()
    writes = []

    def overwrite():
        n = 0
        while not stop.is_set():
            n += 1
            writes.append(node.simulate_put(path, body=b"z" * 10, headers=ts(n)).status_code)

    assert node.simulate_put(path, body=b"z" * 10, headers=ts(0)).status_code == 201
    writer = threading.Thread(target=overwrite)
    writer.start()
    try:
        reads = [node.simulate_get(path).status_code for _ in range(800)]
    finally:
        stop.set()
        writer.join()
    assert set(writes) == {201} and set(reads) == {200}
    assert not (node.device / "quarantined").exists()


class RemoveAsItWalks:
    """Stands in for the auditor's files-per-second limiter, which runs between two objects
    of its walk: the first call removes the partition being walked, as a revert does."""

    def __init__(self, part_dir):
        self.part_dir = part_dir

    def wait(self, _count: int) -> None:
        if self.part_dir.exists():
            import shutil

            shutil.rmtree(self.part_dir)


def test_auditor_pass_goes_on_when_a_partition_vanishes_under_it(node):
    for i in range(40):  # objects in many suffixes of one partition, and in another
        for part in (PART, "8"):
            assert node.simulate_put(f"/object/d0/{part}/AUTH_a/c/o{i}", body=b"a",
                                     headers=ts(i)).status_code == 201
    context = types.SimpleNamespace(
        settings=DaemonsSection(auditor_bytes_per_second=0, auditor_files_per_second=0),
        stop=threading.Event(), background=False,
        mounted_devices=lambda kind: [({}, node.device)] if kind == "object" else [])
    auditor = Auditor(context)
    walked = sorted(os.listdir(node.device / "objects"))
    auditor.files_limiter = RemoveAsItWalks(node.device / "objects" / walked[0])
    stats = auditor.run_once()
    assert stats["quarantined"] == 0
    assert stats["objects"] >= 40  # the other partition was audited whole
