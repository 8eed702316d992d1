"""Volume snapshots: O(1) copies in the pool, optionally taken inside a quiesce plan.

States (Cinder's): creating → available; available|error → deleting → gone (or
error_deleting when the pool fails, to be deleted again); a snapshot
whose freeze outlived the watchdog is ``error`` (its copy may be inconsistent). Like a
volume's, every change is a compare-and-swap, and a step interrupted by a crash is
finished or undone by ``reconcile`` once its owning process is gone.

A volume with snapshots cannot be deleted (409); an in-use volume is snapshotted only with
``force`` (400 otherwise), as in Cinder.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from soko.block.drivers.base import PoolError
from soko.block.models import LocalAttachment, Snapshot, Volume, newest_first, utcnow
from soko.block.owner import current_owner, owner_alive
from soko.block.quiesce import Outcome, QuiesceError, Quiescer, Target
from soko.common.db import session_scope
from soko.common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)

if TYPE_CHECKING:
    from soko.block.manager import VolumeManager

log = logging.getLogger("soko.block.snapshots")

TRANSITIONAL = ("creating", "deleting")
DELETABLE = ("available", "error", "error_deleting")


class SnapshotManager:
    def __init__(self, volumes: VolumeManager, quiescer: Quiescer):
        self.volumes = volumes
        self.quiescer = quiescer

    @property
    def pool(self):
        return self.volumes.pool

    def get(self, project_id: str, snapshot_id: str) -> Snapshot:
        with session_scope(self.volumes.sessions) as s:
            return self._get(s, project_id, snapshot_id)

    @staticmethod
    def _get(s: Session, project_id: str, snapshot_id: str) -> Snapshot:
        snapshot = s.get(Snapshot, snapshot_id)
        if snapshot is None or snapshot.project_id != project_id:
            raise NotFound(f"Snapshot {snapshot_id} could not be found.")
        return snapshot

    def list(self, project_id: str | None, *, volume_id: str | None = None,
             name: str | None = None, status: str | None = None, limit: int | None = None,
             marker: str | None = None) -> list[Snapshot]:
        filters = [getattr(Snapshot, key) == value for key, value in
                   (("volume_id", volume_id), ("name", name), ("status", status))
                   if value is not None]
        with session_scope(self.volumes.sessions) as s:
            return newest_first(s, Snapshot, project_id, filters, limit, marker, "snapshot")

    def create(self, *, project_id: str, user_id: str, volume_id: str, force: bool = False,
               name: str | None = None, description: str | None = None,
               metadata: dict | None = None, quiesce: bool | str = False,
               token: str | None = None) -> Snapshot:
        """Takes the snapshot now (inside the quiesce plan, if one is asked for) and
        returns it available, or in error if the watchdog had to thaw first."""
        snapshot = Snapshot(id=str(uuid.uuid4()), project_id=project_id, user_id=user_id,
                            volume_id=volume_id, name=name, description=description,
                            size=0, status="creating", meta=dict(metadata or {}),
                            owner=current_owner())
        with session_scope(self.volumes.sessions) as s:
            s.add(snapshot)
            s.flush()  # takes the write lock: a racing volume delete sees this row
            volume = s.get(Volume, volume_id)
            if volume is None or volume.project_id != project_id:
                raise NotFound(f"Volume {volume_id} could not be found.")
            if volume.status == "in-use" and not force:
                raise BadRequest(f"volume {volume_id} is in-use: snapshotting a volume that "
                                 "is being written needs force (and a quiesce plan for a "
                                 "consistent copy)")
            if volume.status not in ("available", "in-use"):
                raise Conflict(f"volume {volume_id} is {volume.status}; a snapshot needs it "
                               "available or in-use")
            snapshot.size = volume.size
            self.check_quota(s, project_id)
            steps = None
            if quiesce:
                plan, steps = self._plan(s, quiesce, volume, token)
                snapshot.meta = {**snapshot.meta, "quiesce_plan": plan}
        try:
            if steps is None:
                self.pool.snapshot(volume_id, snapshot.id)
                return self._finish(snapshot.id, "available", {})
            with self.quiescer.exclusive(volume_id), \
                    self.quiescer.frozen(steps, snapshot.id) as outcome:
                self.pool.snapshot(volume_id, snapshot.id)
        except (PoolError, QuiesceError) as exc:
            self.pool.delete_snapshot(snapshot.id)
            with session_scope(self.volumes.sessions) as s:
                s.execute(delete(Snapshot).where(Snapshot.id == snapshot.id))
            if isinstance(exc, PoolError):
                raise ServiceUnavailable(f"the pool could not take the snapshot: {exc}") from exc
            raise Conflict(f"quiesce plan {snapshot.meta['quiesce_plan']!r} failed, so no "
                           f"snapshot was taken (every frozen step was thawed): {exc}") from exc
        return self._finish(snapshot.id, "error" if outcome.expired else "available",
                            self._freeze_metadata(outcome))

    def _plan(self, s: Session, choice: bool | str, volume: Volume,
              token: str | None) -> tuple[str, list]:
        local = s.scalar(select(LocalAttachment.device)
                         .where(LocalAttachment.volume_id == volume.id))
        try:
            name = self.quiescer.plan_name(choice, volume.id, volume.meta or {},
                                           volume.server_id)
            steps = self.quiescer.steps(name, Target(volume.id, local, volume.server_id, token))
        except QuiesceError as exc:
            raise BadRequest(str(exc)) from None
        return name, steps

    def _freeze_metadata(self, outcome: Outcome) -> dict:
        extra = {"freeze_window_ms": f"{outcome.window_ms:.1f}"}
        if outcome.expired:
            extra["error"] = (f"the freeze outlived max_freeze_seconds "
                              f"({self.quiescer.max_freeze_seconds:g} s): the watchdog thawed "
                              "before the copy was done, so it may be inconsistent")
        if outcome.thaw_errors:
            extra["thaw_error"] = "; ".join(outcome.thaw_errors)[:255]
        return extra

    def _finish(self, snapshot_id: str, status: str, extra_metadata: dict) -> Snapshot:
        with session_scope(self.volumes.sessions) as s:
            snapshot = s.get(Snapshot, snapshot_id)
            snapshot.status = status
            snapshot.owner = None
            snapshot.meta = {**(snapshot.meta or {}), **extra_metadata}
            snapshot.updated_at = utcnow()
            return snapshot

    def check_quota(self, s: Session, project_id: str) -> None:
        limit = self.volumes.limits_of(s, project_id)["snapshots"]
        count = s.scalar(select(func.count(Snapshot.id))
                         .where(Snapshot.project_id == project_id))
        if 0 <= limit < count:
            raise PayloadTooLarge(f"SnapshotLimitExceeded: maximum number of snapshots allowed "
                                  f"({limit}) exceeded for project {project_id}")

    def update(self, project_id: str, snapshot_id: str, **values) -> Snapshot:
        with session_scope(self.volumes.sessions) as s:
            snapshot = self._get(s, project_id, snapshot_id)
            for key, value in values.items():
                setattr(snapshot, key, value)
            snapshot.updated_at = utcnow()
            return snapshot

    def delete(self, project_id: str, snapshot_id: str) -> None:
        with session_scope(self.volumes.sessions) as s:
            snapshot = self._get(s, project_id, snapshot_id)
            attached = s.scalar(select(LocalAttachment.device)
                                .where(LocalAttachment.snapshot_id == snapshot_id))
            if attached is not None:
                raise Conflict(f"snapshot {snapshot_id} is locally attached as {attached}; "
                               "local-detach it first")
            moved = s.execute(update(Snapshot).where(
                Snapshot.id == snapshot_id, Snapshot.status.in_(DELETABLE))
                .values(status="deleting", owner=current_owner(), updated_at=utcnow()))
            if moved.rowcount != 1:
                raise Conflict(f"Invalid snapshot: snapshot {snapshot_id} is "
                               f"{snapshot.status}; delete needs it {' or '.join(DELETABLE)}.")
        try:
            self._finish_delete(snapshot_id)
        except PoolError as exc:
            self._finish(snapshot_id, "error_deleting", {})
            raise ServiceUnavailable(f"the pool could not delete the snapshot ({exc}); it is "
                                     "error_deleting: delete it again") from exc

    def _finish_delete(self, snapshot_id: str) -> None:
        self.pool.delete_snapshot(snapshot_id)
        with session_scope(self.volumes.sessions) as s:
            s.execute(delete(Snapshot).where(Snapshot.id == snapshot_id))

    def reconcile(self) -> None:
        """Thaws abandoned freezes first (a dead process may have left a filesystem frozen),
        then finishes or undoes the snapshot steps of dead processes."""
        self.quiescer.recover()
        with session_scope(self.volumes.sessions) as s:
            stuck = [(snap.id, snap.owner) for snap in
                     s.scalars(select(Snapshot).where(Snapshot.status.in_(TRANSITIONAL)))]
        for snapshot_id, owner in stuck:
            if owner is not None and owner_alive(owner):
                continue
            with session_scope(self.volumes.sessions) as s:  # claim it
                claimed = s.execute(update(Snapshot).where(
                    Snapshot.id == snapshot_id, Snapshot.owner == owner)
                    .values(owner=current_owner(), status="deleting")).rowcount
            if claimed:
                log.warning("removing snapshot %s left half-done by a process that died",
                            snapshot_id)
                with contextlib.suppress(PoolError):
                    self._finish_delete(snapshot_id)
