"""``soko bench ...``: the benchmarks. Each prints a table and can write JSON; where a peer
system runs on this machine, the benchmark runs both in one go and prints the ratio."""

from __future__ import annotations

import click

from soko.tools.lazy import LazyGroup

BENCHMARKS = {
    "ring": "soko.tools.bench.ring:bench_ring",
    "object": "soko.tools.bench.object:bench_object",
    "slo": "soko.tools.bench.slo:bench_slo",
    "heal": "soko.tools.bench.heal:bench_heal",
    "block": "soko.tools.bench.block:bench_block",
    "snapshot": "soko.tools.bench.snapshot:bench_snapshot",
    "backup": "soko.tools.bench.backup:bench_backup",
    "boot": "soko.tools.bench.boot:bench_boot",
    "idle": "soko.tools.bench.idle:bench_idle",
    "net": "soko.tools.bench.net:bench_net",
    "s3": "soko.tools.bench.s3:bench_s3",
}


@click.group(cls=LazyGroup, lazy=BENCHMARKS)
def bench() -> None:
    """Measure soko (and its peers, where they run here)."""
