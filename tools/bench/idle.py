"""``soko bench idle``: what a cluster costs while no client asks anything of it.

Fills the cluster with small objects spread over many containers (the shape a conformance
run or a busy day leaves behind), waits for it to settle, then adds up the CPU time the
cluster's processes (those whose command line contains ``--match``) take over a window in
which no request is made. With ``--peer-auth`` the same is done to a second cluster (a
Swift all-in-one) with the same dataset, and the table shows the ratio. The durability
daemons do their work on their own timers, so this is their price, plus whatever the
servers do when nobody calls.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import click

from soko.common.cli.output import emit_rows
from soko.common.procs import cpu_seconds, cpu_used
from soko.tools.bench.object import Client, authenticate, run_phase


def measure(match: str, seconds: float) -> dict:
    """CPU the matching processes took over ``seconds`` of wall time, as % of one core."""
    before = cpu_seconds(match)
    started = time.monotonic()
    time.sleep(seconds)
    after = cpu_seconds(match)
    wall = time.monotonic() - started
    if not after:
        raise click.ClickException(f"no process's command line contains {match!r}")
    used = cpu_used(before, after)
    return {"processes": len(after), "cpu_seconds": round(used, 2),
            "core_percent": round(100 * used / wall, 2)}


def fill(auth: str, user: str, key: str, objects: int, containers: int) -> tuple[str, list]:
    """PUTs ``objects`` 4 KiB objects spread over ``containers`` new containers (c=16)."""
    url, token = authenticate(auth, user, key)
    prefix = f"idle-{uuid.uuid4().hex[:6]}"
    names = [f"/{prefix}-{i}" for i in range(containers)]
    clients = [Client(url, token) for _ in range(16)]
    run_phase(clients, "PUT", names, None)
    objects_names = [f"{names[i % containers]}/obj-{i}" for i in range(objects)]
    run_phase(clients, "PUT", objects_names, os.urandom(4096))
    return url, [*objects_names, *names]


def empty(url: str, auth: str, user: str, key: str, names: list[str]) -> None:
    """Deletes what ``fill`` made (objects first, then their containers)."""
    _, token = authenticate(auth, user, key)
    clients = [Client(url, token) for _ in range(16)]
    containers = [n for n in names if n.count("/") == 1]
    run_phase(clients, "DELETE", [n for n in names if n.count("/") == 2], None)
    run_phase(clients, "DELETE", containers, None)


def bench_cluster(auth: str, user: str, key: str, match: str, *, objects: int,
                  containers: int, settle: float, window: float, keep: bool) -> dict:
    """Fills (unless ``objects`` is 0: the cluster as it is), settles, measures."""
    started = time.monotonic()
    url, names = fill(auth, user, key, objects, containers) if objects else ("", [])
    filled = time.monotonic() - started
    click.echo(f"{auth}: {objects} objects in {containers} containers in {filled:.0f} s; "
               f"settling {settle:.0f} s, then measuring {window:.0f} s", err=True)
    time.sleep(settle)
    result = {**measure(match, window), "fill_seconds": round(filled, 1)}
    if names and not keep:
        empty(url, auth, user, key, names)
    return result


@click.command("idle")
@click.option("--auth", required=True, help="Auth v1.0 URL, e.g. http://127.0.0.1:8080/auth/v1.0")
@click.option("--user", required=True, help="<project>:<user>")
@click.option("--key", required=True)
@click.option("--match", required=True,
              help="A substring of the command line of every server and daemon process of "
                   "this cluster (e.g. its data dir).")
@click.option("--peer-auth", help="A second cluster (e.g. a Swift all-in-one) to compare with.")
@click.option("--peer-user")
@click.option("--peer-key")
@click.option("--peer-match", help="Like --match, for the peer's processes.")
@click.option("--objects", default=10000, show_default=True,
              help="0: measure the cluster as it is, without filling it.")
@click.option("--containers", default=1000, show_default=True)
@click.option("--settle", default=180.0, show_default=True,
              help="Seconds to wait after filling, for the daemons' first passes.")
@click.option("--window", default=60.0, show_default=True, help="Seconds measured.")
@click.option("--keep", is_flag=True, help="Leave the objects and containers in place.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the results as JSON here.")
def bench_idle(auth, user, key, match, peer_auth, peer_user, peer_key, peer_match, objects,
               containers, settle, window, keep, json_path) -> None:
    """CPU a settled cluster holding N objects in M containers uses while idle."""
    if peer_auth and not peer_match:
        raise click.UsageError("--peer-auth needs --peer-match")
    shape = dict(objects=objects, containers=containers, settle=settle, window=window,
                 keep=keep)
    report = {"soko": bench_cluster(auth, user, key, match, **shape), "shape": shape}
    if peer_auth:
        report["peer"] = bench_cluster(peer_auth, peer_user, peer_key, peer_match, **shape)
    rows = [{"cluster": name, "processes": r["processes"],
             "CPU s": f"{r['cpu_seconds']:.2f}", "% of a core": f"{r['core_percent']:.2f}"}
            for name, r in report.items() if name != "shape"]
    if peer_auth:
        ratio = report["soko"]["cpu_seconds"] / max(report["peer"]["cpu_seconds"], 0.01)
        rows.append({"cluster": "soko/peer", "processes": "", "CPU s": f"{ratio:.2f}x",
                     "% of a core": ""})
    emit_rows(rows, list(rows[0]), "table")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
