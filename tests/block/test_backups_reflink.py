"""The incremental's shortcut on the real reflink pool: blocks whose extents are still
shared with the kept base are not read, and yet every backup restores exactly. Writes of
every kind land between backups: data, zeros, punched holes, preallocation, growth."""

from __future__ import annotations

import ctypes
import os
import random

import pytest

from soko.block.backups import engine
from soko.block.backups.fiemap import ExtentMap
from soko.block.backups.manifest import Manifest, manifest_name
from tests.block.backup_support import MemoryStore, MiB

pytestmark = pytest.mark.privileged

SIZE = 32 * MiB
SETTINGS = engine.Settings(chunk_size=1 * MiB, workers=2)
PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def mutate(path: str, rng: random.Random) -> None:
    with open(path, "r+b") as f:
        for _ in range(rng.randrange(1, 8)):
            offset = rng.randrange(SIZE - 2 * MiB)
            length = rng.choice([512, 4096, 65536, 300_000, MiB])
            kind = rng.choice(["data", "zeros", "punch", "prealloc"])
            if kind == "data":
                os.pwrite(f.fileno(), rng.randbytes(length), offset)
            elif kind == "zeros":
                os.pwrite(f.fileno(), bytes(length), offset)
            elif kind == "punch":
                fallocate(f.fileno(), PUNCH_HOLE, offset, length)
            else:
                fallocate(f.fileno(), 0x01, offset, length)  # KEEP_SIZE: unwritten extents
        os.fsync(f.fileno())


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fallocate(fd, mode, ctypes.c_long(offset), ctypes.c_long(length)) != 0:
        raise OSError(ctypes.get_errno(), "fallocate")


@pytest.mark.parametrize("seed", [42, 7, 1234])
def test_incrementals_skip_shared_blocks_and_restore_exactly(real_manager, seed):
    pool = real_manager.pool
    volume, store = "bk-reflink-vol", MemoryStore()
    pool.create(volume, SIZE)
    created: list[str] = []
    try:
        rng = random.Random(seed)
        with open(pool.path(volume), "r+b") as f:
            f.write(rng.randbytes(8 * MiB))
        expected: dict[str, bytes] = {}
        parent = base = None
        for round_ in range(6):
            backup_id = f"bk-reflink-{round_}"
            snapshot = f"{backup_id}-snap"
            pool.snapshot(volume, snapshot)
            created.append(snapshot)
            source = pool.snapshot_path(snapshot)
            manifest, stats = engine.backup(source, SIZE, store, backup_id=backup_id,
                                            volume_id=volume, parent=parent, base=base,
                                            settings=SETTINGS, progress=lambda f: None)
            store.put(manifest_name(backup_id), manifest.pack())
            with open(source, "rb") as f:
                expected[backup_id] = f.read()
            if round_:
                assert stats.bytes_read < SIZE / 2  # unchanged blocks were not read
            # keep this source as the next incremental's base (what the manager does)
            base_name = f"{backup_id}-base"
            pool.clone_snapshot(snapshot, base_name, 0)
            created.append(base_name)
            base = ExtentMap.of(pool.path(base_name))
            assert base is not None
            parent = engine.Parent(manifest, engine.load_block_map(store, manifest))
            mutate(pool.path(volume), rng)
        target = "bk-reflink-target"
        pool.create(target, SIZE)
        created.append(target)
        for backup_id, content in expected.items():
            manifest = Manifest.unpack(store.get(manifest_name(backup_id)))
            engine.restore(manifest, store, pool.path(target), settings=SETTINGS,
                           progress=lambda f: None)
            with open(pool.path(target), "rb") as f:
                assert f.read() == content, backup_id
    finally:
        pool.delete(volume)
        for name in created:
            pool.delete_snapshot(name)
            pool.delete(name)
