"""Every ``VolumePool`` and every ``ExportTarget`` through the same cases: the in-memory
doubles (so the API tests' doubles behave like the real thing), the reflink pool and tgt
(here), LVM and LIO (where the kernel has device-mapper and configfs)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from soko.block.drivers.base import NoSuchSnapshot, NoSuchVolume, PoolError, VolumeExists
from soko.block.drivers.lvm import LvmThinPool
from soko.block.targets.base import ExportSpec
from soko.block.targets.tgt import TgtTarget
from tests.block.fakes import MemoryPool, MemoryTarget
from tests.support import require_tools, skip_without_kernel_feature

GiB = 1 << 30


@contextlib.contextmanager
def lvm_pool(tmp_path: Path):
    """A throw-away volume group on a loop device, removed afterwards."""
    skip_without_kernel_feature("/dev/mapper/control", "the lvm pool needs device-mapper")
    require_tools("losetup", "vgcreate", "lvcreate")
    image = tmp_path / "pv.img"
    with open(image, "wb") as f:
        f.truncate(4 * GiB)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()
    vg = f"soko-test-{uuid.uuid4().hex[:6]}"
    try:
        subprocess.run(["vgcreate", vg, device], check=True, capture_output=True)
        pool = LvmThinPool(vg=vg, thin_pool="thin", size_bytes=3 * GiB)
        pool.setup()
        yield pool
    finally:
        subprocess.run(["vgremove", "-f", vg], capture_output=True)
        subprocess.run(["losetup", "--detach", device], capture_output=True)


@pytest.fixture(params=["memory", "reflink", "lvm"])
def pool(request, tmp_path):
    if request.param == "memory":
        yield MemoryPool()
    elif request.param == "reflink":
        request.applymarker(pytest.mark.privileged)
        from soko.block import wiring

        yield wiring.make_manager(request.getfixturevalue("real_block")).pool
    else:
        with lvm_pool(tmp_path) as lvm:
            yield lvm


def test_pool_lifecycle(pool):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    pool.create(a, GiB)
    assert pool.size(a) == GiB and a in pool.volumes()
    with pytest.raises(VolumeExists):
        pool.create(a, GiB)
    pool.clone(a, b, 2 * GiB)
    assert pool.size(b) == 2 * GiB
    with pytest.raises(NoSuchVolume):
        pool.clone(str(uuid.uuid4()), str(uuid.uuid4()), GiB)
    pool.extend(a, 3 * GiB)
    assert pool.size(a) == 3 * GiB
    with pytest.raises(PoolError):
        pool.extend(a, GiB)
    pool.delete(a)
    pool.delete(a)  # idempotent
    pool.delete(b)
    assert pool.size(a) is None and not {a, b} & pool.volumes()
    cap = pool.capacity()
    assert 0 < cap.free_bytes <= cap.total_bytes


def write_at(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def read_at(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def test_pool_snapshots(pool):
    a, snap, c = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    pool.create(a, GiB)
    real = os.path.exists(pool.path(a))  # the in-memory pool has no bytes to compare
    if real:
        write_at(pool.path(a), 5 << 20, b"before" * 100)
    pool.snapshot(a, snap)
    assert snap in pool.snapshots()
    with pytest.raises(VolumeExists):
        pool.snapshot(a, snap)
    with pytest.raises(NoSuchVolume):
        pool.snapshot(str(uuid.uuid4()), str(uuid.uuid4()))
    pool.clone_snapshot(snap, c, 2 * GiB)
    assert pool.size(c) == 2 * GiB
    with pytest.raises(NoSuchSnapshot):
        pool.clone_snapshot(str(uuid.uuid4()), str(uuid.uuid4()), GiB)
    if real:  # copy-on-write: later writes to the volume change neither copy
        write_at(pool.path(a), 5 << 20, b"after!" * 100)
        assert read_at(pool.snapshot_path(snap), 5 << 20, 600) == b"before" * 100
        assert read_at(pool.path(c), 5 << 20, 600) == b"before" * 100
    pool.delete_snapshot(snap)
    pool.delete_snapshot(snap)  # idempotent
    assert snap not in pool.snapshots()
    if real:  # a volume made from a snapshot outlives it
        assert read_at(pool.path(c), 5 << 20, 600) == b"before" * 100
    pool.delete(a)
    pool.delete(c)


@pytest.fixture(params=["memory", "tgt", "lio"])
def target(request):
    if request.param == "memory":
        return MemoryTarget()
    if request.param == "tgt":
        request.applymarker(pytest.mark.privileged)
        from soko.block import wiring

        manager = wiring.make_manager(request.getfixturevalue("real_block"))
        assert isinstance(manager.target, TgtTarget)
        return manager.target
    skip_without_kernel_feature("/sys/kernel/config/target", "LIO needs configfs")
    from soko.block.targets.lio import LioTarget

    return LioTarget(portal="127.0.0.1:3260")


def test_target_export_replace_unexport(target, tmp_path):
    volume_id = str(uuid.uuid4())
    backing = tmp_path / "lun.img"
    with open(backing, "wb") as f:
        f.truncate(64 << 20)
    spec = ExportSpec(volume_id, str(backing), "iqn.2026-11.org.test:one", "soko0a1b",
                      "secret-secret-1")
    target.ensure_running()
    target.export(spec)
    assert target.exported()[volume_id] == "iqn.2026-11.org.test:one"
    # Exporting again replaces the ACL and credentials (what a reconcile replay does).
    target.export(ExportSpec(volume_id, str(backing), "iqn.2026-11.org.test:two", "soko0a1b",
                             "secret-secret-2"))
    assert target.exported()[volume_id] == "iqn.2026-11.org.test:two"
    target.unexport(volume_id)
    target.unexport(volume_id)  # idempotent
    assert volume_id not in target.exported()
