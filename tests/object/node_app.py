"""One storage node's app in-process (falcon's test client), over devices under a directory."""

from __future__ import annotations

from pathlib import Path

import falcon.testing

from soko.common.config import Config
from soko.object.node.app import make_app
from soko.object.node.service import StorageSection


def node_app(base: Path) -> falcon.testing.TestClient:
    """The app of a node with one device ``d0`` (``client.device`` is its path)."""
    section = StorageSection(mount_check=False, devices_dir=base / "devices")
    config = Config(data_dir=base, sections={"storage": section})
    device = section.node_devices(base) / "d0"
    device.mkdir(parents=True)
    client = falcon.testing.TestClient(make_app(config))
    client.device = device
    return client
