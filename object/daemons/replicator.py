"""The object replicator: keeps every partition's replicas identical, pushing what differs.

For each partition on this node's devices (``build_jobs``), ``run_job`` compares the local
suffix hashes with each other primary's (``REPLICATE``), asks for the suffixes that differ
to be recomputed there, and for those still differing offers its file names and pushes the
files the peer wants (``replication_server``). Every node pushes, nobody pulls: a node
that missed writes gets them from the others' passes. Tombstones are files like any other,
so deletes replicate; suffix hashing reclaims them after ``reclaim_age``.

A partition on a device that is not one of its primaries (a handoff, or a leftover after a
ring change) is pushed to all primaries and removed here only when every one of them took
it and nothing changed locally meanwhile.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import http.client
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgpack

from soko.object.daemons.ratelimit import RateLimiter
from soko.object.daemons.sync_memory import SyncMemory
from soko.object.node.diskfile import XATTR_NAME, parse_name, remove_stale_temps
from soko.object.node.replication_server import METADATA_HEADER
from soko.object.node.suffixes import clean_cache, get_hashes, take_sync_request
from soko.object.node.walk import entries
from soko.object.shared.nodeclient import STREAM_CHUNK

log = logging.getLogger(__name__)

VERIFY_BATCH = 256  # partitions asked about in one call (bounded time on the peer)


class PeerError(Exception):
    """A peer could not take part (unreachable, 507, bad answer): retried next pass."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def call(pool, peer: dict, path: str, body) -> object:
    """One msgpack RPC to a peer's replication API (``replication_server``)."""
    try:
        status, _, data = pool.request(peer, "POST", path,
                                       {"Content-Type": "application/msgpack"},
                                       msgpack.packb(body))
    except (OSError, http.client.HTTPException) as exc:
        raise PeerError(f"POST {path}: {exc!r}") from None
    if status != 200:
        raise PeerError(f"POST {path}: status {status}", status)
    return msgpack.unpackb(data, raw=False)


@dataclasses.dataclass
class PartitionJob:
    device: dict  # the local ring device
    part_dir: Path
    partition: int
    peers: list[dict]  # the other primaries; for a handoff, all of them
    handoff: bool
    forced: bool = False  # a handoff, or a peer asked: synced even if unchanged

    @property
    def key(self) -> tuple[int, int]:
        return self.device["id"], self.partition


