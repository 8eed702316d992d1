"""Snapshots through the API in-process (falcon TestClient) over the in-memory pool:
Cinder's shapes and states, force for in-use volumes, 409 for a volume with snapshots,
quota, volumes from snapshots, and recovery of a snapshot left half-done by a crash."""

from __future__ import annotations

import json
import socket

from soko.block.drivers.base import PoolError
from soko.block.models import Snapshot
from soko.block.quiesce import Quiescer
from soko.common.db import session_scope
from tests.block.test_api import ADMIN, A, B, attach, create
from tests.block.test_cli import endpoint, run  # noqa: F401 (fixtures)

SNAPS = "/v3/proj-a/snapshots"
UNKNOWN = "00000000-0000-4000-8000-000000000000"  # a well-formed id that names nothing


def snap(client, volume_id, headers=A, **extra):
    return client.simulate_post(SNAPS, headers=headers,
                                json={"snapshot": {"volume_id": volume_id, **extra}})


def test_create_show_list_update_delete_in_cinder_shapes(client, manager):
    volume_id = create(client, 2).json["volume"]["id"]
    resp = snap(client, volume_id, name="s1", description="before upgrade",
                metadata={"why": "test"})
    assert resp.status_code == 202
    snapshot = resp.json["snapshot"]
    assert snapshot["status"] == "available" and snapshot["size"] == 2
    assert snapshot["volume_id"] == volume_id and snapshot["metadata"] == {"why": "test"}
    assert manager.pool.snapshots() == {snapshot["id"]}
    shown = client.simulate_get(f"{SNAPS}/{snapshot['id']}", headers=A).json["snapshot"]
    assert shown["name"] == "s1" and shown["progress"] == "100%"
    assert shown["os-extended-snapshot-attributes:project_id"] == "proj-a"
    renamed = client.simulate_put(f"{SNAPS}/{snapshot['id']}", headers=A,
                                  json={"snapshot": {"name": "s2"}}).json["snapshot"]
    assert renamed["name"] == "s2"
    listed = client.simulate_get(SNAPS, headers=A).json["snapshots"]
    assert [s["id"] for s in listed] == [snapshot["id"]]
    assert client.simulate_delete(f"{SNAPS}/{snapshot['id']}", headers=A).status_code == 202
    assert client.simulate_get(f"{SNAPS}/{snapshot['id']}", headers=A).status_code == 404
    assert manager.pool.snapshots() == set()


def test_detail_filters_and_paginates(client):
    first = create(client).json["volume"]["id"]
    second = create(client).json["volume"]["id"]
    ids = [snap(client, v, name=f"n{i}").json["snapshot"]["id"]
           for i, v in enumerate([first, first, second])]
    by_volume = client.simulate_get(f"{SNAPS}/detail", headers=A,
                                    params={"volume_id": first}).json["snapshots"]
    assert {s["id"] for s in by_volume} == set(ids[:2])
    page = client.simulate_get(f"{SNAPS}/detail", headers=A, params={"limit": 2}).json
    assert [s["id"] for s in page["snapshots"]] == ids[::-1][:2]
    assert "marker=" in page["snapshots_links"][0]["href"]
    rest = client.simulate_get(SNAPS, headers=A, params={"marker": ids[1]}).json["snapshots"]
    assert [s["id"] for s in rest] == [ids[0]]
    named = client.simulate_get(SNAPS, headers=A, params={"name": "n2", "status": "available"})
    assert [s["id"] for s in named.json["snapshots"]] == [ids[2]]
    assert client.simulate_get(SNAPS, headers=A, params={"marker": "nope"}).status_code == 400


def test_in_use_volume_needs_force(client, manager):
    volume_id = create(client).json["volume"]["id"]
    attach(client, volume_id)
    resp = snap(client, volume_id)
    assert resp.status_code == 400 and "force" in resp.json["error"]["message"]
    assert snap(client, volume_id, force="False").status_code == 400
    assert manager.pool.snapshots() == set()
    assert client.simulate_get(SNAPS, headers=A).json["snapshots"] == []
    assert snap(client, volume_id, force=True).json["snapshot"]["status"] == "available"


