"""The ``soko`` command; each service's subcommands load lazily from ``COMMANDS``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from soko.common import services
from soko.common.cli.output import emit_rows, format_option
from soko.common.config import ConfigError
from soko.tools.lazy import LazyGroup

COMMANDS = {
    "ring": "soko.ring.cli:ring",
    "identity": "soko.identity.cli:identity",
    "volume": "soko.block.cli:volume",
    "object": "soko.object.cli:object_group",
    "image": "soko.image.cli:image",
    "server": "soko.compute.cli:server",
    "flavor": "soko.compute.cli:flavor",
    "keypair": "soko.compute.keypair_cli:keypair",
    "network": "soko.net.cli:network",
    "subnet": "soko.net.cli:subnet",
    "port": "soko.net.cli:port",
    "router": "soko.net.cli:router",
    "floating": "soko.net.cli:floating",
    "security": "soko.net.cli:security",
    "bench": "soko.tools.bench:bench",
}


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=lambda: os.environ.get("SOKO_DATA_DIR", ".soko"),
    show_default=".soko",
    help="Where soko keeps its config, state and data.",
)


@click.group(cls=LazyGroup, lazy=COMMANDS)
def cli() -> None:
    """soko: object storage, block storage and just enough compute and network."""


def load_or_fail(config_path, data_dir):
    try:
        return services.load(config_path, data_dir)
    except ConfigError as exc:
        raise click.ClickException(f"bad configuration: {exc}") from None


@cli.command()
@click.argument("service")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True))
@data_dir_option
@click.option("--log-level", default="info", show_default=True)
@click.option("--node", type=int, default=None,
              help="Which node to serve, for a service that runs several per host (storage).")
def serve(service: str, config_path: str | None, data_dir: Path, log_level: str,
          node: int | None) -> None:
    """Serve one SERVICE under gunicorn (what `soko up` runs for each service)."""
    from soko.common.serve import serve as run

    try:
        spec = services.spec_named(service)
    except KeyError as exc:
        raise click.ClickException(exc.args[0]) from None
    config = load_or_fail(config_path, data_dir)
    if node is not None:
        section = config.section(service)
        if not hasattr(section, "for_node"):
            raise click.ClickException(f"{service} runs one process per host: no --node")
        try:
            config.sections[service] = section.for_node(node)
        except ConfigError as exc:
            raise click.ClickException(f"bad configuration: {exc}") from None
    run(spec, config, log_level)


@cli.command()
@data_dir_option
@click.option("--detach", is_flag=True, help="Run in the background; stop with `soko down`.")
def up(data_dir: Path, detach: bool) -> None:
    """Start the all-in-one: every service on this machine, from DATA_DIR/soko.toml."""
    from soko.tools import up as supervisor

    data_dir = data_dir.absolute()
    if detach:
        start_detached(data_dir)
        return
    specs = services.all_specs()
    data_dir.mkdir(parents=True, exist_ok=True)
    supervisor.write_default_config(data_dir, specs)
    config = load_or_fail(None, data_dir)
    sup = supervisor.Supervisor(config, specs)
    try:
        sup.check_not_running()
        sup.bootstrap()
        sup.start()
    except supervisor.SupervisorError as exc:
        raise click.ClickException(str(exc)) from None

    def on_signal(signum, frame):
        sup.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print_summary(supervisor.read_state(data_dir))
    click.echo("soko is up; Ctrl-C stops everything.")
    sup.watch()
    click.echo("stopping...")
    sup.stop()
    click.echo("soko stopped.")


def start_detached(data_dir: Path) -> None:
    """Re-runs ``soko up`` in its own session and returns once it reports running."""
    from soko.tools import up as supervisor

    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "logs").mkdir(exist_ok=True)
    log_path = data_dir / "logs" / "up.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "soko.tools.cli", "up", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    while True:
        state = supervisor.read_state(data_dir)
        if state and state["status"] == "running" and state["supervisor_pid"] == proc.pid:
            print_summary(state)
            click.echo("soko is up in the background; `soko status` shows it, `soko down` stops it.")
            return
        if proc.poll() is not None:
            raise click.ClickException(
                f"soko up failed (status {proc.returncode}):\n{supervisor.tail(log_path)}"
            )
        time.sleep(0.2)


def print_summary(state: dict | None) -> None:
    if not state:
        return
    emit_rows(
        [{"service": u["name"], "endpoint": u["endpoint"] or "", "pid": u["pid"]}
         for u in state["units"]],
        ["service", "endpoint", "pid"],
        "table",
    )
    for line in state["summary"]:
        click.echo(line)


@cli.command()
@data_dir_option
def down(data_dir: Path) -> None:
    """Stop the all-in-one started with `soko up --detach`."""
    from soko.tools import up as supervisor

    if not supervisor.stop_detached(data_dir.absolute()):
        raise click.ClickException(f"nothing is running for {data_dir.absolute()}")
    click.echo("soko stopped.")


@cli.command()
@data_dir_option
@format_option
def status(data_dir: Path, fmt: str) -> None:
    """Show each running service: pid, endpoint, and whether it answers its health check."""
    from soko.tools import up as supervisor

    rows = supervisor.unit_status(data_dir.absolute())
    if not rows and fmt == "table":
        raise click.ClickException(f"nothing is running for {data_dir.absolute()} (start: soko up)")
    emit_rows(rows, ["service", "pid", "endpoint", "healthy"], fmt)
    if any(not r["healthy"] for r in rows):
        sys.exit(1)


def main() -> None:
    cli(prog_name="soko")


if __name__ == "__main__":
    main()
