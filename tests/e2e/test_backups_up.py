"""Backups through ``soko up``: the gunicorn block service finds the proxy in the catalog,
talks Swift with the user's token, and ``soko volume backup-*`` and the ``soko-backup``
cron script drive it as an operator would."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.privileged, pytest.mark.slow]
MiB = 1 << 20


def volume_cli(up, *args: str) -> dict | list:
    return json.loads(up.soko("volume", *args, "--format", "json").stdout)


def cron_run(up) -> str:
    cron = subprocess.run([str(Path(sys.executable).with_name("soko-backup")), "--tag",
                           "backup=daily", "--no-quiesce"], env=up.env, capture_output=True,
                          text=True, timeout=300)
    assert cron.returncode == 0, cron.stderr
    return cron.stderr


def test_backup_restore_and_cron_through_soko_up(allinone):
    up = allinone
    volume = volume_cli(up, "create", "--name", "backup-e2e", "--metadata", "backup=daily", "1")
    path = up.data_dir / "block" / "pool" / "volumes" / f"volume-{volume['id']}"
    rng = random.Random(1)
    with open(path, "r+b") as f:
        for offset in (0, 100 * MiB):
            f.seek(offset)
            f.write(rng.randbytes(4 * MiB))
        os.fsync(f.fileno())
    backup = volume_cli(up, "backup-create", "--name", "e2e", "backup-e2e")
    assert backup["status"] == "available" and backup["stats"]["bytes_new"] == 8 * MiB
    restored = volume_cli(up, "backup-restore", "e2e", "--name", "backup-e2e-copy")
    copy = path.with_name(f"volume-{restored['volume_id']}")
    assert copy.read_bytes() == path.read_bytes()
    lines = [cron_run(up) for _ in range(2)]  # the script's own chain: full, incremental
    assert f"volume {volume['id']} (backup-e2e): full backup" in lines[0]
    assert "0.0 MiB uploaded" in lines[0]  # the same data as the manual backup: deduplicated
    assert f"volume {volume['id']} (backup-e2e): incremental backup" in lines[1]
    backups = volume_cli(up, "backup-list", "--volume", "backup-e2e")
    assert [b["is_incremental"] for b in backups] == [True, False, False]
    up.soko("volume", "backup-delete", *[b["id"] for b in backups])
    up.soko("volume", "delete", "backup-e2e", "backup-e2e-copy")
    assert volume_cli(up, "backup-list") == []
