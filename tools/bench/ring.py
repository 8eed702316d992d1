"""``soko bench ring``: rebalance and lookup speed, balance, dispersion and movement, side
by side with OpenStack Swift's swift-ring-builder when it is installed.

Both builders run as command-line tools in subprocesses on the same topology with the same
seed, so each timing covers the same work: start, load the builder, rebalance, save the
builder, write the ring. soko's in-process ``rebalance()`` time is shown too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from soko.ring.builder import RingBuilder
from soko.ring.ring import Ring

DISKS_PER_SERVER = 3
SWIFT_VENV_BUILDER = Path("/tmp/swiftvenv/bin/swift-ring-builder")
_SWIFT_RESULT = re.compile(
    r"Reassigned (\d+) \(([\d.]+)%\) partitions\. Balance is now ([\d.]+)\.\s+Dispersion is now ([\d.]+)"
)
_SWIFT_LOOKUPS = """
import sys, time
from swift.common import utils
utils.HASH_PATH_PREFIX, utils.HASH_PATH_SUFFIX = b"", b"bench"
from swift.common.ring import Ring
ring = Ring(sys.argv[1])
names = [f"obj{i}" for i in range(int(sys.argv[2]))]
start = time.perf_counter()
for name in names:
    ring.get_nodes("AUTH_bench", "container", name)
