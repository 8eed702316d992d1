"""The backup API in-process: Cinder's shapes and states, incremental chains, restore
targets, mark-and-sweep deletes, bad input that leaves nothing behind, and project
isolation. Volumes are real sparse files (``FilePool``); the chunk store is in memory
here and a real object cluster in ``test_backups_cluster.py``."""

from __future__ import annotations

import random
import socket
import threading
import time

import pytest

from soko.block.backups.models import Backup
from soko.common.db import session_scope
from tests.block.backup_support import BackupEnv, MiB, same_content, write_random

A = {"X-Auth-Token": "tok-a"}
B = {"X-Auth-Token": "tok-b"}
GiB = 1 << 30
UNKNOWN = "00000000-0000-4000-8000-000000000000"  # a well-formed id that names nothing


@pytest.fixture
def env(tmp_path):
    env = BackupEnv(tmp_path)
    yield env
    env.backups.wait_idle(30)


def new_volume(env, data_at=(0,), seed=1):
    volume = env.client.simulate_post("/v3/proj-a/volumes", headers=A,
                                      json={"volume": {"size": 1}}).json["volume"]
    rng = random.Random(seed)
    for offset in data_at:
        write_random(env.volumes.pool.path(volume["id"]), offset, 2 * MiB, rng)
    return volume["id"]


def post_backup(env, headers=A, project="proj-a", **spec):
    return env.client.simulate_post(f"/v3/{project}/backups", headers=headers,
                                    json={"backup": spec})


def settled(env, backup_id, headers=A):
    env.backups.wait_idle(30)
    found = env.client.simulate_get(f"/v3/proj-a/backups/{backup_id}", headers=headers)
    return found.json["backup"] if found.status_code == 200 else None


def backed_up(env, volume_id, **spec):
    resp = post_backup(env, volume_id=volume_id, **spec)
    assert resp.status_code == 202, resp.text
    backup = settled(env, resp.json["backup"]["id"])
    assert backup["status"] == "available", backup["fail_reason"]
    return backup


def restore(env, backup_id, headers=A, **spec):
    return env.client.simulate_post(f"/v3/proj-a/backups/{backup_id}/restore",
                                    headers=headers, json={"restore": spec})


def bases(env):
    return {v for v in env.volumes.pool.volumes() if v.startswith("backup-base-")}


def volume_status(env, volume_id):
    return env.client.simulate_get(f"/v3/proj-a/volumes/{volume_id}",
                                   headers=A).json["volume"]["status"]


def snapshots(env):
    return env.client.simulate_get("/v3/proj-a/snapshots", headers=A).json["snapshots"]


def test_full_backup_in_cinder_shape_with_progress_and_stats(env):
    volume_id = new_volume(env, data_at=(0, 500 * MiB))
    resp = post_backup(env, volume_id=volume_id, name="nightly", description="d")
    assert resp.status_code == 202
    assert resp.json["backup"]["status"] == "creating"
    backup = settled(env, resp.json["backup"]["id"])
    assert backup["status"] == "available" and backup["progress"] == 100.0
    assert backup["name"] == "nightly" and backup["volume_id"] == volume_id
    assert backup["size"] == 1 and backup["is_incremental"] is False
    assert backup["container"] == "volumebackups" and backup["object_count"] >= 3
    assert backup["os-backup-project-attr:project_id"] == "proj-a"
    assert backup["stats"]["bytes_new"] == 4 * MiB
    assert backup["stats"]["bytes_zero"] == GiB - 4 * MiB
    assert env.stores.tokens == {"tok-a"}  # the object store is reached as the caller
    assert snapshots(env) == []  # the snapshot taken for the backup is gone again
    listed = env.client.simulate_get("/v3/proj-a/backups", headers=A).json["backups"]
    assert listed == [{"id": backup["id"], "name": "nightly", "links": backup["links"]}]
    assert env.client.simulate_get("/v3/proj-b/backups", headers=B).json["backups"] == []


def test_incremental_chain_restores_and_delete_rules(env):
    volume_id = new_volume(env)
    full = backed_up(env, volume_id)
    store = env.stores.by_project["proj-a"]
    full_chunks = set(store.chunks())
    path = env.volumes.pool.path(volume_id)
    write_random(path, 100 * MiB, 64 * 1024, random.Random(9))
    incr = backed_up(env, volume_id, incremental=True)
    assert incr["is_incremental"] and incr["parent_id"] == full["id"]
    assert incr["stats"]["bytes_new"] == 64 * 1024
    assert settled(env, full["id"])["has_dependent_backups"] is True
    assert bases(env) == {f"backup-base-{incr['id']}"}  # the newest backup's source, kept
    resp = env.client.simulate_delete(f"/v3/proj-a/backups/{full['id']}", headers=A)
    assert resp.status_code == 409 and "depend" in resp.json["error"]["message"]
    restored = restore(env, incr["id"])
    assert restored.status_code == 202
    target = restored.json["restore"]["volume_id"]
    env.backups.wait_idle(30)
    assert volume_status(env, target) == "available"
    assert same_content(path, env.volumes.pool.path(target))
    # deleting the child sweeps only its own chunk; then the parent's go too
    assert env.client.simulate_delete(f"/v3/proj-a/backups/{incr['id']}",
                                      headers=A).status_code == 202
    assert settled(env, incr["id"]) is None
    assert set(store.chunks()) == full_chunks
    assert env.client.simulate_delete(f"/v3/proj-a/backups/{full['id']}",
                                      headers=A).status_code == 202
    assert settled(env, full["id"]) is None
    assert store.chunks() == {} and store.names("manifests/") == []
    assert bases(env) == set()


