"""The receiving side of object replication on a storage node (internal API, msgpack bodies).

- ``POST /replicate/object/<device>/<partition>`` ``{"recalculate": [suffix, ...]}`` →
  ``{suffix: hash}``: Swift's REPLICATE, the partition's suffix hashes, recomputing the
  ones asked for (the sender's view of them differs, so the cache may be stale).
- ``POST /replicate/object-hashes/<device>`` ``{"partitions": [n, ...]}`` →
  ``{"n": {suffix: hash}}``: the cached hashes of many partitions in one call, for a
  replicator verifying partitions it believes in sync (``sync_memory``); nothing recomputed
  beyond what writes invalidated, and no sync requested.
- ``POST /replicate/object/<device>/<partition>/missing`` ``{hash: [file name, ...]}`` →
  ``[[hash, file name], ...]``: which of the offered files this node wants, i.e. those it
  lacks that would survive next to what it has (newest ``.data``/``.ts`` wins, then the
  newest ``.meta`` newer than that).
- ``PUT /replicate/object/<device>/<partition>/<hash>/<file name>`` with the file's raw
  metadata xattr in ``X-Soko-Metadata`` (base64) and its body: written like any object
  file (temp, fsync, rename, fsync dir, older files cleaned up); a ``.data`` whose MD5
  differs from its ETag is refused (422), so a corrupted replica never spreads; a file
  made obsolete by a newer one here is refused (409).
- ``POST /replicate/<container|account>-sync/<device>`` ``{"dbs": [[partition, hash,
  info], ...]}``: ``sync`` (below) for many DBs at once, for a replicator's verifies.
- ``POST /replicate/<container|account>/<device>/<partition>/<hash>`` ``{"op": ...}``:
  the DB half (``db_replicator``). ``sync`` ``{"info": ...}`` merges the sender's put/delete
  times and metadata and answers ``{"sync_point": n}``, the last of the sender's row numbers
  merged here (404 if the DB is not here; with ``"create": true`` it is created first);
  ``merge_items`` ``{"uid", "rows", "max_seq"}`` merges rows, newest timestamp wins.
"""

from __future__ import annotations

import base64
import binascii
import re

import falcon
import msgpack

from soko.common.errors import BadRequest, Conflict, NotFound, SokoError, Unprocessable
from soko.object.node.containerdb import AccountDB, ContainerDB, NotFoundDB
from soko.object.node.diskfile import (
    Devices,
    DiskFile,
    DiskFileError,
    parse_name,
    unpack_metadata,
)
from soko.object.node.suffixes import get_hashes, request_sync
from soko.object.shared.nodeclient import STREAM_CHUNK
from soko.object.shared.timestamps import Timestamp

HASH_RE = re.compile(r"^[0-9a-f]{32}$")
SUFFIX_RE = re.compile(r"^[0-9a-f]{3}$")
METADATA_HEADER = "X-Soko-Metadata"


class IncompleteBody(SokoError):
    status, title = 499, "Client Disconnect"


def survivors(files: list[tuple[Timestamp, str]]) -> set[tuple[Timestamp, str]]:
    """Which of a hash dir's (timestamp, kind) files the newest-wins rules keep."""
    keep = max((f for f in files if f[1] != "meta"), default=None)
    metas = [f for f in files if f[1] == "meta" and (keep is None or f[0] > keep[0])]
    return {f for f in (keep, max(metas, default=None)) if f is not None}


def wanted_names(existing: list[str], offered: list[str]) -> list[str]:
    """The offered file names worth having next to ``existing`` (data and tombstones first)."""
    have = {p for p in map(parse_name, existing) if p}
    offers = {parse_name(n): n for n in offered if parse_name(n)}
    keep = survivors(list(have | set(offers)))
    wanted = [n for f, n in offers.items() if f in keep and f not in have]
    return sorted(wanted, key=lambda n: n.endswith(".meta"))


def unpack(req: falcon.Request):
    try:
        return msgpack.unpackb(req.bounded_stream.read(), raw=False)
    except ValueError as exc:
        raise BadRequest(f"body: not msgpack ({exc})") from None


class ReplicateResource:
    def __init__(self, devices: Devices, reclaim_age: float):
        self.devices = devices
        self.reclaim_age = reclaim_age

    def on_post(self, req, resp, device, partition):
        body = unpack(req) or {}
        recalculate = [s for s in body.get("recalculate", []) if SUFFIX_RE.match(str(s))]
        part_dir = self.devices.path(device) / "objects" / check_partition(partition)
        if recalculate:  # the caller found these suffixes differ: look at them from here too
            request_sync(part_dir)
        resp.content_type = "application/msgpack"
        resp.data = msgpack.packb(get_hashes(part_dir, recalculate, self.reclaim_age))


class PartitionHashesResource:
    MAX_PARTITIONS = 10_000

    def __init__(self, devices: Devices, reclaim_age: float):
        self.devices = devices
        self.reclaim_age = reclaim_age

    def on_post(self, req, resp, device):
        body = unpack(req)
        partitions = body.get("partitions") if isinstance(body, dict) else None
        if not isinstance(partitions, list) or len(partitions) > self.MAX_PARTITIONS or \
                not all(isinstance(p, int) and p >= 0 for p in partitions):
            raise BadRequest(f"body: expected {{\"partitions\": [up to "
                             f"{self.MAX_PARTITIONS} partition numbers]}}")
        objects = self.devices.path(device) / "objects"
        resp.content_type = "application/msgpack"
        resp.data = msgpack.packb({str(p): get_hashes(objects / str(p),
                                                      reclaim_age=self.reclaim_age)
                                   for p in partitions})


