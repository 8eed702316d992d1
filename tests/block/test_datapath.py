"""The real data path: reflink pool on loop-backed XFS, tgtd, and QEMU's iSCSI client."""

from __future__ import annotations

import os
import socket
import time

import pytest

from soko.block import wiring
from soko.block.targets.base import volume_iqn
from soko.common.periodic import Periodic
from tests.block.iscsi import qemu_io, read_capacity
from tests.support import wait_for

pytestmark = pytest.mark.privileged

A = {"X-Auth-Token": "tok-a"}
HOST = "iqn.2026-11.org.test:host1"
INTRUDER = "iqn.2026-11.org.test:intruder"
MiB, GiB = 1 << 20, 1 << 30


def create(client, size=1, **extra) -> str:
    resp = client.simulate_post("/v3/proj-a/volumes", headers=A,
                                json={"volume": {"size": size, **extra}})
    assert resp.status_code == 202, resp.text
    return resp.json["volume"]["id"]


def attach(client, volume_id, initiator=HOST) -> dict:
    resp = client.simulate_post(f"/v3/proj-a/volumes/{volume_id}/action", headers=A,
                                json={"os-attach": {"connector": {"initiator": initiator}}})
    assert resp.status_code == 200, resp.text
    return resp.json["connection_info"]["data"]


def detach(client, volume_id) -> None:
    resp = client.simulate_post(f"/v3/proj-a/volumes/{volume_id}/action", headers=A,
                                json={"os-detach": {}})
    assert resp.status_code == 202, resp.text


def delete(client, volume_id) -> None:
    resp = client.simulate_delete(f"/v3/proj-a/volumes/{volume_id}", headers=A)
    assert resp.status_code == 202, resp.text


def targets(manager) -> set[str]:
    return {t.iqn for t in manager.target.tgtadm.targets()}


def test_write_detach_reattach_read_back(real_client, real_manager):
    volume_id = create(real_client, 1, name="pattern")
    data = attach(real_client, volume_id)
    qemu_io(data, HOST, "write -P 0xab 0 1M")
    qemu_io(data, HOST, f"write -P 0xcd {GiB - MiB} 1M")  # the last MiB too
    detach(real_client, volume_id)
    assert volume_iqn(volume_id) not in targets(real_manager)
    again = attach(real_client, volume_id)
    assert again["auth_password"] != data["auth_password"]
    qemu_io(again, HOST, "read -P 0xab 0 1M")
    qemu_io(again, HOST, f"read -P 0xcd {GiB - MiB} 1M")
    # The old credentials died with the old attachment.
    assert qemu_io(data, HOST, "read 0 4k", check=False).returncode != 0
    detach(real_client, volume_id)
    delete(real_client, volume_id)


def test_login_refused_without_chap_or_from_another_initiator(real_client):
    volume_id = create(real_client)
    data = attach(real_client, volume_id)
    no_chap = qemu_io(data, HOST, "read 0 4k", with_chap=False, check=False)
    assert no_chap.returncode != 0 and "Authentication failure" in no_chap.stderr
    intruder = qemu_io(data, INTRUDER, "read 0 4k", check=False)
    assert intruder.returncode != 0 and "Failed to log in" in intruder.stderr
    wrong = dict(data, auth_password="not-the-secret1")
    assert qemu_io(wrong, HOST, "read 0 4k", check=False).returncode != 0
    qemu_io(data, HOST, "read 0 4k")  # the rightful initiator still gets in
    detach(real_client, volume_id)
    delete(real_client, volume_id)


def test_clone_of_1gib_volume_is_instant_and_independent(real_client, real_manager):
    source = create(real_client, 1)
    with open(real_manager.pool.path(source), "r+b") as f:  # 64 MiB of data, fast to write
        f.write(b"\xab" * (64 * MiB))
        f.seek(GiB - MiB)
        f.write(b"\xee" * MiB)
        os.fsync(f.fileno())
    free_before = real_manager.pool.capacity().free_bytes
    started = time.monotonic()
    clone = create(real_client, 1, source_volid=source)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"clone took {elapsed:.2f} s"
    # Shared extents: the clone consumed (almost) no space.
    assert free_before - real_manager.pool.capacity().free_bytes < 4 * MiB
    data = attach(real_client, clone)
    qemu_io(data, HOST, "read -P 0xab 0 64M")
    qemu_io(data, HOST, f"read -P 0xee {GiB - MiB} 1M")
    qemu_io(data, HOST, "write -P 0x11 0 1M")
    detach(real_client, clone)
    with open(real_manager.pool.path(source), "rb") as f:
        assert f.read(MiB) == b"\xab" * MiB  # the source did not change
    for volume_id in (clone, source):
        delete(real_client, volume_id)


