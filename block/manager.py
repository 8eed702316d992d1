"""The volume manager: the block service's logic, no HTTP.

Every state change is a compare-and-swap (``UPDATE volumes SET status=... WHERE
status IN (...)``), so two requests racing on one volume cannot both win; the loser gets
``Conflict``. A step that touches the pool or the target first records its transitional
state and owning process in the DB; ``reconcile`` finishes or undoes steps whose owner
died, and replays the exports of in-use volumes into a target daemon that lost them.

States (Cinder's): creating → available ⇄ extending; available → attaching → in-use →
detaching → available; available|error → deleting → gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import math
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.orm import Session, sessionmaker

from soko.block import limits
from soko.block.drivers.base import PoolError, VolumePool
from soko.block.local_attach import LocalAttacher
from soko.block.models import Quota, Snapshot, Volume, newest_first, utcnow
from soko.block.owner import current_owner, owner_alive
from soko.block.quiesce import Quiescer
from soko.block.snapshots import SnapshotManager
from soko.block.targets.base import ExportSpec, ExportTarget, TargetError
from soko.common.db import session_scope
from soko.common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)

log = logging.getLogger("soko.block.manager")

GiB = 1 << 30
TRANSITIONAL = ("creating", "attaching", "detaching", "extending", "deleting",
                "downloading", "uploading")  # the last two: block/images.py
LIVE_EXPORT = ("attaching", "in-use")  # a target for any other status is stale
CLEARED_ATTACHMENT = dict(attachment_id=None, initiator=None, attached_at=None,
                          chap_user=None, chap_secret=None, server_id=None)


@dataclasses.dataclass(frozen=True)
class QuotaDefaults:
    volumes: int
    gigabytes: int
    snapshots: int = 10  # Cinder's default


@dataclasses.dataclass(frozen=True)
class Connection:
    """What an initiator needs to log in (os-brick's iSCSI connection properties)."""

    volume_id: str
    portal: str
    iqn: str
    lun: int
    initiator: str
    username: str
    password: str

    def as_cinder(self) -> dict:
        return {
            "driver_volume_type": "iscsi",
            "data": {
                "target_discovered": False,
                "target_portal": self.portal,
                "target_iqn": self.iqn,
                "target_lun": self.lun,
                "volume_id": self.volume_id,
                "auth_method": "CHAP",
                "auth_username": self.username,
                "auth_password": self.password,
                "access_mode": "rw",
                "initiator": self.initiator,
                # QEMU's libiscsi client logs in as this URL's user; the initiator name
                # must be given separately (qemu --image-opts initiator-name=...).
                "url": f"iscsi://{self.username}%{self.password}@{self.portal}/{self.iqn}/{self.lun}",
            },
        }


class VolumeManager:
    def __init__(self, *, sessions: sessionmaker[Session], pool: VolumePool,
                 target: ExportTarget, state_dir: Path, quota_defaults: QuotaDefaults,
                 over_subscription: float, quiescer: Quiescer | None = None):
        self.sessions = sessions
        self.pool = pool
        self.target = target
        self.state_dir = state_dir
        self.quota_defaults = quota_defaults
        self.over_subscription = over_subscription
        self.snapshots = SnapshotManager(self, quiescer or Quiescer(state_dir))
        self.local = LocalAttacher(self)

    # -- reading --------------------------------------------------------------------

    def get(self, project_id: str, volume_id: str) -> Volume:
        with session_scope(self.sessions) as s:
            volume = s.get(Volume, volume_id)
            if volume is None or volume.project_id != project_id:
                raise NotFound(f"Volume {volume_id} could not be found.")
            return volume

    def list(self, project_id: str | None, *, name: str | None = None,
             status: str | None = None, limit: int | None = None,
             marker: str | None = None) -> list[Volume]:
        """Newest first, as Cinder lists; ``project_id=None`` lists every project (admin)."""
        filters = [getattr(Volume, key) == value for key, value in
                   (("name", name), ("status", status)) if value is not None]
        with session_scope(self.sessions) as s:
            return newest_first(s, Volume, project_id, filters, limit, marker, "volume")

    def quota_usage(self, project_id: str) -> dict[str, dict[str, int]]:
        with session_scope(self.sessions) as s:
            count, gigabytes = usage(s, project_id)
            snapshots = s.scalar(select(func.count(Snapshot.id))
                                 .where(Snapshot.project_id == project_id))
            quota = self.limits_of(s, project_id)
        return {"volumes": {"limit": quota["volumes"], "in_use": count, "reserved": 0},
                "gigabytes": {"limit": quota["gigabytes"], "in_use": gigabytes, "reserved": 0},
                "snapshots": {"limit": quota["snapshots"], "in_use": snapshots, "reserved": 0}}

    def limits_of(self, s: Session, project_id: str) -> dict[str, int]:
        quota = dataclasses.asdict(self.quota_defaults)
        for row in s.scalars(select(Quota).where(Quota.project_id == project_id)):
            quota[row.resource] = row.hard_limit
        return quota

    def set_quota(self, project_id: str, values: dict[str, int]) -> None:
        with session_scope(self.sessions) as s:
            for resource, limit in values.items():
                s.merge(Quota(project_id=project_id, resource=resource, hard_limit=limit))

    # -- changing -------------------------------------------------------------------

    def create(self, *, project_id: str, user_id: str, size: int, name: str | None = None,
               description: str | None = None, metadata: dict | None = None,
               source_volid: str | None = None, snapshot_id: str | None = None,
               ready_status: str = "available") -> Volume:
        """``ready_status="downloading"`` hands the new volume to a filler (block/images.py)."""
        if snapshot_id is not None and source_volid is not None:
            raise BadRequest("give snapshot_id or source_volid, not both")
        source = None
        if snapshot_id is not None:
            source = self.snapshots.get(project_id, snapshot_id)
            if source.status != "available":
                raise Conflict(f"snapshot {snapshot_id} is {source.status}; a volume is made "
                               "only from an available snapshot")
        if source_volid is not None:
            source = self.get(project_id, source_volid)
            if source.status not in ("available", "in-use"):
                raise Conflict(f"source volume {source_volid} is {source.status}; "
                               "a clone needs it available or in-use")
        if source is not None and size < source.size:
            what = "snapshot" if snapshot_id is not None else "source volume"
            raise BadRequest(f"size {size} GiB is smaller than the {what}'s {source.size} GiB")
        volume = Volume(id=str(uuid.uuid4()), project_id=project_id, user_id=user_id,
                        name=name, description=description, size=size, status="creating",
                        meta=metadata or {}, source_volid=source_volid,
                        snapshot_id=snapshot_id, owner=current_owner())
        with session_scope(self.sessions) as s:
            s.add(volume)
            s.flush()  # takes SQLite's write lock: the checks below see every racing create
            self.check_limits(s, project_id, add_volumes=1, add_gigabytes=size)
        try:
            if snapshot_id is not None:
                self.pool.clone_snapshot(snapshot_id, volume.id, size * GiB)
            elif source is not None:
                self.pool.clone(source.id, volume.id, size * GiB)
            else:
                self.pool.create(volume.id, size * GiB)
        except PoolError as exc:
            with session_scope(self.sessions) as s:
                s.execute(delete(Volume).where(Volume.id == volume.id))
            raise ServiceUnavailable(f"the pool could not create the volume: {exc}") from exc
        return self.transition(project_id, volume.id, ("creating",), ready_status)

    def check_limits(self, s: Session, project_id: str, *, add_volumes: int,
                     add_gigabytes: int) -> None:
        """Quota (413, as Cinder's OverLimit) and pool capacity (400), counting the change
        already written in this transaction."""
        count, gigabytes = usage(s, project_id)
        quota = self.limits_of(s, project_id)
        if add_volumes and 0 <= quota["volumes"] < count:
            raise PayloadTooLarge(f"VolumeLimitExceeded: maximum number of volumes allowed "
                                  f"({quota['volumes']}) exceeded for project {project_id}")
        if 0 <= quota["gigabytes"] < gigabytes:
            raise PayloadTooLarge(
                f"VolumeSizeExceedsAvailableQuota: requested {add_gigabytes} GiB, but project "
                f"{project_id} has used {gigabytes - add_gigabytes} of its "
                f"{quota['gigabytes']} GiB")
        provisioned = s.scalar(select(func.coalesce(func.sum(Volume.size), 0)))
        capacity_gb = int(self.pool.capacity().total_bytes * self.over_subscription / GiB)
        if provisioned > capacity_gb:
            raise BadRequest(f"{add_gigabytes} GiB does not fit in the pool: "
                             f"{provisioned - add_gigabytes} of {capacity_gb} GiB are provisioned")

    def update(self, project_id: str, volume_id: str, **values) -> Volume:
        """Name, description and metadata: allowed in any status, as in Cinder."""
        with session_scope(self.sessions) as s:
            volume = s.get(Volume, volume_id)
            if volume is None or volume.project_id != project_id:
                raise NotFound(f"Volume {volume_id} could not be found.")
            for key, value in values.items():
                setattr(volume, key, value)
            volume.updated_at = utcnow()
            return volume

    def extend(self, project_id: str, volume_id: str, new_size: int) -> Volume:
        """While extending, the row holds the new size, so quotas and pool capacity count
        it from the start; a failure or a crash puts the size the pool really has back."""
        with session_scope(self.sessions) as s:
            old_size = self.get(project_id, volume_id).size
            if new_size <= old_size:
                raise BadRequest(f"new_size {new_size} GiB must be larger than the current "
                                 f"{old_size} GiB")
            self._swap(s, project_id, volume_id, ("available",), "extending", "extend",
                       guard=Volume.size == old_size, size=new_size)
            self.check_limits(s, project_id, add_volumes=0, add_gigabytes=new_size - old_size)
        try:
            self.pool.extend(volume_id, new_size * GiB)
        except PoolError as exc:
            self.transition(project_id, volume_id, ("extending",), "available", size=old_size)
            raise ServiceUnavailable(f"the pool could not extend the volume: {exc}") from exc
        return self.transition(project_id, volume_id, ("extending",), "available")

    def attach(self, project_id: str, volume_id: str, initiator: str,
               server_id: str | None = None) -> Connection:
        limits.check_iqn(initiator)
        user = "soko" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(12)  # 16 chars: within what every initiator accepts
        with self.exports_locked():
            self.transition(project_id, volume_id, ("available",), "attaching", "attach",
                            attachment_id=str(uuid.uuid4()), initiator=initiator,
                            chap_user=user, chap_secret=secret, server_id=server_id)
            spec = ExportSpec(volume_id, self.pool.path(volume_id), initiator, user, secret)
            try:
                self.target.export(spec)
            except TargetError as exc:
                self.transition(project_id, volume_id, ("attaching",), "available",
                                **CLEARED_ATTACHMENT)
                raise ServiceUnavailable(f"the iSCSI target refused the export: {exc}") from exc
            self.transition(project_id, volume_id, ("attaching",), "in-use",
                            attached_at=utcnow())
        return Connection(volume_id, self.target.portal, spec.iqn, self.target.LUN,
                          initiator, user, secret)

    def detach(self, project_id: str, volume_id: str) -> Volume:
        with self.exports_locked():
            self.transition(project_id, volume_id, ("in-use",), "detaching", "detach")
            try:
                self.target.unexport(volume_id)
            except TargetError as exc:
                self.transition(project_id, volume_id, ("detaching",), "in-use")
                raise ServiceUnavailable(f"the iSCSI target kept the export: {exc}") from exc
            return self.transition(project_id, volume_id, ("detaching",), "available",
                                   **CLEARED_ATTACHMENT)

    def delete(self, project_id: str, volume_id: str) -> None:
        with session_scope(self.sessions) as s:
            self._swap(s, project_id, volume_id, ("available", "error"), "deleting", "delete")
            snapshots = s.scalar(select(func.count(Snapshot.id))
                                 .where(Snapshot.volume_id == volume_id))
            if snapshots:
                raise Conflict(f"Invalid volume: volume {volume_id} has {snapshots} "
                               "snapshot(s); delete them first.")
        self._finish_delete(volume_id)

    def _finish_delete(self, volume_id: str) -> None:
        self.target.unexport(volume_id)  # none should exist; a crash may have left one
        self.pool.delete(volume_id)
        self.snapshots.quiescer.forget(volume_id)
        with session_scope(self.sessions) as s:
            s.execute(delete(Volume).where(Volume.id == volume_id))

    def transition(self, project_id: str, volume_id: str, from_states: tuple[str, ...],
                   to_state: str, action: str | None = None, **values) -> Volume:
        with session_scope(self.sessions) as s:
            return self._swap(s, project_id, volume_id, from_states, to_state, action, **values)

    def _swap(self, s: Session, project_id: str, volume_id: str, from_states: tuple[str, ...],
              to_state: str, action: str | None = None, guard=None, **values) -> Volume:
        """The compare-and-swap: moves the volume only if it is in one of ``from_states``
        (and ``guard`` holds: what the caller read must not have changed meanwhile)."""
        owner = current_owner() if to_state in TRANSITIONAL else None
        result = s.execute(
            update(Volume)
            .where(Volume.id == volume_id, Volume.project_id == project_id,
                   Volume.status.in_(from_states),
                   true() if guard is None else guard)
            .values(status=to_state, owner=owner, updated_at=utcnow(), **values))
        volume = s.get(Volume, volume_id, populate_existing=True)
        if volume is None or volume.project_id != project_id:
            raise NotFound(f"Volume {volume_id} could not be found.")
        if result.rowcount != 1:
            raise Conflict(f"Invalid volume: volume {volume_id} is {volume.status}; "
                           f"{action or to_state} needs it {' or '.join(from_states)}.")
        return volume

    # -- recovery -------------------------------------------------------------------

    @contextlib.contextmanager
    def exports_locked(self) -> Iterator[None]:
        """One process at a time changes exports, so a replay never races an attach/detach."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / "exports.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def reconcile(self) -> None:
        """Finishes or undoes the steps of dead processes (thawing their freezes first), then
        makes the target's exports and this host's loop devices match the DB (re-exporting
        after a target daemon restart, dropping stale ones)."""
        self.snapshots.reconcile()
        with session_scope(self.sessions) as s:
            stuck = [(v.id, v.project_id, v.status, v.owner) for v in
                     s.scalars(select(Volume).where(Volume.status.in_(TRANSITIONAL)))]
        for volume_id, project_id, status, owner in stuck:
            if owner is not None and owner_alive(owner):
                continue
            with contextlib.suppress(Conflict, NotFound):  # another process got there first
                self._recover(project_id, volume_id, status, owner)
        self.reconcile_exports()

    def _recover(self, project_id: str, volume_id: str, status: str, owner: str | None) -> None:
        with session_scope(self.sessions) as s:  # claim it, so one process recovers it
            claimed = s.execute(update(Volume).where(
                Volume.id == volume_id, Volume.status == status, Volume.owner == owner)
                .values(owner=current_owner())).rowcount
        if not claimed:
            return
        log.warning("recovering volume %s left %s by a process that died", volume_id, status)
        if status in ("creating", "deleting", "downloading"):
            self._finish_delete(volume_id)
        elif status in ("attaching", "detaching"):
            with self.exports_locked():
                self.target.unexport(volume_id)
                self.local.forget_volume(volume_id)
                self.transition(project_id, volume_id, (status,), "available",
                                **CLEARED_ATTACHMENT)
        elif status == "extending":
            size = math.ceil((self.pool.size(volume_id) or 0) / GiB)
            self.transition(project_id, volume_id, (status,), "available", size=size)
        elif status == "uploading":  # the image it fed stays killed, for its owner to delete
            self.transition(project_id, volume_id, (status,), "available")

    def reconcile_exports(self) -> None:
        with self.exports_locked():
            with session_scope(self.sessions) as s:
                rows = list(s.scalars(select(Volume).where(Volume.status.in_(LIVE_EXPORT))))
            wanted = {v.id: v for v in rows if v.status == "in-use" and v.initiator}
            if wanted:
                self.target.ensure_running()
            exported = self.target.exported()
            for volume_id, volume in wanted.items():
                if exported.get(volume_id) != volume.initiator:
                    log.warning("re-exporting volume %s to %s", volume_id, volume.initiator)
                    self.target.export(ExportSpec(volume_id, self.pool.path(volume_id),
                                                  volume.initiator, volume.chap_user,
                                                  volume.chap_secret))
            live = {v.id for v in rows}
            for volume_id in set(exported) - live:
                if self.exports_here(volume_id):
                    log.warning("removing stale export of volume %s", volume_id)
                    self.target.unexport(volume_id)
            self.local.reconcile()

    def exports_here(self, volume_id: str) -> bool:
        """Whether the target exports this pool's file as ``volume_id``: a target daemon we
        share may export another cloud's volumes, which are not ours to touch."""
        return self.target.backing_path(volume_id) == self.pool.path(volume_id)

    def unexport_all(self) -> None:
        """Removes every export of this pool, leaving the DB as it is: for a host stop
        (``soko down``), after compute stopped the guests; ``reconcile_exports`` puts them
        back, with the same CHAP credentials, at the next start."""
        with self.exports_locked():
            for volume_id in self.target.exported():
                if self.exports_here(volume_id):
                    self.target.unexport(volume_id)


def usage(s: Session, project_id: str) -> tuple[int, int]:
    count, gigabytes = s.execute(
        select(func.count(Volume.id), func.coalesce(func.sum(Volume.size), 0))
        .where(Volume.project_id == project_id)).one()
    return count, gigabytes
