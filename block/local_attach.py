"""Local attach: a volume (read-write) or snapshot (read-only) of the pool as a loop device
on the storage host, for backup scripts, mkfs/fsck and tests (this is not how clients
attach: they log in over iSCSI). Only meaningful on the host that holds the pool.

The service owns the state: a ``LocalAttachment`` row per device, and a locally attached
volume is ``in-use`` (so it cannot be deleted, exported or attached twice). All changes
happen under the host's exports lock, so ``reconcile`` never races an attach: it
re-creates a recorded device that vanished and detaches any loop device over a pool file
that no row records (left by a crash between ``losetup`` and the DB write).
"""

from __future__ import annotations

import json
import logging
import socket
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from soko.block.drivers.base import PoolError
from soko.block.drivers.reflink import run
from soko.block.models import LocalAttachment, utcnow
from soko.block.quiesce import mountpoint_of
from soko.common.db import session_scope
from soko.common.errors import Conflict, ServiceUnavailable

if TYPE_CHECKING:
    from soko.block.manager import VolumeManager

log = logging.getLogger("soko.block.local_attach")


def loop_devices() -> dict[str, str]:
    """``{device: backing file}`` of every loop device on the host."""
    listing = json.loads(run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"])
                         or '{"loopdevices": []}')
    return {dev["name"]: (dev.get("back-file") or "").removesuffix(" (deleted)")
            for dev in listing.get("loopdevices", [])}


def attach_loop(path: str, read_only: bool) -> str:
    return run(["losetup", "--find", "--show", *(["--read-only"] if read_only else []),
                path]).strip()


def detach_loop(device: str, path: str) -> None:
    """Detaches ``device`` if it still maps ``path`` (never someone else's device); a
    mounted device is refused, because ``losetup -d`` would only defer its removal."""
    if loop_devices().get(device) != path:
        return
    mountpoint = mountpoint_of(device)
    if mountpoint is not None:
        raise Conflict(f"{device} is mounted on {mountpoint}; unmount it first")
    run(["losetup", "--detach", device])


class LocalAttacher:
    def __init__(self, volumes: VolumeManager):
        self.volumes = volumes

    def _path(self, row: LocalAttachment) -> str:
        pool = self.volumes.pool
        return pool.path(row.volume_id) if row.volume_id else pool.snapshot_path(row.snapshot_id)

    def attach_volume(self, project_id: str, volume_id: str) -> LocalAttachment:
        with self.volumes.exports_locked():
            attachment_id = str(uuid.uuid4())
            self.volumes.transition(project_id, volume_id, ("available",), "attaching",
                                    "local-attach", attachment_id=attachment_id)
            try:
                row = self._map(LocalAttachment(id=attachment_id, project_id=project_id,
                                                volume_id=volume_id), read_only=False)
            except ServiceUnavailable:
                self.volumes.transition(project_id, volume_id, ("attaching",), "available",
                                        attachment_id=None)
                raise
            self.volumes.transition(project_id, volume_id, ("attaching",), "in-use",
                                    attached_at=utcnow())
            return row

    def attach_snapshot(self, project_id: str, snapshot_id: str) -> LocalAttachment:
        snapshot = self.volumes.snapshots.get(project_id, snapshot_id)
        if snapshot.status != "available":
            raise Conflict(f"snapshot {snapshot_id} is {snapshot.status}; local-attach needs "
                           "it available")
        with self.volumes.exports_locked():
            return self._map(LocalAttachment(id=str(uuid.uuid4()), project_id=project_id,
                                             snapshot_id=snapshot_id), read_only=True)

    def _map(self, row: LocalAttachment, read_only: bool) -> LocalAttachment:
        """Maps the pool file, then records the device; undoes the device if that fails."""
        path = self._path(row)
        try:
            row.device = attach_loop(path, read_only)
        except PoolError as exc:
            raise ServiceUnavailable(f"could not map {path} to a loop device: {exc}") from exc
        row.host = socket.gethostname()
        try:
            with session_scope(self.volumes.sessions) as s:
                s.add(row)
        except IntegrityError:
            run(["losetup", "--detach", row.device])
            raise Conflict("it is already locally attached; local-detach it first") from None
        except BaseException:
            run(["losetup", "--detach", row.device])
            raise
        return row

    def detach_volume(self, project_id: str, volume_id: str) -> None:
        with self.volumes.exports_locked():
            row = self._row(project_id, volume_id=volume_id)
            self.volumes.transition(project_id, volume_id, ("in-use",), "detaching",
                                    "local-detach")
            try:
                self._unmap(row)
            except (Conflict, PoolError):
                self.volumes.transition(project_id, volume_id, ("detaching",), "in-use")
                raise
            from soko.block.manager import CLEARED_ATTACHMENT

            self.volumes.transition(project_id, volume_id, ("detaching",), "available",
                                    **CLEARED_ATTACHMENT)

    def detach_snapshot(self, project_id: str, snapshot_id: str) -> None:
        with self.volumes.exports_locked():
            self._unmap(self._row(project_id, snapshot_id=snapshot_id))

    def _row(self, project_id: str, **key) -> LocalAttachment:
        with session_scope(self.volumes.sessions) as s:
            row = s.scalar(select(LocalAttachment).filter_by(project_id=project_id, **key))
        if row is None:
            what, ref = next(iter(key.items()))
            raise Conflict(f"{what.removesuffix('_id')} {ref} is not locally attached")
        return row

    def _unmap(self, row: LocalAttachment) -> None:
        detach_loop(row.device, self._path(row))
        with session_scope(self.volumes.sessions) as s:
            s.execute(delete(LocalAttachment).where(LocalAttachment.id == row.id))

    def forget_volume(self, volume_id: str) -> None:
        """Drops a volume's local attachment (recovery of an interrupted attach/detach)."""
        with session_scope(self.volumes.sessions) as s:
            row = s.scalar(select(LocalAttachment).where(LocalAttachment.volume_id == volume_id))
        if row is not None:
            self._unmap(row)

    def reconcile(self) -> None:
        """Makes this host's loop devices match its rows (caller holds the exports lock)."""
        host = socket.gethostname()
        with session_scope(self.volumes.sessions) as s:
            rows = list(s.scalars(select(LocalAttachment).where(LocalAttachment.host == host)))
        devices = loop_devices()
        recorded = set()
        for row in rows:
            path = self._path(row)
            recorded.add(path)
            if devices.get(row.device) == path:
                continue
            device = attach_loop(path, read_only=row.snapshot_id is not None)
            log.warning("re-created local attachment %s of %s as %s", row.id, path, device)
            with session_scope(self.volumes.sessions) as s:
                s.execute(update(LocalAttachment).where(LocalAttachment.id == row.id)
                          .values(device=device))
        pool = self.volumes.pool
        pool_files = ({pool.path(v) for v in pool.volumes()}
                      | {pool.snapshot_path(sn) for sn in pool.snapshots()})
        for device, path in devices.items():
            if path in pool_files and path not in recorded and mountpoint_of(device) is None:
                log.warning("detaching %s: it maps %s, which no local attachment records",
                            device, path)
                run(["losetup", "--detach", device])
