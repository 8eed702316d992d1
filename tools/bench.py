"""``soko bench ...``: the benchmarks. Each prints a table and can write JSON; where a peer
system runs on this machine, the benchmark runs both in one go and prints the ratio."""

from __future__ import annotations

import click

from soko.tools.lazy import LazyGroup

BENCHMARKS = {
    "ring": "soko.ring.bench:bench_ring",
    "object": "soko.object.bench:bench_object",
    "heal": "soko.object.bench_heal:bench_heal",
    "block": "soko.block.bench:bench_block",
    "snapshot": "soko.block.snapshot_bench:bench_snapshot",
    "backup": "soko.block.backups.bench:bench_backup",
    "boot": "soko.compute.bench:bench_boot",
}


@click.group(cls=LazyGroup, lazy=BENCHMARKS)
def bench() -> None:
    """Measure soko (and its peers, where they run here)."""