def test_extend_visible_through_iscsi(real_client):
    volume_id = create(real_client, 1)
    data = attach(real_client, volume_id)
    assert read_capacity(data, HOST) == GiB
    detach(real_client, volume_id)
    resp = real_client.simulate_post(f"/v3/proj-a/volumes/{volume_id}/action", headers=A,
                                     json={"os-extend": {"new_size": 3}})
    assert resp.status_code == 202
    data = attach(real_client, volume_id)
    assert read_capacity(data, HOST) == 3 * GiB
    qemu_io(data, HOST, f"write -P 0x5a {3 * GiB - MiB} 1M")
    detach(real_client, volume_id)
    delete(real_client, volume_id)


def test_delete_removes_file_target_account_and_frees_space(real_client, real_manager):
    free_before = real_manager.pool.capacity().free_bytes
    volume_id = create(real_client, 1)
    data = attach(real_client, volume_id)
    qemu_io(data, HOST, "write -P 0x77 0 32M")
    assert real_manager.pool.capacity().free_bytes < free_before - 30 * MiB
    detach(real_client, volume_id)
    delete(real_client, volume_id)
    assert not os.path.exists(real_manager.pool.path(volume_id))
    assert volume_iqn(volume_id) not in targets(real_manager)
    accounts = real_manager.target.tgtadm.run("--mode", "account", "--op", "show")
    assert data["auth_username"] not in accounts
    assert real_manager.pool.capacity().free_bytes >= free_before - MiB
    assert real_client.simulate_get(f"/v3/proj-a/volumes/{volume_id}",
                                    headers=A).status_code == 404


@pytest.mark.parametrize("volume", [{"size": 0}, {"size": 17}, {"size": 1, "name": "n" * 256}])
def test_bad_create_leaves_no_file_target_or_row(real_client, real_manager, volume):
    files, exported = real_manager.pool.volumes(), targets(real_manager)
    rows = len(real_manager.list("proj-a"))
    resp = real_client.simulate_post("/v3/proj-a/volumes", headers=A, json={"volume": volume})
    assert resp.status_code == 400
    assert real_manager.pool.volumes() == files and targets(real_manager) == exported
    assert len(real_manager.list("proj-a")) == rows


def test_tgtd_killed_service_reexports_and_data_path_works(real_client, real_manager):
    volume_id = create(real_client, 1)
    data = attach(real_client, volume_id)
    qemu_io(data, HOST, "write -P 0x42 0 1M")
    reconciler = Periodic("block-reconcile", 0.3, lambda: wiring.reconcile_unless_busy(real_manager))
    try:
        pid = real_manager.target.daemon_pid()
        os.kill(pid, 9)
        wait_for(lambda: real_manager.target.daemon_pid() not in (None, pid), timeout=20,
                 what="tgtd restarted by the reconcile loop")
        wait_for(lambda: volume_id in real_manager.target.exported(), timeout=20,
                 what="the in-use volume re-exported")
    finally:
        reconciler.stop()
    qemu_io(data, HOST, "read -P 0x42 0 1M")  # same credentials, same ACL
    detach(real_client, volume_id)
    delete(real_client, volume_id)


def test_reconcile_recovers_steps_of_a_dead_process(real_client, real_manager):
    """A create and an attach interrupted by a crash (owner pid gone) are undone."""
    from sqlalchemy import update

    from soko.block.models import Volume
    from soko.common.db import session_scope

    creating = create(real_client, 1)
    attaching = create(real_client, 1)
    data = attach(real_client, attaching)
    dead = f"{socket.gethostname()}:999999999:0"
    with session_scope(real_manager.sessions) as s:
        s.execute(update(Volume).where(Volume.id == creating)
                  .values(status="creating", owner=dead))
        s.execute(update(Volume).where(Volume.id == attaching)
                  .values(status="attaching", owner=dead))
    real_manager.reconcile()
    assert real_manager.pool.size(creating) is None
    assert real_client.simulate_get(f"/v3/proj-a/volumes/{creating}", headers=A).status_code == 404
    assert real_manager.get("proj-a", attaching).status == "available"
    assert attaching not in real_manager.target.exported()
    assert qemu_io(data, HOST, "read 0 4k", check=False).returncode != 0
    delete(real_client, attaching)


def test_a_tgtd_soko_stops_leaves_no_socket_or_lock_file(tmp_path):
    """tgtd itself leaves /var/run/tgtd/socket.N and its lock when it stops; stale files
    would also make ``unused_control_port`` skip that port for good."""
    from soko.block.targets.tgt import TgtTarget, control_files, unused_control_port
    from tests.support import free_port

    target = TgtTarget(portal=f"127.0.0.1:{free_port()}", control_port=unused_control_port(),
                       state_dir=tmp_path, backing_store="rdwr")
    target.ensure_running()
    assert all(path.exists() for path in control_files(target.control_port))
    target.stop_daemon()
    assert target.daemon_pid() is None
    assert [p for p in control_files(target.control_port) if p.exists()] == []
