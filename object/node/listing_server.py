"""The container and account halves of a storage node: SQLite DBs with listings and stats.

Object nodes send listing rows here (``/container/.../<object>``); containers report their
put/delete times and stats to an account replica (``/account/.../<container>``). A container's
report after object updates goes out from a background ``StatsReporter`` about once a second,
batched, like Swift's container updater: account stats are eventually consistent, listings
are immediate.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import threading
from pathlib import Path

import falcon

from soko.common.errors import BadRequest, Conflict, NotFound
from soko.object.node.containerdb import (
    AccountDB,
    ContainerDB,
    DeletedDB,
    ListingDB,
    MetadataOverLimit,
    NotFoundDB,
    db_path,
)
from soko.object.node.diskfile import Devices
from soko.object.shared.header_text import header_text
from soko.object.shared.internal import (
    ALLOW_RESERVED_HEADER,
    prefixed_headers,
    request_timestamp,
    target_node,
)
from soko.object.shared.limits import DEFAULT_POLICY
from soko.object.shared.nodeclient import ConnectionPool, backend_path
from soko.object.shared.timestamps import Timestamp

log = logging.getLogger(__name__)

MAX_LISTING = 10_000
ACCOUNT_TARGET_KEY = "X-Backend-Account-Target"
# System metadata (middlewares' settings, e.g. versioning) comes only from the proxy.
CONTAINER_META_PREFIXES = ("X-CONTAINER-META-", "X-CONTAINER-READ", "X-CONTAINER-WRITE",
                           "X-CONTAINER-SYSMETA-")
# System metadata (the account ACL) comes only from the proxy, which never passes a client's.
ACCOUNT_META_PREFIXES = ("X-ACCOUNT-META-", "X-ACCOUNT-SYSMETA-")


def listing_query(req: falcon.Request) -> dict:
    try:
        limit = min(int(req.get_param("limit") or MAX_LISTING), MAX_LISTING)
    except ValueError:
        raise BadRequest("limit: not a number") from None
    return {
        "limit": max(limit, 0),
        "marker": req.get_param("marker") or "",
        "end_marker": req.get_param("end_marker") or "",
        "prefix": req.get_param("prefix") or "",
        "delimiter": req.get_param("delimiter") or "",
        "reverse": (req.get_param("reverse") or "").lower() in ("1", "true", "yes", "on"),
        # blank means the top level: read with blanks kept (falcon's params drop them)
        "path": falcon.uri.parse_query_string(req.query_string, keep_blank=True).get("path"),
    }


def set_stat_headers(resp: falcon.Response, info: dict, kind: str) -> None:
    title = kind.title()
    resp.set_header(f"X-{title}-Object-Count", str(info["object_count"]))
    resp.set_header(f"X-{title}-Bytes-Used", str(info["bytes_used"]))
    resp.set_header("X-Timestamp", info["put_timestamp"])
    resp.set_header("X-Put-Timestamp", info["put_timestamp"])
    resp.set_header("X-Backend-Put-Timestamp", info["put_timestamp"])
    resp.set_header("X-Backend-Delete-Timestamp", info["delete_timestamp"])
    for key, (value, _) in info["metadata"].items():
        if value != "" and not key.startswith("X-Backend-"):
            resp.set_header(key, value)


def live_info(db: ListingDB) -> dict:
    """The DB's stats; 404 if it does not exist here or was deleted."""
    try:
        info = db.stat()
    except NotFoundDB:
        raise NotFound(f"no such {db.kind}") from None
    if db.is_deleted(info):
        raise NotFound(f"{db.kind} deleted",
                       headers={"X-Backend-Delete-Timestamp": info["delete_timestamp"]})
    return info


def metadata_updates(req: falcon.Request, prefixes: tuple[str, ...]) -> dict[str, str]:
    updates = {}
    for prefix in prefixes:
        updates.update(prefixed_headers(req, prefix))
    return updates


def update_metadata(db: ListingDB, updates: dict[str, str], timestamp: Timestamp) -> None:
    """A client's metadata update: 400 if what would be stored is over the limits."""
    try:
        db.update_metadata(updates, timestamp, validate=True)
    except MetadataOverLimit as exc:
        raise BadRequest(str(exc)) from None


