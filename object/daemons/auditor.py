"""The auditor: finds bit rot before a client does, and hands it to the replicator.

Each pass walks every object on this node's devices, reads its metadata and recomputes the
MD5 of its ``.data`` against the stored ETag and each block's xxh3 against its block sums
(``blocksums``; a ``.data`` of the older format that has none gets them once its MD5
checked out); an object that fails is moved whole to
``<device>/quarantined/objects/`` (never deleted, never served) and its suffix hash
invalidated, so the next replicator passes of the other primaries push a good copy back.
Container and account DBs get SQLite's ``PRAGMA quick_check``; a failing DB is moved to
``<device>/quarantined/<kind>s/`` and DB replication recreates it from a replica.
Reading is rate-limited (bytes and files per second) to leave the disks to clients, and
the daemon spreads each pass over ``auditor_interval`` (a day by default, like a scrub
cycle): reads verify block sums anyway, so the auditor is for data nobody reads, and an
idle node should pay a trickle for it, not a full pass every minute.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from soko.common.durable import fsync_dir, makedirs_durable
from soko.object.daemons.ratelimit import RateLimiter
from soko.object.node.blocksums import (
    LAYOUT,
    METADATA_KEY,
    BlockHasher,
    has_block_sums,
    save_sums,
    stored_sums,
)
from soko.object.node.diskfile import (
    READ_CHUNK,
    XATTR_NAME,
    DiskFile,
    pack_metadata,
    read_metadata,
)
from soko.object.node.walk import hash_dirs

log = logging.getLogger(__name__)

SPREAD_SHARE = 0.9  # of the interval a paced pass aims to take, to end before the next


class Auditor:
    def __init__(self, node):
        self.node = node
        settings = node.settings
        self.bytes_limiter = RateLimiter(settings.auditor_bytes_per_second, node.stop)
        self.files_limiter = RateLimiter(settings.auditor_files_per_second, node.stop)

    def targets(self) -> Iterator[tuple[str, Path, str, Path]]:
        """``(kind, device path, partition, hash dir)`` of every object and DB here."""
        for kind, root in (("object", "objects"), ("container", "containers"),
                           ("account", "accounts")):
            for _, device_path in self.node.mounted_devices(kind):
                for partition, hash_dir in hash_dirs(device_path / root):
                    yield kind, device_path, partition, hash_dir

    def pace(self) -> RateLimiter:
        """The files limiter for this pass. A one-off pass runs as fast as the limits allow;
        the daemon spreads a pass over ``auditor_interval`` (every object and DB read once
        per interval, as a scrub cycle), so an idle node's auditor costs a trickle, not a
        burst every minute. Counting first costs a directory walk, a small part of a pass."""
        if not self.node.background:
            return self.files_limiter
        count = sum(1 for _ in self.targets())
        spread = count / (SPREAD_SHARE * self.node.settings.auditor_interval)
        cap = self.node.settings.auditor_files_per_second
        return RateLimiter(min(spread, cap) if cap else spread, self.node.stop)

    def run_once(self) -> dict:
        stats = collections.Counter(objects=0, bytes=0, quarantined=0, block_sums_added=0,
                                    dbs=0, dbs_quarantined=0)
        files_limiter = self.pace()
        for kind, device_path, partition, hash_dir in self.targets():
            if self.node.stop.is_set():
                break
            files_limiter.wait(1)
            if kind == "object":
                self.audit_object(DiskFile.at_hash(device_path, partition, hash_dir.name),
                                  stats)
            else:
                self.audit_db(device_path, kind, hash_dir, stats)
        return dict(stats)

    def audit_object(self, df: DiskFile, stats) -> None:
        state = df.read_state()  # quarantines unreadable metadata or a wrong size itself
        if df.quarantined:
            stats["quarantined"] += 1
            log.warning("quarantined %s: bad metadata or size", df.hash_dir.name)
            return
        if not state.exists:
            return
        stats["objects"] += 1
        df.index_expiry(state.metadata)  # an entry the index lost (it is not fsynced)
        md5 = hashlib.md5(usedforsecurity=False)
        blocks = BlockHasher()
        try:
            with open(state.data_path, "rb", buffering=0) as f:
                while chunk := f.read(READ_CHUNK):
                    self.bytes_limiter.wait(len(chunk))
                    md5.update(chunk)
                    blocks.update(chunk)
                    stats["bytes"] += len(chunk)
                digests = blocks.finish()
                problem = body_problem(f.fileno(), state.metadata, md5.hexdigest(), digests)
                if problem is None and not has_block_sums(state.metadata):
                    add_block_sums(f.fileno(), digests)
                    stats["block_sums_added"] += 1
        except FileNotFoundError:
            return  # replaced by a newer write meanwhile
        if problem and state.data_path.exists():
            df.quarantine()
            stats["quarantined"] += 1
            log.warning("quarantined %s: %s", state.data_path, problem)

    def audit_db(self, device_path: Path, kind: str, hash_dir: Path, stats) -> None:
        db_file = hash_dir / f"{hash_dir.name}.db"
        if not db_file.exists():
            return
        stats["dbs"] += 1
        problem = db_problem(db_file)
        if problem:
            quarantine_db(device_path, kind, hash_dir)
            stats["dbs_quarantined"] += 1
            log.warning("quarantined %s DB %s: %s", kind, db_file, problem)


def body_problem(fd: int, metadata: dict[str, str], md5: str, digests: bytes) -> str | None:
    """What is wrong with a body whose MD5 and block digests were just computed (None:
    nothing): its MD5 must be its ETag, and its stored block sums (if any) these digests."""
    if md5 != metadata["ETag"]:
        return f"MD5 {md5}, ETag {metadata['ETag']}"
    if has_block_sums(metadata) and stored_sums(fd, int(metadata["Content-Length"])) != digests:
        return "its block sums differ from its blocks"
    return None


def add_block_sums(fd: int, digests: bytes) -> None:
    """Gives a ``.data`` of the older format, whose MD5 was just checked, its block sums:
    the digests first, then the key in its own metadata (one atomic setxattr), so a reader
    that sees the key finds them; fsynced. Only derived data is added: the body and what a
    client sees of the object stay as they are."""
    save_sums(fd, digests)
    metadata = read_metadata(fd)  # the .data's own, without a .meta's changes
    os.setxattr(fd, XATTR_NAME, pack_metadata({**metadata, METADATA_KEY: LAYOUT}))
    os.fsync(fd)


def db_problem(path: Path) -> str | None:
    """What SQLite's quick_check finds wrong with a DB file (None: nothing)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                                timeout=30)) as conn:
            rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if rows == [("ok",)] else "; ".join(r[0] for r in rows[:3])


def quarantine_db(device_path: Path, kind: str, hash_dir: Path) -> None:
    """Moves a DB's whole dir aside: replication recreates it from a good replica."""
    target = device_path / "quarantined" / f"{kind}s" / f"{hash_dir.name}-{time.time_ns()}"
    makedirs_durable(target.parent)
    try:
        os.rename(hash_dir, target)
    except FileNotFoundError:
        return
    fsync_dir(target.parent)
