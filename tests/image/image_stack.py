"""The image service as a user meets it: a real 3-node object cluster with its proxy and
identity (``tests/object/cluster.py``), and ``soko serve image`` as a gunicorn process in
front of it, with a small segment size so a test image spans several segments.

Projects: ``test`` (users ``tester``, member, and ``imgadmin``, admin) and ``other``
(``otheruser``, member). Tokens come from the proxy's tempauth, as a Swift client gets them.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from soko.common import services
from soko.common.config import dump_toml
from soko.object.node.xfs import ensure_mounted, unmount
from tests.object.cluster import Cluster
from tests.support import free_port, require_tools, running_service

SEGMENT_SIZE = 1 << 20  # a 64 MiB guest image is 64 segments
ADMIN = ("test:imgadmin", "imgadmin-pw1")


@dataclasses.dataclass
class ImageStack:
    cluster: Cluster
    url: str  # the image endpoint
    config_path: Path

    def token(self, user: str = "test:tester") -> str:
        return self.login(user)[1]

    def login(self, user: str) -> tuple[str, str]:
        """(storage URL, token) from tempauth."""
        key = self.cluster.keys[user]
        r = requests.get(f"{self.cluster.proxy_url}/auth/v1.0",
                         headers={"X-Auth-User": user, "X-Auth-Key": key}, timeout=10)
        r.raise_for_status()
        return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]

    def cli(self, *args: str, user: str = "test:tester", check: bool = True):
        from soko.tools.cli import cli

        result = CliRunner().invoke(cli, ["image", "--os-url", self.url,
                                          "--os-token", self.token(user), *args])
        if check and result.exit_code != 0:
            raise AssertionError(f"soko image {' '.join(args)} failed: {result.output}"
                                 f"{result.exception!r}")
        return result

    def cli_json(self, *args: str, user: str = "test:tester"):
        return json.loads(self.cli(*args, "--format", "json", user=user).output)

    def objects(self, user: str = "test:tester", container: str = "images") -> list[str]:
        """Every object name in the user's project's container (the stored segments)."""
        storage_url, token = self.login(user)
        r = requests.get(f"{storage_url}/{container}", params={"format": "json"},
                         headers={"X-Auth-Token": token}, timeout=10)
        return [o["name"] for o in r.json()] if r.status_code == 200 and r.content else []


@pytest.fixture(scope="session")
def image_stack(tmp_path_factory) -> Iterator[ImageStack]:
    require_tools("mkfs.xfs", "mount", "umount", "qemu-img")
    base = tmp_path_factory.mktemp("images")
    mount_point = base / "mnt"
    ensure_mounted(base / "devices.img", mount_point, 4 << 30)
    data_dir = mount_point / f"cluster-{uuid.uuid4().hex[:6]}"
    data_dir.mkdir()
    cluster = Cluster(data_dir)
    try:
        cluster.setup()
        cluster.add_user(*ADMIN, "admin")
        config_path = cluster.data_dir / "image.toml"
        config_path.write_text(cluster.config_path.read_text() + dump_toml(
            {"image": {"port": free_port(), "segment_size": SEGMENT_SIZE}}))
        config = services.load(config_path, cluster.data_dir)
        with running_service("image", config) as url:
            yield ImageStack(cluster, url, config_path)
    finally:
        cluster.teardown()
        unmount(mount_point)
