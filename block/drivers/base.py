"""The ``VolumePool`` interface: a place that holds volumes as exportable paths.

Sizes are bytes here (the API speaks GiB). Clones and snapshots are copy-on-write where the
backend can (FICLONE on XFS, thin snapshots on LVM), so they cost O(1) whatever the volume
size.
Every operation is safe to repeat after a crash: ``delete`` of a missing volume succeeds,
``create`` of an existing one fails with ``VolumeExists``.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol


class PoolError(RuntimeError):
    """The pool could not do what was asked; the message says what and why."""


class VolumeExists(PoolError):
    pass


class NoSuchVolume(PoolError):
    pass


class NoSuchSnapshot(PoolError):
    pass


@dataclasses.dataclass(frozen=True)
class PoolCapacity:
    total_bytes: int
    free_bytes: int


class VolumePool(Protocol):
    def setup(self) -> None:
        """Makes the pool usable (creating it on first start); safe to call every start."""

    def capacity(self) -> PoolCapacity: ...

    def create(self, volume_id: str, size_bytes: int) -> None:
        """A new zero-filled (thin) volume."""

    def clone(self, source_id: str, volume_id: str, size_bytes: int) -> None:
        """A copy-on-write copy of ``source_id``, grown to ``size_bytes`` if that is larger."""

    def extend(self, volume_id: str, size_bytes: int) -> None: ...

    def delete(self, volume_id: str) -> None: ...

    def path(self, volume_id: str) -> str:
        """What a target exports: a file or a block device."""

    def size(self, volume_id: str) -> int | None:
        """The volume's size in bytes, or None when it does not exist."""

    def volumes(self) -> set[str]:
        """Ids of every volume in the pool (to find leftovers of interrupted creates)."""

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """A read-only, copy-on-write, point-in-time copy of the volume (O(1))."""

    def clone_snapshot(self, snapshot_id: str, volume_id: str, size_bytes: int) -> None:
        """A new writable volume from a snapshot, grown to ``size_bytes`` if larger."""

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Removes a snapshot; a missing one is fine."""

    def snapshot_path(self, snapshot_id: str) -> str:
        """The snapshot's file or block device (for backups and read-only local attach)."""

    def snapshots(self) -> set[str]:
        """Ids of every snapshot in the pool."""
