"""The workflow compute exists for, end to end on real parts: a bootable volume on the
reflink pool exported by tgtd, an instance on libvirt/QEMU booting from it over iSCSI with
CHAP, a data volume hot-plugged and formatted by the guest, a guest-agent quiesced snapshot
while a writer runs, stop/start, QEMU killed behind libvirt's back, and a delete that leaves
nothing behind.

Boots are expensive under TCG, so one instance serves the module and the tests run in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from soko.image.guest_files import (
    DISK_READY_MARKER,
    READY_MARKER,
    WRITER_ACKED,
    WRITER_RECORDS,
    verify_writer_records,
)
from tests.compute.conftest import guest_exec, timed_boot, wait_console
from tests.support import require_tools, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module")
def boot_volume(stack, guest_image) -> str:
    """A volume holding the test guest, written straight into its pool file."""
    require_tools("qemu-img")
    volume_id = stack.create_volume(1, name="e2e-boot")
    subprocess.run(["qemu-img", "convert", "-n", "-O", "raw", str(guest_image),
                    stack.block.pool.path(volume_id)], check=True)
    return volume_id


@pytest.fixture(scope="module")
def server(stack, boot_volume) -> dict:
    """One instance booted from ``boot_volume`` (deleted on termination), for the module."""
    body = {"server": {"name": "e2e", "flavorRef": "m1.tiny", "block_device_mapping_v2": [{
        "boot_index": 0, "uuid": boot_volume, "source_type": "volume",
        "destination_type": "volume", "delete_on_termination": True}]}}
    created = {}

    def create():
        resp = stack.servers("POST", json=body)
        assert resp.status_code == 202, resp.text
        created.update(resp.json()["server"])

    # The instance's domain is named by its id, known only once create returns: wait for
    # the marker after that.
    started = time.monotonic()
    create()
    server_id = created["id"]
    assert created["status"] == "BUILD"
    stack.wait_server(server_id, "ACTIVE", timeout=120)
    wait_console(stack.driver, server_id, READY_MARKER)
    print(f"server create -> {READY_MARKER}: {time.monotonic() - started:.1f} s")
    wait_for(lambda: stack.driver.ping_agent(server_id, timeout=2), timeout=60,
             what="the guest agent")
    yield stack.server(server_id)
    if stack.server(server_id) is not None:  # a test failed before the delete test
        with contextlib.suppress(Exception):
            stack.servers("DELETE", f"/{server_id}")
            stack.wait_server(server_id)


def test_boots_from_the_iscsi_volume_with_chap_in_a_secret(stack, server, boot_volume):
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:power_state"] == 1
    assert [v["id"] for v in server["os-extended-volumes:volumes_attached"]] == [boot_volume]
    volume = stack.volume(boot_volume)
    assert volume["status"] == "in-use"
    assert volume["attachments"][0]["server_id"] == server["id"]
    xml = stack.driver.conn.lookupByName(stack.driver.domain_name(server["id"])).XMLDesc(0)
    password = stack.block.get("proj-a", boot_volume).chap_secret
    assert "protocol='iscsi'" in xml and password not in xml
    log = stack.action(server["id"], {"os-getConsoleOutput": {"length": 50}}, expect=200)
    assert READY_MARKER in log["output"] and "ga=running" in log["output"]


def attach_blank_volume(stack, server, name: str) -> tuple[str, str]:
    """A new 1 GiB volume attached live, once the guest reports it formatted and mounted:
    (volume id, device)."""
    volume_id = stack.create_volume(1, name=name)
    resp = stack.servers("POST", f"/{server['id']}/os-volume_attachments",
                         json={"volumeAttachment": {"volumeId": volume_id}})
    assert resp.status_code == 200, resp.text
    device = resp.json()["volumeAttachment"]["device"].removeprefix("/dev/")
    wait_console(stack.driver, server["id"], f"{DISK_READY_MARKER} dev=/dev/{device}", timeout=90)
    return volume_id, device


@pytest.fixture(scope="module")
def data_volume(stack, server) -> tuple[str, str]:
    """A blank volume attached live; the guest formats and mounts it. (volume id, device)"""
    return attach_blank_volume(stack, server, "e2e-data")


def test_attached_volume_is_formatted_and_mounted_by_the_guest(stack, server, data_volume):
    volume_id, device = data_volume
    assert device == "vdb"
    code, mounts = guest_exec(stack.driver, server["id"], "/bin/cat", "/proc/mounts")
    assert code == 0 and f"/dev/{device} /mnt/{device} ext4 rw" in mounts
    assert stack.volume(volume_id)["attachments"][0]["server_id"] == server["id"]
    listed = stack.servers("GET", f"/{server['id']}/os-volume_attachments").json()
    assert {a["volumeId"]: a["device"] for a in listed["volumeAttachments"]}[volume_id] == \
        f"/dev/{device}"
    again = stack.servers("POST", f"/{server['id']}/os-volume_attachments",
                          json={"volumeAttachment": {"volumeId": volume_id}})
    assert again.status_code == 400 and "in-use" in again.json()["error"]["message"]


def test_live_detach_releases_the_volume_in_the_guest_and_in_block(stack, server):
    volume_id, device = attach_blank_volume(stack, server, "e2e-short")
    resp = stack.servers("DELETE", f"/{server['id']}/os-volume_attachments/{volume_id}")
    assert resp.status_code == 202, resp.text
    wait_console(stack.driver, server["id"], f"SOKO-DISK-REMOVED dev=/dev/{device}", timeout=30)
    volume = stack.volume(volume_id)
    assert volume["status"] == "available" and volume["attachments"] == []
    assert volume_id not in stack.exported()
    boot = server["os-extended-volumes:volumes_attached"][0]["id"]
    resp = stack.servers("DELETE", f"/{server['id']}/os-volume_attachments/{boot}")
    assert resp.status_code == 400 and "boot volume" in resp.json()["error"]["message"]
    stack.volumes("DELETE", f"/volumes/{volume_id}")


def acked(stack, server_id: str) -> int:
    code, out = guest_exec(stack.driver, server_id, "/bin/cat", WRITER_ACKED)
    return int(out) if code == 0 and out.strip() else 0


@contextlib.contextmanager
def locally_attached_snapshot(stack, snapshot_id: str, mountpoint: Path):
    """The snapshot attached read-only on this (the storage) host through the block API,
    checked clean with fsck and mounted read-only."""
    resp = stack.volumes("POST", f"/snapshots/{snapshot_id}/action", "tok-admin",  # admin-only
                         json={"os-local_attach": {}})
    assert resp.status_code == 200, resp.text
    attachment = resp.json()["local_attachment"]
    assert attachment["read_only"]
    device = attachment["device"]
    try:
        fsck = subprocess.run(["fsck.ext4", "-n", "-f", device], capture_output=True, text=True)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        mountpoint.mkdir(exist_ok=True)
        subprocess.run(["mount", "-o", "ro,noload", device, str(mountpoint)], check=True)
        try:
            yield mountpoint
        finally:
            subprocess.run(["umount", str(mountpoint)], check=True)
    finally:
        resp = stack.volumes("POST", f"/snapshots/{snapshot_id}/action", "tok-admin",
                             json={"os-local_detach": {}})
        assert resp.status_code == 202, resp.text


def snapshot(stack, volume_id: str, **options):
    return stack.volumes("POST", "/snapshots", json={"snapshot": {
        "volume_id": volume_id, "force": True, **options}})


def delete_snapshot(stack, snapshot_id: str) -> None:
    assert stack.volumes("DELETE", f"/snapshots/{snapshot_id}").status_code == 202


def test_quiesced_snapshot_under_a_running_writer_holds_every_acknowledged_record(
        stack, server, data_volume, tmp_path):
    """snapshot-create --force --quiesce of the data volume: the guest's filesystem on it is
    frozen through its agent, the O(1) copy taken, the guest thawed."""
    require_tools("fsck.ext4", "mount")
    volume_id, device = data_volume
    code, _ = guest_exec(stack.driver, server["id"], "/bin/sh", "-c",
                         f"soko-writer /mnt/{device} 0.02 </dev/null >/dev/null 2>&1 &")
    assert code == 0
    wait_for(lambda: acked(stack, server["id"]) >= 10, timeout=60, what="writer records")
    try:
        before = acked(stack, server["id"])
        resp = snapshot(stack, volume_id, quiesce=True, name="e2e-quiesced")
        assert resp.status_code == 202, resp.text
        taken = resp.json()["snapshot"]
        assert taken["status"] == "available"
        assert taken["metadata"]["quiesce_plan"] == "guest-agent"
        window_ms = float(taken["metadata"]["freeze_window_ms"])
        print(f"guest-agent freeze window: {window_ms:.0f} ms")
        assert stack.driver.agent_command(server["id"], "guest-fsfreeze-status") == "thawed"
        wait_for(lambda: acked(stack, server["id"]) > before + 5, timeout=30,
                 what="the writer to go on after the thaw")
    finally:
        guest_exec(stack.driver, server["id"], "/bin/sh", "-c",
                   "kill $(cat /run/soko-writer.pid)")
    try:
        with locally_attached_snapshot(stack, taken["id"], tmp_path / "mnt") as mnt:
            records = (mnt / WRITER_RECORDS).read_text()
    finally:
        delete_snapshot(stack, taken["id"])
    assert verify_writer_records(records) >= before


def test_quiesce_of_a_volume_not_on_the_server_is_a_400(stack, server):
    resp = stack.servers("POST", f"/{server['id']}/action",
                         json={"soko-quiesce": {"volume_id": str(uuid.uuid4())}})  # no volume of it
    assert resp.status_code == 400 and "not attached" in resp.json()["error"]["message"]


def test_stop_then_start(stack, server, data_volume):
    stack.action(server["id"], {"os-stop": None})
    stopped = stack.wait_server(server["id"], "SHUTOFF", timeout=90)
    assert stopped["OS-EXT-STS:power_state"] == 4
    resp = stack.servers("POST", f"/{server['id']}/action", json={"os-stop": None})
    assert resp.status_code == 409 and "vm_state stopped" in resp.json()["error"]["message"]
    resp = stack.servers("POST", f"/{server['id']}/action", json={"reboot": {"type": "SOFT"}})
    assert resp.status_code == 409  # a soft reboot needs a running guest; --hard would do
    resp = stack.servers("POST", f"/{server['id']}/action", json={"soko-quiesce": {}})
    assert resp.status_code == 409
    # No agent to freeze with: --quiesce fails clearly, and takes no snapshot...
    volume_id = data_volume[0]
    refused = snapshot(stack, volume_id, quiesce=True)
    assert refused.status_code == 409 and "must be active" in refused.json()["error"]["message"]
    assert stack.volumes("GET", "/snapshots", params={"volume_id": volume_id}).json()[
        "snapshots"] == []
    # ...while a crash-consistent one is there for whoever asks for it (no --quiesce).
    crash_consistent = snapshot(stack, volume_id)
    assert crash_consistent.status_code == 202, crash_consistent.text
    delete_snapshot(stack, crash_consistent.json()["snapshot"]["id"])
    timed_boot(stack.driver, server["id"], lambda: stack.action(server["id"], {"os-start": None}))
    assert stack.wait_server(server["id"], "ACTIVE")["OS-EXT-STS:power_state"] == 1


def qemu_pid(stack, server_id: str) -> int:
    path = Path("/run/libvirt/qemu") / f"{stack.driver.domain_name(server_id)}.pid"
    return int(path.read_text())


def test_qemu_killed_behind_libvirts_back_shows_shutoff_and_starts_again(stack, server):
    os.kill(qemu_pid(stack, server["id"]), signal.SIGKILL)
    wait_for(lambda: stack.driver.state(server["id"]).value == "shutoff", timeout=30,
             what="libvirt to notice")
    assert stack.compute.reconcile() == []  # no orphan; the instance is ours
    assert stack.server(server["id"])["status"] == "SHUTOFF"
    timed_boot(stack.driver, server["id"], lambda: stack.action(server["id"], {"os-start": None}))
    assert stack.wait_server(server["id"], "ACTIVE")["status"] == "ACTIVE"


def test_soft_reboot_through_the_api(stack, server):
    boots = stack.driver.console_log(server["id"], max_bytes=1 << 20).count(READY_MARKER)
    timed_boot(stack.driver, server["id"],
               lambda: stack.action(server["id"], {"reboot": {"type": "SOFT"}}),
               count=boots + 1)
    assert stack.wait_server(server["id"], "ACTIVE")["OS-EXT-STS:power_state"] == 1


def test_delete_leaves_nothing_behind(stack, server, boot_volume, data_volume):
    server_id = server["id"]
    resp = stack.servers("DELETE", f"/{server_id}")
    assert resp.status_code == 204, resp.text
    stack.wait_server(server_id)
    assert server_id not in stack.driver.reconcile()
    assert not [s for s in stack.driver.conn.listAllSecrets(0)
                if s.usageID().startswith(stack.driver.domain_name(server_id))]
    assert not stack.driver.console_path(server_id).exists()
    exported = stack.exported()
    assert boot_volume not in exported and data_volume[0] not in exported
    assert stack.volume(boot_volume) is None  # delete_on_termination
    assert not os.path.exists(stack.block.pool.path(boot_volume))
    data = stack.volume(data_volume[0])
    assert data["status"] == "available" and data["attachments"] == []
    stack.volumes("DELETE", f"/volumes/{data_volume[0]}")
