"""Fixtures shared by every test area; area-specific ones live in tests/<area>/conftest.py."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.session import (  # noqa: F401 (each made once, for every area)
    allinone,
    cluster,
    driver,
    guest_image,
    image_stack,
    real_block,
    stack,
    xfs_root,
)
from tests.support import require_tools


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty soko data dir for one test."""
    path = tmp_path / "soko"
    path.mkdir()
    return path


@pytest.fixture
def netns() -> Iterator[callable]:
    """Creates network namespaces on demand (``netns()`` → name); all are removed afterwards."""
    require_tools("ip")
    created: list[str] = []

    def make(prefix: str = "soko-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        created.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for name in reversed(created):
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["ip", "netns", "del", name], check=True)
