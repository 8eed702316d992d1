"""``soko keypair``: openstack-client's verbs over the compute API's ``os-keypairs``.

``create NAME`` imports ``--public-key FILE`` or has one generated, whose private key is
printed (or written to ``--private-key FILE``, mode 0600) once: it is kept nowhere else.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import click

from soko.common.cli.login import login_options
from soko.common.cli.output import emit_record, emit_rows, format_option
from soko.compute.cli import COMPUTE_URL_HELP, ComputeClient, pass_client

COLUMNS = ["name", "fingerprint", "type"]


@click.group()
@login_options(ComputeClient, "SOKO_COMPUTE_URL", COMPUTE_URL_HELP)
def keypair() -> None:
    """SSH key pairs: the public key is served to servers booted with --key-name."""


@keypair.command("create")
@click.argument("name")
@click.option("--public-key", "public_key", type=click.Path(dir_okay=False, path_type=Path),
              help="Import this OpenSSH public key file (default: generate a key pair).")
@click.option("--private-key", "private_key", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a generated private key to this file (mode 0600).")
@format_option
@pass_client
def create(client, name, public_key, private_key, fmt):
    """Create key pair NAME: imported (--public-key) or generated."""
    if public_key and private_key:
        raise click.UsageError("--private-key is for a generated key; it is yours with "
                               "--public-key")
    spec = {"name": name}
    if public_key:
        try:
            spec["public_key"] = public_key.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise click.ClickException(f"cannot read {public_key}: {exc}") from None
    made = client.call("POST", "/os-keypairs", json={"keypair": spec})["keypair"]
    secret = made.pop("private_key", None)
    if secret and private_key:
        fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        made["private_key"] = f"written to {private_key}"
    elif secret:
        made["private_key"] = secret
    if fmt != "json" and secret and not private_key:
        click.echo(secret, nl=False)
        return
    emit_record({k: made.get(k) for k in [*COLUMNS, "user_id", "private_key"]
                 if k in made}, fmt)


@keypair.command("list")
@format_option
@pass_client
def list_keypairs(client, fmt):
    """List your key pairs."""
    rows = [k["keypair"] for k in client.call("GET", "/os-keypairs")["keypairs"]]
    emit_rows(rows, COLUMNS, fmt)


@keypair.command("show")
@click.argument("name")
@click.option("--public-key", "public_only", is_flag=True, help="Print only the public key.")
@format_option
@pass_client
def show(client, name, public_only, fmt):
    """Show key pair NAME."""
    found = client.call("GET", f"/os-keypairs/{quote(name, safe='')}")["keypair"]
    if public_only:
        click.echo(found["public_key"])
        return
    emit_record({k: found[k] for k in [*COLUMNS, "user_id", "created_at", "public_key"]}, fmt)


@keypair.command("delete")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@pass_client
def delete(client, names):
    """Delete key pairs (servers booted with one keep the key they were given)."""
    for name in names:
        client.call("DELETE", f"/os-keypairs/{quote(name, safe='')}")
        click.echo(f"deleted key pair {name}")
