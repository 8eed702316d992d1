"""``soko volume backup-*`` and the ``soko-backup`` cron script against the block API
served over real HTTP (a wsgiref thread), with file-backed volumes and in-memory chunk
stores behind it."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from click.testing import CliRunner

from soko.block.cli import volume
from soko.block.quiesce import Quiescer
from soko.tools import soko_backup
from tests.block.backup_support import BackupEnv, MiB, same_content, write_random
from tests.support import served


@pytest.fixture
def env(tmp_path):
    env = BackupEnv(tmp_path)
    env.volumes.snapshots.quiescer = Quiescer(
        tmp_path, {"noop": [{"kind": "exec", "pre": ["true"], "post": ["true"]}]}, {})
    with served(env.app) as url:
        env.url = f"{url}/v3/proj-a"
        yield env
    env.backups.wait_idle(30)


@pytest.fixture
def run(env, tmp_path):
    def invoke(*args: str, ok: bool = True):
        result = CliRunner().invoke(
            volume, ["--os-url", env.url, "--os-token", "tok-a", "--data-dir", str(tmp_path),
                     *args])
        assert (result.exit_code == 0) == ok, result.output
        return result
    return invoke


def test_backup_commands(run, env):
    created = json.loads(run("create", "--name", "data", "1", "--format", "json").stdout)
    path = env.volumes.pool.path(created["id"])
    write_random(path, 0, 3 * MiB, random.Random(1))
    full = json.loads(run("backup-create", "--name", "first", "data", "--format",
                          "json").stdout)
    assert full["status"] == "available" and full["stats"]["bytes_new"] == 3 * MiB
    write_random(path, 0, 64 * 1024, random.Random(2))
    result = run("backup-create", "--incremental", "data", "--format", "json")
    incr = json.loads(result.stdout)
    assert incr["is_incremental"] and "MB/s" in result.stderr
    listing = json.loads(run("backup-list", "--volume", "data", "--format", "json").stdout)
    assert [b["id"] for b in listing] == [incr["id"], full["id"]]
    assert "│ no " in run("backup-list").stdout  # a table by default
    assert json.loads(run("backup-show", "first", "--format", "json").stdout)["id"] == full["id"]
    assert "409" in run("backup-delete", "first", ok=False).output
    restored = json.loads(run("backup-restore", incr["id"], "--name", "copy", "--format",
                              "json").stdout)
    assert restored["volume_name"] == "copy"
    assert same_content(path, env.volumes.pool.path(restored["volume_id"]))
    run("snapshot-create", "--name", "snap", "data")
    from_snapshot = json.loads(run("backup-create", "--snapshot-id", "snap", "data",
                                   "--format", "json").stdout)
    assert from_snapshot["snapshot_id"] and from_snapshot["status"] == "available"
    run("backup-delete", from_snapshot["id"])
    run("snapshot-delete", "snap")
    assert "give --snapshot-id or --force" in run("backup-create", "--force",
                                                  "--snapshot-id", "x", "data",
                                                  ok=False).output
    assert "no backup with id or name" in run("backup-show", "nothing", ok=False).stderr
    run("backup-delete", incr["id"], "first")
    assert json.loads(run("backup-list", "--format", "json").stdout) == []


def cron(env, *args, ok=True):
    result = CliRunner().invoke(
        soko_backup.main, list(args), env={"SOKO_BLOCK_URL": env.url, "OS_TOKEN": "tok-a"})
    assert (result.exit_code == 0) == ok, result.output
    return result


def test_soko_backup_cron_run(run, env, caplog):
    caplog.set_level("INFO", logger="soko-backup")
    tagged = json.loads(run("create", "--name", "db", "--metadata", "backup=daily",
                            "--metadata", "quiesce_plan=noop", "1", "--format", "json").stdout)
    json.loads(run("create", "--name", "other", "1", "--format", "json").stdout)
    write_random(env.volumes.pool.path(tagged["id"]), 0, MiB, random.Random(3))
    for _ in range(3):
        cron(env, "--tag", "backup=daily", "--full-every", "2")
    backups = json.loads(run("backup-list", "--format", "json").stdout)
    assert {b["volume_id"] for b in backups} == {tagged["id"]}
    # full, incremental, full (every 2); the same day keeps the newest and its chain only
    assert [b["is_incremental"] for b in backups] == [False]
    lines = [r.getMessage() for r in caplog.records if r.name == "soko-backup"]
    assert len(lines) == 3 and all(tagged["id"] in line and "frozen" in line for line in lines)
    assert "incremental backup" in lines[1] and "pruned 2" in lines[2]
    assert json.loads(run("snapshot-list", "--format", "json").stdout) == []


def test_soko_backup_fails_for_a_volume_without_quiesce_plan(run, env, caplog):
    run("create", "--name", "plain", "--metadata", "backup=daily", "1")
    cron(env, "--tag", "backup=daily", ok=False)
    assert any("FAILED" in r.getMessage() and "quiesce" in r.getMessage()
               for r in caplog.records)
    assert json.loads(run("snapshot-list", "--format", "json").stdout) == []
    cron(env, "--tag", "backup=daily", "--no-quiesce")
    assert len(json.loads(run("backup-list", "--format", "json").stdout)) == 1


def history(*entries):
    """Backups newest first: (id, days ago, parent id or None)."""
    now = dt.datetime(2026, 11, 22, 3, 0)
    return [{"id": i, "created_at": (now - dt.timedelta(days=d)).isoformat(),
             "parent_id": p, "is_incremental": p is not None} for i, d, p in entries]


def test_retention_keeps_daily_weekly_and_whole_chains():
    backups = history(("d0", 0, "d1"), ("d1", 1, "d2"), ("d2", 2, None), ("d3", 3, None),
                      ("d9", 9, None), ("d30", 30, None))
    assert soko_backup.to_keep(backups, keep_daily=1, keep_weekly=0) == {"d0", "d1", "d2"}
    assert soko_backup.to_keep(backups, keep_daily=4, keep_weekly=0) == {"d0", "d1", "d2",
                                                                        "d3"}
    # 2026-11-22 is a Sunday: d0..d3 share ISO week 47, d9 is in 46, d30 in 43
    assert soko_backup.to_keep(backups, keep_daily=0, keep_weekly=3) == {
        "d0", "d1", "d2", "d9", "d30"}
    assert soko_backup.needs_full(backups, 3) is True  # d0, d1, d2: a chain of 3
    assert soko_backup.needs_full(backups, 4) is False
    assert soko_backup.needs_full([], 4) is True
