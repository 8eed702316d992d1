"""The ``ExportTarget`` interface: export one volume to one initiator, with CHAP.

A target per volume (``iqn.2026-11.org.soko:volume-<id>``), LUN 1 backed by the pool's
path, an incoming CHAP account and an ACL naming the one initiator allowed to log in.
Implementations must be idempotent (exporting twice, unexporting what is gone) because
the reconcile pass replays exports after a target daemon restart.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

IQN_PREFIX = "iqn.2026-11.org.soko:volume-"


def volume_iqn(volume_id: str) -> str:
    return IQN_PREFIX + volume_id


def volume_of_iqn(iqn: str) -> str | None:
    """The volume id a soko target name carries, or None for anyone else's target."""
    return iqn[len(IQN_PREFIX):] if iqn.startswith(IQN_PREFIX) else None


class TargetError(RuntimeError):
    """The target daemon refused or failed an operation; the message says which."""


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """Everything needed to (re-)create one export; kept in the DB so it can be replayed."""

    volume_id: str
    path: str
    initiator: str
    chap_user: str
    chap_secret: str

    @property
    def iqn(self) -> str:
        return volume_iqn(self.volume_id)


class ExportTarget(Protocol):
    portal: str  # host:port initiators connect to
    LUN: int  # the LUN the volume appears as

    def ensure_running(self) -> None:
        """Starts the target daemon if it is not serving (a no-op for in-kernel LIO)."""

    def export(self, spec: ExportSpec) -> None:
        """Creates (or re-creates, replacing credentials and ACL) the volume's target."""

    def unexport(self, volume_id: str) -> None:
        """Removes the target, its LUN, account and ACL; a missing target is fine."""

    def exported(self) -> dict[str, str]:
        """``{volume_id: initiator}`` for every soko target currently exported."""

    def backing_path(self, volume_id: str) -> str | None:
        """The file or device the volume's target serves, or None if it has no target."""
