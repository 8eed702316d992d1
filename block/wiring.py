"""Builds the block service's parts from config: DB, pool, target, manager, and the
background reconcile loop. The API factory and ``soko up``'s bootstrap both start here."""

from __future__ import annotations

import fcntl
from pathlib import Path

from soko.block.drivers import make_pool
from soko.block.manager import QuotaDefaults, VolumeManager
from soko.block.models import Base
from soko.block.quiesce import GUEST_AGENT_PLAN, Quiescer
from soko.block.service import BlockConfig
from soko.block.targets import make_target
from soko.common.config import Config
from soko.common.db import create_tables, database_url, make_engine, make_sessionmaker


def block_dir(config: Config) -> Path:
    return config.data_dir / "block"


def make_manager(config: Config) -> VolumeManager:
    section: BlockConfig = config.section("block")
    state_dir = block_dir(config)
    engine = make_engine(database_url(section.database_url, state_dir, "block"))
    create_tables(Base.metadata, engine, state_dir)
    pool = make_pool(section.pool_backend, data_dir=state_dir, size_gb=section.pool_size_gb,
                     lvm_vg=section.lvm_vg, lvm_thin_pool=section.lvm_thin_pool)
    target = make_target(section.target_helper, portal=section.target_portal,
                         control_port=section.tgt_control_port, state_dir=state_dir,
                         backing_store=section.tgt_backing_store)
    return VolumeManager(
        sessions=make_sessionmaker(engine), pool=pool, target=target, state_dir=state_dir,
        quota_defaults=QuotaDefaults(volumes=section.quota_volumes,
                                     gigabytes=section.quota_gigabytes,
                                     snapshots=section.quota_snapshots),
        over_subscription=section.max_over_subscription_ratio,
        quiescer=Quiescer(state_dir, quiesce_plans(config), section.quiesce_volume_plans,
                          section.quiesce_max_freeze_seconds))


def quiesce_plans(config: Config) -> dict:
    """The configured plans, plus the guest-agent plan where compute runs in this cloud:
    a volume attached to a server is then frozen through the server's guest agent."""
    plans = dict(config.section("block").quiesce_plans)
    if "compute" in config.sections:
        from soko.identity.service import advertised_endpoint

        url = advertised_endpoint(config.section("compute")) + "/v2.1"
        plans.setdefault(GUEST_AGENT_PLAN, [{"kind": "guest-agent", "compute_url": url}])
    return plans


def start(manager: VolumeManager) -> None:
    """Every start: the pool is set up (created on the first), then the state reconciled."""
    manager.pool.setup()
    manager.reconcile()


def bootstrap(config: Config) -> list[str]:
    manager = make_manager(config)
    start(manager)
    cap = manager.pool.capacity()
    return [f"block pool: {config.section('block').pool_backend}, "
            f"{cap.total_bytes / (1 << 30):.1f} GiB, {cap.free_bytes / (1 << 30):.1f} GiB free"]


def reconcile_unless_busy(manager: VolumeManager) -> None:
    """One reconcile pass, unless another worker holds the lock (one acts per tick, so a
    dead tgtd is restarted and re-filled within one ``reconcile_interval``)."""
    with open(manager.state_dir / "reconcile.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another worker is on it
        manager.reconcile()


def teardown(config: Config) -> None:
    """Undoes what ``start`` set up on this host: this pool's exports (on a shared target
    daemon too), the tgtd on a dedicated control port (never the system's, port 0) and the
    reflink pool's mount and loop device. For ``soko down`` and test clean-up; the pool
    image and the DB stay for the next start, which exports the attached volumes again."""
    manager = make_manager(config)
    section: BlockConfig = config.section("block")
    manager.unexport_all()
    stop_daemon = getattr(manager.target, "stop_daemon", None)
    if stop_daemon is not None and section.tgt_control_port != 0:
        stop_daemon()
    pool_teardown = getattr(manager.pool, "teardown", None)
    if pool_teardown is not None:
        pool_teardown()
