"""iSCSI target helpers: how a volume's pool path is exported to one initiator.

The control path (pools) and the data path (targets) are independent, as in Cinder's
split between volume drivers and target helpers; ``make_target`` picks one by name.
"""

from __future__ import annotations

from pathlib import Path

from soko.block.targets.base import ExportTarget


def lio_available() -> bool:
    """LIO needs configfs with the target core loaded; this is what rtslib-fb drives."""
    return Path("/sys/kernel/config/target").is_dir()


def make_target(helper: str, *, portal: str, control_port: int, state_dir: Path,
                backing_store: str) -> ExportTarget:
    """``helper`` is ``tgt``, ``lio`` or ``auto`` (LIO where configfs has it, else tgt)."""
    if helper == "auto":
        helper = "lio" if lio_available() else "tgt"
    if helper == "tgt":
        from soko.block.targets.tgt import TgtTarget

        return TgtTarget(portal=portal, control_port=control_port, state_dir=state_dir,
                         backing_store=backing_store)
    if helper == "lio":
        from soko.block.targets.lio import LioTarget

        return LioTarget(portal=portal)
    raise ValueError(f"unknown target helper {helper!r} (known: auto, tgt, lio)")
