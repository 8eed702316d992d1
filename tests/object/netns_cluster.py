"""A 3-node object cluster on separate "hosts": each storage node in its own network namespace.

Every node gets a namespace with its own private IP (``10.<n>.<m>.1x/24``) on a veth whose
other end sits in a Linux bridge the harness creates; the root namespace holds the bridge's
address, identity and the proxy. The rings carry the nodes' namespace IPs, so all traffic
(proxy → node, node → node) crosses the veths and a test can cut a node off (link down) or
kill it. Node processes enter only the network namespace (``nsenter --net``), not a mount
namespace, so each node's devices (loop-backed XFS images, ``mount_check`` on) are the
same mounts the test sees and can unmount, and teardown releases every loop device.

Each node also runs its durability daemons process (``soko serve object-daemons``) in its
namespace. Their intervals are long, so after the first pass they wait; tests drive passes
deterministically with ``run_passes`` (``soko object pass`` in the node's namespace).

Names carry a uuid suffix; teardown removes processes, mounts, images, links, namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from soko.common import services
from soko.common.config import dump_toml
from soko.common.procs import stop_process_group
from soko.object.allinone import node_device_names
from soko.object.node.xfs import ensure_mounted, unmount
from tests.object.cluster import USERS, Cluster
from tests.support import free_port

NODES = 3
STORAGE_PORT = 6200
PART_POWER = 8  # 256 partitions: every device holds many, replication passes stay short
DEVICE_BYTES = 1 << 30  # sparse XFS image per device
# Short timeouts keep failure tests fast; the proxy's node timeout must exceed the nodes'
# own (a healthy node may spend that long on a listing update to a dead container node).
PROXY_TIMEOUTS = {"conn_timeout": 0.5, "node_timeout": 3.0}
NODE_TIMEOUTS = {"conn_timeout": 0.5, "node_timeout": 1.0}
DAEMON_INTERVAL = 3600.0  # passes are driven by the tests


def ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


def free_subnet() -> str:
    """A ``10.a.b`` /24 prefix no interface on this machine uses."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for _ in range(100):
        prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        if f" {prefix}." not in used:
            return prefix
    raise RuntimeError("no free 10.x.y.0/24 subnet")