class StatsReporter:
    """Sends containers' put/delete times and stats to their account replica, in batches."""

    INTERVAL = 1.0

    def __init__(self, pool: ConnectionPool):
        self.pool = pool
        self.dirty: dict[Path, tuple[str, str]] = {}
        self.lock = threading.Lock()
        self.thread_pid: int | None = None

    def mark_dirty(self, db: ContainerDB, account: str, container: str) -> None:
        with self.lock:
            self.dirty[db.path] = (account, container)
            if self.thread_pid != os.getpid():  # started lazily: gunicorn forks workers
                self.thread_pid = os.getpid()
                threading.Thread(target=self.run, name="stats-reporter", daemon=True).start()

    def run(self) -> None:
        event = threading.Event()
        while not event.wait(self.INTERVAL):
            with self.lock:
                batch, self.dirty = self.dirty, {}
            for path, (account, container) in batch.items():
                if not self.report(ContainerDB(path), account, container):
                    with self.lock:
                        self.dirty.setdefault(path, (account, container))

    def report(self, db: ContainerDB, account: str, container: str) -> bool:
        """One report; True when the account replica took it (or there is nowhere to send)."""
        try:
            info = db.stat()
        except NotFoundDB:
            return True
        target = info["metadata"].get(ACCOUNT_TARGET_KEY, ["", ""])[0]
        if not target:
            return True
        node, partition = json.loads(target)
        headers = {
            "X-Timestamp": Timestamp.now().normal,  # orders this report among the replicas'
            "X-Put-Timestamp": info["put_timestamp"],
            "X-Delete-Timestamp": info["delete_timestamp"],
            "X-Object-Count": str(info["object_count"]),
            "X-Bytes-Used": str(info["bytes_used"]),
        }
        path = backend_path("account", node, partition, account, container)
        try:
            status, _, _ = self.pool.request(node, "PUT", path, headers)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("account update %s failed: %r", path, exc)
            return False
        return status // 100 == 2


class ContainerResource:
    def __init__(self, devices: Devices, reporter: StatsReporter):
        self.devices = devices
        self.reporter = reporter

    def db(self, device, partition, account, container) -> ContainerDB:
        return ContainerDB(db_path(self.devices.path(device), "container", partition,
                                   account, container))

    def on_put(self, req, resp, device, partition, account, container):
        timestamp = request_timestamp(req)
        db = self.db(device, partition, account, container)
        was_live = db.exists() and not db.is_deleted()
        db.initialize(timestamp)
        updates = metadata_updates(req, CONTAINER_META_PREFIXES)
        target = target_node(req, "ACCOUNT")
        if target is not None:
            updates[ACCOUNT_TARGET_KEY] = json.dumps(target)
        update_metadata(db, updates, timestamp)
        self.report_now(db, account, container)
        resp.status = falcon.HTTP_202 if was_live else falcon.HTTP_201

    def on_post(self, req, resp, device, partition, account, container):
        timestamp = request_timestamp(req)
        db = self.db(device, partition, account, container)
        live_info(db)
        update_metadata(db, metadata_updates(req, CONTAINER_META_PREFIXES), timestamp)
        resp.status = falcon.HTTP_204

    def on_delete(self, req, resp, device, partition, account, container):
        timestamp = request_timestamp(req)
        db = self.db(device, partition, account, container)
        info = live_info(db)
        if info["object_count"] > 0:
            raise Conflict("There was a conflict when trying to complete your request: "
                           "the container is not empty.")
        db.mark_deleted(timestamp)
        self.report_now(db, account, container)
        resp.status = falcon.HTTP_204

    def report_now(self, db: ContainerDB, account: str, container: str) -> None:
        if not self.reporter.report(db, account, container):
            self.reporter.mark_dirty(db, account, container)

    def on_head(self, req, resp, device, partition, account, container):
        set_stat_headers(resp, live_info(self.db(device, partition, account, container)),
                         "container")
        resp.status = falcon.HTTP_204

    def on_get(self, req, resp, device, partition, account, container):
        db = self.db(device, partition, account, container)
        set_stat_headers(resp, live_info(db), "container")
        rows = db.list_objects(**listing_query(req),
                               reserved=req.get_header(ALLOW_RESERVED_HEADER) == "true")
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps([
            row if isinstance(row, dict) else {
                "name": row[0], "hash": row[4], "bytes": row[2], "content_type": row[3],
                "last_modified": Timestamp.parse(row[1]).last_modified_iso,
            }
            for row in rows
        ])