def test_deleting_a_backup_keeps_chunks_another_backup_shares(env):
    first = backed_up(env, new_volume(env, seed=3))
    second = backed_up(env, new_volume(env, seed=3))  # the same data: deduplicated
    assert second["stats"]["chunks_uploaded"] == 0
    env.client.simulate_delete(f"/v3/proj-a/backups/{first['id']}", headers=A)
    assert settled(env, first["id"]) is None
    restored = restore(env, second["id"]).json["restore"]["volume_id"]
    env.backups.wait_idle(30)
    assert volume_status(env, restored) == "available"


def test_a_sweep_waits_for_a_running_backup(env):
    """A running backup relies on chunks it found in the store but has no manifest yet: a
    delete's sweep must not run until it is done."""
    doomed = backed_up(env, new_volume(env, seed=5))
    store = env.stores("proj-a", "tok-a")
    gate, real_put = threading.Event(), store.put

    def slow_put(name, *parts):  # holds the new backup in the middle of its uploads
        if name.startswith("chunks/"):
            gate.wait(10)
        real_put(name, *parts)

    store.put = slow_put
    running = post_backup(env, volume_id=new_volume(env, data_at=(0, 8 * MiB), seed=5))
    time.sleep(0.3)
    env.client.simulate_delete(f"/v3/proj-a/backups/{doomed['id']}", headers=A)
    time.sleep(0.5)
    assert settled_now(env, doomed["id"])["status"] == "deleting"
    gate.set()
    store.put = real_put
    backup = settled(env, running.json["backup"]["id"])
    assert backup["status"] == "available" and settled(env, doomed["id"]) is None
    target = restore(env, backup["id"]).json["restore"]["volume_id"]
    env.backups.wait_idle(30)
    assert volume_status(env, target) == "available"


def test_a_failed_upload_leaves_the_backup_in_error_and_no_objects(env):
    """The object store refuses a chunk halfway through a backup (a fault made by a
    wrapper: it is the store's answer that matters, not why): the backup is in error,
    and the chunks it had sent are gone while an earlier backup's stay."""
    from soko.block.backups.store import StoreError

    earlier = backed_up(env, new_volume(env, seed=9))
    store = env.stores("proj-a", "tok-a")
    before, real_put, sent = dict(store.objects), store.put, []

    def failing_put(name, *parts):
        if name.startswith("chunks/"):
            sent.append(name)
            if len(sent) == 3:
                raise StoreError(f"PUT {name}: object store answered 503")
        real_put(name, *parts)

    store.put = failing_put
    volume_id = new_volume(env, data_at=(0, 8 * MiB), seed=10)
    failed = settled(env, post_backup(env, volume_id=volume_id).json["backup"]["id"])
    assert failed["status"] == "error" and "503" in failed["fail_reason"]
    assert len(sent) >= 3 and store.objects == before
    assert snapshots(env) == [] and volume_status(env, volume_id) == "available"
    assert settled(env, earlier["id"])["status"] == "available"


def settled_now(env, backup_id):
    return env.client.simulate_get(f"/v3/proj-a/backups/{backup_id}", headers=A).json["backup"]


def test_in_use_volume_needs_force_and_restore_refuses_it(env):
    volume_id = new_volume(env)
    env.client.simulate_post(f"/v3/proj-a/volumes/{volume_id}/action", headers=A, json={
        "os-initialize_connection": {"connector": {"initiator": "iqn.2026-11.org.t:h"}}})
    resp = post_backup(env, volume_id=volume_id)
    assert resp.status_code == 400 and "force" in resp.json["error"]["message"]
    assert env.backups.list("proj-a") == [] and snapshots(env) == []
    backup = backed_up(env, volume_id, force=True)
    resp = restore(env, backup["id"], volume_id=volume_id)
    assert resp.status_code == 409
    assert volume_status(env, volume_id) == "in-use"
    assert settled(env, backup["id"])["status"] == "available"


