"""``soko ring``: swift-ring-builder's verbs over soko's msgpack builder files.

Every verb that edits loads the builder, changes it in memory and saves it only when all
went well, so a rejected command leaves the file exactly as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from soko.common.cli.output import emit_record, emit_rows, format_option
from soko.ring.builder import RingBuilder
from soko.ring.devices import Device, host_port, parse_compact
from soko.ring.errors import RingError

DEVICE_COLUMNS = [
    "id",
    "region",
    "zone",
    "address",
    "device",
    "weight",
    "partitions",
    "balance",
    "meta",
]


def _load(path: str) -> RingBuilder:
    try:
        return RingBuilder.load(path)
    except RingError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _editing(path: str) -> Iterator[RingBuilder]:
    builder = _load(path)
    try:
        yield builder
        builder.save(path)
    except RingError as exc:
        raise click.ClickException(str(exc)) from None


def _ring_path(builder_path: str) -> Path:
    path = Path(builder_path)
    return path.with_suffix(".ring") if path.suffix == ".builder" else Path(f"{path}.ring")


def _one_or_all(builder: RingBuilder, search: str, yes: bool) -> list[Device]:
    """Devices matching a search value; several need --yes, as in swift-ring-builder."""
    found = builder.search(search)
    if not found:
        raise RingError(f"no device matches {search!r}")
    if len(found) > 1 and not yes:
        labels = ", ".join(d.label() for d in found)
        raise RingError(f"{search!r} matches {len(found)} devices ({labels}); add --yes for all")
    return found


@click.group()
def ring() -> None:
    """Build rings: create a builder, add devices, rebalance, write the ring file."""


@ring.command()
@click.argument("builder_file", type=click.Path(dir_okay=False))
@click.argument("part_power", type=int)
@click.argument("replicas", type=float)
@click.argument("min_part_hours", type=int)
def create(builder_file: str, part_power: int, replicas: float, min_part_hours: int) -> None:
    """Create BUILDER_FILE with 2**PART_POWER partitions and REPLICAS replicas."""
    if os.path.exists(builder_file):
        raise click.ClickException(f"{builder_file} already exists")
    try:
        RingBuilder(part_power, replicas, min_part_hours).save(builder_file)
    except RingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {builder_file}: {1 << part_power} partitions, {replicas:g} replicas")


@ring.command()
@click.argument("builder_file", type=click.Path(dir_okay=False))
@click.argument("compact", nargs=-1)
@click.option("--region", type=int, help="Region (default 1).")
@click.option("--zone", type=int)
@click.option("--ip")
@click.option("--port", type=int)
@click.option("--device")
@click.option("--weight", type=float)
@click.option("--meta")
@click.option("--id", "dev_id", type=int, help="Device id (default: the next free one).")
def add(builder_file: str, compact: tuple[str, ...], dev_id: int | None, **fields: Any) -> None:
    """Add devices: by options, or as swift-ring-builder's pairs
    ``r1z1-10.0.0.1:6200/sdb1 100 [r1z2-10.0.0.2:6200/sdb1 100 ...]``."""
    if compact:
        if len(compact) % 2 or any(v is not None for v in (dev_id, *fields.values())):
            raise click.UsageError("give either DEVICE WEIGHT pairs or the options, not both")
        try:
            specs = [
                {**parse_compact(text), "weight": weight}
                for text, weight in zip(compact[::2], compact[1::2], strict=True)
            ]
        except RingError as exc:
            raise click.UsageError(str(exc)) from None
    else:
        missing = [k for k in ("zone", "ip", "port", "device", "weight") if fields[k] is None]
        if missing:
            raise click.UsageError(f"missing --{', --'.join(missing)}")
        specs = [
            {**fields, "region": fields["region"] or 1, "meta": fields["meta"] or "", "id": dev_id}
        ]
    with _editing(builder_file) as builder:
        added = [builder.add_device(**spec) for spec in specs]
    for dev in added:
        click.echo(f"added device {dev.label()} weight {dev.weight:g}")


@ring.command()
@click.argument("builder_file", type=click.Path(dir_okay=False))
@click.argument("search")
@click.option("--yes", is_flag=True, help="Act on every matching device.")
def remove(builder_file: str, search: str, yes: bool) -> None:
    """Remove the devices matching SEARCH (e.g. d3, z1-10.0.0.1:6200/sdb); their
    partitions move at the next rebalance."""
    with _editing(builder_file) as builder:
        removed = [builder.remove_device(d.id) for d in _one_or_all(builder, search, yes)]
    for dev in removed:
        click.echo(f"removing device {dev.label()} (at the next rebalance)")


@ring.command("set_weight")
@click.argument("builder_file", type=click.Path(dir_okay=False))
@click.argument("search")
@click.argument("weight", type=float)
@click.option("--yes", is_flag=True, help="Act on every matching device.")
def set_weight(builder_file: str, search: str, weight: float, yes: bool) -> None:
    """Set the weight of the devices matching SEARCH."""
    with _editing(builder_file) as builder:
        changed = [builder.set_weight(d.id, weight) for d in _one_or_all(builder, search, yes)]
    for dev in changed:
        click.echo(f"device {dev.label()} weight is now {dev.weight:g}")


@ring.command("set_info")
@click.argument("builder_file", type=click.Path(dir_okay=False))
@click.argument("search")
@click.option("--ip")
@click.option("--port", type=int)
@click.option("--device")
@click.option("--meta")
def set_info(builder_file: str, search: str, **changes: Any) -> None:
    """Change how the device matching SEARCH is reached (ip, port, device name) or its meta."""
    if all(v is None for v in changes.values()):
        raise click.UsageError("nothing to change: give --ip, --port, --device or --meta")
    with _editing(builder_file) as builder:
        (dev,) = _one_or_all(builder, search, yes=False)
        dev = builder.set_info(dev.id, **changes)
    click.echo(f"device {dev.id} is now {dev.label()} meta {dev.meta!r}")


@ring.command()
@click.argument("builder_file", type=click.Path(dir_okay=False))
@click.option("--seed", type=int, help="Same seed, same builder: same assignment.")
def rebalance(builder_file: str, seed: int | None) -> None:
    """Reassign partitions, then save the builder and write the ring file next to it."""
    with _editing(builder_file) as builder:
        result = builder.rebalance(seed=seed)
        builder.write_ring(_ring_path(builder_file))
    dispersion = builder.dispersion()["dispersion"]
    click.echo(
        f"reassigned {result.moved_slots} replicas of {result.moved_partitions} partitions "
        f"({result.moved_percent:.2f} %); balance is {result.balance:.2f} %, "
        f"dispersion is {dispersion:.2f} % (seed {result.seed})"
    )
    click.echo(f"wrote {_ring_path(builder_file)}")


@ring.command("write_ring")
@click.argument("builder_file", type=click.Path(dir_okay=False))
@click.argument("ring_file", required=False, type=click.Path(dir_okay=False))
def write_ring(builder_file: str, ring_file: str | None) -> None:
    """Write the ring file (default: BUILDER_FILE with .ring instead of .builder)."""
    builder = _load(builder_file)
    target = Path(ring_file) if ring_file else _ring_path(builder_file)
    try:
        builder.write_ring(target)
    except RingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {target}")


@ring.command("pretend_min_part_hours_passed")
@click.argument("builder_file", type=click.Path(dir_okay=False))
def pretend_min_part_hours_passed(builder_file: str) -> None:
    """Let the next rebalance move any partition, whatever min_part_hours says."""
    with _editing(builder_file) as builder:
        builder.pretend_min_part_hours_passed()
    click.echo("every partition may move at the next rebalance")


@ring.command()
@click.argument("builder_file", type=click.Path(dir_okay=False))
@format_option
def show(builder_file: str, fmt: str) -> None:
    """The ring's shape and every device with its partitions and balance %."""
    builder = _load(builder_file)
    devices = [
        {**row, "address": host_port(row["ip"], row["port"]), "balance": _balance(row)}
        for row in builder.device_report()
    ]
    summary = {
        "builder": builder_file,
        "partitions": builder.partition_count,
        "part_power": builder.part_power,
        "replicas": builder.replicas,
        "min_part_hours": builder.min_part_hours,
        "devices": len(builder.live_devices()),
        "balance": builder.balance(),
        "dispersion": builder.dispersion()["dispersion"] if builder.rows else None,
        "version": builder.version,
    }
    if fmt == "json":
        emit_record({**summary, "devices": devices}, fmt)
        return
    click.echo(", ".join(f"{k} {v}" for k, v in summary.items() if k != "builder"))
    emit_rows(devices, DEVICE_COLUMNS, fmt)


def _balance(row: dict[str, Any]) -> Any:
    if row["removing"]:
        return "removing"
    return "draining" if row["balance"] is None and row["partitions"] else row["balance"]


@ring.command()
@click.argument("builder_file", type=click.Path(dir_okay=False))
@format_option
def dispersion(builder_file: str, fmt: str) -> None:
    """Per failure-domain level, the partitions whose replicas could be more spread out."""
    builder = _load(builder_file)
    if not builder.rows:
        raise click.ClickException(f"{builder_file} has not been rebalanced yet")
    report = builder.dispersion()
    rows = [{"level": level, **stats} for level, stats in report["levels"].items()]
    if fmt == "table":
        click.echo(
            f"dispersion is {report['dispersion']:.4f} % "
            f"({report['undispersed_partitions']} of {report['partitions']} partitions)"
        )
    emit_rows(rows, ["level", "nodes", "undispersed_partitions", "percent"], fmt)


if __name__ == "__main__":
    ring()