class ContainerObjectResource:
    """A listing row from an object node: PUT (X-Size, X-Etag, X-Content-Type) or DELETE."""

    def __init__(self, devices: Devices, reporter: StatsReporter):
        self.devices = devices
        self.reporter = reporter

    def merge(self, req, resp, device, partition, account, container, obj, deleted: bool):
        timestamp = request_timestamp(req)
        db = ContainerDB(db_path(self.devices.path(device), "container", partition,
                                 account, container))
        try:
            size = int(req.get_header("X-SIZE") or 0)
        except ValueError:
            raise BadRequest("X-Size: not a number") from None
        # Listed as text (the proxy lets only UTF-8 content types in).
        content_type = header_text(req.get_header("X-CONTENT-TYPE") or "") or ""
        try:
            db.merge_object(obj, timestamp, size, content_type,
                            req.get_header("X-ETAG") or "", deleted)
        except NotFoundDB:
            raise NotFound("no such container") from None
        except DeletedDB as exc:
            raise NotFound("container deleted",
                           headers={"X-Backend-Delete-Timestamp": exc.args[0]}) from None
        self.reporter.mark_dirty(db, account, container)
        resp.status = falcon.HTTP_201 if not deleted else falcon.HTTP_204

    def on_put(self, req, resp, **params):
        self.merge(req, resp, **params, deleted=False)

    def on_delete(self, req, resp, **params):
        self.merge(req, resp, **params, deleted=True)


class AccountResource:
    def __init__(self, devices: Devices):
        self.devices = devices

    def db(self, device, partition, account) -> AccountDB:
        return AccountDB(db_path(self.devices.path(device), "account", partition, account))

    def on_put(self, req, resp, device, partition, account):
        timestamp = request_timestamp(req)
        db = self.db(device, partition, account)
        existed = db.exists()
        db.initialize(timestamp)
        update_metadata(db, metadata_updates(req, ACCOUNT_META_PREFIXES), timestamp)
        resp.status = falcon.HTTP_202 if existed else falcon.HTTP_201

    def on_post(self, req, resp, device, partition, account):
        timestamp = request_timestamp(req)
        db = self.db(device, partition, account)
        live_info(db)
        update_metadata(db, metadata_updates(req, ACCOUNT_META_PREFIXES), timestamp)
        resp.status = falcon.HTTP_204

    def account_headers(self, resp, db: AccountDB) -> None:
        info = live_info(db)
        set_stat_headers(resp, info, "account")
        count = db.container_count()
        resp.set_header("X-Account-Container-Count", str(count))
        if db.ever_had_containers():  # per policy, as Swift's; there is only one
            policy = f"X-Account-Storage-Policy-{DEFAULT_POLICY}-"
            resp.set_header(f"{policy}Container-Count", str(count))
            resp.set_header(f"{policy}Object-Count", str(info["object_count"]))
            resp.set_header(f"{policy}Bytes-Used", str(info["bytes_used"]))

    def on_head(self, req, resp, device, partition, account):
        self.account_headers(resp, self.db(device, partition, account))
        resp.status = falcon.HTTP_204

    def on_get(self, req, resp, device, partition, account):
        db = self.db(device, partition, account)
        self.account_headers(resp, db)
        rows = db.list_containers(**{**listing_query(req), "path": None})
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps([
            row if isinstance(row, dict) else {
                "name": row[0], "count": row[1], "bytes": row[2],
                "last_modified": Timestamp.parse(row[3]).last_modified_iso,
            }
            for row in rows
        ])


class AccountContainerResource:
    """A container's report: creates the account on first sight (Swift's autocreate)."""

    def __init__(self, devices: Devices):
        self.devices = devices

    def on_put(self, req, resp, device, partition, account, container):
        reported_at = request_timestamp(req)
        put_ts = request_timestamp(req, "X-PUT-TIMESTAMP")
        delete_ts = request_timestamp(req, "X-DELETE-TIMESTAMP")
        try:
            count = int(req.get_header("X-OBJECT-COUNT") or 0)
            used = int(req.get_header("X-BYTES-USED") or 0)
        except ValueError:
            raise BadRequest("X-Object-Count and X-Bytes-Used must be numbers") from None
        db = AccountDB(db_path(self.devices.path(device), "account", partition, account))
        if not db.exists():
            db.initialize(put_ts)
        db.merge_container(container, put_ts, delete_ts, count, used, reported_at)
        resp.status = falcon.HTTP_201