class MissingResource:
    def __init__(self, devices: Devices):
        self.devices = devices

    def on_post(self, req, resp, device, partition):
        offered = unpack(req)
        if not isinstance(offered, dict):
            raise BadRequest("body: expected {hash: [file names]}")
        device_path = self.devices.path(device)
        wanted = []
        for digest, names in offered.items():
            if not HASH_RE.match(str(digest)) or not isinstance(names, list):
                raise BadRequest(f"bad offer for {digest!r}")
            df = DiskFile.at_hash(device_path, check_partition(partition), digest)
            existing = [name for _, _, name in df.files()]
            wanted += [[digest, n] for n in wanted_names(existing, names)]
        resp.content_type = "application/msgpack"
        resp.data = msgpack.packb(wanted)


class ReplicatedFileResource:
    def __init__(self, devices: Devices):
        self.devices = devices

    def on_put(self, req, resp, device, partition, digest, filename):
        parsed = parse_name(filename)
        if not HASH_RE.match(digest) or parsed is None:
            raise BadRequest("expected /<hash>/<timestamp>.data|.ts|.meta")
        try:
            metadata = unpack_metadata(base64.b64decode(req.get_header(METADATA_HEADER) or ""))
        except (DiskFileError, binascii.Error, ValueError):
            raise BadRequest(f"{METADATA_HEADER}: not valid object metadata") from None
        if req.content_length is None:
            raise BadRequest("Content-Length is required")
        df = DiskFile.at_hash(self.devices.path(device), check_partition(partition), digest)
        if not wanted_names([name for _, _, name in df.files()], [filename]):
            raise Conflict("this node has the file or a newer one")
        with df.writer(req.content_length) as writer:
            while chunk := req.stream.read(min(STREAM_CHUNK, req.content_length - writer.size)):
                writer.write(chunk)
            if writer.size != req.content_length:
                raise IncompleteBody(f"got {writer.size} of {req.content_length} bytes")
            if parsed[1] == "data" and writer.etag != metadata.get("ETag"):
                raise Unprocessable("the body's MD5 differs from its ETag")
            writer.commit(parsed[0], parsed[1], metadata)
        resp.status = falcon.HTTP_201


class ReplicateDBResource:
    """The DB replication calls for one kind (container or account)."""

    def __init__(self, devices: Devices, db_class: type[ContainerDB] | type[AccountDB]):
        self.devices = devices
        self.db_class = db_class

    def db(self, device: str, partition: str, digest: str):
        if not HASH_RE.match(digest):
            raise BadRequest(f"not a DB hash: {digest!r}")
        return self.db_class(self.devices.path(device) / f"{self.db_class.kind}s"
                             / check_partition(partition) / digest[-3:] / digest
                             / f"{digest}.db")

    def on_post(self, req, resp, device, partition, digest):
        kind = self.db_class.kind
        db = self.db(device, partition, digest)
        body = unpack(req)
        if not isinstance(body, dict):
            raise BadRequest("body: expected a msgpack map with an op")
        try:
            answer = self.run(db, body)
        except NotFoundDB:
            raise NotFound(f"no such {kind} DB here") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"bad {body.get('op')!r} request: {exc!r}") from None
        resp.content_type = "application/msgpack"
        resp.data = msgpack.packb(answer)

    def run(self, db, body: dict) -> dict:
        if body["op"] == "sync":
            return {"sync_point": sync(db, body["info"], create=bool(body.get("create")))}
        if body["op"] == "merge_items":
            db.merge_rows(body["rows"], body["uid"], int(body["max_seq"]))
            return {}
        raise ValueError("op must be sync or merge_items")


class SyncManyDBResource(ReplicateDBResource):
    """``sync`` for many DBs of one kind on one device in one call: how a replicator
    verifies the DBs it believes in sync. ``{"dbs": [[partition, hash, info], ...]}`` →
    ``{hash: sync point, or None where the DB is not here}``."""

    MAX_DBS = 1000

    def on_post(self, req, resp, device):
        body = unpack(req)
        dbs = body.get("dbs") if isinstance(body, dict) else None
        if not isinstance(dbs, list) or len(dbs) > self.MAX_DBS or not all(
                isinstance(d, list) and len(d) == 3 and isinstance(d[2], dict) for d in dbs):
            raise BadRequest(f"body: expected {{\"dbs\": [up to {self.MAX_DBS} "
                             "[partition, hash, info]]}}")
        answer = {}
        for partition, digest, info in dbs:
            db = self.db(device, str(partition), str(digest))
            try:
                answer[digest] = sync(db, info)
            except NotFoundDB:
                answer[digest] = None
            except (KeyError, TypeError, ValueError) as exc:
                raise BadRequest(f"bad info for {digest}: {exc!r}") from None
        resp.content_type = "application/msgpack"
        resp.data = msgpack.packb(answer)


def sync(db, info: dict, create: bool = False) -> int:
    """Merges a peer's view of a DB (times, metadata) into this replica; the last of the
    peer's rows merged here (its sync point)."""
    if create and not db.exists():
        db.initialize(Timestamp.parse(info["put_timestamp"]))
    db.merge_info(info)
    return db.sync_point(info["uid"])


def check_partition(partition: str) -> str:
    if not partition.isdigit():
        raise BadRequest(f"partition must be a number, got {partition!r}")
    return partition