print((time.perf_counter() - start) / len(names) * 1e6)
"""


def topology(devices: int, zones: int, start: int = 0) -> list[dict[str, Any]]:
    """``devices`` disks dealt round-robin over ``zones``, three disks per server."""
    placed: dict[int, int] = {}
    out = []
    for n in range(start, start + devices):
        zone = n % zones + 1
        slot = placed.get(zone, 0)
        placed[zone] = slot + 1
        server, disk = divmod(slot, DISKS_PER_SERVER)
        out.append(
            {
                "region": 1,
                "zone": zone,
                "ip": f"10.{zone}.{server // 250}.{server % 250 + 1}",
                "port": 6200,
                "device": f"sd{chr(ord('b') + disk)}",
                "weight": 100.0,
            }
        )
    return out


def _later_devices(initial: int, added: int, zones: int) -> list[dict[str, Any]]:
    return topology(initial + added, zones)[initial:]


def _compact(dev: dict[str, Any]) -> list[str]:
    return [f"r{dev['region']}z{dev['zone']}-{dev['ip']}:{dev['port']}/{dev['device']}", "100"]


def _timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # swift-ring-builder exits 1 for warnings
        raise click.ClickException(f"{' '.join(argv[:3])} failed: {proc.stderr or proc.stdout}")
    return elapsed, proc.stdout


def _lookup_micros(ring: Ring, count: int) -> float:
    names = [f"obj{i}" for i in range(count)]
    start = time.perf_counter()
    for name in names:
        ring.get_nodes("AUTH_bench", "container", name)
    return (time.perf_counter() - start) / count * 1e6


def run_soko(workdir: Path, args: dict[str, Any]) -> dict[str, Any]:
    path = workdir / "soko.builder"
    cli = [sys.executable, "-m", "soko.ring.cli"]
    seed = str(args["seed"])
    builder = RingBuilder(args["part_power"], args["replicas"], 1)
    for dev in topology(args["devices"], args["zones"]):
        builder.add_device(**dev)
    builder.save(path)
    in_process = RingBuilder.load(path)
    start = time.perf_counter()
    in_process.rebalance(seed=args["seed"])
    rebalance_s = time.perf_counter() - start
    initial_s, _ = _timed([*cli, "rebalance", str(path), "--seed", seed])
    initial = RingBuilder.load(path)
    result: dict[str, Any] = {
        "rebalance_in_process_s": rebalance_s,
        "initial_s": initial_s,
        "initial_balance": initial.balance(),
        "initial_dispersion": initial.dispersion()["dispersion"],
    }
    initial.pretend_min_part_hours_passed()
    for dev in _later_devices(args["devices"], args["add"], args["zones"]):
        initial.add_device(**dev)
    initial.save(path)
    added_s, _ = _timed([*cli, "rebalance", str(path), "--seed", seed])
    after = RingBuilder.load(path)
    moved = sum(
        a != b
        for old, new in zip(initial.rows, after.rows, strict=True)
        for a, b in zip(old, new, strict=True)
    )
    ring = Ring(path.with_suffix(".ring"), hash_suffix=b"bench")
    result.update(
        added_s=added_s,
        added_moved_percent=100.0 * moved / sum(after.row_lengths()),
        added_balance=after.balance(),
        added_dispersion=after.dispersion()["dispersion"],
        get_nodes_us=_lookup_micros(ring, args["lookups"]),
    )
    return result


def run_swift(workdir: Path, args: dict[str, Any], srb: Path) -> dict[str, Any]:
    path = str(workdir / "swift.builder")
    seed = str(args["seed"])
    _timed([str(srb), path, "create", str(args["part_power"]), str(args["replicas"]), "1"])
    devs = topology(args["devices"], args["zones"])
    _timed([str(srb), path, "add", *[w for d in devs for w in _compact(d)]])
    initial_s, out = _timed([str(srb), path, "rebalance", "--seed", seed])
    initial = _parse_swift(out)
    _timed([str(srb), path, "pretend_min_part_hours_passed"])
    more = _later_devices(args["devices"], args["add"], args["zones"])
    _timed([str(srb), path, "add", *[w for d in more for w in _compact(d)]])
    added_s, out = _timed([str(srb), path, "rebalance", "--seed", seed])
    added = _parse_swift(out)
    total = (1 << args["part_power"]) * args["replicas"]
    lookups = subprocess.run(
        [
            str(srb.parent / "python"),
            "-c",
            _SWIFT_LOOKUPS,
            str(workdir / "swift.ring.gz"),
            str(args["lookups"]),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "initial_s": initial_s,
        "initial_balance": initial["balance"],
        "initial_dispersion": initial["dispersion"],
        "added_s": added_s,
        "added_moved_percent": 100.0 * added["reassigned"] / total,
        "added_balance": added["balance"],
        "added_dispersion": added["dispersion"],
        "get_nodes_us": float(lookups.stdout) if lookups.returncode == 0 else None,
    }


def _parse_swift(output: str) -> dict[str, float]:
    match = _SWIFT_RESULT.search(output)
    if not match:
        raise click.ClickException(f"cannot read swift-ring-builder's rebalance output: {output}")
    return {
        "reassigned": int(match[1]),
        "balance": float(match[3]),
        "dispersion": float(match[4]),
    }


def find_swift_ring_builder(option: str | None) -> Path | None:
    if option:
        return Path(option)
    found = shutil.which("swift-ring-builder")
    if found:
        return Path(found)
    return SWIFT_VENV_BUILDER if SWIFT_VENV_BUILDER.exists() else None


ROWS = [
    ("initial_s", "initial rebalance, CLI (s)", True),
    ("rebalance_in_process_s", "initial rebalance, in process (s)", True),
    ("initial_balance", "balance after it (%)", False),
    ("initial_dispersion", "dispersion after it (%)", False),
    ("added_s", "rebalance after adding devices, CLI (s)", True),
    ("added_moved_percent", "replicas moved (% of all; ideal {ideal:.2f})", False),
    ("added_balance", "balance after it (%)", False),
    ("added_dispersion", "dispersion after it (%)", False),
    ("get_nodes_us", "get_nodes (µs per lookup)", True),
]


def report(args: dict[str, Any], soko: dict[str, Any], swift: dict[str, Any] | None) -> None:
    ideal = 100.0 * args["add"] / (args["devices"] + args["add"])
    table = Table(
        title=f"ring: part power {args['part_power']}, {args['replicas']} replicas, "
        f"{args['devices']} devices in {args['zones']} zones, then +{args['add']}"
    )
    for column in ("measure", "soko", "swift-ring-builder", "swift / soko"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for key, label, is_time in ROWS:
        mine, theirs = soko.get(key), (swift or {}).get(key)
        ratio = f"{theirs / mine:.1f}×" if is_time and mine and theirs else ""
        table.add_row(label.format(ideal=ideal), _fmt(mine), _fmt(theirs), ratio)
    Console(file=sys.stdout, width=110).print(table)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 100 else f"{value:.0f}"


@click.command("ring")
@click.option("--part-power", type=int, default=18, show_default=True)
@click.option("--replicas", type=int, default=3, show_default=True)
@click.option("--devices", type=int, default=60, show_default=True)
@click.option("--zones", type=int, default=5, show_default=True)
@click.option("--add", type=int, default=6, show_default=True, help="Devices added afterwards.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--lookups", type=int, default=100_000, show_default=True)
@click.option("--swift-ring-builder", "swift_option", help="Path to swift-ring-builder.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Also write results here."
)
def bench_ring(json_path: str | None, swift_option: str | None, **args: Any) -> None:
    """Rebalance time, movement, balance, dispersion and lookup speed, against Swift's."""
    srb = find_swift_ring_builder(swift_option)
    with tempfile.TemporaryDirectory(prefix="soko-bench-ring-") as tmp:
        soko = run_soko(Path(tmp), args)
        swift = run_swift(Path(tmp), args, srb) if srb and srb.exists() else None
    report(args, soko, swift)
    if swift is None:
        click.echo(
            "swift-ring-builder not found (give --swift-ring-builder PATH, put it on PATH, or "
            "pip install swift into /tmp/swiftvenv): no comparison"
        )
    if json_path:
        Path(json_path).write_text(
            json.dumps({"args": args, "soko": soko, "swift": swift}, indent=2)
        )
