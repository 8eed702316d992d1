"""Block fixtures: an in-memory manager for the API's logic, and one real pool + tgtd per
session (on a private tgtd control port and portal) for the data path."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from soko.block import wiring
from soko.block.api import make_app
from soko.block.manager import QuotaDefaults, VolumeManager
from soko.block.models import Base
from soko.block.service import BlockConfig
from soko.common.config import Config
from soko.common.db import make_engine, make_sessionmaker
from tests.block.fakes import FixedTokens, MemoryPool, MemoryTarget

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


@pytest.fixture
def real_manager(real_block: Config) -> VolumeManager:
    return wiring.make_manager(real_block)


@pytest.fixture
def real_client(real_block: Config, real_manager: VolumeManager) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(
        make_app(real_block, validator=FixedTokens(), manager=real_manager))
