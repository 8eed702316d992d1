"""``soko volume backup-*``: cinderclient's backup verbs, with progress bars.

Backup, restore and delete run in the block service; these commands start them and, unless
``--no-wait``, follow the API's ``progress`` percentage with a bar and the MB/s it implies.
"""

from __future__ import annotations

import time

import click

from soko.block.cli import BlockClient, list_query, no_wait_option, pass_client, volume
from soko.common.cli.output import emit_record, emit_rows, format_option

GiB = 1 << 30
RUNNING = ("creating", "restoring", "deleting")
LIST_COLUMNS = ["id", "volume_id", "name", "status", "size", "is_incremental", "created_at"]


def record(backup: dict) -> dict:
    return {k: v for k, v in backup.items() if k != "links"}


def follow(client: BlockClient, backup: dict, what: str) -> dict | None:
    """Polls the backup while its step runs, drawing the percentage as a bar with MB/s;
    returns it settled (None once deleted)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    total = max(backup["size"], 1) * GiB
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        while True:
            found = client.call("GET", f"/backups/{backup['id']}", ok_missing=True)
            if found is None:
                return None
            backup = found["backup"]
            bar.update(task, completed=total * backup.get("progress", 0) / 100)
            if backup["status"] not in RUNNING:
                return backup
            time.sleep(0.5)


def rate(backup: dict, step: str) -> str:
    stats = backup.get("stats") or {}
    if step == "restore":
        stats = stats.get("last_restore") or {}
    seconds = stats.get("seconds") or 0
    if not seconds:
        return ""
    return f" in {seconds:.1f} s ({backup['size'] * GiB / seconds / 1e6:.0f} MB/s)"


@volume.command("backup-create")
@click.argument("volume_ref", metavar="VOLUME")
@click.option("--incremental", is_flag=True,
              help="Store only what changed since the volume's newest backup.")
@click.option("--snapshot-id", metavar="SNAPSHOT",
              help="Back up this snapshot of the volume (id or name).")
@click.option("--force", is_flag=True,
              help="Back up an in-use volume (from a snapshot taken for the purpose).")
@click.option("--name")
@click.option("--description")
@no_wait_option
@format_option
@pass_client
def backup_create(client, volume_ref, incremental, snapshot_id, force, name, description,
                  no_wait, fmt):
    """Back VOLUME up to the object store (chunked, compressed, deduplicated)."""
    if snapshot_id and force:
        raise click.UsageError("give --snapshot-id or --force, not both")
    found = client.find(volume_ref)
    if snapshot_id is not None:
        snapshot_id = client.find(snapshot_id, "snapshot")["id"]
    spec = {"volume_id": found["id"], "incremental": incremental, "force": force,
            "name": name, "description": description, "snapshot_id": snapshot_id}
    backup = client.call("POST", "/backups", json={"backup": {
        k: v for k, v in spec.items() if v is not None}})["backup"]
    if not no_wait:
        backup = follow(client, backup, f"backing up {found['name'] or found['id']}")
        if backup["status"] == "error":
            raise click.ClickException(f"backup {backup['id']} failed: {backup['fail_reason']}")
        click.echo(f"backed up volume {found['id']}{rate(backup, 'backup')}", err=True)
    emit_record(record(backup), fmt)


@volume.command("backup-list")
@click.option("--volume", "volume_ref", metavar="VOLUME", help="Only this volume's backups.")
@click.option("--all-projects", is_flag=True, help="Every project's backups (admin).")
@click.option("--status")
@format_option
@pass_client
def backup_list(client, volume_ref, all_projects, status, fmt):
    """List backups, newest first."""
    params = list_query(all_projects, status=status,
                        volume_id=client.find(volume_ref)["id"] if volume_ref else None)
    backups = client.call("GET", "/backups/detail", params=params)["backups"]
    emit_rows(backups, LIST_COLUMNS, fmt)


@volume.command("backup-show")
@click.argument("backup_ref", metavar="BACKUP")
@format_option
@pass_client
def backup_show(client, backup_ref, fmt):
    """Show one backup (by id or name), with its progress and what it measured."""
    emit_record(record(client.find(backup_ref, "backup")), fmt)


@volume.command("backup-restore")
@click.argument("backup_ref", metavar="BACKUP")
@click.option("--volume", "volume_ref", metavar="VOLUME",
              help="Restore over this available volume (default: a new volume).")
@click.option("--name", help="Name of the new volume.")
@no_wait_option
@format_option
@pass_client
def backup_restore(client, backup_ref, volume_ref, name, no_wait, fmt):
    """Restore BACKUP into a new volume, or over an available one."""
    backup = client.find(backup_ref, "backup")
    spec = {"volume_id": client.find(volume_ref)["id"] if volume_ref else None, "name": name}
    restore = client.call("POST", f"/backups/{backup['id']}/restore", json={"restore": {
        k: v for k, v in spec.items() if v is not None}})["restore"]
    if not no_wait:
        backup = follow(client, {**backup, "status": "restoring"},
                        f"restoring into {restore['volume_id']}")
        target = client.call("GET", f"/volumes/{restore['volume_id']}")["volume"]
        if target["status"] != "available":
            raise click.ClickException(
                f"restore failed, volume {target['id']} is {target['status']}: "
                f"{backup['fail_reason']}")
        click.echo(f"restored backup {backup['id']}{rate(backup, 'restore')}", err=True)
    emit_record(restore, fmt)


@volume.command("backup-delete")
@click.argument("backup_refs", metavar="BACKUP...", nargs=-1, required=True)
@no_wait_option
@pass_client
def backup_delete(client, backup_refs, no_wait):
    """Delete backups (chunks other backups still use are kept)."""
    for ref in backup_refs:
        backup = client.find(ref, "backup")
        client.call("DELETE", f"/backups/{backup['id']}")
        if not no_wait:
            left = follow(client, {**backup, "status": "deleting"}, f"deleting {backup['id']}")
            if left is not None:
                raise click.ClickException(f"backup {backup['id']} is {left['status']}: "
                                           f"{left['fail_reason']}")
        click.echo(f"deleted backup {backup['id']}")
