"""What ``soko-block`` is to the rest of soko: its config section and how it starts.

Imports only the config dataclass, so ``soko --help`` and ``soko up`` stay cheap.
"""

from __future__ import annotations

import dataclasses

from soko.common.auth import ROLE_RANK
from soko.common.config import ConfigError, ServerSection
from soko.common.service import ServiceSpec


@dataclasses.dataclass
class BlockConfig(ServerSection):
    port: int = 8776  # Cinder's
    database_url: str | None = None  # default: sqlite in <data_dir>/block/
    pool_backend: str = "reflink"  # reflink | lvm
    pool_size_gb: int = 20  # the reflink image is sparse: this is a ceiling, not a cost
    max_over_subscription_ratio: float = 1.0  # provisioned GiB may reach size x ratio
    lvm_vg: str = "soko-volumes"
    lvm_thin_pool: str = "soko-thin"
    target_helper: str = "auto"  # auto (LIO where configfs has it, else tgt) | tgt | lio
    target_portal: str = "127.0.0.1:3260"
    tgt_control_port: int = 0  # tgtd's management socket; 0 is the system tgtd's
    # rdwr (with O_DIRECT, see targets/tgt.py): 1 MiB sequential writes 915-1502 MB/s
    # (median ~1200) over 9 runs vs aio's 320-1247 (median ~480) over 5; reads on par
    # (README's block benchmark).
    tgt_backing_store: str = "rdwr"
    reconcile_interval: float = 2.0  # seconds between export checks; 0 turns the loop off
    quota_volumes: int = 10
    quota_gigabytes: int = 1000
    quota_snapshots: int = 10
    # Named quiesce plans (block/quiesce.py): {name = [{kind = ..., ...}, ...]}. Requests
    # only name a plan; nothing a request carries is ever run.
    quiesce_plans: dict[str, list] = dataclasses.field(default_factory=dict)
    quiesce_volume_plans: dict[str, str] = dataclasses.field(default_factory=dict)  # volume id -> plan
    quiesce_max_freeze_seconds: float = 10.0  # the watchdog thaws after this
    # Backups: the Swift API they go through (empty: the catalog's object-store endpoint),
    # the container in each project's account, chunking, compression (auto: zstd, else zlib).
    backup_object_store_url: str = ""
    backup_container: str = "volumebackups"
    backup_chunk_size_mb: int = 16  # see engine.Settings
    backup_compression: str = "auto"  # auto | zstd | zlib | none
    backup_workers: int = 4  # concurrent chunk uploads/downloads per job
    # The least role for os-local_attach/os-local_detach (volumes and snapshots): they make
    # loop devices on the storage host, so by default only admins may (a policy rule, as
    # Cinder's); "member" lets every project member do it.
    local_attach_role: str = "admin"

    def validate(self) -> None:
        super().validate()
        if self.pool_backend not in ("reflink", "lvm"):
            raise ConfigError(f"pool_backend: must be reflink or lvm, got {self.pool_backend!r}")
        if self.target_helper not in ("auto", "tgt", "lio"):
            raise ConfigError(f"target_helper: must be auto, tgt or lio, got "
                              f"{self.target_helper!r}")
        if self.tgt_backing_store not in ("rdwr", "aio"):
            raise ConfigError(f"tgt_backing_store: must be rdwr or aio, got "
                              f"{self.tgt_backing_store!r}")
        if self.pool_size_gb < 1:
            raise ConfigError(f"pool_size_gb: must be at least 1, got {self.pool_size_gb}")
        if self.max_over_subscription_ratio <= 0:
            raise ConfigError("max_over_subscription_ratio: must be positive")
        if self.quiesce_max_freeze_seconds <= 0:
            raise ConfigError("quiesce_max_freeze_seconds: must be positive")
        from soko.block.quiesce import QuiesceError, check_plans

        try:
            check_plans(self.quiesce_plans)
        except QuiesceError as exc:
            raise ConfigError(str(exc)) from None
        if self.backup_compression not in ("auto", "zstd", "zlib", "none"):
            raise ConfigError(f"backup_compression: must be auto, zstd, zlib or none, got "
                              f"{self.backup_compression!r}")
        if not 1 <= self.backup_chunk_size_mb <= 64 or self.backup_workers < 1:
            raise ConfigError("backup_chunk_size_mb: must be 1..64, backup_workers: >= 1")
        if self.local_attach_role not in ROLE_RANK:
            raise ConfigError(f"local_attach_role: must be one of {', '.join(ROLE_RANK)}, got "
                              f"{self.local_attach_role!r}")
        host, _, port = self.target_portal.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"target_portal: must be host:port, got {self.target_portal!r}")


SERVICE = ServiceSpec(
    name="block",
    summary="Cinder-v3-shaped volume API: volumes on an XFS-reflink or LVM pool, iSCSI export",
    section=BlockConfig,
    app_factory="soko.block.api:make_app",
    bootstrap="soko.block.wiring:bootstrap",
    teardown="soko.block.wiring:teardown",
)
