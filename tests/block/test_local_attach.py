"""Local attach on the real reflink pool: loop devices recorded by the service, read-only
for snapshots, refused where they would hurt (delete, iSCSI attach, detach while mounted),
no stray device on any path, and reconcile repairing what happened behind its back."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from click.testing import CliRunner

from soko.block import wiring
from soko.block.api import make_app
from soko.block.cli import volume
from soko.block.local_attach import loop_devices
from soko.block.models import Volume
from soko.common.db import session_scope
from tests.block.fakes import FixedTokens
from tests.block.test_datapath import HOST, A, attach, create, delete
from tests.support import served

pytestmark = pytest.mark.privileged

MiB = 1 << 20


ADMIN = {"X-Auth-Token": "tok-admin"}  # local attach is admin-only by default


def action(client, kind, ref, body):
    return client.simulate_post(f"/v3/proj-a/{kind}/{ref}/action", headers=ADMIN, json=body)


def local_attach(client, kind, ref) -> str:
    resp = action(client, kind, ref, {"os-local_attach": {}})
    assert resp.status_code == 200, resp.text
    return resp.json["local_attachment"]["device"]


def local_detach(client, kind, ref) -> None:
    resp = action(client, kind, ref, {"os-local_detach": {}})
    assert resp.status_code == 202, resp.text


def show(client, kind, ref) -> dict:
    return client.simulate_get(f"/v3/proj-a/{kind}/{ref}", headers=A).json[kind[:-1]]


def devices_of(path: str) -> list[str]:
    return [device for device, back in loop_devices().items() if back == path]


def test_volume_local_attach_write_detach(real_client, real_manager):
    volume_id = create(real_client, 1)
    path = real_manager.pool.path(volume_id)
    device = local_attach(real_client, "volumes", volume_id)
    try:
        assert devices_of(path) == [device]
        volume = show(real_client, "volumes", volume_id)
        assert volume["status"] == "in-use"
        assert volume["attachments"][0]["device"] == device
        assert volume["attachments"][0]["host_name"] == socket.gethostname()
        # What an attached volume refuses: delete, a second attach (local or iSCSI).
        resp = real_client.simulate_delete(f"/v3/proj-a/volumes/{volume_id}", headers=A)
        assert resp.status_code == 409
        assert action(real_client, "volumes", volume_id, {"os-local_attach": {}}).status_code == 409
        resp = action(real_client, "volumes", volume_id,
                      {"os-attach": {"connector": {"initiator": HOST}}})
        assert resp.status_code == 409
        with open(device, "r+b") as f:  # the device is the pool file
            f.seek(3 * MiB)
            f.write(b"through the loop device")
            os.fsync(f.fileno())
    finally:
        local_detach(real_client, "volumes", volume_id)
    assert devices_of(path) == []
    assert show(real_client, "volumes", volume_id)["status"] == "available"
    with open(path, "rb") as f:
        f.seek(3 * MiB)
        assert f.read(23) == b"through the loop device"
    resp = action(real_client, "volumes", volume_id, {"os-local_detach": {}})
    assert resp.status_code == 409 and "not locally attached" in resp.json["error"]["message"]
    delete(real_client, volume_id)


def test_snapshot_local_attach_is_read_only(real_client, real_manager):
    volume_id = create(real_client, 1)
    snapshot_id = real_client.simulate_post("/v3/proj-a/snapshots", headers=A, json={
        "snapshot": {"volume_id": volume_id}}).json["snapshot"]["id"]
    path = real_manager.pool.snapshot_path(snapshot_id)
    device = local_attach(real_client, "snapshots", snapshot_id)
    try:
        ro = subprocess.run(["blockdev", "--getro", device], capture_output=True, text=True)
        assert ro.stdout.strip() == "1"
        write = subprocess.run(["dd", "if=/dev/zero", f"of={device}", "bs=4096", "count=1",
                                "oflag=direct"], capture_output=True, text=True)
        assert write.returncode != 0, "a snapshot's device took a write"
        assert show(real_client, "snapshots", snapshot_id)["local_attachment"]["device"] == device
        resp = real_client.simulate_delete(f"/v3/proj-a/snapshots/{snapshot_id}", headers=A)
        assert resp.status_code == 409 and "local-detach" in resp.json["error"]["message"]
        # Another project's member cannot map it (nor their own: local attach is admin-only).
        resp = real_client.simulate_post(f"/v3/proj-b/snapshots/{snapshot_id}/action",
                                         headers={"X-Auth-Token": "tok-b"},
                                         json={"os-local_attach": {}})
        assert resp.status_code == 403
    finally:
        local_detach(real_client, "snapshots", snapshot_id)
    assert devices_of(path) == []
    assert real_client.simulate_delete(f"/v3/proj-a/snapshots/{snapshot_id}",
                                       headers=A).status_code == 202
    delete(real_client, volume_id)


def test_detach_of_a_mounted_device_is_refused(real_client, real_manager, tmp_path):
    volume_id = create(real_client, 1)
    device = local_attach(real_client, "volumes", volume_id)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        subprocess.run(["mkfs.xfs", "-q", device], check=True)
        subprocess.run(["mount", device, str(mnt)], check=True)
        try:
            resp = action(real_client, "volumes", volume_id, {"os-local_detach": {}})
            assert resp.status_code == 409 and "unmount" in resp.json["error"]["message"]
            assert show(real_client, "volumes", volume_id)["status"] == "in-use"
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        local_detach(real_client, "volumes", volume_id)
    delete(real_client, volume_id)


def test_reconcile_repairs_devices_changed_behind_its_back(real_client, real_manager):
    volume_id = create(real_client, 1)
    path = real_manager.pool.path(volume_id)
    device = local_attach(real_client, "volumes", volume_id)
    subprocess.run(["losetup", "--detach", device], check=True)  # an operator's mistake
    real_manager.reconcile()
    (again,) = devices_of(path)
    assert show(real_client, "volumes", volume_id)["attachments"][0]["device"] == again
    local_detach(real_client, "volumes", volume_id)
    # A device over a pool file that no row records (a crash between losetup and the DB
    # write leaves one) is detached.
    stray = subprocess.run(["losetup", "--find", "--show", path], check=True,
                           capture_output=True, text=True).stdout.strip()
    try:
        real_manager.reconcile()
        assert devices_of(path) == []
    finally:
        subprocess.run(["losetup", "--detach", stray], capture_output=True)
    delete(real_client, volume_id)


def test_reconcile_undoes_a_local_attach_interrupted_by_a_crash(real_client, real_manager):
    volume_id = create(real_client, 1)
    local_attach(real_client, "volumes", volume_id)
    with session_scope(real_manager.sessions) as s:  # as a crash mid-detach leaves it
        volume = s.get(Volume, volume_id)
        volume.status, volume.owner = "detaching", f"{socket.gethostname()}:999999999:1"
    real_manager.reconcile()
    volume = show(real_client, "volumes", volume_id)
    assert volume["status"] == "available" and volume["attachments"] == []
    assert devices_of(real_manager.pool.path(volume_id)) == []
    delete(real_client, volume_id)


def test_local_attach_of_an_iscsi_attached_volume_leaves_nothing(real_client, real_manager):
    volume_id = create(real_client, 1)
    attach(real_client, volume_id)
    before = loop_devices()
    resp = action(real_client, "volumes", volume_id, {"os-local_attach": {}})
    assert resp.status_code == 409
    assert loop_devices() == before
    action(real_client, "volumes", volume_id, {"os-detach": {}})
    delete(real_client, volume_id)


def test_snapshots_and_local_attachments_survive_a_restart(real_block, real_client,
                                                           real_manager):
    volume_id = create(real_client, 1)
    snapshot_id = real_client.simulate_post("/v3/proj-a/snapshots", headers=A, json={
        "snapshot": {"volume_id": volume_id}}).json["snapshot"]["id"]
    device = local_attach(real_client, "snapshots", snapshot_id)
    try:
        restarted = wiring.make_manager(real_block)  # a new process's view: DB and pool
        wiring.start(restarted)
        snapshot = restarted.snapshots.get("proj-a", snapshot_id)
        assert snapshot.status == "available" and snapshot.local.device == device
        assert devices_of(restarted.pool.snapshot_path(snapshot_id)) == [device]
    finally:
        local_detach(real_client, "snapshots", snapshot_id)
    real_client.simulate_delete(f"/v3/proj-a/snapshots/{snapshot_id}", headers=A)
    delete(real_client, volume_id)


@pytest.fixture
def real_cli(real_block, real_manager, tmp_path):
    """``soko volume`` against the real manager, served over HTTP by a wsgiref thread."""
    app = make_app(real_block, validator=FixedTokens(), manager=real_manager)
    with served(app) as base:
        url = f"{base}/v3/proj-a"

        def invoke(*args: str) -> str:
            result = CliRunner().invoke(volume, ["--os-url", url, "--os-token", "tok-admin",
                                                 "--data-dir", str(tmp_path), *args])
            assert result.exit_code == 0, result.output
            return result.output

        yield invoke


def test_local_attach_through_the_cli(real_cli, real_manager):
    volume_id = json.loads(real_cli("create", "--name", "cli-local", "1", "--format",
                                    "json"))["id"]
    device = real_cli("local-attach", "cli-local").strip()
    assert devices_of(real_manager.pool.path(volume_id)) == [device]
    assert device in real_cli("list")
    snapshot = json.loads(real_cli("snapshot-create", "--force", "--name", "cli-snap",
                                   "cli-local", "--format", "json"))
    info = json.loads(real_cli("local-attach", "--snapshot", "cli-snap", "--format", "json"))
    assert info["read_only"] is True and info["snapshot_id"] == snapshot["id"]
    real_cli("local-detach", "--snapshot", "cli-snap")
    real_cli("local-detach", "cli-local")
    assert devices_of(real_manager.pool.path(volume_id)) == []
    assert devices_of(real_manager.pool.snapshot_path(snapshot["id"])) == []
    real_cli("snapshot-delete", "cli-snap")
    real_cli("delete", "cli-local")
