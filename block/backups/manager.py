"""The backup manager: backup, restore and delete as background jobs, no HTTP.

Each request checks its input and moves the backup row by compare-and-swap before any
work starts, so bad input leaves nothing behind and two racing requests cannot both win.
The work runs in a thread of the block service talking to the object store with the
requesting user's token; the row carries the status, a progress percentage and, when
done, what the job measured. ``recover`` settles the jobs of a process that died.

Chunks are shared between backups, so deleting one is mark-and-sweep: every chunk no
remaining manifest names is deleted. A per-project lock keeps sweeps and running backups
apart (a running backup has no manifest yet, but relies on chunks it found in the store).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from sqlalchemy import select, update

from soko.block.backups import engine
from soko.block.backups.fiemap import ExtentMap
from soko.block.backups.manifest import (
    BadManifest,
    Manifest,
    block_map_name,
    manifest_name,
)
from soko.block.backups.models import TRANSITIONAL, Backup
from soko.block.backups.store import MissingObject, ObjectStore, StoreError
from soko.block.drivers.base import PoolError
from soko.block.manager import VolumeManager
from soko.block.models import Snapshot, Volume, utcnow
from soko.block.owner import current_owner, owner_alive
from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict, NotFound

log = logging.getLogger("soko.block.backups")

StoreFactory = Callable[[str, str], ObjectStore]  # (project_id, token) -> store
RESTORING_VOLUME = "restoring-backup"  # Cinder's volume status while a restore runs
BASE_PREFIX = "backup-base-"  # pool volumes kept as the last backup's source (keep_base)
EXPECTED = (engine.BackupCorrupt, BadManifest, StoreError, OSError, ValueError)


def log_failure(what: str, exc: Exception) -> None:
    """Expected failures (store down, corrupt chunk, disk error) in one line; others with
    their traceback, as they are bugs."""
    log.error("%s failed: %s", what, exc, exc_info=not isinstance(exc, EXPECTED))


class BackupManager:
    def __init__(self, volumes: VolumeManager, stores: StoreFactory, *,
                 settings: engine.Settings, container: str):
        self.volumes = volumes
        self.snapshots = volumes.snapshots
        self.sessions = volumes.sessions
        self.stores = stores
        self.settings = settings
        self.container = container
        self.lock_dir = volumes.state_dir / "backup-locks"
        self.jobs: set[threading.Thread] = set()

    # -- reading --------------------------------------------------------------------

    def get(self, project_id: str | None, backup_id: str) -> Backup:
        with session_scope(self.sessions) as s:
            backup = s.get(Backup, backup_id)
            if backup is None or project_id not in (None, backup.project_id):
                raise NotFound(f"Backup {backup_id} could not be found.")
            return backup

    def list(self, project_id: str | None, *, volume_id: str | None = None,
             status: str | None = None, name: str | None = None) -> list[Backup]:
        """Newest first; ``project_id=None`` lists every project (admin)."""
        query = select(Backup).order_by(Backup.created_at.desc(), Backup.id.desc())
        for column, value in ((Backup.project_id, project_id), (Backup.volume_id, volume_id),
                              (Backup.status, status), (Backup.name, name)):
            if value is not None:
                query = query.where(column == value)
        with session_scope(self.sessions) as s:
            return list(s.scalars(query))

    def has_dependents(self, backup_id: str) -> bool:
        with session_scope(self.sessions) as s:
            return s.scalar(select(Backup.id).where(Backup.parent_id == backup_id)
                            .limit(1)) is not None

    # -- backup ---------------------------------------------------------------------

    def create(self, *, project_id: str, user_id: str, token: str, volume_id: str,
               name: str | None = None, description: str | None = None,
               incremental: bool = False, force: bool = False,
               snapshot_id: str | None = None) -> Backup:
        volume = self.volumes.get(project_id, volume_id)
        self.drop_stale_bases()  # of volumes deleted since (they would pin pool space)
        if snapshot_id is not None:
            snapshot = self.snapshots.get(project_id, snapshot_id)
            if snapshot.volume_id != volume_id:
                raise BadRequest(f"snapshot {snapshot_id} is of volume {snapshot.volume_id}, "
                                 f"not {volume_id}")
        parent = self.latest_backup(project_id, volume_id) if incremental else None
        if incremental and parent is None:
            raise BadRequest(f"No backups available to do an incremental backup of volume "
                             f"{volume_id}: make a full backup first.")
        backup_id = str(uuid.uuid4())
        temporary = snapshot_id is None
        if temporary:  # the point in time is now; the snapshot checks the volume's state
            snapshot_id = self.snapshots.create(
                project_id=project_id, user_id=user_id, volume_id=volume_id, force=force,
                name=f"backup-{backup_id}",
                description="taken for a backup; deleted when the backup is done").id
        try:
            self.mark_snapshot(snapshot_id, "available", "backing-up")
        except Conflict:
            if temporary:
                self.snapshots.delete(project_id, snapshot_id)
            raise
        backup = Backup(id=backup_id, project_id=project_id, user_id=user_id,
                        volume_id=volume_id, snapshot_id=None if temporary else snapshot_id,
                        temp_snapshot_id=snapshot_id if temporary else None,
                        parent_id=parent.id if parent else None, name=name,
                        description=description, size=volume.size, status="creating",
                        is_incremental=parent is not None, container=self.container,
                        owner=current_owner(), stats={})
        with session_scope(self.sessions) as s:
            s.add(backup)
        self.start_job(f"backup-{backup.id}", self.run_backup, backup, token)
        return backup

    def mark_snapshot(self, snapshot_id: str, from_status: str, to_status: str) -> None:
        """A snapshot being read is ``backing-up`` (as in Cinder), so it cannot be deleted
        under the backup."""
        with session_scope(self.sessions) as s:
            moved = s.execute(update(Snapshot).where(
                Snapshot.id == snapshot_id, Snapshot.status == from_status)
                .values(status=to_status, updated_at=utcnow())).rowcount
            if moved != 1:
                status = s.scalar(select(Snapshot.status).where(Snapshot.id == snapshot_id))
                raise Conflict(f"Invalid snapshot: snapshot {snapshot_id} is {status}; a "
                               f"backup needs it {from_status}.")

    def latest_backup(self, project_id: str, volume_id: str) -> Backup | None:
        """The incremental's parent: the volume's newest available backup (as Cinder)."""
        with session_scope(self.sessions) as s:
            return s.scalars(select(Backup).where(
                Backup.project_id == project_id, Backup.volume_id == volume_id,
                Backup.status == "available")
                .order_by(Backup.data_timestamp.desc(), Backup.created_at.desc())
                .limit(1)).first()

    def run_backup(self, backup: Backup, token: str) -> None:
        store = self.stores(backup.project_id, token)
        try:
            with self.chunks_locked(backup.project_id, exclusive=False), \
                    self.source(backup) as (path, size):
                parent = base = None
                if backup.parent_id:
                    parent = self.load_parent(store, backup.parent_id)
                    base = ExtentMap.of(self.volumes.pool.path(base_id(backup.parent_id)))
                manifest, stats = engine.backup(
                    path, size, store, backup_id=backup.id, volume_id=backup.volume_id,
                    parent=parent, base=base, settings=self.settings,
                    progress=self.progress_reporter(backup.id))
                store.put(manifest_name(backup.id), manifest.pack())  # last: now it exists
                self.keep_base(backup)
        except Exception as exc:  # the row must settle whatever happened
            log_failure(f"backup {backup.id} of volume {backup.volume_id}", exc)
            self.set_status(backup.id, ("creating",), "error", fail_reason=str(exc))
            self.drop_partial(backup, store)
            return
        self.set_status(backup.id, ("creating",), "available", progress=100.0,
                        object_count=len(manifest.chunk_sizes) + 2, stats=stats.as_dict())
        log.info("backup %s of volume %s: %s", backup.id, backup.volume_id, stats.as_dict())

    def drop_partial(self, backup: Backup, store: ObjectStore) -> None:
        """Removes what a failed backup stored: its manifest (a PUT that failed may still
        have landed), its block map, and by a sweep the chunks no manifest names, so a
        failure leaves no orphan objects. Where the store cannot be reached, the next
        sweep (any delete) takes them."""
        try:
            store.delete(manifest_name(backup.id))
            store.delete(block_map_name(backup.id))
            self.sweep(backup.project_id, store)
        except Exception as exc:
            log_failure(f"cleaning up after backup {backup.id}", exc)

    @contextlib.contextmanager
    def source(self, backup: Backup) -> Iterator[tuple[str, int]]:
        """What the backup reads: the snapshot it was given, or the one taken for it at
        the request (never a live volume); afterwards that one is deleted, a given one is
        available again."""
        try:
            path = self.volumes.pool.snapshot_path(backup.snapshot_id or backup.temp_snapshot_id)
            yield path, file_size(path)
        finally:
            self.release_snapshot(backup)

    def release_snapshot(self, backup: Backup) -> None:
        snapshot_id = backup.snapshot_id or backup.temp_snapshot_id
        with contextlib.suppress(Conflict, NotFound):
            self.mark_snapshot(snapshot_id, "backing-up", "available")
            if backup.temp_snapshot_id:
                self.snapshots.delete(backup.project_id, backup.temp_snapshot_id)

    def keep_base(self, backup: Backup) -> None:
        """Keeps what this backup read as a reflink copy in the pool (O(1); it costs only
        the blocks the volume rewrites later), so the next incremental skips every block
        still shared with it. Older bases of the volume go; none is kept where the pool's
        files have no extent map (LVM), as it would not help there."""
        pool = self.volumes.pool
        snapshot_id = backup.snapshot_id or backup.temp_snapshot_id
        if ExtentMap.of(pool.snapshot_path(snapshot_id)) is None:
            return
        try:
            pool.clone_snapshot(snapshot_id, base_id(backup.id), 0)
        except PoolError as exc:  # only the next incremental's speed depends on it
            log.warning("no base kept for backup %s: %s", backup.id, exc)
            return
        for other in self.list(backup.project_id, volume_id=backup.volume_id):
            if other.id != backup.id:
                pool.delete(base_id(other.id))

    def drop_stale_bases(self) -> None:
        """Removes the bases of backups or volumes that are gone."""
        pool = self.volumes.pool
        bases = {name for name in pool.volumes() if name.startswith(BASE_PREFIX)}
        if not bases:
            return
        with session_scope(self.sessions) as s:
            live = set(s.scalars(select(Backup.id).where(
                Backup.volume_id.in_(select(Volume.id)))))
        for name in bases:
            if name.removeprefix(BASE_PREFIX) not in live:
                pool.delete(name)

    def load_parent(self, store: ObjectStore, parent_id: str) -> engine.Parent:
        manifest = Manifest.unpack(store.get(manifest_name(parent_id)))
        return engine.Parent(manifest, engine.load_block_map(store, manifest))

    # -- restore --------------------------------------------------------------------

    def restore(self, *, project_id: str, user_id: str, token: str, backup_id: str,
                volume_id: str | None = None, name: str | None = None) -> tuple[Backup, str]:
        """Starts restoring into ``volume_id`` (available, large enough) or a new volume;
        returns the backup and the target volume's id."""
        backup = self.get(project_id, backup_id)
        if backup.status != "available":
            raise Conflict(f"Invalid backup: backup {backup_id} is {backup.status}; a restore "
                           "needs it available.")
        if volume_id is not None:
            volume = self.volumes.get(project_id, volume_id)
            if volume.size < backup.size:
                raise BadRequest(f"volume {volume_id} has {volume.size} GiB; backup "
                                 f"{backup_id} needs at least {backup.size} GiB")
            if volume.status != "available":
                raise Conflict(f"Invalid volume: volume {volume_id} is {volume.status}; "
                               "a restore needs it available (detach it first).")
        self.set_status(backup_id, ("available",), "restoring", progress=0.0,
                        owner=current_owner(), restore_volume_id=None)
        try:
            if volume_id is None:
                volume = self.volumes.create(
                    project_id=project_id, user_id=user_id, size=backup.size,
                    name=name or f"restore-{backup_id}",
                    description=f"restored from backup {backup_id}")
                volume_id = volume.id
            self.volumes.transition(project_id, volume_id, ("available",), RESTORING_VOLUME,
                                    "restore")
        except BaseException:
            self.set_status(backup_id, ("restoring",), "available", owner=None)
            raise
        self.set_status(backup_id, ("restoring",), "restoring", restore_volume_id=volume_id)
        self.start_job(f"restore-{backup_id}", self.run_restore, backup, volume_id, token)
        return self.get(project_id, backup_id), volume_id

    def run_restore(self, backup: Backup, volume_id: str, token: str) -> None:
        store = self.stores(backup.project_id, token)
        try:
            manifest = Manifest.unpack(store.get(manifest_name(backup.id)))
            stats = engine.restore(manifest, store, self.volumes.pool.path(volume_id),
                                   settings=self.settings,
                                   progress=self.progress_reporter(backup.id))
        except Exception as exc:
            log_failure(f"restore of backup {backup.id} into volume {volume_id}", exc)
            self.volumes.transition(backup.project_id, volume_id, (RESTORING_VOLUME,), "error")
            self.set_status(backup.id, ("restoring",), "available", owner=None,
                            fail_reason=f"restore into volume {volume_id} failed: {exc}")
            return
        self.volumes.transition(backup.project_id, volume_id, (RESTORING_VOLUME,), "available")
        self.set_status(backup.id, ("restoring",), "available", owner=None, progress=100.0,
                        fail_reason=None,
                        stats={**backup.stats, "last_restore": stats.as_dict()})

    # -- delete ---------------------------------------------------------------------

    def delete(self, *, project_id: str, token: str, backup_id: str) -> None:
        backup = self.get(project_id, backup_id)
        if self.has_dependents(backup_id):
            raise Conflict(f"Invalid backup: incremental backups depend on backup "
                           f"{backup_id}; delete them first.")
        self.set_status(backup_id, ("available", "error"), "deleting",
                        owner=current_owner(), progress=0.0)
        self.start_job(f"delete-{backup_id}", self.run_delete, backup, token)

    def run_delete(self, backup: Backup, token: str) -> None:
        store = self.stores(backup.project_id, token)
        try:
            store.delete(manifest_name(backup.id))
            store.delete(block_map_name(backup.id))
            self.sweep(backup.project_id, store)
            self.volumes.pool.delete(base_id(backup.id))
        except Exception as exc:
            log_failure(f"deleting backup {backup.id}", exc)
            self.set_status(backup.id, ("deleting",), "error", owner=None,
                            fail_reason=f"delete did not finish ({exc}); delete it again")
            return
        with session_scope(self.sessions) as s:
            s.delete(s.get(Backup, backup.id))

    def sweep(self, project_id: str, store: ObjectStore) -> int:
        """Deletes every chunk that no manifest in the store names; returns how many. The
        manifests, not the DB, are the truth (a backup exists once its manifest does), and
        one that cannot be read stops the sweep: never delete on partial knowledge."""
        with self.chunks_locked(project_id, exclusive=True):
            live: set[str] = set()
            try:
                for name in list(store.names("manifests/")):
                    live |= Manifest.unpack(store.get(name)).chunk_names()
                garbage = [n for n in store.names("chunks/") if n not in live]
            except MissingObject:  # no container: nothing to sweep
                return 0
            for name in garbage:
                store.delete(name)
            return len(garbage)

    # -- shared -----------------------------------------------------------------------

    @contextlib.contextmanager
    def chunks_locked(self, project_id: str, *, exclusive: bool) -> Iterator[None]:
        """Shared by running backups, exclusive for a sweep (one host's processes)."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with open(self.lock_dir / f"{project_id}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    def start_job(self, name: str, target, *args) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception:
                log.exception("backup job %s failed unexpectedly", name)
            finally:
                self.jobs.discard(thread)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.jobs.add(thread)
        thread.start()

    def wait_idle(self, timeout: float = 600) -> None:
        """Waits for every job this process started (tests, benchmarks, shutdown)."""
        deadline = time.monotonic() + timeout
        for thread in list(self.jobs):
            thread.join(max(0.0, deadline - time.monotonic()))

    def progress_reporter(self, backup_id: str) -> engine.Progress:
        """Writes the percentage at most once a second (a row update per chunk is waste)."""
        last = [0.0]

        def report(fraction: float) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0 or fraction >= 1.0:
                last[0] = now
                with session_scope(self.sessions) as s:
                    s.execute(update(Backup).where(Backup.id == backup_id)
                              .values(progress=round(100.0 * fraction, 1)))
        return report

    def set_status(self, backup_id: str, from_states: tuple[str, ...], to_state: str,
                   **values) -> None:
        """The compare-and-swap every status change goes through."""
        if to_state not in TRANSITIONAL:
            values.setdefault("owner", None)
        with session_scope(self.sessions) as s:
            changed = s.execute(update(Backup).where(
                Backup.id == backup_id, Backup.status.in_(from_states))
                .values(status=to_state, updated_at=utcnow(), **values)).rowcount
            if changed != 1:
                backup = s.get(Backup, backup_id)
                if backup is None:
                    raise NotFound(f"Backup {backup_id} could not be found.")
                raise Conflict(f"Invalid backup: backup {backup_id} is {backup.status}; this "
                               f"needs it {' or '.join(from_states)}.")

    def recover(self) -> None:
        """Settles jobs whose process died: a backup fails (its chunks are swept later), a
        restore's volume is marked error, a delete is left to be repeated."""
        self.drop_stale_bases()
        with session_scope(self.sessions) as s:
            stuck = list(s.scalars(select(Backup).where(Backup.status.in_(TRANSITIONAL))))
        for backup in stuck:
            if backup.owner is not None and owner_alive(backup.owner):
                continue
            reason = "the block service stopped during this step"
            with contextlib.suppress(Conflict, NotFound):
                if backup.status == "creating":
                    self.release_snapshot(backup)
                    self.set_status(backup.id, ("creating",), "error", fail_reason=reason)
                elif backup.status == "restoring":
                    if backup.restore_volume_id:
                        self.volumes.transition(backup.project_id, backup.restore_volume_id,
                                                (RESTORING_VOLUME,), "error")
                    self.set_status(backup.id, ("restoring",), "available",
                                    fail_reason=f"restore interrupted: {reason}")
                else:
                    self.set_status(backup.id, ("deleting",), "error",
                                    fail_reason=f"delete interrupted ({reason}); delete again")


def base_id(backup_id: str) -> str:
    return BASE_PREFIX + backup_id


def file_size(path: str) -> int:
    """Bytes in a file or block device (seeking to the end works for both)."""
    with open(path, "rb") as f:
        return f.seek(0, 2)
