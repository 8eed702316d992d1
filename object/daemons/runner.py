"""The per-node daemon runner: one process per storage node runs every durability daemon.

Each daemon is a class built as ``Daemon(node)`` (``node`` a :class:`NodeContext`) with a
``run_once() -> dict`` that does one pass over the node's devices and returns its stats.
The runner gives each daemon its own thread, starts a pass every ``<name>_interval``
seconds (``[object-daemons]`` in soko.toml), logs one stats line per pass and writes every
daemon's last-pass stats atomically to the node's recon cache, which the storage node
serves at ``GET /recon`` (see ``soko.object.node.recon``).

A node finds its own devices in a ring as Swift does: the ring devices whose ``(ip, port)``
is the node's ``bind_ip`` and ``port``. Nothing assumes loopback or port arithmetic, so
nodes on separate hosts (or network namespaces) find theirs the same way.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soko.common.config import Config

log = logging.getLogger(__name__)

# name -> "module:Class"; imported only when the daemon runs. The interval setting of
# a daemon is ``<prefix>_interval``, its prefix the last word of its name.
DAEMONS: dict[str, str] = {
    "object-replicator": "soko.object.daemons.replicator:ObjectReplicator",
    "db-replicator": "soko.object.daemons.db_replicator:DBReplicator",
    "auditor": "soko.object.daemons.auditor:Auditor",
    "updater": "soko.object.daemons.updater:Updater",
    "expirer": "soko.object.daemons.expirer:Expirer",
}
JOIN_TIMEOUT = 10.0


@dataclasses.dataclass
class NodeContext:
    """What every daemon of one node shares: its config, devices, rings, pool and stop flag."""

    config: Config
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    # True in the daemon process, whose passes may spread over their intervals; False for
    # a one-off pass (`soko object pass`, tests), which runs as fast as its limits allow
    background: bool = False

    def __post_init__(self) -> None:
        from soko.object.node.diskfile import Devices
        from soko.object.shared.nodeclient import ConnectionPool
        from soko.object.shared.rings import load_rings

        self.storage = self.config.section("storage")
        self.settings = self.config.section("object-daemons")
        self.devices = Devices(self.storage.node_devices(self.config.data_dir),
                               self.storage.mount_check)
        self.rings = load_rings(self.config)
        self.pool = ConnectionPool(self.storage.conn_timeout, self.storage.node_timeout)

    @property
    def address(self) -> tuple[str, int]:
        return self.storage.bind_ip, self.storage.port

    def is_local(self, node: dict) -> bool:
        return (node["ip"], node["port"]) == self.address

    def local_devices(self, ring_name: str) -> list[dict]:
        """This node's devices in a ring (reloaded if the ring file changed)."""
        ring = self.rings[ring_name]
        ring.reload_if_changed()
        return [d for d in ring.devices if self.is_local(d)]

    def mounted_devices(self, ring_name: str) -> list[tuple[dict, Path]]:
        """This node's ring devices that are present (a missing one is skipped, not written)."""
        from soko.common.errors import InsufficientStorage

        found = []
        for dev in self.local_devices(ring_name):
            try:
                found.append((dev, self.devices.path(dev["device"])))
            except InsufficientStorage:
                log.warning("device %s is not mounted; skipping it", dev["device"])
        return found


class Runner:
    """Runs the configured daemons each on its interval until ``node.stop`` is set."""

    def __init__(self, node: NodeContext, names: list[str]):
        from soko.common.service import import_ref

        self.node = node
        self.daemons = {name: import_ref(DAEMONS[name])(node) for name in names}
        self.recon_path = node.settings.recon_path(node.config.data_dir)
        self.recon_lock = threading.Lock()
        self.recon = self.read_recon()

    def read_recon(self) -> dict[str, Any]:
        try:
            recon = json.loads(self.recon_path.read_text())
        except (OSError, ValueError):
            recon = {}
        recon.setdefault("daemons", {})
        recon["node"] = self.node.settings.node
        return recon

    def interval(self, name: str) -> float:
        return getattr(self.node.settings, f"{name.rsplit('-', 1)[-1]}_interval")

    def run_pass(self, name: str) -> dict[str, Any]:
        """One pass of one daemon: its stats, logged and written to the recon cache."""
        started = time.time()
        try:
            stats = self.daemons[name].run_once()
        except Exception as exc:  # one bad pass must not stop the daemon: report, go on
            log.exception("%s pass failed", name)
            stats = {"error": repr(exc)}
        seconds = time.time() - started
        log.info("%s pass: %s seconds=%.2f", name,
                 " ".join(f"{k}={v}" for k, v in stats.items()), seconds)
        record = {"last_pass_start": started, "last_pass_seconds": round(seconds, 3), **stats}
        self.save_recon(name, record)
        return record

    def save_recon(self, name: str, record: dict[str, Any]) -> None:
        from soko.common.durable import atomic_write

        with self.recon_lock:
            self.recon["daemons"][name] = record
            atomic_write(self.recon_path, json.dumps(self.recon, indent=1).encode())

    def loop(self, name: str) -> None:
        while not self.node.stop.is_set():
            started = time.monotonic()
            self.run_pass(name)
            self.node.stop.wait(max(0.0, self.interval(name) - (time.monotonic() - started)))

    def run(self) -> None:
        """Blocks until ``node.stop`` is set, then lets running passes wind down."""
        threads = [threading.Thread(target=self.loop, args=(name,), name=name, daemon=True)
                   for name in self.daemons]
        for thread in threads:
            thread.start()
        self.node.stop.wait()
        deadline = time.monotonic() + JOIN_TIMEOUT
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def main(config: Config, log_level: str = "info") -> None:
    """``soko serve object-daemons --node N``: runs until SIGTERM or SIGINT."""
    from soko.common.log import setup_logging

    setup_logging(log_level)
    settings = config.section("object-daemons")
    config.sections["storage"] = config.section("storage").for_node(settings.node)
    node = NodeContext(config, background=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: node.stop.set())
    log.info("object daemons of node %d (%s:%d): %s", settings.node, *node.address,
             ", ".join(settings.daemons))
    Runner(node, settings.daemons).run()
    log.info("object daemons of node %d stopped", settings.node)
