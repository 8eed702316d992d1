"""The LIO target helper: the in-kernel target driven through rtslib-fb (configfs).

Chosen where ``/sys/kernel/config/target`` exists. rtslib-fb is imported lazily (it is the
optional ``soko[lio]`` extra) so hosts without LIO never need it. Each export is a fileio
or block backstore named after the volume, an iSCSI target with one TPG (CHAP required,
no generated ACLs), a portal, LUN 1 and one node ACL carrying the CHAP credentials. LIO
keeps no state across a reboot unless saved; soko needs none, since the reconcile pass
re-creates exports from the DB.
"""

from __future__ import annotations

import contextlib
import os
import stat

from soko.block.targets.base import ExportSpec, TargetError, volume_iqn, volume_of_iqn


def rtslib():
    try:
        import rtslib_fb
    except ImportError:
        raise TargetError("the lio target helper needs rtslib-fb (pip install 'soko[lio]')") from None
    return rtslib_fb


class LioTarget:
    LUN = 1

    def __init__(self, *, portal: str):
        self.portal = portal
        host, _, port = portal.rpartition(":")
        self.portal_ip, self.portal_port = host, int(port)

    def ensure_running(self) -> None:
        """LIO lives in the kernel: nothing to start, but configfs must be there."""
        try:
            rtslib().RTSRoot()
        except Exception as exc:  # rtslib raises RTSLibError and plain OSErrors
            raise TargetError(f"LIO is not usable here: {exc}") from None

    def _find(self, volume_id: str):
        lib = rtslib()
        iqn = volume_iqn(volume_id)
        root = lib.RTSRoot()
        target = next((t for t in root.targets if t.wwn == iqn), None)
        backstore = next((s for s in root.storage_objects if s.name == volume_id), None)
        return target, backstore

    def export(self, spec: ExportSpec) -> None:
        lib = rtslib()
        self.unexport(spec.volume_id)
        try:
            if stat.S_ISBLK(os.stat(spec.path).st_mode):
                backstore = lib.BlockStorageObject(spec.volume_id, dev=spec.path)
            else:
                backstore = lib.FileIOStorageObject(spec.volume_id, dev=spec.path)
            target = lib.Target(lib.FabricModule("iscsi"), spec.iqn)
            tpg = lib.TPG(target, 1)
            tpg.set_attribute("authentication", "1")
            tpg.set_attribute("generate_node_acls", "0")
            tpg.set_attribute("demo_mode_write_protect", "0")
            lib.NetworkPortal(tpg, self.portal_ip, self.portal_port)
            lun = lib.LUN(tpg, self.LUN, backstore)
            acl = lib.NodeACL(tpg, spec.initiator)
            acl.chap_userid = spec.chap_user
            acl.chap_password = spec.chap_secret
            lib.MappedLUN(acl, self.LUN, lun)
            tpg.enable = True
        except Exception as exc:
            self.unexport(spec.volume_id)
            raise TargetError(f"LIO export of {spec.volume_id} failed: {exc}") from exc

    def unexport(self, volume_id: str) -> None:
        target, backstore = self._find(volume_id)
        if target is not None:
            target.delete()
        if backstore is not None:
            with contextlib.suppress(Exception):
                backstore.delete()

    def backing_path(self, volume_id: str) -> str | None:
        _, backstore = self._find(volume_id)
        return backstore.udev_path if backstore is not None else None

    def exported(self) -> dict[str, str]:
        found = {}
        for target in rtslib().RTSRoot().targets:
            volume_id = volume_of_iqn(target.wwn)
            if volume_id is None:
                continue
            acls = [acl.node_wwn for tpg in target.tpgs for acl in tpg.node_acls]
            found[volume_id] = acls[0] if acls else ""
        return found
