"""Volume pools: where a volume's bytes live. ``make_pool`` picks one by name from config."""

from __future__ import annotations

from pathlib import Path

from soko.block.drivers.base import VolumePool


def make_pool(backend: str, *, data_dir: Path, size_gb: int, lvm_vg: str,
              lvm_thin_pool: str) -> VolumePool:
    if backend == "reflink":
        from soko.block.drivers.reflink import ReflinkPool

        return ReflinkPool(image=data_dir / "pool.img", mountpoint=data_dir / "pool",
                           size_bytes=size_gb << 30)
    if backend == "lvm":
        from soko.block.drivers.lvm import LvmThinPool

        return LvmThinPool(vg=lvm_vg, thin_pool=lvm_thin_pool, size_bytes=size_gb << 30)
    raise ValueError(f"unknown pool backend {backend!r} (known: reflink, lvm)")