def test_volume_with_snapshots_cannot_be_deleted(client, manager):
    volume_id = create(client).json["volume"]["id"]
    snapshot_id = snap(client, volume_id).json["snapshot"]["id"]
    resp = client.simulate_delete(f"/v3/proj-a/volumes/{volume_id}", headers=A)
    assert resp.status_code == 409 and "snapshot" in resp.json["error"]["message"]
    volume = client.simulate_get(f"/v3/proj-a/volumes/{volume_id}", headers=A).json["volume"]
    assert volume["status"] == "available" and manager.pool.size(volume_id) is not None
    client.simulate_delete(f"{SNAPS}/{snapshot_id}", headers=A)
    assert client.simulate_delete(f"/v3/proj-a/volumes/{volume_id}", headers=A).status_code == 202


def test_volume_from_snapshot(client, manager):
    volume_id = create(client, 2).json["volume"]["id"]
    snapshot_id = snap(client, volume_id).json["snapshot"]["id"]
    assert create(client, 1, snapshot_id=snapshot_id).status_code == 400  # smaller
    resp = create(client, 3, snapshot_id=snapshot_id)
    assert resp.status_code == 202
    made = resp.json["volume"]
    assert made["snapshot_id"] == snapshot_id and made["status"] == "available"
    assert manager.pool.size(made["id"]) == 3 << 30
    assert create(client, 3, snapshot_id=UNKNOWN).status_code == 404
    assert create(client, 3, snapshot_id="missing").status_code == 400  # not an id at all
    assert create(client, 3, snapshot_id=snapshot_id,
                  source_volid=volume_id).status_code == 400


def test_bad_input_and_other_projects(client, manager):
    volume_id = create(client).json["volume"]["id"]
    assert snap(client, None).status_code == 400
    assert snap(client, UNKNOWN).status_code == 404
    assert snap(client, "missing").status_code == 400  # not an id at all
    assert snap(client, volume_id, force="maybe").status_code == 400
    assert snap(client, volume_id, name="x" * 300).status_code == 400
    resp = snap(client, volume_id, quiesce=["fsfreeze", "-f", "/"])
    assert resp.status_code == 400 and "never accepted" in resp.json["error"]["message"]
    resp = snap(client, volume_id, quiesce=True)
    assert resp.status_code == 400 and "no default quiesce plan" in resp.json["error"]["message"]
    assert snap(client, volume_id, quiesce="nope").status_code == 400
    # Another project cannot snapshot, see or delete this project's snapshots.
    assert client.simulate_post("/v3/proj-b/snapshots", headers=B, json={
        "snapshot": {"volume_id": volume_id}}).status_code == 404
    snapshot_id = snap(client, volume_id).json["snapshot"]["id"]
    assert client.simulate_get(f"/v3/proj-b/snapshots/{snapshot_id}",
                               headers=B).status_code == 404
    assert client.simulate_delete(f"/v3/proj-b/snapshots/{snapshot_id}",
                                  headers=B).status_code == 404
    everyone = client.simulate_get("/v3/proj-admin/snapshots", headers=ADMIN,
                                   params={"all_tenants": 1}).json["snapshots"]
    assert [s["id"] for s in everyone] == [snapshot_id]
    assert manager.pool.snapshots() == {snapshot_id}


def test_snapshot_quota_gives_413(client, manager):
    client.simulate_put("/v3/proj-admin/os-quota-sets/proj-a", headers=ADMIN,
                        json={"quota_set": {"snapshots": 1}})
    volume_id = create(client).json["volume"]["id"]
    snap(client, volume_id)
    resp = snap(client, volume_id)
    assert resp.status_code == 413 and "SnapshotLimitExceeded" in resp.json["error"]["message"]
    assert len(manager.pool.snapshots()) == 1
    usage = client.simulate_get("/v3/proj-a/os-quota-sets/proj-a", headers=A,
                                params={"usage": "true"}).json["quota_set"]
    assert usage["snapshots"] == {"limit": 1, "in_use": 1, "reserved": 0}


