"""The backup data path on plain files and an in-memory chunk store: full and incremental
backups, restores of every backup in a chain, deduplication, zeros, and corruption that
must fail loudly."""

from __future__ import annotations

import ctypes
import mmap
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soko.block.backups import codec, engine
from soko.block.backups.manifest import BadManifest, Manifest, chunk_name, manifest_name
from tests.block.backup_support import (
    MemoryStore,
    MiB,
    allocated,
    same_content,
    sparse_file,
    write_random,
)

BLOCK = engine.BLOCK_SIZE
SETTINGS = engine.Settings(chunk_size=1 * MiB, compression="zstd", workers=2)


def run_backup(store, path, backup_id, parent_id=None, settings=SETTINGS):
    parent = None
    if parent_id is not None:
        manifest = Manifest.unpack(store.get(manifest_name(parent_id)))
        parent = engine.Parent(manifest, engine.load_block_map(store, manifest))
    size = path.stat().st_size
    manifest, stats = engine.backup(str(path), size, store, backup_id=backup_id,
                                    volume_id="vol", parent=parent, settings=settings,
                                    progress=lambda fraction: None)
    store.put(manifest_name(backup_id), manifest.pack())
    return manifest, stats


def run_restore(store, backup_id, target, size):
    sparse_file(target, size)
    manifest = Manifest.unpack(store.get(manifest_name(backup_id)))
    return engine.restore(manifest, store, str(target), settings=SETTINGS,
                          progress=lambda fraction: None)


def test_full_backup_round_trip_keeps_holes(tmp_path):
    rng = random.Random(1)
    volume, target = tmp_path / "volume", tmp_path / "restored"
    sparse_file(volume, 16 * MiB)
    write_random(volume, 3 * MiB + 4096, 2 * MiB, rng)
    write_random(volume, 15 * MiB, 64 * 1024, rng)
    store = MemoryStore()
    manifest, stats = run_backup(store, volume, "b1")
    assert stats.bytes_new == 2 * MiB + 2 * BLOCK  # whole 64 KiB blocks around the data
    assert stats.bytes_zero == 16 * MiB - stats.bytes_new
    assert stats.bytes_read < 16 * MiB  # windows that are holes are not read
    run_restore(store, "b1", target, 16 * MiB)
    assert same_content(volume, target)
    assert allocated(target) <= 3 * MiB  # the zeros stayed holes


def test_holes_between_blocks_of_data_are_not_read(tmp_path):
    """A thinly written volume: every 1 MiB window has a little data, the rest is holes.
    Only the 64 KiB blocks that hold data are read (a block with data in part of it is
    read whole), and the restore is the same bytes with the same holes."""
    rng = random.Random(12)
    volume, target = tmp_path / "volume", tmp_path / "restored"
    sparse_file(volume, 16 * MiB)
    for window in range(16):
        write_random(volume, window * MiB + 5 * BLOCK, BLOCK, rng)
    write_random(volume, 9 * MiB + 10 * BLOCK + 4096, 4096, rng)  # inside a block
    store = MemoryStore()
    _, stats = run_backup(store, volume, "thin")
    assert stats.bytes_read == 17 * BLOCK
    assert stats.bytes_zero == 16 * MiB - 17 * BLOCK
    run_restore(store, "thin", target, 16 * MiB)
    assert same_content(volume, target)
    assert allocated(target) <= 18 * BLOCK  # the data (and an extent tree); holes stayed


def test_incremental_uploads_only_changed_blocks_and_every_backup_restores(tmp_path):
    rng = random.Random(2)
    volume = tmp_path / "volume"
    sparse_file(volume, 8 * MiB)
    write_random(volume, 0, 8 * MiB, rng)
    store = MemoryStore()
    run_backup(store, volume, "full")
    original = volume.read_bytes()
    for block in (3, 40, 41, 100):  # 4 of 128 blocks
        write_random(volume, block * BLOCK + 100, 1000, rng)
    _, stats = run_backup(store, volume, "incr", parent_id="full")
    assert stats.bytes_new == 4 * BLOCK
    assert stats.chunks_uploaded == 1  # the changed blocks packed into one chunk
    assert stats.bytes_uploaded < 4 * BLOCK + 1024
    run_restore(store, "incr", tmp_path / "incr", 8 * MiB)
    assert same_content(volume, tmp_path / "incr")
    run_restore(store, "full", tmp_path / "full", 8 * MiB)
    assert (tmp_path / "full").read_bytes() == original


def test_identical_data_is_not_uploaded_twice(tmp_path):
    rng = random.Random(3)
    first, second = tmp_path / "a", tmp_path / "b"
    sparse_file(first, 4 * MiB)
    write_random(first, 0, 4 * MiB, rng)
    second.write_bytes(first.read_bytes())
    store = MemoryStore()
    run_backup(store, first, "b1")
    before = dict(store.chunks())
    _, stats = run_backup(store, second, "b2")
    assert stats.chunks_uploaded == 0 and stats.chunks_deduplicated == 4
    assert store.chunks() == before


def test_a_zero_volume_stores_no_chunks(tmp_path):
    volume = tmp_path / "zeros"
    sparse_file(volume, 32 * MiB)
    with open(volume, "r+b") as f:  # allocated zeros, not only holes
        f.write(bytes(4 * MiB))
    store = MemoryStore()
    _, stats = run_backup(store, volume, "zero")
    assert store.chunks() == {} and stats.bytes_uploaded == 0
    assert stats.bytes_zero == 32 * MiB
    run_restore(store, "zero", tmp_path / "out", 32 * MiB)
    assert allocated(tmp_path / "out") == 0