class NetnsCluster(Cluster):
    """The cluster of ``tests/object/cluster.py`` with each node on its own network host."""

    def __init__(self, data_dir: Path, images_dir: Path):
        tag = uuid.uuid4().hex[:6]
        self.data_dir = data_dir
        self.images_dir = images_dir
        self.bridge = f"skbr{tag}"
        self.subnet = free_subnet()
        self.namespaces = [f"soko-node{n}-{tag}" for n in range(NODES)]
        self.veths = [f"skv{n}{tag}" for n in range(NODES)]
        self.node_ips = [f"{self.subnet}.{11 + n}" for n in range(NODES)]
        self.proxy_port = free_port()
        self.config_path = data_dir / "soko.toml"
        base = {
            "identity": {"port": free_port(), "scrypt_log2_n": 10},
            "storage": {"port": STORAGE_PORT, "nodes": NODES, "mount_check": True,
                        **NODE_TIMEOUTS},
            "proxy": {"port": self.proxy_port, **PROXY_TIMEOUTS},
            "object-daemons": {f"{name}_interval": DAEMON_INTERVAL
                               for name in ("replicator", "auditor", "updater", "expirer")},
        }
        self.config_path.write_text(dump_toml(base))
        self.node_config_paths = []
        for node, node_ip in enumerate(self.node_ips):
            path = data_dir / f"soko-node{node}.toml"
            path.write_text(dump_toml({**base, "storage": {**base["storage"],
                                                           "bind_ip": node_ip}}))
            self.node_config_paths.append(path)
        self.config = services.load(self.config_path, data_dir)
        self.procs = {}
        self.keys = dict(USERS)

    # -- setup and teardown ----------------------------------------------------------------

    def setup(self) -> None:
        self.create_network()
        for node in range(NODES):
            for device in node_device_names(node):
                self.mount_device(node, device)
        self.build_rings()
        self.create_users()
        for node in range(NODES):
            self.start_node(node)
        self.spawn("proxy", ["serve", "proxy"], f"{self.proxy_url}/healthcheck")

    def create_network(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for ns, veth, node_ip in zip(self.namespaces, self.veths, self.node_ips, strict=True):
            ip("netns", "add", ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", veth, "master", self.bridge, "up")
            ip("-n", ns, "addr", "add", f"{node_ip}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def build_rings(self) -> None:
        from soko.ring.builder import build_rings

        ring_dir = self.config.section("proxy").rings_dir(self.data_dir)
        ring_dir.mkdir(parents=True, exist_ok=True)
        devices = [{"region": 1, "zone": node + 1, "ip": self.node_ips[node],
                    "port": STORAGE_PORT + node, "device": device, "weight": 100.0}
                   for node in range(NODES) for device in node_device_names(node)]
        build_rings(ring_dir, devices, part_power=PART_POWER, replicas=3)

    def teardown(self) -> None:
        for name in list(self.procs):
            self.stop(name)
        for node in range(NODES):
            for device in node_device_names(node):
                with contextlib.suppress(Exception):
                    self.unmount_device(node, device)
                (self.images_dir / f"{device}.img").unlink(missing_ok=True)
        for veth in self.veths:
            ip("link", "del", veth, check=False)
        for ns in self.namespaces:
            ip("netns", "del", ns, check=False)
        ip("link", "del", self.bridge, check=False)

    # -- devices ---------------------------------------------------------------------------

    def device_path(self, node: int, device: str) -> Path:
        return self.node_devices(node) / device

    def mount_device(self, node: int, device: str) -> None:
        ensure_mounted(self.images_dir / f"{device}.img", self.device_path(node, device),
                       DEVICE_BYTES)

    def unmount_device(self, node: int, device: str, lazy: bool = False) -> None:
        """Takes a device away (``lazy``: even while the node has files open, as a disk
        failing under it); its loop device goes once the last file is closed."""
        path = self.device_path(node, device)
        if lazy:
            subprocess.run(["umount", "-l", str(path)], check=True)
        else:
            unmount(path)

    def replace_device(self, node: int, device: str) -> None:
        """A new, empty disk in place of a failed one: a fresh XFS image, mounted."""
        (self.images_dir / f"{device}.img").unlink(missing_ok=True)
        self.mount_device(node, device)

    # -- nodes -----------------------------------------------------------------------------

    def node_url(self, node: int) -> str:
        return f"http://{self.node_ips[node]}:{STORAGE_PORT + node}"

    def in_namespace(self, node: int) -> tuple[str, ...]:
        return ("nsenter", f"--net=/run/netns/{self.namespaces[node]}")

    def soko_argv(self, node: int, *args: str) -> list[str]:
        """``soko ARGS`` as node ``node`` runs it: in its namespace, with its config."""
        return [*self.in_namespace(node), sys.executable, "-m", "soko.tools.cli", *args,
                "--config", str(self.node_config_paths[node]), "--data-dir", str(self.data_dir)]

    def start_node(self, node: int) -> None:
        """The node's storage server (waits until healthy) and its daemons process."""
        self.spawn(f"storage-{node}", ["serve", "storage", "--node", str(node)],
                   f"{self.node_url(node)}/healthcheck",
                   config_path=self.node_config_paths[node], wrapper=self.in_namespace(node))
        with open(self.data_dir / f"daemons-{node}.log", "ab") as log:
            self.procs[f"daemons-{node}"] = subprocess.Popen(
                self.soko_argv(node, "serve", "object-daemons", "--node", str(node)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill_node(self, node: int) -> None:
        """SIGKILL to the node's storage and daemons processes: a host crash."""
        for name in (f"storage-{node}", f"daemons-{node}"):
            proc = self.procs.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            stop_process_group(proc)

    @contextlib.contextmanager
    def node_stopped(self, node: int):
        self.kill_node(node)
        try:
            yield
        finally:
            self.start_node(node)

    def run_passes(self, daemon: str, nodes=range(NODES)) -> list[dict]:
        """One pass of ``daemon`` on each of ``nodes`` at the same time: their stats."""
        procs = [subprocess.Popen(self.soko_argv(node, "object", "pass", daemon, "--node",
                                                 str(node), "--format", "json"),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for node in nodes]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"{daemon} pass failed: {err.decode()[-2000:]}")
            results.append(json.loads(out))
        return results

    def set_link(self, node: int, up: bool) -> None:
        """Cuts a node off the network (its veth down: SYNs and packets vanish) or back."""
        ip("link", "set", self.veths[node], "up" if up else "down")

    @contextlib.contextmanager
    def link_down(self, node: int):
        self.set_link(node, False)
        try:
            yield
        finally:
            self.set_link(node, True)
