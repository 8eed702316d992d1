"""The auditor: finds bit rot before a client does, and hands it to the replicator.

Each pass walks every object on this node's devices, reads its metadata and recomputes the
MD5 of its ``.data`` against the stored ETag; an object that fails is moved whole to
``<device>/quarantined/objects/`` (never deleted, never served) and its suffix hash
invalidated, so the next replicator passes of the other primaries push a good copy back.
Container and account DBs get SQLite's ``PRAGMA quick_check``; a failing DB is moved to
``<device>/quarantined/<kind>s/`` and DB replication recreates it from a replica.
Reading is rate-limited (bytes and files per second) to leave the disks to clients.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import sqlite3
import time
from pathlib import Path

from soko.common.durable import fsync_dir, makedirs_durable
from soko.object.daemons.ratelimit import RateLimiter
from soko.object.node.diskfile import READ_CHUNK, DiskFile
from soko.object.node.walk import hash_dirs

log = logging.getLogger(__name__)


class Auditor:
    def __init__(self, node):
        self.node = node
        settings = node.settings
        self.bytes_limiter = RateLimiter(settings.auditor_bytes_per_second, node.stop)
        self.files_limiter = RateLimiter(settings.auditor_files_per_second, node.stop)

    def run_once(self) -> dict:
        stats = collections.Counter(objects=0, bytes=0, quarantined=0, dbs=0,
                                    dbs_quarantined=0)
        for _, device_path in self.node.mounted_devices("object"):
            for partition, hash_dir in hash_dirs(device_path / "objects"):
                if self.node.stop.is_set():
                    return dict(stats)
                self.files_limiter.wait(1)
                self.audit_object(DiskFile.at_hash(device_path, partition, hash_dir.name),
                                  stats)
        for kind in ("container", "account"):
            for _, device_path in self.node.mounted_devices(kind):
                for _, hash_dir in hash_dirs(device_path / f"{kind}s"):
                    if self.node.stop.is_set():
                        return dict(stats)
                    self.files_limiter.wait(1)
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
        try:
            with open(state.data_path, "rb", buffering=0) as f:
                while chunk := f.read(READ_CHUNK):
                    self.bytes_limiter.wait(len(chunk))
                    md5.update(chunk)
                    stats["bytes"] += len(chunk)
        except FileNotFoundError:
            return  # replaced by a newer write meanwhile
        if md5.hexdigest() != state.metadata["ETag"] and state.data_path.exists():
            df.quarantine()
            stats["quarantined"] += 1
            log.warning("quarantined %s: MD5 %s, ETag %s", state.data_path,
                        md5.hexdigest(), state.metadata["ETag"])

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
