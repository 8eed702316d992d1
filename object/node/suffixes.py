"""Suffix hashes: how two nodes tell cheaply which parts of a partition differ.

A partition's objects live in suffix dirs (the last 3 hex digits of their hash); a suffix's
hash is an xxhash over the names of every file in it, so two replicas whose files have the
same timestamps and kinds hash the same. Hashes are cached per partition in
``<partition>/hashes.msgpack``; every write, delete or quarantine appends its suffix to
``<partition>/hashes.invalid`` (a cheap append, under a per-partition lock), and the next
``get_hashes`` recomputes only those. Hashing also reclaims: a hash dir whose newest file
is a tombstone older than the reclaim age is removed (every replica has had time to learn
of the delete), and empty dirs go.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from pathlib import Path

import msgpack
import xxhash

from soko.common.durable import atomic_write
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

HASHES_FILE = "hashes.msgpack"
INVALID_FILE = "hashes.invalid"
LOCK_FILE = ".lock"
SYNC_REQUEST_FILE = "sync.requested"


@contextlib.contextmanager
def locked(part_dir: Path):
    fd = os.open(part_dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def invalidate_suffix(part_dir: Path, suffix: str) -> None:
    """Marks ``suffix`` of the partition as changed (called after every file change in it).

    A partition removed meanwhile (a reverted handoff) has no hashes left to invalidate."""
    with contextlib.suppress(FileNotFoundError), locked(part_dir):
        fd = os.open(part_dir / INVALID_FILE, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
        try:
            os.write(fd, suffix.encode() + b"\n")
        finally:
            os.close(fd)


def request_sync(part_dir: Path) -> None:
    """A peer saw this partition differ from its own: this node's replicator must not skip
    it next pass (``sync_memory``), as the peer may lack what only this node has."""
    with contextlib.suppress(FileNotFoundError):
        os.close(os.open(part_dir / SYNC_REQUEST_FILE, os.O_CREAT | os.O_WRONLY, 0o644))


def take_sync_request(part_dir: Path) -> bool:
    """Whether a peer asked for a sync since the last call (the request is used up)."""
    try:
        os.unlink(os.path.join(part_dir, SYNC_REQUEST_FILE))
    except FileNotFoundError:
        return False
    return True


def newest_is_old_tombstone(names: list[str], reclaim_before: float) -> bool:
    """Whether the newest .data/.ts of a hash dir is a tombstone older than the cutoff."""
    for name in sorted(names, reverse=True):
        stem, _, ext = name.rpartition(".")
        if ext in ("data", "ts"):
            try:
                return ext == "ts" and Timestamp.parse(stem).seconds < reclaim_before
            except InvalidTimestamp:
                return False
    return False


def hash_suffix(suffix_dir: Path, reclaim_before: float) -> str | None:
    """The suffix's hash (None when it holds nothing any more), reclaiming on the way."""
    digest = xxhash.xxh3_64()
    try:
        hash_names = sorted(os.listdir(suffix_dir))
    except FileNotFoundError:
        return None
    found = False
    for hash_name in hash_names:
        hash_dir = suffix_dir / hash_name
        try:
            names = sorted(os.listdir(hash_dir))
        except NotADirectoryError:
            continue
        except FileNotFoundError:
            names = []
        if names and newest_is_old_tombstone(names, reclaim_before):
            shutil.rmtree(hash_dir, ignore_errors=True)
            names = []
        if not names:
            with contextlib.suppress(OSError):
                hash_dir.rmdir()
            continue
        found = True
        digest.update(hash_name.encode())
        for name in names:
            digest.update(b"/" + name.encode())
    if not found:
        with contextlib.suppress(OSError):
            suffix_dir.rmdir()
        return None
    return digest.hexdigest()


def read_invalid(part_dir: Path) -> set[str]:
    """The suffixes invalidated since the last call (the list is emptied); under the lock."""
    path = part_dir / INVALID_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return set()
    if data:
        os.truncate(path, 0)
    return {s for s in data.decode().split() if s}


def clean_cache(part_dir: Path) -> dict | None:
    """The cached hashes when nothing invalidated them (None: they need the full path).

    The common case of an idle pass, read without the lock: the cache file is replaced by
    rename, so it is whole; a write invalidating a suffix after the check is one a moment
    later, which the next call sees."""
    part_dir = os.fspath(part_dir)  # string paths: this runs for every partition, every pass
    try:
        if os.stat(os.path.join(part_dir, INVALID_FILE)).st_size:
            return None
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(part_dir, HASHES_FILE), "rb") as f:
            hashes = msgpack.unpackb(f.read())
    except (FileNotFoundError, ValueError):
        return None
    return None if None in hashes.values() else hashes


def get_hashes(part_dir: Path, recalculate=(), reclaim_age: float = 7 * 86400.0) -> dict:
    """``{suffix: hash}`` of a partition, recomputing invalidated and ``recalculate``d ones."""
    if not part_dir.is_dir():
        return {}
    if not recalculate and (cached := clean_cache(part_dir)) is not None:
        return cached
    with locked(part_dir):
        try:
            hashes = msgpack.unpackb((part_dir / HASHES_FILE).read_bytes())
            stale = read_invalid(part_dir) | set(recalculate)
        except (FileNotFoundError, ValueError):
            read_invalid(part_dir)
            hashes = {}
            stale = {e.name for e in os.scandir(part_dir) if e.is_dir() and len(e.name) == 3}
    cutoff = time.time() - reclaim_age
    changed = bool(stale)
    for suffix in stale | {s for s, h in hashes.items() if h is None}:
        hashes[suffix] = hash_suffix(part_dir / suffix, cutoff)
    with locked(part_dir):
        again = read_invalid(part_dir)  # changed while we hashed: hash them next time
        hashes.update(dict.fromkeys(again))
        changed = changed or bool(again)
        hashes = {s: h for s, h in hashes.items() if h is not None or s in again}
        if changed:
            atomic_write(part_dir / HASHES_FILE, msgpack.packb(hashes))
    return {s: h for s, h in hashes.items() if h is not None}
