"""A real 3-node object cluster on loopback for integration tests.

Three ``soko serve storage --node N`` processes (two devices each, as directories on the
session's loop-backed XFS filesystem), rings for 3 replicas, identity with two projects,
and a ``soko serve proxy`` process. Nodes can be stopped and restarted by a test.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from pathlib import Path

import requests

from soko.common import services
from soko.common.config import dump_toml
from soko.common.procs import stop_process_group
from soko.object.allinone import ensure_rings, node_device_names
from tests.support import free_port, free_ports, healthy

USERS = {"test:tester": "testing123", "other:otheruser": "otherpass1"}


class Cluster:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.storage_port = free_ports(3)
        self.proxy_port = free_port()
        self.config_path = data_dir / "soko.toml"
        self.config_path.write_text(dump_toml({
            "identity": {"port": free_port(), "scrypt_log2_n": 10},
            "storage": {"port": self.storage_port, "nodes": 3, "mount_check": False},
            # Tests stop and restart nodes back to back; error limiting would keep sending
            # the next tests' writes to handoffs for 30 s after a node is back. Its own tests
            # (test_replica_failover, the netns link-down test) turn it on.
            "proxy": {"port": self.proxy_port, "error_limit": 0, "s3_domain": "s3.soko.test"},
        }))
        self.config = services.load(self.config_path, data_dir)
        self.procs: dict[str, subprocess.Popen] = {}
        self.keys = dict(USERS)

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def node_devices(self, node: int) -> Path:
        return self.config.section("storage").node_devices(self.data_dir, node)

    def setup(self) -> None:
        for node in range(3):
            for device in node_device_names(node):
                (self.node_devices(node) / device).mkdir(parents=True, exist_ok=True)
        ensure_rings(self.config)
        self.create_users()
        for node in range(3):
            self.start_node(node)
        self.spawn("proxy", ["serve", "proxy"], f"{self.proxy_url}/healthcheck")

    def create_users(self) -> None:
        for user, key in USERS.items():
            self.add_user(user, key, "member")

    def add_user(self, user: str, key: str, role: str) -> None:
        """``<project>:<name>`` holding ``role`` on the project (both made if missing);
        ``auth(user)`` logs it in afterwards. A user that exists is left as it is."""
        from soko.common.db import make_engine
        from soko.identity.manager import IdentityManager
        from soko.identity.service import db_url

        project, _, name = user.partition(":")
        engine = make_engine(db_url(self.config))
        try:
            manager = IdentityManager.from_config(self.config, engine=engine)
            if not manager.list_users(name=name):
                if not manager.list_projects(name=project):
                    manager.create_project(project)
                manager.create_user(name, key, default_project=project)
                manager.grant_role(project, name, role)
        finally:
            engine.dispose()  # no open file may keep the XFS mount busy at the end
        self.keys[user] = key

    def spawn(self, name: str, args: list[str], health_url: str, *,
              config_path: Path | None = None, wrapper: tuple[str, ...] = ()) -> None:
        """Starts ``soko ARGS`` (under ``wrapper``, e.g. nsenter) and waits until healthy."""
        argv = [*wrapper, sys.executable, "-m", "soko.tools.cli", *args, "--config",
                str(config_path or self.config_path), "--data-dir", str(self.data_dir)]
        log_path = self.data_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs[name] = proc
        deadline = time.monotonic() + 30
        while not healthy(health_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop(name)
                raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def start_node(self, node: int) -> None:
        port = self.storage_port + node
        self.spawn(f"storage-{node}", ["serve", "storage", "--node", str(node)],
                   f"http://127.0.0.1:{port}/healthcheck")

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        stop_process_group(proc)

    @contextlib.contextmanager
    def node_stopped(self, node: int):
        self.stop(f"storage-{node}")
        try:
            yield
        finally:
            self.start_node(node)

    def teardown(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def auth(self, user: str = "test:tester") -> tuple[str, str]:
        r = requests.get(f"{self.proxy_url}/auth/v1.0",
                         headers={"X-Auth-User": user, "X-Auth-Key": self.keys[user]},
                         timeout=10)
        r.raise_for_status()
        return r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]

    def object_files(self, account: str, container: str, obj: str) -> list[Path]:
        """Every ``.data`` file of one object on any device (primaries and handoffs)."""
        from soko.object.node.diskfile import name_hash

        digest = name_hash(account, container, obj)
        return sorted(self.data_dir.glob(f"object/devices/node*/d*/objects/*/{digest[-3:]}/"
                                         f"{digest}/*.data"))
