"""The LVM thin pool: volumes as thin LVs in an existing volume group, for real hosts.

Needs device-mapper (``/dev/mapper/control``). Every query goes through
``lvs --reportformat json`` with byte units, so nothing parses human-formatted columns.
A clone is a thin snapshot (O(1), copy-on-write in the pool), created active although
LVM marks thin snapshots skip-activation by default; extend is ``lvextend``. A volume
snapshot is the same thin snapshot named ``snapshot-<id>``, activated read-only.
"""

from __future__ import annotations

import json
from pathlib import Path

from soko.block.drivers.base import (
    NoSuchSnapshot,
    NoSuchVolume,
    PoolCapacity,
    PoolError,
    VolumeExists,
)
from soko.block.drivers.reflink import SNAPSHOT_PREFIX, VOLUME_PREFIX, run


def device_mapper_available() -> bool:
    return Path("/dev/mapper/control").exists()


class LvmThinPool:
    def __init__(self, *, vg: str, thin_pool: str, size_bytes: int):
        self.vg = vg
        self.thin_pool = thin_pool
        self.size_bytes = size_bytes

    def lvs(self, *fields: str) -> list[dict[str, str]]:
        out = run(["lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
                   "-o", ",".join(("lv_name", *fields)), self.vg])
        return json.loads(out)["report"][0]["lv"]

    def setup(self) -> None:
        """The volume group must exist (the operator owns the disks); the thin pool is
        created in it on first start, as Cinder's LVM driver does with ``lvm_type=thin``."""
        if not device_mapper_available():
            raise PoolError("the lvm pool needs device-mapper (/dev/mapper/control is missing)")
        vgs = json.loads(run(["vgs", "--reportformat", "json", "-o", "vg_name"]))
        if self.vg not in {v["vg_name"] for v in vgs["report"][0]["vg"]}:
            raise PoolError(f"volume group {self.vg!r} does not exist; create it with vgcreate")
        if not any(lv["lv_name"] == self.thin_pool for lv in self.lvs()):
            run(["lvcreate", "--yes", "--type", "thin-pool", "-L", f"{self.size_bytes}b",
                 "-n", self.thin_pool, self.vg])

    def capacity(self) -> PoolCapacity:
        for lv in self.lvs("lv_size", "data_percent"):
            if lv["lv_name"] == self.thin_pool:
                total = int(lv["lv_size"])
                used = int(total * float(lv["data_percent"] or 0) / 100)
                return PoolCapacity(total_bytes=total, free_bytes=total - used)
        raise PoolError(f"thin pool {self.vg}/{self.thin_pool} is missing")

    def lv_name(self, volume_id: str) -> str:
        return VOLUME_PREFIX + volume_id

    def path(self, volume_id: str) -> str:
        return f"/dev/{self.vg}/{self.lv_name(volume_id)}"

    def snapshot_path(self, snapshot_id: str) -> str:
        return f"/dev/{self.vg}/{SNAPSHOT_PREFIX}{snapshot_id}"

    def size(self, volume_id: str) -> int | None:
        return self._lv_size(self.lv_name(volume_id))

    def _lv_size(self, name: str) -> int | None:
        for lv in self.lvs("lv_size"):
            if lv["lv_name"] == name:
                return int(lv["lv_size"])
        return None

    def snapshots(self) -> set[str]:
        return {lv["lv_name"].removeprefix(SNAPSHOT_PREFIX) for lv in self.lvs()
                if lv["lv_name"].startswith(SNAPSHOT_PREFIX)}

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        if self.size(volume_id) is None:
            raise NoSuchVolume(f"volume {volume_id} is not in {self.vg}")
        self._thin_snapshot(self.lv_name(volume_id), SNAPSHOT_PREFIX + snapshot_id, "r")

    def clone_snapshot(self, snapshot_id: str, volume_id: str, size_bytes: int) -> None:
        if self._lv_size(SNAPSHOT_PREFIX + snapshot_id) is None:
            raise NoSuchSnapshot(f"snapshot {snapshot_id} is not in {self.vg}")
        self._thin_snapshot(SNAPSHOT_PREFIX + snapshot_id, self.lv_name(volume_id), "rw")
        if size_bytes > (self.size(volume_id) or 0):
            self.extend(volume_id, size_bytes)

    def delete_snapshot(self, snapshot_id: str) -> None:
        if self._lv_size(SNAPSHOT_PREFIX + snapshot_id) is not None:
            run(["lvremove", "--yes", "-f", f"{self.vg}/{SNAPSHOT_PREFIX}{snapshot_id}"])

    def _thin_snapshot(self, source: str, name: str, permission: str) -> None:
        """A thin snapshot of LV ``source`` with ``permission`` (r or rw), active at once
        (thin snapshots skip activation unless told ``--setactivationskip n``)."""
        if self._lv_size(name) is not None:
            raise VolumeExists(f"{name} already exists in {self.vg}")
        run(["lvcreate", "--yes", "--snapshot", "--setactivationskip", "n", "--permission",
             permission, "-n", name, f"{self.vg}/{source}"])

    def volumes(self) -> set[str]:
        return {lv["lv_name"].removeprefix(VOLUME_PREFIX) for lv in self.lvs()
                if lv["lv_name"].startswith(VOLUME_PREFIX)}

    def create(self, volume_id: str, size_bytes: int) -> None:
        if self.size(volume_id) is not None:
            raise VolumeExists(f"volume {volume_id} already exists in {self.vg}")
        run(["lvcreate", "--yes", "--type", "thin", "--thinpool", self.thin_pool,
             "-V", f"{size_bytes}b", "-n", self.lv_name(volume_id), self.vg])

    def clone(self, source_id: str, volume_id: str, size_bytes: int) -> None:
        if self.size(source_id) is None:
            raise NoSuchVolume(f"source volume {source_id} is not in {self.vg}")
        self._thin_snapshot(self.lv_name(source_id), self.lv_name(volume_id), "rw")
        if size_bytes > (self.size(volume_id) or 0):
            self.extend(volume_id, size_bytes)

    def extend(self, volume_id: str, size_bytes: int) -> None:
        current = self.size(volume_id)
        if current is None:
            raise NoSuchVolume(f"volume {volume_id} is not in {self.vg}")
        if size_bytes < current:
            raise PoolError(f"volume {volume_id} cannot shrink")
        if size_bytes > current:
            run(["lvextend", "-L", f"{size_bytes}b", f"{self.vg}/{self.lv_name(volume_id)}"])

    def delete(self, volume_id: str) -> None:
        if self.size(volume_id) is not None:
            run(["lvremove", "--yes", "-f", f"{self.vg}/{self.lv_name(volume_id)}"])
