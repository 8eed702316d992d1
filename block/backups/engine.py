"""Reading a volume into the chunk store and writing it back: the data path of backups.

Backup reads the source in windows of ``chunk_size`` (16 MiB), hashes each 64 KiB block
(xxh3-128) into the block map, and sorts blocks into zeros (stored nowhere), blocks the
parent backup already holds (its extents are reused) and new data. New data is packed
into chunks of up to ``chunk_size``, named by their digest: a chunk the store already
holds is not uploaded again. Blocks that are holes in the source are not even read
(SEEK_HOLE, ``fileio.py``), nor are blocks that still map to the same physical blocks as
in the parent's kept source (``fiemap.py``): an incremental of a reflink snapshot reads
only what changed.

Restore fetches each chunk the manifest names once, verifies its digest and length,
and writes its extents in place, with O_DIRECT where they are aligned (``fileio.py``: no
copy through the page cache, and the closing fsync finds little left to do); zeros are
left as holes (a truncated file) or written out on a block device. Any mismatch raises,
so a wrong volume is never silently made.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import os
import threading
import time
from collections.abc import Callable

import xxhash

from soko.block.backups import codec
from soko.block.backups.codec import CorruptChunk
from soko.block.backups.fiemap import ExtentMap
from soko.block.backups.fileio import VolumeWriter, data_runs
from soko.block.backups.manifest import (
    Extent,
    Manifest,
    append_extent,
    block_map_name,
    chunk_name,
    seal,
    slice_extents,
    unseal,
)
from soko.block.backups.store import ObjectStore

MiB = 1 << 20
BLOCK_SIZE = 64 << 10
DIGEST_SIZE = 16
ZERO_BLOCK = bytes(BLOCK_SIZE)
ZERO_DIGEST = xxhash.xxh3_128_digest(ZERO_BLOCK)

Progress = Callable[[float], None]  # fraction done, 0..1


@dataclasses.dataclass(frozen=True)
class Settings:
    # 16 MiB: measured against the 3-replica object store here, PUTs of 16 MiB objects
    # cost its servers 9.3 s of CPU per GiB and 4 MiB ones 12.5 s, GETs 1.6 s and 2.5 s.
    # Old backups keep their chunk size: it is in their manifests.
    chunk_size: int = 16 * MiB
    compression: str = "zstd"
    workers: int = 4  # concurrent chunk PUTs/GETs


@dataclasses.dataclass
class Stats:
    """What a backup or restore did, recorded on the backup for users and benchmarks."""

    bytes_read: int = 0  # from the source volume
    bytes_new: int = 0  # data not in the parent backup (all non-zero data for a full)
    bytes_zero: int = 0  # zero blocks: stored nowhere
    bytes_uploaded: int = 0  # compressed chunk bytes sent to the store
    chunks_uploaded: int = 0
    chunks_deduplicated: int = 0  # new data whose chunk the store already held
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class BackupCorrupt(RuntimeError):
    """A chunk or block map does not match its manifest; the restore stops."""


@dataclasses.dataclass(frozen=True)
class Parent:
    manifest: Manifest
    block_map: bytes

    def starts(self) -> list[int]:
        return [e.offset for e in self.manifest.extents]


class Pack:
    """A chunk being filled with new data; its digest names it once it is full. A window
    that is new data from end to end is sent as it was read, not copied; pieces are
    copied in (a view would keep its whole window in memory until the pack is sent)."""

    def __init__(self):
        self.whole: bytes | None = None
        self.data = bytearray()
        self.filled = 0
        self.digest: bytes | None = None
        self.size = 0

    def add(self, piece: memoryview) -> None:
        if self.filled == 0 and piece.nbytes == len(piece.obj):
            self.whole = piece.obj
        else:
            if self.whole is not None:
                self.data += self.whole
                self.whole = None
            self.data += piece
        self.filled += piece.nbytes

    def contents(self) -> bytes | bytearray:
        return self.whole if self.whole is not None else self.data


class ChunkUploader:
    """Uploads each distinct chunk once, a few at a time, with bounded memory: one chunk
    per worker being sent and two more ready (the reader is ahead of the network)."""

    def __init__(self, store: ObjectStore, settings: Settings, known: set[bytes], stats: Stats):
        self.store, self.settings, self.known, self.stats = store, settings, known, stats
        self.pool = concurrent.futures.ThreadPoolExecutor(settings.workers,
                                                          thread_name_prefix="backup-put")
        self.pending: list[concurrent.futures.Future] = []
        self.lock = threading.Lock()

    def upload(self, data: bytes | bytearray) -> bytes:
        digest = xxhash.xxh3_128_digest(data)
        if digest in self.known:
            self.stats.chunks_deduplicated += 1
            return digest
        self.known.add(digest)
        while len(self.pending) >= self.settings.workers + 2:
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._put, digest, data))
        return digest

    def _put(self, digest: bytes, data: bytes | bytearray) -> None:
        header, payload = codec.encode_parts(data, self.settings.compression)
        self.store.put(chunk_name(digest), header, payload)
        with self.lock:
            self.stats.bytes_uploaded += len(header) + len(payload)
            self.stats.chunks_uploaded += 1

    def finish(self) -> None:
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pool.shutdown(cancel_futures=True)


def known_chunks(store: ObjectStore) -> set[bytes]:
    return {bytes.fromhex(name.removeprefix("chunks/")) for name in store.names("chunks/")}


class BackupWriter:
    """Builds one backup's extents and block map, window by window."""

    def __init__(self, uploader: ChunkUploader, parent: Parent | None, chunk_size: int):
        self.uploader, self.parent, self.chunk_size = uploader, parent, chunk_size
        self.parent_starts = parent.starts() if parent else []
        self.extents: list[Extent] = []
        self.block_map = bytearray()
        self.pack = Pack()

    def zeros(self, offset: int, length: int) -> None:
        self.uploader.stats.bytes_zero += length
        append_extent(self.extents, Extent(offset, length, None))
        self.block_map += ZERO_DIGEST * -(-length // BLOCK_SIZE)

    def reuse(self, offset: int, length: int) -> None:
        """A range known unchanged since the parent: its extents and digests carry over."""
        for part in slice_extents(self.parent.manifest.extents, self.parent_starts,
                                  offset, offset + length):
            append_extent(self.extents, part)
        first, last = offset // BLOCK_SIZE, -(-(offset + length) // BLOCK_SIZE)
        self.block_map += self.parent.block_map[first * DIGEST_SIZE:last * DIGEST_SIZE]

    def window(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        runs: list[tuple[str, int, int]] = []  # (kind, start, stop) within the window
        for start in range(0, len(data), BLOCK_SIZE):
            block = view[start:start + BLOCK_SIZE]
            digest = xxhash.xxh3_128_digest(block)
            self.block_map += digest
            if digest == ZERO_DIGEST or block == ZERO_BLOCK[:len(block)]:
                kind = "zero"
            elif self.parent_has((offset + start) // BLOCK_SIZE, digest):
                kind = "same"
            else:
                kind = "new"
            if runs and runs[-1][0] == kind:
                runs[-1] = (kind, runs[-1][1], start + len(block))
            else:
                runs.append((kind, start, start + len(block)))
        for kind, start, stop in runs:
            if kind == "zero":
                self.uploader.stats.bytes_zero += stop - start
                append_extent(self.extents, Extent(offset + start, stop - start, None))
            elif kind == "same":
                for part in slice_extents(self.parent.manifest.extents, self.parent_starts,
                                          offset + start, offset + stop):
                    append_extent(self.extents, part)
            else:
                self.new_data(offset + start, view[start:stop])

    def parent_has(self, index: int, digest: bytes) -> bool:
        if self.parent is None:
            return False
        stored = self.parent.block_map[index * DIGEST_SIZE:(index + 1) * DIGEST_SIZE]
        return stored == digest

    def new_data(self, offset: int, data: memoryview) -> None:
        self.uploader.stats.bytes_new += len(data)
        if self.pack.filled + len(data) > self.chunk_size:
            self.flush()
        append_extent(self.extents, Extent(offset, len(data), self.pack, self.pack.filled))
        self.pack.add(data)

    def flush(self) -> None:
        if self.pack.filled:
            self.pack.digest = self.uploader.upload(self.pack.contents())
            self.pack.size = self.pack.filled
            self.pack.whole, self.pack.data = None, bytearray()  # extents keep its digest
            self.pack = Pack()

    def finish(self) -> tuple[list[Extent], dict[bytes, int]]:
        """Names every packed extent by its chunk's digest; each referenced chunk's raw size
        (restore checks it), from the pack or from the parent's manifest."""
        self.flush()
        extents, sizes = [], {}
        for extent in self.extents:
            if isinstance(extent.digest, Pack):
                sizes[extent.digest.digest] = extent.digest.size
                extent = dataclasses.replace(extent, digest=extent.digest.digest)
            elif extent.digest is not None:
                sizes[extent.digest] = self.parent.manifest.chunk_sizes[extent.digest]
            extents.append(extent)
        return extents, sizes


def changed_runs(source: ExtentMap, base: ExtentMap, offset: int, length: int):
    """``(changed, start, stop)`` runs of whole blocks in a range, by their mappings."""
    runs: list[list] = []
    for start in range(offset, offset + length, BLOCK_SIZE):
        stop = min(start + BLOCK_SIZE, offset + length)
        changed = not source.same_as(base, start, stop)
        if runs and runs[-1][0] == changed:
            runs[-1][2] = stop
        else:
            runs.append([changed, start, stop])
    return runs


def read_range(fd: int, offset: int, length: int, stats: Stats) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise OSError(errno.EIO, f"short read at {offset}")
    stats.bytes_read += length
    return data


def backup(source: str, size: int, store: ObjectStore, *, backup_id: str, volume_id: str,
           parent: Parent | None, settings: Settings, progress: Progress,
           base: ExtentMap | None = None) -> tuple[Manifest, Stats]:
    """Backs up ``size`` bytes of ``source``: uploads new chunks and the block map, and
    returns the manifest (the caller stores it last, once the backup is complete).
    ``base`` is the extent map of the file the parent backup read, if it was kept."""
    started = time.monotonic()
    stats = Stats()
    store.ensure_container()
    uploader = ChunkUploader(store, settings, known_chunks(store), stats)
    writer = BackupWriter(uploader, parent, settings.chunk_size)
    source_map = ExtentMap.of(source) if base is not None and parent is not None else None
    fd = os.open(source, os.O_RDONLY)
    try:
        for offset in range(0, size, settings.chunk_size):
            length = min(settings.chunk_size, size - offset)
            for has_data, start, stop in data_runs(fd, offset, length, BLOCK_SIZE):
                if not has_data:
                    writer.zeros(start, stop - start)
                elif source_map is not None and stop <= parent.manifest.size:
                    for changed, lo, hi in changed_runs(source_map, base, start, stop - start):
                        if changed:
                            writer.window(lo, read_range(fd, lo, hi - lo, stats))
                        else:
                            writer.reuse(lo, hi - lo)
                else:
                    writer.window(start, read_range(fd, start, stop - start, stats))
            progress((offset + length) / size)
        extents, sizes = writer.finish()
        uploader.finish()
    finally:
        os.close(fd)
        uploader.pool.shutdown(cancel_futures=True)
    manifest = Manifest(backup_id, volume_id, size, BLOCK_SIZE, settings.chunk_size,
                        settings.compression, parent.manifest.backup_id if parent else None,
                        extents, sizes)
    store.put(block_map_name(backup_id), seal(codec.encode(bytes(writer.block_map),
                                                           settings.compression)))
    stats.seconds = time.monotonic() - started
    return manifest, stats


def load_block_map(store: ObjectStore, manifest: Manifest) -> bytes:
    expected = -(-manifest.size // manifest.block_size) * DIGEST_SIZE
    block_map = bytes(codec.decode(unseal(store.get(block_map_name(manifest.backup_id))),
                                   expected))
    if len(block_map) != expected:
        raise BackupCorrupt(f"the block map of backup {manifest.backup_id} has "
                            f"{len(block_map)} bytes, not {expected}")
    return block_map


def restore(manifest: Manifest, store: ObjectStore, target: str, *, settings: Settings,
            progress: Progress) -> Stats:
    """Writes the backup over ``target`` (a file or block device at least as large)."""
    started = time.monotonic()
    stats = Stats()
    by_chunk: dict[bytes, list[Extent]] = {}
    for extent in manifest.extents:
        if extent.digest is not None:
            by_chunk.setdefault(extent.digest, []).append(extent)
    total = sum(e.length for e in manifest.extents if e.digest is not None) or 1
    done = 0
    lock = threading.Lock()
    volume = VolumeWriter(target)
    synced = False
    try:
        if volume.is_file:
            keep = max(os.fstat(volume.fd).st_size, manifest.size)
            os.ftruncate(volume.fd, 0)  # every old block goes; zeros stay holes
            os.ftruncate(volume.fd, keep)
        else:
            write_zeros(volume, manifest)

        def restore_chunk(digest: bytes, extents: list[Extent]) -> None:
            nonlocal done
            size = manifest.chunk_sizes[digest]
            raw = fetch_chunk(store, digest, size)
            buffer = volume.buffer(size)  # page-aligned, for O_DIRECT
            buffer[:size] = raw
            for extent in extents:
                volume.write(buffer, extent.chunk_offset, extent.chunk_offset + extent.length,
                             extent.offset)
            with lock:
                stats.bytes_read += size
                done += sum(e.length for e in extents)
                progress(done / total)

        with concurrent.futures.ThreadPoolExecutor(settings.workers,
                                                   thread_name_prefix="restore-get") as pool:
            futures = [pool.submit(restore_chunk, d, x) for d, x in by_chunk.items()]
            try:
                for future in concurrent.futures.as_completed(futures):
                    future.result()
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        synced = True
    finally:
        volume.close(sync=synced)
    stats.seconds = time.monotonic() - started
    return stats


def fetch_chunk(store: ObjectStore, digest: bytes, raw_length: int) -> bytes | memoryview:
    from soko.block.backups.store import MissingObject

    try:
        raw = codec.decode(store.get(chunk_name(digest)), raw_length)
    except MissingObject:
        raise BackupCorrupt(f"chunk {digest.hex()} is missing from the object store") from None
    except CorruptChunk as exc:
        raise BackupCorrupt(f"chunk {digest.hex()}: {exc}") from None
    if len(raw) != raw_length or xxhash.xxh3_128_digest(raw) != digest:
        raise BackupCorrupt(f"chunk {digest.hex()} does not match its digest: the stored "
                            "object is corrupted")
    return raw


def write_zeros(volume: VolumeWriter, manifest: Manifest) -> None:
    """A block device has no holes: its zero extents are written out."""
    zeros = volume.buffer(manifest.chunk_size)  # a fresh anonymous mapping is all zeros
    for extent in manifest.extents:
        if extent.digest is None:
            for offset in range(extent.offset, extent.end, len(zeros)):
                volume.write(zeros, 0, min(len(zeros), extent.end - offset), offset)