class ObjectReplicator:
    def __init__(self, node):
        self.node = node
        self.settings = node.settings
        self.limiter = RateLimiter(self.settings.replicator_bytes_per_second, node.stop)
        self.memory = SyncMemory(self.settings.replicator_verify_interval)

    def build_jobs(self) -> list[PartitionJob]:
        ring = self.node.rings["object"]
        jobs = []
        for dev, device_path in self.node.mounted_devices("object"):
            remove_stale_temps(device_path)
            for entry in entries(device_path / "objects"):
                if not entry.name.isdigit():
                    continue
                primaries = ring.get_part_nodes(int(entry.name))
                peers = [p for p in primaries if p["id"] != dev["id"]]
                jobs.append(PartitionJob(dev, Path(entry.path), int(entry.name), peers,
                                         handoff=len(peers) == len(primaries)))
        return jobs

    def run_once(self) -> dict:
        stats = collections.Counter(partitions=0, partitions_skipped=0,
                                    partitions_verified=0, suffixes_synced=0, objects_moved=0,
                                    bytes_moved=0, handoffs_reverted=0, failures=0)
        due, unchanged = [], []
        for job in self.build_jobs():
            if job.handoff or take_sync_request(job.part_dir):
                job.forced = True
            elif (cached := clean_cache(job.part_dir)) is not None and \
                    self.memory.same(job.key, cached):
                if self.memory.unchanged(job.key, cached):
                    stats["partitions_skipped"] += 1  # the idle case, without a thread
                else:
                    unchanged.append((job, cached))  # due a verify
                continue
            due.append(job)
        due += self.verify(unchanged, stats)
        with ThreadPoolExecutor(self.settings.replicator_concurrency) as pool:
            for job_stats in pool.map(self.run_job, due):
                stats.update(job_stats)
        return dict(stats)

    def verify(self, jobs: list[tuple[PartitionJob, dict]], stats) -> list[PartitionJob]:
        """Partitions unchanged here and due a verify: every peer device is asked for the
        hashes of all of its partitions among them in one call (``object-hashes``), not two
        calls per partition; those every peer agrees with are in sync for another interval,
        the others (and those a peer could not answer for) get a full sync: returned."""
        by_device = collections.defaultdict(list)
        for job, local in jobs:
            for peer in job.peers:
                by_device[peer["ip"], peer["port"], peer["device"]].append((peer, job, local))
        differing = set()
        for group in by_device.values():
            for start in range(0, len(group), VERIFY_BATCH):
                batch = group[start:start + VERIFY_BATCH]
                peer = batch[0][0]
                try:
                    answer = call(self.node.pool, peer,
                                  f"/replicate/object-hashes/{peer['device']}",
                                  {"partitions": [job.partition for _, job, _ in batch]})
                except PeerError as exc:
                    log.info("verify on %s/%s: %s", peer["ip"], peer["device"], exc)
                    answer = {}
                differing.update(job.key for _, job, local in batch
                                 if answer.get(str(job.partition)) != local)
        for job, local in jobs:
            if job.key not in differing:
                self.memory.synced(job.key, local)
                stats["partitions_verified"] += 1
        return [job for job, _ in jobs if job.key in differing]

    def run_job(self, job: PartitionJob) -> collections.Counter:
        stats = collections.Counter()
        if self.node.stop.is_set():
            return stats
        reclaim = self.settings.reclaim_age
        local = get_hashes(job.part_dir, reclaim_age=reclaim)
        key = job.key
        if not job.forced and self.memory.unchanged(key, local):
            stats["partitions_skipped"] += 1  # rehashed, to the same hashes
            return stats
        stats["partitions"] += 1
        all_synced = True
        for peer in job.peers:
            try:
                self.sync_peer(job, peer, local, stats)
            except PeerError as exc:
                log.info("partition %s to %s/%s: %s", job.partition, peer["ip"],
                         peer["device"], exc)
                stats["failures"] += 1
                all_synced = False
        if all_synced and not job.handoff:
            self.memory.synced(key, local)
        else:
            self.memory.forget(key)
        if job.handoff and all_synced and get_hashes(job.part_dir, reclaim_age=reclaim) == local:
            shutil.rmtree(job.part_dir, ignore_errors=True)
            stats["handoffs_reverted"] += 1
        return stats

    def sync_peer(self, job: PartitionJob, peer: dict, local: dict, stats) -> None:
        remote = self.replicate(peer, job.partition)
        # A suffix only the peer has is asked about too: recalculating it there makes the
        # peer push it (request_sync), as it may be one this node lost
        differing = sorted(s for s in local.keys() | remote.keys() if remote.get(s) != local.get(s))
        if not differing:
            return
        remote = self.replicate(peer, job.partition, differing)
        for suffix in (s for s in differing if s in local and remote.get(s) != local[s]):
            offer = suffix_files(job.part_dir / suffix)
            wanted = call(self.node.pool, peer, f"{base_path(peer, job.partition)}/missing",
                          offer)
            for digest, name in wanted:
                if self.node.stop.is_set():
                    raise PeerError("stopping")
                size = self.push_file(peer, job, digest, name)
                if name.endswith(".data"):
                    stats["objects_moved"] += 1
                stats["bytes_moved"] += size
            stats["suffixes_synced"] += 1

    def replicate(self, peer: dict, partition: int, recalculate=()) -> dict:
        return call(self.node.pool, peer, base_path(peer, partition),
                    {"recalculate": list(recalculate)})

    def push_file(self, peer: dict, job: PartitionJob, digest: str, name: str) -> int:
        """Streams one file with its metadata to the peer; its size (0 if it vanished here)."""
        path = job.part_dir / digest[-3:] / digest / name
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                metadata = base64.b64encode(os.getxattr(f.fileno(), XATTR_NAME)).decode()
                status = self.stream(peer, f"{base_path(peer, job.partition)}/{digest}/{name}",
                                     {METADATA_HEADER: metadata, "Content-Length": str(size)}, f)
        except FileNotFoundError:
            return 0  # replaced by a newer write since the offer: the next pass sends that
        if status not in (201, 409):  # 409: the peer has it or something newer
            raise PeerError(f"PUT {name}: status {status}")
        return size if status == 201 else 0

    def stream(self, peer: dict, path: str, headers: dict, f) -> int:
        pool = self.node.pool
        try:
            conn, _ = pool.acquire(peer["ip"], peer["port"])
        except OSError as exc:
            raise PeerError(f"connect: {exc!r}") from None
        response = None
        try:
            conn.putrequest("PUT", path, skip_accept_encoding=True)
            for key, value in headers.items():
                conn.putheader(key, value)
            conn.endheaders()
            while chunk := f.read(STREAM_CHUNK):
                self.limiter.wait(len(chunk))
                conn.send(chunk)
            response = conn.getresponse()
            response.read()
            return response.status
        except (OSError, http.client.HTTPException) as exc:
            raise PeerError(f"PUT {path}: {exc!r}") from None
        finally:
            pool.release(conn, response)


def base_path(peer: dict, partition: int) -> str:
    return f"/replicate/object/{peer['device']}/{partition}"


def suffix_files(suffix_dir: Path) -> dict[str, list[str]]:
    """``{hash: [file names]}`` of one suffix dir: what a peer is offered."""
    offer = {}
    for entry in entries(suffix_dir):
        try:
            names = [n for n in os.listdir(entry.path) if parse_name(n)]
        except (FileNotFoundError, NotADirectoryError):
            continue
        if names:
            offer[entry.name] = names
    return offer