def test_restore_over_an_available_volume_and_size_check(env):
    source = new_volume(env, seed=7)
    backup = backed_up(env, source)
    target = new_volume(env, data_at=(0, 300 * MiB), seed=8)
    assert restore(env, backup["id"], volume_id=target).status_code == 202
    env.backups.wait_idle(30)
    assert volume_status(env, target) == "available"
    assert same_content(env.volumes.pool.path(source), env.volumes.pool.path(target))
    with session_scope(env.backups.sessions) as s:  # as if it came from a 2 GiB volume
        s.get(Backup, backup["id"]).size = 2
    resp = restore(env, backup["id"], volume_id=target)
    assert resp.status_code == 400 and "2 GiB" in resp.json["error"]["message"]


def test_corrupted_chunk_fails_the_restore_loudly(env):
    backup = backed_up(env, new_volume(env))
    store = env.stores.by_project["proj-a"]
    name = next(iter(store.chunks()))
    blob = bytearray(store.objects[name])
    blob[-1] ^= 0xFF
    store.objects[name] = bytes(blob)
    target = restore(env, backup["id"]).json["restore"]["volume_id"]
    after = settled(env, backup["id"])
    assert volume_status(env, target) == "error"
    assert after["status"] == "available" and "corrupted" in after["fail_reason"]


@pytest.mark.parametrize("spec, status", [
    ({}, 400),
    ({"volume_id": UNKNOWN}, 404),
    ({"volume_id": "no-such-volume"}, 400),  # not an id at all
    ({"volume_id": "VOLUME", "incremental": "maybe"}, 400),
    ({"volume_id": "VOLUME", "incremental": True}, 400),  # no full backup yet
    ({"volume_id": "VOLUME", "snapshot_id": UNKNOWN}, 404),
    ({"volume_id": "VOLUME", "snapshot_id": "../x"}, 400),
    ({"volume_id": "VOLUME", "name": "x" * 300}, 400),
])
def test_bad_backup_requests_leave_nothing(env, spec, status):
    volume_id = new_volume(env)
    spec = {k: volume_id if v == "VOLUME" else v for k, v in spec.items()}
    resp = post_backup(env, **spec)
    assert resp.status_code == status, resp.text
    assert resp.json["error"]["message"]
    assert env.backups.list(None) == [] and snapshots(env) == []
    assert env.stores.by_project == {}


def test_other_projects_and_unknown_ids(env):
    backup = backed_up(env, new_volume(env))
    assert env.client.simulate_get(f"/v3/proj-b/backups/{backup['id']}",
                                   headers=B).status_code == 404
    assert env.client.simulate_get(f"/v3/proj-a/backups/{backup['id']}",
                                   headers=B).status_code == 403
    assert env.client.simulate_post(f"/v3/proj-b/backups/{backup['id']}/restore", headers=B,
                                    json={"restore": {}}).status_code == 404
    assert env.client.simulate_delete(f"/v3/proj-b/backups/{backup['id']}",
                                      headers=B).status_code == 404
    assert restore(env, "no-such-backup").status_code == 404
    assert restore(env, backup["id"], volume_id=UNKNOWN).status_code == 404
    assert restore(env, backup["id"], volume_id="no-such-volume").status_code == 400
    resp = env.client.simulate_post(f"/v3/proj-a/backups/{backup['id']}/restore", headers=A,
                                    json={"wrong": {}})
    assert resp.status_code == 400
    assert len(env.volumes.list("proj-a")) == 1 and settled(env, backup["id"])["status"] == \
        "available"


def test_backup_of_a_given_snapshot_keeps_it(env):
    volume_id = new_volume(env)
    snap = env.client.simulate_post("/v3/proj-a/snapshots", headers=A, json={
        "snapshot": {"volume_id": volume_id}}).json["snapshot"]
    write_random(env.volumes.pool.path(volume_id), 0, MiB, random.Random(11))  # after it
    backup = backed_up(env, volume_id, snapshot_id=snap["id"])
    assert backup["snapshot_id"] == snap["id"]
    assert [s["status"] for s in snapshots(env)] == ["available"]
    target = restore(env, backup["id"]).json["restore"]["volume_id"]
    env.backups.wait_idle(30)
    assert same_content(env.volumes.pool.snapshot_path(snap["id"]),
                        env.volumes.pool.path(target))
    other = new_volume(env)
    resp = post_backup(env, volume_id=other, snapshot_id=snap["id"])
    assert resp.status_code == 400


def test_recover_settles_the_steps_of_a_dead_process(env):
    volume_id = new_volume(env)
    backup = backed_up(env, volume_id)
    dead = f"{socket.gethostname()}:999999:1"  # no such pid: the owner is gone
    with session_scope(env.backups.sessions) as s:
        s.add(Backup(id="stuck", project_id="proj-a", user_id="u", volume_id=volume_id,
                     size=1, status="creating", container="volumebackups", owner=dead))
        row = s.get(Backup, backup["id"])
        row.status, row.owner, row.restore_volume_id = "restoring", dead, volume_id
    env.volumes.transition("proj-a", volume_id, ("available",), "restoring-backup")
    env.backups.recover()
    assert settled(env, "stuck")["status"] == "error"
    assert settled(env, backup["id"])["status"] == "available"
    assert volume_status(env, volume_id) == "error"
