"""``soko-backup``: the cron job that backs up every volume carrying a metadata tag.

For each volume with ``--tag KEY=VALUE`` in its metadata: take a quiesced snapshot (the
volume's quiesce plan, so databases and filesystems are consistent in it), back the
snapshot up (incremental, a full one every ``--full-every`` backups), delete the
snapshot, and prune the volume's ``soko-backup`` backups beyond the retention policy
(newest per day for ``--keep-daily`` days, newest per ISO week for ``--keep-weekly``
weeks; a backup that a kept incremental depends on is kept too). One log line per
volume; the exit status is 1 if any volume failed, so cron mails the operator.

It authenticates as ``soko volume`` does: ``OS_TOKEN`` + ``SOKO_BLOCK_URL``, or an
openrc's ``OS_AUTH_URL``/``OS_USERNAME``/``OS_PASSWORD``/``OS_PROJECT_NAME``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path

import click

from soko.block.cli import BlockClient

log = logging.getLogger("soko-backup")
NAME_PREFIX = "soko-backup-"
RUNNING = ("creating", "restoring", "deleting")


class VolumeFailed(Exception):
    pass


def tagged_volumes(client: BlockClient, key: str, value: str) -> list[dict]:
    volumes = client.call("GET", "/volumes/detail")["volumes"]
    return [v for v in volumes if (v.get("metadata") or {}).get(key) == value]


def wait_backup(client: BlockClient, backup_id: str, timeout: float) -> dict | None:
    """Polls until the backup's step is over (None: it is gone, as after a delete)."""
    deadline = time.monotonic() + timeout
    while True:
        found = client.call("GET", f"/backups/{backup_id}", ok_missing=True)
        if found is None or found["backup"]["status"] not in RUNNING:
            return found and found["backup"]
        if time.monotonic() > deadline:
            raise VolumeFailed(f"backup {backup_id} still {found['backup']['status']} "
                               f"after {timeout:.0f} s")
        time.sleep(1)


def backups_of(client: BlockClient, volume_id: str) -> list[dict]:
    """The volume's available backups made by this script, newest first."""
    found = client.call("GET", "/backups/detail", params={"volume_id": volume_id})["backups"]
    return [b for b in found if b["status"] == "available"
            and (b.get("name") or "").startswith(NAME_PREFIX)]


def needs_full(history: list[dict], full_every: int) -> bool:
    """Full when there is none yet, or the newest chain already has ``full_every`` backups."""
    for chain, backup in enumerate(history, start=1):
        if not backup["is_incremental"]:
            return chain >= full_every
    return True


def to_keep(history: list[dict], keep_daily: int, keep_weekly: int) -> set[str]:
    """Ids to keep: the newest backup of each of the last days and weeks that have one,
    plus every backup a kept one depends on (an incremental is useless without them)."""
    keep: set[str] = set()
    days: list = []
    weeks: list = []
    for backup in history:  # newest first
        created = dt.datetime.fromisoformat(backup["created_at"])
        day, week = created.date(), created.isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days.append(day)
            keep.add(backup["id"])
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.append(week)
            keep.add(backup["id"])
    parents = {b["id"]: b.get("parent_id") for b in history}
    for backup_id in list(keep):
        while parents.get(backup_id):
            backup_id = parents[backup_id]
            keep.add(backup_id)
    return keep


def back_up(client: BlockClient, volume: dict, *, full_every: int, quiesce,
            timeout: float) -> tuple[dict, str]:
    """Snapshot (quiesced), backup of the snapshot, snapshot deleted on every path; returns
    the backup and how the snapshot was frozen."""
    history = backups_of(client, volume["id"])
    incremental = not needs_full(history, full_every)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    snapshot = client.call("POST", "/snapshots", json={"snapshot": {
        "volume_id": volume["id"], "force": True, "name": f"{NAME_PREFIX}{stamp}",
        **({"quiesce": quiesce} if quiesce else {})}})["snapshot"]
    try:
        if snapshot["status"] != "available":
            raise VolumeFailed(f"snapshot {snapshot['id']} is {snapshot['status']}: "
                               f"{(snapshot.get('metadata') or {}).get('error', '')}")
        backup = client.call("POST", "/backups", json={"backup": {
            "volume_id": volume["id"], "snapshot_id": snapshot["id"],
            "incremental": incremental, "name": f"{NAME_PREFIX}{stamp}"}})["backup"]
        backup = wait_backup(client, backup["id"], timeout)
        if backup["status"] != "available":
            raise VolumeFailed(f"backup {backup['id']} failed: {backup['fail_reason']}")
        window = (snapshot.get("metadata") or {}).get("freeze_window_ms")
        return backup, f"frozen {window} ms" if window else "not quiesced"
    finally:
        client.call("DELETE", f"/snapshots/{snapshot['id']}", ok_missing=True)


