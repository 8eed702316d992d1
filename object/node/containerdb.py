"""Container and account databases: one SQLite file each, merged by timestamp like Swift's.

A container DB lists its objects (name, timestamp, size, type, ETag, deleted) with the
container's stats and metadata; an account DB lists its containers the same way. Every row
and every metadata item carries the timestamp of the write that made it, and a merge keeps
the newest, so replicas that saw updates in different orders converge.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a commit survives a process crash, and a
power cut can lose only the last listing updates, never corrupt the file. That is Swift's
trade too (its container ``.pending`` files are not fsynced): listings are repaired by
replication and the async-pending records, while object data itself is always fsynced.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgpack

from soko.common.durable import fsync_dir, makedirs_durable
from soko.object.node.diskfile import name_hash
from soko.object.shared.header_text import wire_length
from soko.object.shared.internal import PAST_RESERVED
from soko.object.shared.limits import MAX_META_COUNT, MAX_META_OVERALL_SIZE
from soko.object.shared.timestamps import ZERO, Timestamp

STAT_COLUMNS = ("put_timestamp", "delete_timestamp", "object_count", "bytes_used", "metadata")

SCHEMA = {
    "container": """
        CREATE TABLE IF NOT EXISTS entry (
            name TEXT PRIMARY KEY, created_at TEXT NOT NULL, size INTEGER NOT NULL,
            content_type TEXT NOT NULL, etag TEXT NOT NULL, deleted INTEGER NOT NULL,
            seq INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS entry_seq ON entry (seq);
    """,
    "account": """
        CREATE TABLE IF NOT EXISTS entry (
            name TEXT PRIMARY KEY, put_timestamp TEXT NOT NULL, delete_timestamp TEXT NOT NULL,
            object_count INTEGER NOT NULL, bytes_used INTEGER NOT NULL, deleted INTEGER NOT NULL,
            seq INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS entry_seq ON entry (seq);
    """,
}
STAT_SCHEMA = """
    CREATE TABLE IF NOT EXISTS stat (
        id INTEGER PRIMARY KEY CHECK (id = 0), put_timestamp TEXT NOT NULL,
        delete_timestamp TEXT NOT NULL, object_count INTEGER NOT NULL,
        bytes_used INTEGER NOT NULL, metadata BLOB NOT NULL, uid TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS incoming_sync (
        remote_uid TEXT PRIMARY KEY, seq INTEGER NOT NULL
    ) WITHOUT ROWID;
"""
# Every row change takes the next number of its DB: replication sends a peer the rows
# numbered above what that peer last acknowledged (Swift's ROWID sync points).
NEXT_SEQ = "(SELECT coalesce(max(seq), 0) + 1 FROM entry)"
ENTRY_COLUMNS = {
    "container": ("name", "created_at", "size", "content_type", "etag", "deleted"),
    "account": ("name", "put_timestamp", "delete_timestamp", "object_count", "bytes_used",
                "deleted", "reported_at"),
}
# Schema changes since the first release, in order: a new DB gets them all when it is made,
# an older one the ones it lacks when a process opens it (SQLite's user_version counts those
# applied), so old DBs upgrade in place.
MIGRATIONS = {
    "container": [
        "CREATE INDEX IF NOT EXISTS entry_deleted ON entry (deleted, name)",
    ],
    "account": [
        "CREATE INDEX IF NOT EXISTS entry_deleted ON entry (deleted, name)",
        # when the container replica reported the row's counts (see AccountDB)
        "ALTER TABLE entry ADD COLUMN reported_at TEXT NOT NULL DEFAULT ''",
    ],
}

OPEN_CACHE_SIZE = 256
USER_META_PREFIXES = ("x-account-meta-", "x-container-meta-")


def db_path(device_path: Path, kind: str, partition: str, account: str,
            container: str | None = None) -> Path:
    digest = name_hash(account, container)
    return device_path / f"{kind}s" / partition / digest[-3:] / digest / f"{digest}.db"


def upper_bound(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class MetadataOverLimit(ValueError):
    """An update would leave more user metadata stored than the API's limits."""


def check_stored_metadata(metadata: dict[str, list]) -> None:
    """Swift's ``DatabaseBroker.validate_metadata``: the stored ``X-Account-Meta-*`` /
    ``X-Container-Meta-*`` items (non-empty) within the count and overall-size limits."""
    count = size = 0
    for key, (value, _) in metadata.items():
        prefix = next((p for p in USER_META_PREFIXES if key.lower().startswith(p)), None)
        if value and prefix:
            count += 1
            size += wire_length(key[len(prefix):]) + wire_length(value)
    if count > MAX_META_COUNT:
        raise MetadataOverLimit(f"Too many metadata items; max {MAX_META_COUNT}")
    if size > MAX_META_OVERALL_SIZE:
        raise MetadataOverLimit(f"Total metadata too large; max {MAX_META_OVERALL_SIZE}")


class _Connections:
    """Open connections, one per DB file, kept for reuse with a lock each (gthread workers).

    A cached connection is to a file, not a name: once another process quarantines,
    reverts or replaces the DB at that path (the replicator recreates a quarantined one),
    the old connection would read and write the orphaned file. So each use checks that the
    path still names the file the connection has open, and reopens it if not. (Closing the
    stale one is safe: SQLite sees the file has moved and leaves the new file's WAL alone.)
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: OrderedDict[Path, tuple[sqlite3.Connection, threading.Lock, tuple]] = \
            OrderedDict()

    def get(self, path: Path, migrations: list[str]) -> tuple[sqlite3.Connection, threading.Lock]:
        """The connection to the file at ``path`` (with ``migrations`` applied); raises
        FileNotFoundError if there is none."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.forget(path)
            raise
        identity = (st.st_dev, st.st_ino)
        with self.lock:
            entry = self.open.get(path)
            if entry and entry[2] == identity:
                self.open.move_to_end(path)
                return entry[0], entry[1]
        if entry:
            self.forget(path)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        migrate(conn, migrations)
        lock = threading.Lock()
        with self.lock:
            if path in self.open:  # another thread opened it meanwhile: share that one
                conn.close()
                return self.open[path][0], self.open[path][1]
            self.open[path] = (conn, lock, identity)
            evicted = [self.open.popitem(last=False)[1]
                       for _ in range(len(self.open) - OPEN_CACHE_SIZE)]
        for old, old_lock, _ in evicted:
            with old_lock:
                old.close()
        return conn, lock

    def forget(self, path: Path) -> None:
        with self.lock:
            entry = self.open.pop(path, None)
        if entry:
            with entry[1]:
                entry[0].close()


CONNECTIONS = _Connections()


def migrate(conn: sqlite3.Connection, migrations: list[str]) -> None:
    """Applies the migrations the DB lacks, in one transaction with the version bump (two
    processes opening an old DB at once apply them once)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= len(migrations):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        for statement in migrations[version:]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {max(version, len(migrations))}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class NotFoundDB(Exception):
    """The DB file does not exist (the container or account was never created here)."""


class DeletedDB(Exception):
    """The container or account was deleted at ``args[0]`` (its newest write)."""


class ListingDB:
    """What container and account DBs share: stats, metadata, listings, create/delete."""

    kind: str = ""
    deleted_at: str = ""  # the entry column holding when a deleted row was deleted

    def __init__(self, path: Path):
        self.path = path

    @contextlib.contextmanager
    def transaction(self):
        try:
            conn, lock = CONNECTIONS.get(self.path, MIGRATIONS[self.kind])
        except FileNotFoundError:
            raise NotFoundDB(str(self.path)) from None
        with lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def exists(self) -> bool:
        return self.path.exists()

    def initialize(self, put_timestamp: Timestamp) -> None:
        """Creates the DB (if new) and records a PUT at ``put_timestamp``."""
        if not self.path.exists():
            # Built aside and linked into place: a concurrent creator (a replicator pushing
            # the same DB) or reader never sees a half-made file, and one of them wins.
            makedirs_durable(self.path.parent)
            tmp = self.path.with_name(f".tmp-{uuid.uuid4().hex}")
            try:
                with contextlib.closing(sqlite3.connect(tmp, isolation_level=None)) as conn:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.executescript(SCHEMA[self.kind] + STAT_SCHEMA)
                    migrate(conn, MIGRATIONS[self.kind])  # linked into place complete
                    conn.execute(
                        "INSERT OR IGNORE INTO stat VALUES (0, ?, ?, 0, 0, ?, ?)",
                        (ZERO.normal, ZERO.normal, msgpack.packb({}), uuid.uuid4().hex),
                    )
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, self.path)
            finally:
                os.unlink(tmp)
            fsync_dir(self.path.parent)
        with self.transaction() as conn:
            conn.execute("UPDATE stat SET put_timestamp = max(put_timestamp, ?)",
                         (put_timestamp.normal,))

    def stat(self) -> dict[str, Any]:
        with self.transaction() as conn:
            row = conn.execute(f"SELECT {', '.join(STAT_COLUMNS)} FROM stat").fetchone()
        info = dict(zip(STAT_COLUMNS, row, strict=True))
        info["metadata"] = msgpack.unpackb(info["metadata"])
        return info

    def is_deleted(self, info: dict[str, Any] | None = None) -> bool:
        info = info or self.stat()
        return info["delete_timestamp"] > info["put_timestamp"]

    def mark_deleted(self, timestamp: Timestamp) -> None:
        with self.transaction() as conn:
            conn.execute("UPDATE stat SET delete_timestamp = max(delete_timestamp, ?)",
                         (timestamp.normal,))

    def update_metadata(self, updates: dict[str, str], timestamp: Timestamp, *,
                        validate: bool = False) -> None:
        """Merges ``{header: value}`` set at ``timestamp``; an empty value removes the item.

        ``validate`` (a client's PUT or POST, not replication) refuses an update that would
        leave more user metadata stored than the API allows: limits per request alone would
        let POSTs pile up items until the node's answers are more than clients can read.
        """
        with self.transaction() as conn:
            (raw,) = conn.execute("SELECT metadata FROM stat").fetchone()
            metadata = msgpack.unpackb(raw)
            for key, value in updates.items():
                if key not in metadata or metadata[key][1] < timestamp.normal:
                    metadata[key] = [value, timestamp.normal]
            if validate:
                check_stored_metadata(metadata)
            conn.execute("UPDATE stat SET metadata = ?", (msgpack.packb(metadata),))

    def list_entries(self, columns: str, *, limit: int, marker: str = "", end_marker: str = "",
                     prefix: str = "", delimiter: str = "", reverse: bool = False,
                     path: str | None = None, reserved: bool = True) -> list:
        """Swift's listing: rows (tuples of ``columns``, name first) and ``{"subdir": ...}``.

        With a delimiter, every name that has it after the prefix rolls up into one subdir
        entry, and the query jumps past that subdir instead of reading its rows. ``path``
        (Swift's legacy pseudo-folders) lists one level under ``path/``: the names with no
        further ``/`` (or only a trailing one), deeper ones skipped without a subdir entry.
        Without ``reserved``, names starting with NUL (``internal.RESERVED``) are left out.
        """
        if path is not None:
            path = prefix = path.rstrip("/") + "/" if path else ""
            delimiter = "/"
        low_marker, high_marker = (end_marker, marker) if reverse else (marker, end_marker)
        lower = (prefix, True) if prefix > low_marker else (low_marker, False)
        if not reserved and lower[0] < PAST_RESERVED:
            lower = (PAST_RESERVED, True)
        highs = [h for h in (high_marker, upper_bound(prefix) if prefix else "") if h]
        upper = min(highs) if highs else None  # always exclusive
        results: list = []
        with self.transaction() as conn:
            while len(results) < limit:
                where = ["deleted = 0", f"name {'>=' if lower[1] else '>'} ?"]
                args: list = [lower[0]]
                if upper is not None:
                    where.append("name < ?")
                    args.append(upper)
                order = "DESC" if reverse else "ASC"
                rows = conn.execute(
                    f"SELECT {columns} FROM entry WHERE {' AND '.join(where)} "
                    f"ORDER BY name {order} LIMIT ?",
                    [*args, limit - len(results)],
                ).fetchall()
                if not rows:
                    break
                for row in rows:
                    name = row[0]
                    cut = name.find(delimiter, len(prefix)) if delimiter else -1
                    if path is not None and len(name) == cut + 1:
                        cut = -1  # a pseudo-folder marker object (``dir/``) is an entry
                    if cut < 0:
                        if name != path:
                            results.append(row)
                        continue
                    subdir = name[: cut + len(delimiter)]
                    if subdir != marker and path is None:  # as Swift: paging on from a
                        results.append({"subdir": subdir})  # subdir skips it
                    if reverse:
                        upper = subdir
                    else:
                        lower = (upper_bound(subdir), True)
                    break
                else:
                    if not reverse:
                        lower = (rows[-1][0], False)
                    else:
                        upper = rows[-1][0]
        return results[:limit]

    # -- replication (db_replicator): rows by sequence number, info by timestamp ---------------

    def replication_info(self) -> dict[str, Any]:
        """What a peer needs to merge this DB's own state: uid, times, metadata, last seq."""
        with self.transaction() as conn:
            put_ts, delete_ts, raw, uid = conn.execute(
                "SELECT put_timestamp, delete_timestamp, metadata, uid FROM stat").fetchone()
            (max_seq,) = conn.execute("SELECT coalesce(max(seq), 0) FROM entry").fetchone()
        return {"uid": uid, "put_timestamp": put_ts, "delete_timestamp": delete_ts,
                "metadata": msgpack.unpackb(raw), "max_seq": max_seq}

    def merge_info(self, info: dict[str, Any]) -> None:
        """Takes a peer's put/delete times and metadata items where they are newer.

        Nothing newer, nothing written: a peer's routine sync must not change this DB's
        files, or the replicators would see every DB as changed on every pass."""
        with self.transaction() as conn:
            put_ts, delete_ts, raw = conn.execute(
                "SELECT put_timestamp, delete_timestamp, metadata FROM stat").fetchone()
            metadata = msgpack.unpackb(raw)
            newer = {key: [value, ts] for key, (value, ts) in info["metadata"].items()
                     if key not in metadata or metadata[key][1] < ts}
            if not newer and info["put_timestamp"] <= put_ts and \
                    info["delete_timestamp"] <= delete_ts:
                return
            conn.execute(
                "UPDATE stat SET put_timestamp = max(put_timestamp, ?), "
                "delete_timestamp = max(delete_timestamp, ?), metadata = ?",
                (info["put_timestamp"], info["delete_timestamp"],
                 msgpack.packb({**metadata, **newer})))

    def sync_point(self, remote_uid: str) -> int:
        """The last of ``remote_uid``'s row numbers merged here (-1: none yet)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT seq FROM incoming_sync WHERE remote_uid = ?",
                               (remote_uid,)).fetchone()
        return row[0] if row else -1

    def rows_since(self, seq: int, limit: int) -> list[list]:
        """Up to ``limit`` rows changed after ``seq``, oldest change first, seq last."""
        columns = ", ".join(ENTRY_COLUMNS[self.kind])
        with self.transaction() as conn:
            return [list(r) for r in conn.execute(
                f"SELECT {columns}, seq FROM entry WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit))]

    def merge_rows(self, rows: list, remote_uid: str, remote_seq: int) -> None:
        """Merges a peer's rows (newest timestamp wins) and remembers how far it got."""
        with self.transaction() as conn:
            self.merge_rows_locked(conn, rows)
            conn.execute("INSERT OR REPLACE INTO incoming_sync VALUES (?, ?)",
                         (remote_uid, remote_seq))

    def merge_rows_locked(self, conn, rows: list) -> None:
        raise NotImplementedError

    def reclaim(self, cutoff: Timestamp) -> int:
        """Forgets deleted rows last changed before ``cutoff`` (the reclaim age: every peer
        has had them by then); how many. The newest row always stays, as it carries the
        highest sequence number and the next change must number above it."""
        with self.transaction() as conn:
            return conn.execute(
                f"DELETE FROM entry WHERE deleted = 1 AND {self.deleted_at} < ? "
                "AND seq < (SELECT max(seq) FROM entry)", (cutoff.normal,)).rowcount

    def remove_file(self) -> None:
        CONNECTIONS.forget(self.path)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(str(self.path) + suffix)


def merge_object_row(conn, row: tuple) -> None:
    """One listing row (name, created_at, size, content_type, etag, deleted) unless the
    listing already has a newer one; the container's stats follow."""
    name, created_at, size, _, _, deleted = row[:6]
    old = conn.execute("SELECT created_at, size, deleted FROM entry WHERE name = ?",
                       (name,)).fetchone()
    if old is not None and old[0] >= created_at:
        return
    count_delta = (0 if deleted else 1) - (1 if old and not old[2] else 0)
    bytes_delta = (0 if deleted else size) - (old[1] if old and not old[2] else 0)
    conn.execute(f"INSERT OR REPLACE INTO entry VALUES (?, ?, ?, ?, ?, ?, {NEXT_SEQ})",
                 row[:6])
    conn.execute(
        "UPDATE stat SET object_count = object_count + ?, bytes_used = bytes_used + ?",
        (count_delta, bytes_delta),
    )


class ContainerDB(ListingDB):
    kind = "container"
    deleted_at = "created_at"  # a deleted row's timestamp is its DELETE's

    def merge_object(self, name: str, timestamp: Timestamp, size: int, content_type: str,
                     etag: str, deleted: bool) -> None:
        """Applies one object PUT/DELETE unless the listing already has a newer one; a
        deleted container takes none (``DeletedDB``). The check shares the merge's
        transaction: a separate stat was a second transaction per object write."""
        with self.transaction() as conn:
            put, deleted_at = conn.execute(
                "SELECT put_timestamp, delete_timestamp FROM stat").fetchone()
            if deleted_at > put:
                raise DeletedDB(deleted_at)
            merge_object_row(conn, (name, timestamp.normal, size, content_type, etag,
                                    int(deleted)))

    def merge_rows_locked(self, conn, rows: list) -> None:
        for row in rows:
            merge_object_row(conn, tuple(row))

    def list_objects(self, **query) -> list:
        return self.list_entries("name, created_at, size, content_type, etag", **query)


class AccountDB(ListingDB):
    kind = "account"
    deleted_at = "delete_timestamp"

    def merge_container(self, name: str, put_timestamp: Timestamp, delete_timestamp: Timestamp,
                        object_count: int, bytes_used: int, reported_at: Timestamp) -> None:
        """Applies a container replica's report of its times and counts, made at
        ``reported_at``."""
        with self.transaction() as conn:
            self.merge_rows_locked(conn, [(name, put_timestamp.normal, delete_timestamp.normal,
                                           object_count, bytes_used, 0, reported_at.normal)])

    def merge_rows_locked(self, conn, rows: list) -> None:
        """Applies container reports (or replicated rows): the newest put/delete times win,
        and the counts of the latest report. Container replicas report on their own and may
        differ for a while; ordering the reports is what lets account replicas agree (a row
        from a peer without a report time never beats one here)."""
        for name, put_timestamp, delete_timestamp, object_count, bytes_used, *rest in rows:
            reported_at = rest[1] if len(rest) > 1 else ""
            old = conn.execute(
                "SELECT put_timestamp, delete_timestamp, object_count, bytes_used, deleted, "
                "reported_at FROM entry WHERE name = ?", (name,)).fetchone()
            if old is not None and old[5] >= reported_at:
                object_count, bytes_used, reported_at = old[2], old[3], old[5]
            put_ts = max(put_timestamp, old[0] if old else "")
            delete_ts = max(delete_timestamp, old[1] if old else "")
            deleted = delete_ts > put_ts
            if deleted:
                object_count = bytes_used = 0
            new = (put_ts, delete_ts, object_count, bytes_used, int(deleted), reported_at)
            if old is None or tuple(old[:5]) != new[:5]:  # a repeated report changes nothing
                conn.execute(
                    "INSERT OR REPLACE INTO entry (name, put_timestamp, delete_timestamp, "
                    "object_count, bytes_used, deleted, reported_at, seq) "
                    f"VALUES (?, ?, ?, ?, ?, ?, ?, {NEXT_SEQ})", (name, *new))
        totals = conn.execute(
            "SELECT coalesce(sum(object_count), 0), coalesce(sum(bytes_used), 0) "
            "FROM entry WHERE deleted = 0").fetchone()
        conn.execute("UPDATE stat SET object_count = ?, bytes_used = ?", totals)

    def container_count(self) -> int:
        with self.transaction() as conn:
            return conn.execute("SELECT count(*) FROM entry WHERE deleted = 0").fetchone()[0]

    def ever_had_containers(self) -> bool:
        """Whether any container was ever listed here (Swift keeps an account's per-policy
        stats from its first container on, deleted or not)."""
        with self.transaction() as conn:
            return conn.execute("SELECT 1 FROM entry LIMIT 1").fetchone() is not None

    def list_containers(self, **query) -> list:
        return self.list_entries("name, object_count, bytes_used, put_timestamp", **query)
