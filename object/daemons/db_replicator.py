"""The container and account DB replicator: Swift's rsync-less ``merge_items`` approach.

Every row change in a DB takes the DB's next sequence number. For each DB on this node's
devices and each other primary, one ``sync`` call merges this DB's put/delete times and
metadata there and learns the peer's sync point for this DB (the last of this DB's row
numbers it merged); only the rows changed after that are sent, in batches, and merged
newest-timestamp-wins (container stats follow the rows). A peer that lacks the DB creates
it from the whole DB. A DB on a device that is not one of its primaries (a handoff) is
pushed to every primary and removed here once all of them have it. Deleted rows older
than ``reclaim_age`` are then forgotten, as tombstone files are.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from soko.object.daemons.replicator import PeerError, call
from soko.object.daemons.sync_memory import SyncMemory
from soko.object.node.containerdb import (
    CONNECTIONS,
    AccountDB,
    ContainerDB,
    ListingDB,
    NotFoundDB,
)
from soko.object.node.walk import hash_dirs
from soko.object.shared.timestamps import Timestamp

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
VERIFY_BATCH = 200  # DBs verified in one call to a peer (each is opened there)
DB_CLASSES = {"container": ContainerDB, "account": AccountDB}


@dataclasses.dataclass
class DBJob:
    db: ListingDB
    partition: int
    peers: list[dict]
    handoff: bool
    state: tuple = ()  # the DB's file_state when this pass looked at it


class DBReplicator:
    def __init__(self, node):
        self.node = node
        self.memory = SyncMemory(node.settings.replicator_verify_interval)

    def build_jobs(self) -> list[DBJob]:
        jobs = []
        for kind, db_class in DB_CLASSES.items():
            ring = self.node.rings[kind]
            for dev, device_path in self.node.mounted_devices(kind):
                for partition, hash_dir in hash_dirs(device_path / f"{kind}s"):
                    db_file = hash_dir / f"{hash_dir.name}.db"
                    if not db_file.exists():
                        continue
                    primaries = ring.get_part_nodes(int(partition))
                    peers = [p for p in primaries if p["id"] != dev["id"]]
                    jobs.append(DBJob(db_class(db_file), int(partition), peers,
                                      handoff=len(peers) == len(primaries)))
        return jobs

    def run_once(self) -> dict:
        stats = collections.Counter(dbs=0, dbs_skipped=0, dbs_verified=0, rows_sent=0,
                                    dbs_created=0, handoffs_reverted=0, rows_reclaimed=0,
                                    failures=0)
        due, unchanged = [], []
        for job in self.build_jobs():
            job.state = file_state(job.db.path)  # before reading it: a later write shows
            if job.handoff or not self.memory.same(job.db.path, job.state):
                due.append(job)
            elif self.memory.unchanged(job.db.path, job.state):
                stats["dbs_skipped"] += 1  # the idle case, decided without a thread
            else:
                unchanged.append(job)  # due a verify
        due += self.verify(unchanged, stats)
        with ThreadPoolExecutor(self.node.settings.replicator_concurrency) as pool:
            for job_stats in pool.map(self.run_job, due):
                stats.update(job_stats)
        return dict(stats)

    def verify(self, jobs: list[DBJob], stats) -> list[DBJob]:
        """DBs unchanged here and due a verify: each peer device is sent the ``sync`` of all
        its DBs among them in one call (``<kind>-sync``), not one call per DB; a DB every
        peer has merged up to its last row is in sync for another interval, the others
        (missing on a peer, behind, or a peer that could not answer) get a full sync:
        returned."""
        infos = {}
        for job in jobs:
            try:
                infos[job.db.path] = job.db.replication_info()
            except NotFoundDB:
                continue  # removed meanwhile
            finally:
                CONNECTIONS.forget(job.db.path)
        by_device = collections.defaultdict(list)
        for job in (j for j in jobs if j.db.path in infos):
            for peer in job.peers:
                by_device[job.db.kind, peer["ip"], peer["port"], peer["device"]].append(
                    (peer, job))
        behind = set()
        for (kind, *_), group in by_device.items():
            for start in range(0, len(group), VERIFY_BATCH):
                batch = group[start:start + VERIFY_BATCH]
                peer = batch[0][0]
                body = {"dbs": [[job.partition, job.db.path.parent.name, infos[job.db.path]]
                                for _, job in batch]}
                try:
                    points = call(self.node.pool, peer,
                                  f"/replicate/{kind}-sync/{peer['device']}", body)
                except PeerError as exc:
                    log.info("verify on %s/%s: %s", peer["ip"], peer["device"], exc)
                    points = {}
                behind.update(job.db.path for _, job in batch if is_behind(
                    points.get(job.db.path.parent.name), infos[job.db.path]["max_seq"]))
        for job in jobs:
            if job.db.path in infos and job.db.path not in behind:
                self.memory.synced(job.db.path, job.state)
                stats["dbs_verified"] += 1
        return [job for job in jobs if job.db.path in behind]

    def run_job(self, job: DBJob) -> collections.Counter:
        try:
            return self.replicate(job)
        finally:
            CONNECTIONS.forget(job.db.path)  # one visit per pass: keep no file open

    def replicate(self, job: DBJob) -> collections.Counter:
        stats = collections.Counter()
        if self.node.stop.is_set():
            return stats
        key, state = job.db.path, job.state
        try:
            info = job.db.replication_info()
        except NotFoundDB:
            return stats  # removed meanwhile
        stats["dbs"] += 1
        all_synced = True
        for peer in job.peers:
            try:
                self.sync_peer(job, peer, info, stats)
            except PeerError as exc:
                log.info("%s DB %s to %s/%s: %s", job.db.kind, job.db.path.name, peer["ip"],
                         peer["device"], exc)
                stats["failures"] += 1
                all_synced = False
        if all_synced and not job.handoff:
            self.memory.synced(key, state)
        else:
            self.memory.forget(key)
        cutoff = Timestamp.parse(time.time() - self.node.settings.reclaim_age)
        stats["rows_reclaimed"] += job.db.reclaim(cutoff)
        if job.handoff and all_synced and \
                job.db.replication_info()["max_seq"] == info["max_seq"]:
            job.db.remove_file()
            shutil.rmtree(job.db.path.parent, ignore_errors=True)
            stats["handoffs_reverted"] += 1
        return stats

    def sync_peer(self, job: DBJob, peer: dict, info: dict, stats) -> None:
        path = db_path_on(peer, job)
        try:
            answer = call(self.node.pool, peer, path, {"op": "sync", "info": info})
        except PeerError as exc:
            if exc.status != 404:
                raise
            answer = call(self.node.pool, peer, path,
                          {"op": "sync", "info": info, "create": True})
            stats["dbs_created"] += 1
        point = answer["sync_point"]
        while point < info["max_seq"] and not self.node.stop.is_set():
            rows = job.db.rows_since(point, BATCH_ROWS)
            if not rows:
                break
            call(self.node.pool, peer, path, {"op": "merge_items", "uid": info["uid"],
                                              "rows": [r[:-1] for r in rows],
                                              "max_seq": rows[-1][-1]})
            point = rows[-1][-1]
            stats["rows_sent"] += len(rows)


def is_behind(sync_point: int | None, max_seq: int) -> bool:
    """Whether a peer lacks the DB (None) or some of its rows (a DB without rows has
    max_seq 0, and a peer that never merged any has sync point -1: nothing to send)."""
    return sync_point is None or (max_seq > 0 and sync_point < max_seq)


def file_state(path: Path) -> tuple:
    """What changes whenever a DB does, read without opening it: its file's identity, size
    and modification time, and its write-ahead log's size and modification time when it
    holds anything (SQLite recreates and resets an empty log as connections come and go)."""
    state = []
    for name in (path, path.with_name(path.name + "-wal")):
        try:
            st = os.stat(name)
        except FileNotFoundError:
            st = None
        state.append((st.st_ino, st.st_size, st.st_mtime_ns) if st and st.st_size else None)
    return tuple(state)


def db_path_on(peer: dict, job: DBJob) -> str:
    digest = Path(job.db.path).parent.name
    return f"/replicate/{job.db.kind}/{peer['device']}/{job.partition}/{digest}"