def prune(client: BlockClient, volume_id: str, keep_daily: int, keep_weekly: int,
          timeout: float) -> int:
    """Deletes, newest first (children before their parents), what the policy drops."""
    history = backups_of(client, volume_id)
    keep = to_keep(history, keep_daily, keep_weekly)
    pruned = 0
    for backup in history:
        if backup["id"] not in keep:
            client.call("DELETE", f"/backups/{backup['id']}")
            if wait_backup(client, backup["id"], timeout) is not None:
                raise VolumeFailed(f"pruning backup {backup['id']} did not finish")
            pruned += 1
    return pruned


def describe(backup: dict) -> str:
    stats = backup.get("stats") or {}
    kind = "incremental" if backup["is_incremental"] else "full"
    return (f"{kind} backup {backup['id']}: {stats.get('bytes_new', 0) / 2**20:.1f} MiB new, "
            f"{stats.get('bytes_uploaded', 0) / 2**20:.1f} MiB uploaded in "
            f"{stats.get('seconds', 0):.1f} s")


@click.command()
@click.option("--tag", required=True, metavar="KEY=VALUE",
              help="Back up the volumes whose metadata has this item, e.g. backup=daily.")
@click.option("--full-every", type=click.IntRange(min=1), default=7, show_default=True,
              help="A full backup after this many backups in a chain.")
@click.option("--keep-daily", type=click.IntRange(min=0), default=7, show_default=True)
@click.option("--keep-weekly", type=click.IntRange(min=0), default=4, show_default=True)
@click.option("--quiesce-plan", metavar="PLAN",
              help="Quiesce plan to use (default: each volume's configured plan).")
@click.option("--no-quiesce", is_flag=True, help="Crash-consistent snapshots only.")
@click.option("--timeout", type=float, default=6 * 3600, show_default=True,
              help="Seconds to wait for one backup.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("SOKO_DATA_DIR", ".soko"),
              help="The all-in-one's data dir (its saved admin credentials).")
def main(tag, full_every, keep_daily, keep_weekly, quiesce_plan, no_quiesce, timeout,
         data_dir):
    """Back up every volume tagged KEY=VALUE; exit 1 if any failed.

    Snapshots are quiesced with each volume's default plan (its ``quiesce_plan``
    metadata or the service config); a volume without one fails unless --quiesce-plan
    or --no-quiesce says what to do."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    key, sep, value = tag.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{tag!r} is not KEY=VALUE", param_hint="--tag")
    env = os.environ
    client = BlockClient(env.get("SOKO_BLOCK_URL"), env.get("OS_TOKEN"), data_dir.absolute(),
                         dict(auth_url=env.get("OS_AUTH_URL"), username=env.get("OS_USERNAME"),
                              password=env.get("OS_PASSWORD"),
                              project_name=env.get("OS_PROJECT_NAME")))
    quiesce = False if no_quiesce else (quiesce_plan or True)
    failed = 0
    for volume in tagged_volumes(client, key, value):
        label = f"volume {volume['id']} ({volume['name'] or 'unnamed'})"
        try:
            backup, frozen = back_up(client, volume, full_every=full_every, quiesce=quiesce,
                                     timeout=timeout)
            pruned = prune(client, volume["id"], keep_daily, keep_weekly, timeout)
            log.info("%s: %s (%s); pruned %d", label, describe(backup), frozen, pruned)
        except (VolumeFailed, click.ClickException) as exc:
            failed += 1
            log.error("%s: FAILED: %s", label, getattr(exc, "message", exc))
    sys.exit(1 if failed else 0)
