"""``soko bench heal``: how fast replication restores a wiped device.

Fills N objects through the Swift API, wipes one device of one storage node (everything on
it gone, as after a disk swap), then runs replicator passes on every node at once (each a
``soko object pass`` process, as the daemons would) until every object has all replicas on
its primaries again (direct HEADs, ``soko.object.dispersion``). Reports the heal time and
the MB/s the replicators moved.

It runs against the ``soko up`` of ``--data-dir`` when one is running there, else it starts
a private object cluster (identity, 3 storage nodes with loop-XFS devices, proxy, daemons
with long intervals so that only the measured passes run) in a temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import click

from soko.common.cli.output import emit_rows

MAX_ROUNDS = 20
PRIVATE_SERVICES = ("identity", "storage", "proxy", "object-daemons")


def free_ports(count: int) -> int:
    """A base port with ``count`` consecutive free ports."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        socks = []
        try:
            for offset in range(count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise click.ClickException("no run of free ports on 127.0.0.1")


@contextlib.contextmanager
def cluster(data_dir: Path | None):
    """The config of a running ``soko up`` in ``data_dir``, or of a private one started here."""
    from soko.common import services
    from soko.tools.up import Supervisor, SupervisorError, read_state

    if data_dir is not None and (read_state(data_dir.absolute()) or {}).get("status") == "running":
        yield services.load(None, data_dir.absolute())
        return
    from soko.common.config import dump_toml

    if data_dir is not None:
        click.echo(f"no soko up is running in {data_dir}: using a private cluster", err=True)
    private = Path(tempfile.mkdtemp(prefix="soko-bench-heal-"))
    (private / "soko.toml").write_text(dump_toml({
        "identity": {"port": free_ports(1)},
        "storage": {"port": free_ports(3)},
        "proxy": {"port": free_ports(1)},
        "object-daemons": {f"{d}_interval": 86400.0
                           for d in ("replicator", "auditor", "updater", "expirer")},
    }))
    specs = [services.spec_named(name) for name in PRIVATE_SERVICES]
    config = services.load(None, private, specs)
    supervisor = Supervisor(config, specs)
    try:
        with click.progressbar(length=1, label="starting a private object cluster") as bar:
            supervisor.bootstrap()
            supervisor.start()
            bar.update(1)
        yield config
    except SupervisorError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        supervisor.stop()
        shutil.rmtree(private, ignore_errors=True)


def demo_login(config) -> tuple[str, str]:
    from soko.object.cli import demo_credentials
    from soko.tools.bench.object import authenticate

    return authenticate(config.section("proxy").endpoint + "/auth/v1.0",
                        *demo_credentials(config))


def fill(config, count: int, size: int, concurrency: int) -> tuple[str, list[str]]:
    """PUTs ``count`` objects of ``size`` bytes; returns the account and the object names."""
    import os

    from soko.tools.bench.object import Client, run_phase

    url, token = demo_login(config)
    container = f"bench-heal-{uuid.uuid4().hex[:8]}"
    if Client(url, token).request("PUT", f"/{container}") // 100 != 2:
        raise click.ClickException(f"cannot create container {container}")
    names = [f"obj-{i:06d}" for i in range(count)]
    body = os.urandom(size)
    run_phase([Client(url, token) for _ in range(concurrency)], "PUT",
              [f"/{container}/{n}" for n in names], body)
    account = url.rstrip("/").rsplit("/", 1)[1]
    return account, [(account, container, n) for n in names]


def wipe(config, node: int) -> str:
    """Empties the first device of ``node``: what a replaced disk holds. Returns its name."""
    from soko.object.shared.rings import load_rings

    storage = config.section("storage").for_node(node)
    devices = sorted(d["device"] for d in load_rings(config)["object"].devices
                     if d["port"] == storage.port)
    if not devices:
        raise click.ClickException(f"node {node} has no device in the object ring")
    path = storage.node_devices(config.data_dir) / devices[0]
    for entry in path.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return devices[0]


def replicator_round(config, nodes: int) -> list[dict]:
    """One replicator pass on every node at once, each in its own process."""
    argv = [sys.executable, "-m", "soko.tools.cli", "object", "pass", "object-replicator",
            "--data-dir", str(config.data_dir), "--format", "json"]
    if config.path is not None:
        argv += ["--config", str(config.path)]
    procs = [subprocess.Popen([*argv, "--node", str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for n in range(nodes)]
    stats = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise click.ClickException(f"replicator pass failed: {err.decode()[-1000:]}")
        stats.append(json.loads(out))
    return stats


def measure(config, count: int, size: int, node: int, concurrency: int) -> dict:
    from soko.object.dispersion import count_copies
    from soko.object.shared.nodeclient import ConnectionPool
    from soko.object.shared.rings import load_rings

    ring = load_rings(config)["object"]
    pool = ConnectionPool(1.0, 10.0)
    click.echo(f"filling {count} x {size} B objects...", err=True)
    _, names = fill(config, count, size, concurrency)
    device = wipe(config, node)
    before = count_copies(ring, "object", pool, names)
    started = time.monotonic()
    moved = objects_moved = rounds = 0
    after = before
    with click.progressbar(length=MAX_ROUNDS, label="replicator passes") as bar:
        while after["all_replicas_pct"] < 100.0 and rounds < MAX_ROUNDS:
            for stats in replicator_round(config, config.section("storage").nodes):
                moved += stats.get("bytes_moved", 0)
                objects_moved += stats.get("objects_moved", 0)
            rounds += 1
            bar.update(1)
            after = count_copies(ring, "object", pool, names)
    seconds = time.monotonic() - started
    if after["all_replicas_pct"] < 100.0:
        raise click.ClickException(f"not healed after {rounds} passes: {after}")
    return {
        "objects": count, "object_size": size, "wiped": f"node {node} / {device}",
        "copies_missing": before["copies_expected"] - before["copies_found"],
        "dispersion_before_pct": before["all_replicas_pct"],
        "heal_seconds": round(seconds, 2), "replicator_rounds": rounds,
        "objects_moved": objects_moved, "mb_moved": round(moved / 1e6, 1),
        "mb_per_s": round(moved / 1e6 / seconds, 1),
        "replicator_bytes_per_second": config.section("object-daemons")
        .replicator_bytes_per_second,
    }


@click.command("heal")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="A running `soko up`'s data dir; default: start a private cluster.")
@click.option("--count", default=2000, show_default=True, help="Objects to fill.")
@click.option("--size", default=64 * 1024, show_default=True, help="Bytes per object.")
@click.option("--node", default=1, show_default=True, help="Whose first device to wipe.")
@click.option("--concurrency", default=8, show_default=True, help="Client threads filling.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the result as JSON here.")
def bench_heal(data_dir, count, size, node, concurrency, json_path) -> None:
    """Fill, wipe one device, time replication back to 100 % dispersion."""
    with cluster(data_dir) as config:
        if not 0 <= node < config.section("storage").nodes:
            raise click.ClickException(f"--node must be 0..{config.section('storage').nodes - 1}")
        result = measure(config, count, size, node, concurrency)
    emit_rows([{"measure": k, "value": v} for k, v in result.items()], ["measure", "value"],
              "table")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2))
