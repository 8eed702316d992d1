"""``soko object ...``: operator views of the object store's health.

- ``dispersion``: are all replicas where the rings say (``soko.object.dispersion``).
- ``recon``: each storage node's ``GET /recon`` (daemon passes, quarantines, async
  pendings, device usage); exits non-zero when a node does not answer.
- ``pass``: one pass of a node's durability daemon now (as ``swift-object-replicator
  --once``), its stats printed and written to the node's recon cache.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import click

from soko.common.cli.output import emit_record, emit_rows, format_option

data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("SOKO_DATA_DIR", ".soko"), show_default=".soko",
    help="The data dir of the soko installation (its soko.toml and rings).")
config_option = click.option("--config", "config_path",
                             type=click.Path(dir_okay=False, exists=True),
                             help="soko.toml (default: DATA_DIR/soko.toml).")


def load(config_path, data_dir: Path):
    from soko.common import services
    from soko.common.config import ConfigError

    try:
        return services.load(config_path, data_dir.absolute())
    except ConfigError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None


def rings_of(config) -> dict:
    from soko.object.shared.rings import load_rings

    try:
        return load_rings(config)
    except FileNotFoundError as exc:
        raise click.ClickException(f"no rings in {exc.filename}: start the cluster "
                                   "(soko up) or build them (soko ring)") from None


@click.group("object")
def object_group() -> None:
    """Object store operations: dispersion, recon, daemon passes."""


@object_group.command()
@config_option
@data_dir_option
@click.option("--auth", envvar="ST_AUTH", help="Auth v1.0 URL [env ST_AUTH; default: the "
              "proxy of DATA_DIR's config]")
@click.option("--user", envvar="ST_USER", help="<project>:<user> [env ST_USER; default: soko "
              "up's demo:demo]")
@click.option("--key", envvar="ST_KEY", help="[env ST_KEY; default: the demo key in DATA_DIR]")
@click.option("--populate", is_flag=True, help="First put the sample (once per cluster).")
@click.option("--coverage", default=10.0, show_default=True,
              help="With --populate: % of the ring's partitions the sample covers.")
@format_option
def dispersion(config_path, data_dir, auth, user, key, populate, coverage, fmt) -> None:
    """How many sampled containers and objects have every replica on their primaries."""
    from rich.progress import Progress

    from soko.object import dispersion as disp
    from soko.object.shared.nodeclient import ConnectionPool

    config = load(config_path, data_dir)
    rings = rings_of(config)
    auth = auth or config.section("proxy").endpoint + "/auth/v1.0"
    if not (user and key):
        user, key = demo_credentials(config)
    try:
        url, token = disp.authenticate(auth, user, key)
        if populate:
            with Progress(transient=True) as bar:
                task = bar.add_task("populating", total=None)
                counts = disp.populate(rings, url, token, coverage,
                                       lambda: bar.advance(task))
            click.echo(f"put {counts['containers']} containers and {counts['objects']} "
                       "objects", err=True)
        result = disp.report(rings, url, token, ConnectionPool(conn_timeout=1.0,
                                                               node_timeout=5.0))
    except (disp.DispersionError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        emit_record(result, fmt)
        return
    replicas = len(next(iter(result.values()))["missing"])
    rows = [{"kind": kind, "sampled": r["sampled"],
             "all_replicas": f"{r['all_replicas_pct']:.2f} %",
             "copies_found": f"{r['copies_found']}/{r['copies_expected']} "
                             f"({r['copies_found_pct']:.2f} %)",
             **{f"missing_{m}": r["missing"][str(m)] for m in range(1, replicas + 1)},
             "node_errors": r["node_errors"]}
            for kind, r in result.items()]
    emit_rows(rows, list(rows[0]), fmt)


def demo_credentials(config) -> tuple[str, str]:
    from soko.identity.bootstrap import DEMO, credentials_path, read_credentials

    path = credentials_path(config, DEMO)
    try:
        return f"{DEMO}:{DEMO}", read_credentials(path)["OS_PASSWORD"]
    except (OSError, KeyError):
        raise click.ClickException(f"no --user/--key given and no demo credentials in {path}: "
                                   "pass --user and --key (or ST_USER/ST_KEY)") from None


def fetch_recon(node: tuple[str, int], timeout: float) -> dict:
    import requests

    ip, port = node
    try:
        resp = requests.get(f"http://{ip}:{port}/recon", timeout=timeout)
        resp.raise_for_status()
        return resp.json()
    except (requests.RequestException, ValueError) as exc:
        return {"endpoint": f"{ip}:{port}", "error": str(exc)}


def recon_row(recon: dict, now: float) -> dict:
    if "error" in recon:
        return {"node": recon["endpoint"], "reachable": False, "daemons": recon["error"]}
    passes = []
    for name, stats in sorted(recon["daemons"].items()):
        ago = now - stats.get("last_pass_start", now)
        failed = " FAILED" if "error" in stats else ""
        passes.append(f"{name}: {ago:.0f}s ago, {stats.get('last_pass_seconds', 0):.1f}s"
                      f"{failed}")
    devices = []
    for name, dev in sorted(recon["devices"].items()):
        if not dev["mounted"]:
            devices.append(f"{name}: UNMOUNTED")
        else:
            devices.append(f"{name}: {100 * dev['used'] / max(dev['size'], 1):.1f} % "
                           f"of {dev['size'] / 2**30:.1f} GiB")
    return {"node": recon["endpoint"], "reachable": True,
            "daemons": "\n".join(passes) or "no pass yet",
            "quarantined": sum(recon["quarantined"].values()),
            "async_pending": recon["async_pending"], "devices": "\n".join(devices)}


@object_group.command()
@config_option
@data_dir_option
@click.option("--timeout", default=5.0, show_default=True, help="Seconds per node.")
@format_option
def recon(config_path, data_dir, timeout, fmt) -> None:
    """Each storage node's daemon passes, quarantined files, async pendings and devices."""
    from concurrent.futures import ThreadPoolExecutor

    config = load(config_path, data_dir)
    nodes = sorted({(d["ip"], d["port"]) for d in rings_of(config)["object"].devices})
    with ThreadPoolExecutor(max(1, len(nodes))) as executor:
        recons = list(executor.map(lambda n: fetch_recon(n, timeout), nodes))
    if fmt == "json":
        emit_rows(recons, [], fmt)
    else:
        now = time.time()
        emit_rows([recon_row(r, now) for r in recons],
                  ["node", "reachable", "daemons", "quarantined", "async_pending", "devices"],
                  fmt)
    unreachable = [r["endpoint"] for r in recons if "error" in r]
    if unreachable:
        click.echo(f"unreachable: {', '.join(unreachable)} (is the node running? "
                   "`soko status` on its host)", err=True)
        sys.exit(1)


@object_group.command("pass")
@click.argument("daemon")
@click.option("--node", type=int, default=0, show_default=True, help="Storage node index.")
@config_option
@data_dir_option
@format_option
def run_pass(daemon, node, config_path, data_dir, fmt) -> None:
    """Run one pass of DAEMON (replicator, auditor, updater, ...) for a node, now."""
    from soko.common.config import ConfigError
    from soko.object.daemons.runner import DAEMONS, NodeContext, Runner

    if daemon not in DAEMONS:
        raise click.ClickException(f"no daemon {daemon!r}; known: {', '.join(DAEMONS)}")
    config = load(config_path, data_dir)
    try:
        config.sections["object-daemons"] = config.section("object-daemons").for_node(node)
        config.sections["storage"] = config.section("storage").for_node(node)
    except ConfigError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None
    context = NodeContext(config)
    emit_record(Runner(context, [daemon]).run_pass(daemon), fmt)