def test_restore_overwrites_old_content_of_the_target(tmp_path):
    rng = random.Random(4)
    volume, target = tmp_path / "volume", tmp_path / "target"
    sparse_file(volume, 4 * MiB)
    write_random(volume, MiB, MiB, rng)
    store = MemoryStore()
    run_backup(store, volume, "b1")
    sparse_file(target, 4 * MiB)
    write_random(target, 0, 4 * MiB, rng)  # old data everywhere, also where the backup has zeros
    manifest = Manifest.unpack(store.get(manifest_name("b1")))
    engine.restore(manifest, store, str(target), settings=SETTINGS, progress=lambda f: None)
    assert same_content(volume, target)


def cached_pages(path) -> int:
    """How many of the file's pages are in the page cache (mincore on a mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    pages = ctypes.create_string_buffer(-(-size // mmap.PAGESIZE))
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert libc.mincore(address, size, pages) == 0, ctypes.get_errno()
        libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(byte & 1 for byte in pages.raw)


def test_restore_writes_around_the_page_cache_up_to_an_unaligned_tail(tmp_path):
    """A restore's aligned writes go with O_DIRECT (no copy through the page cache, which
    cost more CPU than the rest of a restore); the volume's last bytes, which no 4 KiB
    block holds whole, go through the cache, and the volume is restored exactly."""
    rng = random.Random(9)
    size = 4 * MiB + 1000
    volume, target = tmp_path / "volume", tmp_path / "restored"
    sparse_file(volume, size)
    write_random(volume, 0, size, rng)
    store = MemoryStore()
    run_backup(store, volume, "odd")
    run_restore(store, "odd", target, size)
    assert cached_pages(target) <= 1  # the tail's page
    assert same_content(volume, target)


@pytest.mark.parametrize("damage", ["flip", "missing", "truncate"])
def test_a_damaged_chunk_fails_the_restore(tmp_path, damage):
    rng = random.Random(5)
    volume = tmp_path / "volume"
    sparse_file(volume, 2 * MiB)
    write_random(volume, 0, 2 * MiB, rng)
    store = MemoryStore()
    manifest, _ = run_backup(store, volume, "b1")
    name = chunk_name(next(iter(manifest.chunk_sizes)))
    blob = bytearray(store.objects[name])
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x01
        store.objects[name] = bytes(blob)
    elif damage == "truncate":
        store.objects[name] = bytes(blob[:-10])
    else:
        del store.objects[name]
    with pytest.raises(engine.BackupCorrupt, match=name.removeprefix("chunks/")):
        run_restore(store, "b1", tmp_path / "out", 2 * MiB)


def test_a_tampered_manifest_is_refused(tmp_path):
    volume = tmp_path / "volume"
    sparse_file(volume, MiB)
    store = MemoryStore()
    manifest, _ = run_backup(store, volume, "b1")
    packed = bytearray(manifest.pack())
    packed[-3] ^= 0xFF
    with pytest.raises(BadManifest, match="checksum"):
        Manifest.unpack(bytes(packed))


@pytest.mark.parametrize("name", ["zstd", "zlib", "none"])
def test_codecs_round_trip_and_keep_incompressible_data_raw(name):
    text = b"soko " * 10000
    assert codec.decode(codec.encode(text, name), len(text)) == text
    noise = random.Random(6).randbytes(10000)
    blob = codec.encode(noise, name)
    assert blob[3] == codec.CODEC_IDS["none"] and codec.decode(blob, len(noise)) == noise
    with pytest.raises(codec.CorruptChunk):
        codec.decode(b"XYZ" + blob[3:], len(noise))
    # chunk-sized: a chunk is tried whole only if samples over it shrink
    mixed = random.Random(7).randbytes(MiB) + b"soko " * (MiB // 5)
    blob = codec.encode(mixed, name)
    assert blob[3] == codec.CODEC_IDS[name]
    assert len(blob) < 0.7 * len(mixed) or name == "none"
    assert codec.decode(blob, len(mixed)) == mixed
    noise = random.Random(8).randbytes(2 * MiB)
    assert codec.encode(noise, name)[3] == codec.CODEC_IDS["none"]


writes = st.lists(st.tuples(st.integers(0, 4 * MiB - 1), st.integers(1, 300 * 1024),
                            st.booleans()), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(writes, min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_any_chain_of_incrementals_restores_every_backup(tmp_path_factory, rounds, seed):
    """Property: whatever is written (data or zeros, anywhere), every backup in a chain
    restores exactly the volume as it was when that backup was taken."""
    tmp = tmp_path_factory.mktemp("chain")
    rng = random.Random(seed)
    volume, size = tmp / "volume", 4 * MiB
    sparse_file(volume, size)
    write_random(volume, rng.randrange(size - MiB), MiB, rng)
    store = MemoryStore()
    expected = {"b0": volume.read_bytes()}
    run_backup(store, volume, "b0")
    for i, round_writes in enumerate(rounds, start=1):
        with open(volume, "r+b") as f:
            for offset, length, zeros in round_writes:
                length = min(length, size - offset)
                f.seek(offset)
                f.write(bytes(length) if zeros else rng.randbytes(length))
        run_backup(store, volume, f"b{i}", parent_id=f"b{i - 1}")
        expected[f"b{i}"] = volume.read_bytes()
    for backup_id, content in expected.items():
        target = tmp / f"restore-{backup_id}"
        run_restore(store, backup_id, target, size)
        assert target.read_bytes() == content, backup_id
