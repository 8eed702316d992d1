"""The object durability daemons (``soko serve object-daemons --node N``): one process per
storage node, running the replicator, auditor, updater and expirer on that node's devices.
Imports only dataclasses so the CLI can list services cheaply."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from soko.common.config import ConfigError
from soko.common.service import ServiceSpec, Unit, serve_argv
from soko.object.daemons.runner import DAEMONS

DAEMON_NAMES = tuple(DAEMONS)


@dataclasses.dataclass
class DaemonsSection:
    """How the daemons of one storage node run (``[object-daemons]`` in soko.toml)."""

    node: int = 0  # which storage node this process serves: set by `--node N`
    daemons: list[str] = dataclasses.field(default_factory=lambda: list(DAEMON_NAMES))
    replicator_interval: float = 30.0  # seconds from the start of one pass to the next
    auditor_interval: float = 86400.0  # every object and DB read once per interval (paced)
    updater_interval: float = 30.0
    expirer_interval: float = 60.0
    replicator_concurrency: int = 4  # partitions replicated in parallel
    # A partition or DB unchanged since its last sync is skipped, and verified with every
    # peer at a random moment within this many seconds (sync_memory); 0: every pass
    replicator_verify_interval: float = 3600.0
    replicator_bytes_per_second: int = 100 << 20  # pushed by one node; 0: unlimited
    reclaim_age: float = 7 * 86400.0  # object tombstones older than this are removed
    auditor_bytes_per_second: int = 10 << 20  # read while checking MD5s; 0: unlimited
    auditor_files_per_second: int = 20  # the most, whatever the interval asks; 0: unlimited
    recon_dir: Path | None = None  # per-node recon cache files; default <data_dir>/object/recon

    def recon_path(self, data_dir: Path, node: int | None = None) -> Path:
        """The JSON file the daemons of one node write their last-pass stats to."""
        base = self.recon_dir or data_dir / "object" / "recon"
        return base / f"node{self.node if node is None else node}.json"

    def validate(self) -> None:
        unknown = set(self.daemons) - set(DAEMON_NAMES)
        if unknown:
            raise ConfigError(f"daemons: unknown {sorted(unknown)[0]!r} "
                              f"(known: {', '.join(DAEMON_NAMES)})")
        for name in ("replicator_interval", "auditor_interval", "updater_interval",
                     "expirer_interval", "reclaim_age"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.replicator_verify_interval < 0:
            raise ConfigError("replicator_verify_interval: must be 0 (every pass) or more")
        if self.replicator_concurrency < 1:
            raise ConfigError("replicator_concurrency: must be at least 1")
        for name in ("replicator_bytes_per_second", "auditor_bytes_per_second",
                     "auditor_files_per_second"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be 0 (unlimited) or more")

    def for_node(self, node: int) -> DaemonsSection:
        if node < 0:
            raise ConfigError(f"node: must be 0 or more, got {node}")
        return dataclasses.replace(self, node=node)


def daemon_units(config) -> list[Unit]:
    """One daemons process per storage node of this host (no health URL: not an HTTP app)."""
    nodes = config.section("storage").nodes
    return [Unit(name=f"object-daemons-{node}",
                 argv=serve_argv("object-daemons", config, "--node", str(node)))
            for node in range(nodes)]


SERVICE = ServiceSpec(
    name="object-daemons",
    summary="Object durability daemons of one storage node: replicator, auditor, updater, "
            "expirer",
    section=DaemonsSection,
    units="soko.object.daemons.service:daemon_units",
    main="soko.object.daemons.runner:main",
)
