"""Object-store fixtures: the session cluster's API and fresh directories and containers on it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support import require_tools


@pytest.fixture
def xfs_dir(xfs_root: Path) -> Path:
    """A fresh directory on the session's XFS filesystem."""
    path = xfs_root / uuid.uuid4().hex[:12]
    path.mkdir()
    return path


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
