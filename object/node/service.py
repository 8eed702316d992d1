"""The storage-node service (``soko serve storage --node N``): its config and how soko up
runs it. Imports only dataclasses so the CLI can list services cheaply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from soko.common.config import ConfigError, ServerSection
from soko.common.service import ServiceSpec


@dataclasses.dataclass
class StorageSection(ServerSection):
    """One host's storage nodes; node ``N`` listens on ``port + N`` and serves its devices
    under ``<devices_dir>/node<N>/``: ``d<N>`` in the all-in-one (one device per node)."""

    port: int = 6200
    # Threads kept warm per worker; more start on demand up to max_clients (elastic_pool),
    # so object PUTs waiting on another node's container update cannot starve the nodes
    # (a fixed 8 once deadlocked at c=16). 32 covers a proxy's usual writes in flight.
    workers: int = 2
    threads: int = 32
    nodes: int = 3  # how many nodes soko up runs on this host
    node: int = 0  # which node this process is: set by `soko serve storage --node N`
    devices_dir: Path | None = None  # default: <data_dir>/object/devices
    mount_check: bool = True  # a device must be a mount point, not just a directory
    device_size_gib: int = 8  # size of each loop-backed XFS image soko up creates (sparse)
    conn_timeout: float = 0.5  # node → node (container/account updates)
    node_timeout: float = 2.0  # a listing update slower than this becomes an async pending

    def validate(self) -> None:
        super().validate()
        if self.nodes < 1:
            raise ConfigError(f"nodes: must be at least 1, got {self.nodes}")
        if not 0 <= self.node < self.nodes:
            raise ConfigError(f"node: must be in 0..{self.nodes - 1}, got {self.node}")

    def for_node(self, node: int) -> StorageSection:
        """The section as node ``node`` sees it: its own port."""
        section = dataclasses.replace(self, node=node, port=self.port + node)
        section.validate()
        return section

    def node_devices(self, data_dir: Path, node: int | None = None) -> Path:
        base = self.devices_dir or data_dir / "object" / "devices"
        return base / f"node{self.node if node is None else node}"


SERVICE = ServiceSpec(
    name="storage",
    summary="Object storage node: accounts, containers and objects on its devices",
    section=StorageSection,
    app_factory="soko.object.node.app:make_app",
    bootstrap="soko.object.allinone:bootstrap",
    units="soko.object.allinone:storage_units",
    teardown="soko.object.allinone:teardown",
)
