"""Block fixtures: an in-memory manager for the API's logic, and one real pool + tgtd per
session (on a private tgtd control port and portal) for the data path."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from soko.block import wiring
from soko.block.api import make_app
from soko.block.manager import QuotaDefaults, VolumeManager
from soko.block.models import Base
from soko.block.service import BlockConfig
from soko.block.targets.tgt import unused_control_port
from soko.common.config import Config
from soko.common.db import make_engine, make_sessionmaker
from tests.block.fakes import FixedTokens, MemoryPool, MemoryTarget
from tests.support import free_port, require_tools, wait_for

DATA_PATH_TOOLS = ("tgtd", "tgtadm", "qemu-io", "qemu-img", "iscsi-ls",
                   "iscsi-readcapacity16", "mkfs.xfs", "losetup")


def memory_manager(state_dir: Path, **quota) -> VolumeManager:
    engine = make_engine(f"sqlite:///{state_dir / 'block.db'}")
    Base.metadata.create_all(engine)
    return VolumeManager(
        sessions=make_sessionmaker(engine), pool=MemoryPool(), target=MemoryTarget(),
        state_dir=state_dir,
        quota_defaults=QuotaDefaults(volumes=quota.get("volumes", 10),
                                     gigabytes=quota.get("gigabytes", 1000)),
        over_subscription=1.0)


def block_config(data_dir: Path, section: BlockConfig) -> Config:
    return Config(data_dir=data_dir, sections={"block": section})


@pytest.fixture
def manager(tmp_path: Path) -> VolumeManager:
    return memory_manager(tmp_path)


@pytest.fixture
def client(tmp_path: Path, manager: VolumeManager) -> falcon.testing.TestClient:
    config = block_config(tmp_path, BlockConfig())
    return falcon.testing.TestClient(make_app(config, validator=FixedTokens(), manager=manager))


@pytest.fixture(scope="session")
def real_block(tmp_path_factory) -> Iterator[Config]:
    """One reflink pool (loop-backed XFS) and one private tgtd for the whole session; both
    are torn down at the end, leaving no loop device, mount or daemon behind."""
    require_tools(*DATA_PATH_TOOLS)
    data_dir = tmp_path_factory.mktemp("block-real")
    section = BlockConfig(pool_size_gb=8, tgt_control_port=unused_control_port(),
                          target_helper="tgt", target_portal=f"127.0.0.1:{free_port()}",
                          reconcile_interval=0.5, max_over_subscription_ratio=2.0)
    config = block_config(data_dir, section)
    manager = wiring.make_manager(config)
    try:
        wiring.start(manager)
        manager.target.ensure_running()
        yield config
    finally:
        wiring.teardown(config)
    # The loop device detaches a moment after the unmount (longer on a busy machine).
    wait_for(lambda: not subprocess.run(["losetup", "--associated", str(manager.pool.image)],
                                        capture_output=True, text=True).stdout,
             timeout=60, what=f"the loop device of {manager.pool.image} to detach")


@pytest.fixture
def real_manager(real_block: Config) -> VolumeManager:
    return wiring.make_manager(real_block)


@pytest.fixture
def real_client(real_block: Config, real_manager: VolumeManager) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(
        make_app(real_block, validator=FixedTokens(), manager=real_manager))