def test_reconcile_removes_a_snapshot_left_creating_by_a_dead_process(client, manager):
    volume_id = create(client).json["volume"]["id"]
    snapshot_id = snap(client, volume_id).json["snapshot"]["id"]
    with session_scope(manager.sessions) as s:  # as a crash mid-create leaves it
        row = s.get(Snapshot, snapshot_id)
        row.status, row.owner = "creating", f"{socket.gethostname()}:999999999:1"
    manager.reconcile()
    assert client.simulate_get(f"{SNAPS}/{snapshot_id}", headers=A).status_code == 404
    assert manager.pool.snapshots() == set()


def test_snapshot_verbs_through_the_cli(run, manager, tmp_path):  # noqa: F811
    log = tmp_path / "hooks.log"
    manager.snapshots.quiescer = Quiescer(tmp_path, {"app": [{
        "kind": "exec", "pre": ["sh", "-c", f"echo pre >> {log}"],
        "post": ["sh", "-c", f"echo post >> {log}"]}]})
    run("create", "--name", "data", "--metadata", "quiesce_plan=app", "1")
    run("attach", "data", "--initiator", "iqn.2026-11.org.test:h")
    assert "needs force" in run("snapshot-create", "data", ok=False).output
    snap_a = json.loads(run("snapshot-create", "--force", "--quiesce", "--name", "a", "data",
                            "--format", "json").output)
    assert snap_a["status"] == "available" and snap_a["metadata"]["quiesce_plan"] == "app"
    assert float(snap_a["metadata"]["freeze_window_ms"]) > 0
    assert log.read_text() == "pre\npost\n"
    snap_b = json.loads(run("snapshot-create", "--force", "--quiesce-plan", "app", "--name", "b",
                            "data", "--format", "json").output)
    assert snap_b["metadata"]["quiesce_plan"] == "app"
    plain = json.loads(run("snapshot-create", "--force", "data", "--format", "json").output)
    assert "quiesce_plan" not in plain["metadata"]
    assert "no quiesce plan named 'nope'" in run("snapshot-create", "data", "--force",
                                                 "--quiesce-plan", "nope", ok=False).output
    # The form: the flag needs no value, and the volume may follow it.
    plain_q = json.loads(run("snapshot-create", "--force", "--quiesce", "data", "--format",
                             "json").output)
    assert plain_q["metadata"]["quiesce_plan"] == "app"
    listed = run("snapshot-list").output
    assert "a" in listed and snap_b["id"][:8] in listed
    only = json.loads(run("snapshot-list", "--name", "b", "--format", "json").output)
    assert [s["id"] for s in only] == [snap_b["id"]]
    assert json.loads(run("snapshot-show", "a", "--format", "json").output)["id"] == snap_a["id"]
    copy = json.loads(run("create", "--snapshot-id", snap_a["id"], "1", "--format",
                          "json").output)
    assert copy["snapshot_id"] == snap_a["id"]
    run("detach", "data")
    assert "snapshot(s)" in run("delete", "data", ok=False).output
    run("snapshot-delete", "a", "b", plain["id"], plain_q["id"])
    assert manager.pool.snapshots() == set()
    run("delete", "data", copy["id"])
    assert "give a VOLUME or --snapshot" in run("local-attach", ok=False).output


def test_a_pool_failing_to_delete_leaves_error_deleting(client, manager, monkeypatch):
    volume_id = create(client).json["volume"]["id"]
    snapshot_id = snap(client, volume_id).json["snapshot"]["id"]

    def broken(snapshot_id):  # a failing disk cannot be caused in the in-memory pool
        raise PoolError("I/O error")

    monkeypatch.setattr(manager.pool, "delete_snapshot", broken)
    resp = client.simulate_delete(f"{SNAPS}/{snapshot_id}", headers=A)
    assert resp.status_code == 503 and "delete it again" in resp.json["error"]["message"]
    shown = client.simulate_get(f"{SNAPS}/{snapshot_id}", headers=A).json["snapshot"]
    assert shown["status"] == "error_deleting"
    monkeypatch.undo()
    assert client.simulate_delete(f"{SNAPS}/{snapshot_id}", headers=A).status_code == 202
    assert manager.pool.snapshots() == set()
