"""The session's expensive stacks, each made once for the whole run and shared by every area.

Only ``tests/conftest.py`` imports these. A fixture imported into a second conftest or test
module is a second definition that pytest caches apart, so each import used to build its own
cluster, pool, guest image or ``soko up``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from soko.common.config import Config
from soko.object.node.xfs import ensure_mounted, unmount
from tests.block.conftest import DATA_PATH_TOOLS, block_config
from tests.compute.conftest import Stack, require_libvirt, sweep_dead_runs
from tests.e2e.allinone import allinone  # noqa: F401 (one ``soko up --detach``)
from tests.image.image_stack import image_stack  # noqa: F401 (images: cluster + soko-image)
from tests.support import free_port, require_tools, served, wait_for


@pytest.fixture(scope="session")
def xfs_root(tmp_path_factory) -> Iterator[Path]:
    """A mounted XFS filesystem (sparse 8 GiB image) shared by the session's tests."""
    require_tools("mkfs.xfs", "mount", "umount")
    base = tmp_path_factory.mktemp("xfs")
    mount_point = base / "mnt"
    ensure_mounted(base / "devices.img", mount_point, 8 << 30)
    try:
        yield mount_point
    finally:
        unmount(mount_point)
        (base / "devices.img").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def cluster(xfs_root: Path):
    """The session's 3-node cluster with a proxy (see ``tests/object/cluster.py``)."""
    from tests.object.cluster import Cluster

    data_dir = xfs_root / "cluster"
    data_dir.mkdir()
    cluster = Cluster(data_dir)
    try:
        cluster.setup()
        yield cluster
    finally:
        cluster.teardown()


@pytest.fixture(scope="session")
def real_block(tmp_path_factory) -> Iterator[Config]:
    """One reflink pool (loop-backed XFS) and one private tgtd for the whole session; both
    are torn down at the end, leaving no loop device, mount or daemon behind."""
    from soko.block import wiring
    from soko.block.service import BlockConfig
    from soko.block.targets.tgt import unused_control_port

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


@pytest.fixture(scope="session")
def guest_image(tmp_path_factory) -> Path:
    """The test guest, built once per session (the package cache makes rebuilds quick)."""
    require_tools("apt-get", "dpkg-deb", "mkfs.ext4", "mount", "ldd")
    from soko.image import guest_builder

    out = tmp_path_factory.mktemp("guest") / "guest.img"
    guest_builder.build(out, size_mib=64)
    return out


@pytest.fixture(scope="session")
def driver(tmp_path_factory) -> Iterator:
    """libvirt with a prefix of this run's own, so nothing here touches anyone else's
    domains; whatever a failed test left under it is deleted at the end."""
    require_libvirt()
    from soko.compute.drivers.libvirt import LibvirtDriver

    state_dir = tmp_path_factory.mktemp("compute-state")
    sweep_dead_runs(state_dir)
    driver = LibvirtDriver(state_dir, prefix=f"soko-test-{os.getpid()}-")
    yield driver
    for name in driver.reconcile():
        driver.delete(name)
    driver.close()


@pytest.fixture(scope="session")
def stack(real_block, driver) -> Iterator[Stack]:
    """The compute service over real block storage; every domain it makes carries the
    session driver's prefix, so the driver fixture removes any that a failed test left."""
    from soko.block import api as block_api
    from soko.block import wiring as block_wiring
    from soko.compute import api as compute_api
    from soko.compute import wiring as compute_wiring
    from soko.compute.service import ComputeConfig
    from tests.block.fakes import FixedTokens

    # One cloud: block knows compute (for guest-agent quiesce), compute knows block.
    section = ComputeConfig(port=free_port(), domain_prefix=driver.prefix,
                            reconcile_interval=0, stop_timeout=30)
    config = Config(data_dir=real_block.data_dir,
                    sections={"block": real_block.section("block"), "compute": section})
    block_manager = block_wiring.make_manager(config)
    with served(block_api.make_app(config, validator=FixedTokens(),
                                   manager=block_manager)) as block_url:
        section.block_url = block_url
        manager = compute_wiring.make_manager(config, driver=driver)
        app = compute_api.make_app(config, validator=FixedTokens(), manager=manager)
        with served(app, section.port) as compute_url:
            yield Stack(block_url, compute_url, block_manager, manager, driver)
