"""Object-store fixtures: a loop-backed XFS filesystem per test session, as devices live on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from soko.object.node.xfs import ensure_mounted, unmount
from tests.support import require_tools


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


@pytest.fixture
def xfs_dir(xfs_root: Path) -> Path:
    """A fresh directory on the session's XFS filesystem."""
    path = xfs_root / uuid.uuid4().hex[:12]
    path.mkdir()
    return path


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
def netns_cluster(tmp_path_factory):
    """3 storage nodes each in its own network namespace (see ``tests/object/netns_cluster.py``)."""
    from tests.object.netns_cluster import NetnsCluster

    require_tools("ip", "nsenter", "mkfs.xfs", "mount", "umount", "losetup")
    base = tmp_path_factory.mktemp("netns-cluster")
    (base / "data").mkdir()
    (base / "images").mkdir()
    cluster = NetnsCluster(base / "data", base / "images")
    try:
        cluster.setup()
        yield cluster
    finally:
        cluster.teardown()


@pytest.fixture(scope="module")
def cluster_api(cluster):
    """A Swift API session on the session's cluster (the test:tester account)."""
    from tests.object.test_cluster import Api

    return Api(*cluster.auth())


@pytest.fixture
def cluster_container(cluster_api) -> str:
    """A fresh container on the session's cluster."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    assert cluster_api.put(f"{cluster_api.base}/{name}").status_code == 201
    return name
