"""The compute API over real block storage and real libvirt, where no guest has to boot:
flavors, bad input that must leave nothing behind, and illegal transitions."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.block.iscsi import qemu_io

pytestmark = pytest.mark.privileged

OTHER_HOST = "iqn.2026-11.org.test:another-host"


def boot_body(volume_id: str, flavor: str = "m1.tiny", **mapping) -> dict:
    return {"server": {"name": "bad", "flavorRef": flavor, "block_device_mapping_v2": [
        {"boot_index": 0, "uuid": volume_id, "source_type": "volume",
         "destination_type": "volume", **mapping}]}}


@pytest.fixture
def nothing_new(stack):
    """Asserts that the test left no domain, server, export or secret behind."""
    domains, exports = set(stack.driver.reconcile()), stack.exported()
    secrets = {s.usageID() for s in stack.driver.conn.listAllSecrets(0)}
    yield
    assert set(stack.driver.reconcile()) == domains
    assert stack.exported() == exports
    assert {s.usageID() for s in stack.driver.conn.listAllSecrets(0)} == secrets
    assert stack.servers("GET").json()["servers"] == []


def test_default_flavors_and_admin_only_changes(stack):
    url = f"{stack.compute_url}/v2.1/flavors"
    names = {f["name"]: f for f in stack.call("GET", url + "/detail").json()["flavors"]}
    assert {"m1.tiny", "m1.small"} <= set(names)
    assert names["m1.tiny"]["vcpus"] == 1 and names["m1.tiny"]["ram"] == 512
    body = {"flavor": {"name": "t.custom", "vcpus": 2, "ram": 256}}
    assert stack.call("POST", url, json=body).status_code == 403  # a member
    created = stack.call("POST", url, "tok-admin", json=body)
    assert created.status_code == 200, created.text
    flavor_id = created.json()["flavor"]["id"]
    assert stack.call("POST", url, "tok-admin", json=body).status_code == 409  # same name
    assert stack.call("GET", f"{url}/{flavor_id}").json()["flavor"]["name"] == "t.custom"
    assert stack.call("DELETE", f"{url}/{flavor_id}").status_code == 403
    assert stack.call("DELETE", f"{url}/{flavor_id}", "tok-admin").status_code == 202
    assert stack.call("GET", f"{url}/{flavor_id}").status_code == 404
    bad = stack.call("POST", url, "tok-admin", json={"flavor": {"name": "x", "vcpus": 0,
                                                               "ram": 64}})
    assert bad.status_code == 400 and "vcpus" in bad.json()["error"]["message"]


def test_unknown_flavor_or_volume_is_a_400_and_leaves_nothing(stack, nothing_new):
    volume_id = stack.create_volume()
    try:
        resp = stack.servers("POST", json=boot_body(volume_id, flavor="m9.huge"))
        assert resp.status_code == 400 and "Flavor m9.huge" in resp.json()["error"]["message"]
        resp = stack.servers("POST", json=boot_body("4b0c5e0e-0000-4000-8000-00000000dead"))
        assert resp.status_code == 400
        assert "could not be found" in resp.json()["error"]["message"]
        assert stack.volume(volume_id)["status"] == "available"
    finally:
        stack.volumes("DELETE", f"/volumes/{volume_id}")


def test_booting_from_an_image_without_an_image_service_is_a_400(stack, nothing_new):
    resp = stack.servers("POST", json={"server": {
        "name": "x", "flavorRef": "1", "block_device_mapping_v2": [{
            "boot_index": 0, "uuid": "4b0c5e0e-0000-4000-8000-00000000cafe",
            "source_type": "image", "volume_size": 1}]}})
    assert resp.status_code == 400 and "no image service" in resp.json()["error"]["message"]


def test_another_projects_volume_is_not_found(stack, nothing_new):
    theirs = stack.create_volume(token="tok-b", project="proj-b")
    try:
        resp = stack.servers("POST", json=boot_body(theirs))
        assert resp.status_code == 400 and theirs in resp.json()["error"]["message"]
        assert stack.volume(theirs, "tok-b", "proj-b")["status"] == "available"
    finally:
        stack.volumes("DELETE", f"/volumes/{theirs}", "tok-b", "proj-b")


def test_a_volume_in_use_is_refused(stack, nothing_new):
    volume_id = stack.create_volume()
    resp = stack.volumes("POST", f"/volumes/{volume_id}/action", json={
        "os-attach": {"connector": {"initiator": OTHER_HOST}}})
    assert resp.status_code == 200
    data = resp.json()["connection_info"]["data"]
    try:
        resp = stack.servers("POST", json=boot_body(volume_id))
        assert resp.status_code == 400 and "in-use" in resp.json()["error"]["message"]
        qemu_io(data, OTHER_HOST, "read 0 4k")  # the other host's attachment is untouched
    finally:
        stack.volumes("POST", f"/volumes/{volume_id}/action", json={"os-detach": {}})
        stack.volumes("DELETE", f"/volumes/{volume_id}")


@pytest.mark.parametrize("body, message", [
    ({"server": {"name": "x", "flavorRef": "1"}}, "block_device_mapping_v2"),
    ({"server": {"name": "x", "flavorRef": "1", "imageRef": "abc"}}, "--boot-volume-size"),
    (boot_body("v", source_type="blank"), "source_type"),
    (boot_body("v", destination_type="local"), "destination_type"),
    (boot_body("v", delete_on_termination="yes"), "delete_on_termination"),
    ({"server": {"flavorRef": "1"}}, "name"),
    ({"srv": {}}, '{"server"'),
])
def test_malformed_create_bodies_are_400(stack, nothing_new, body, message):
    resp = stack.servers("POST", json=body)
    assert resp.status_code == 400, resp.text
    assert message in resp.json()["error"]["message"]


def test_unknown_server_and_bad_actions(stack):
    missing = "4b0c5e0e-0000-4000-8000-00000000beef"
    assert stack.servers("GET", f"/{missing}").status_code == 404
    assert stack.servers("DELETE", f"/{missing}").status_code == 404
    assert stack.servers("POST", f"/{missing}/action", json={"os-start": None}).status_code == 404
    resp = stack.servers("POST", f"/{missing}/action", json={"os-fly": {}})
    assert resp.status_code == 400 and "os-start" in resp.json()["error"]["message"]
    assert stack.servers("GET", token="tok-nobody").status_code == 401


def test_reconcile_reports_orphan_domains_and_never_destroys_them(stack):
    from soko.compute.drivers.base import FileDisk, InstanceSpec

    stray = "4b0c5e0e-0000-4000-8000-0000000000aa"
    stack.driver.define(InstanceSpec(name=stray, uuid=stray, vcpus=1, memory_mib=64,
                                     disks=(FileDisk(Path("/dev/null")),)))
    try:
        assert stack.compute.reconcile() == [stray]
        assert stray in stack.driver.reconcile()
    finally:
        stack.driver.delete(stray)


def test_a_task_whose_process_died_is_recovered(stack):
    """A build cut off by a crash (its owner process is gone) ends in error, and the
    instance can then be deleted; nothing else is touched."""
    from soko.common.db import session_scope
    from soko.compute.models import Instance

    dead = subprocess.Popen(["true"])
    dead.wait()
    server_id = "4b0c5e0e-0000-4000-8000-0000000000bb"
    with session_scope(stack.compute.sessions) as s:
        s.add(Instance(id=server_id, project_id="proj-a", user_id="u", name="cut-off",
                       flavor_id="1", vcpus=1, ram=512, vm_state="building",
                       task_state="spawning", owner=f"{socket.gethostname()}:{dead.pid}:1"))
    stack.compute.reconcile()
    server = stack.server(server_id)
    assert server["status"] == "ERROR" and "interrupted" in server["fault"]["message"]
    assert stack.servers("DELETE", f"/{server_id}").status_code == 204
    stack.wait_server(server_id)


def test_reconcile_starts_what_should_run_and_syncs_power_states(stack, tmp_path):
    """A domain with a blank disk (it sits in the BIOS: no boot needed to test power)."""
    from soko.common.db import session_scope
    from soko.compute.drivers.base import FileDisk, InstanceSpec, PowerState
    from soko.compute.models import Instance

    server_id = "4b0c5e0e-0000-4000-8000-0000000000cc"
    blank = tmp_path / "blank.img"
    blank.write_bytes(b"\0" * (1 << 20))
    stack.driver.define(InstanceSpec(name=server_id, uuid=server_id, vcpus=1, memory_mib=64,
                                     disks=(FileDisk(blank),)))
    with session_scope(stack.compute.sessions) as s:
        s.add(Instance(id=server_id, project_id="proj-a", user_id="u", name="power",
                       flavor_id="1", vcpus=1, ram=64, vm_state="active", power_state="running"))
    try:
        stack.compute.reconcile()  # not a service start: an active server found off stops
        assert stack.server(server_id)["status"] == "SHUTOFF"
        with session_scope(stack.compute.sessions) as s:
            s.get(Instance, server_id).vm_state = "active"
        stack.compute.reconcile(on_start=True)  # a service start: what should run, runs
        assert stack.driver.state(server_id) is PowerState.RUNNING
        assert stack.server(server_id)["status"] == "ACTIVE"
        stack.driver.conn.lookupByName(stack.driver.domain_name(server_id)).destroy()
        stack.compute.reconcile()
        server = stack.server(server_id)
        assert server["status"] == "SHUTOFF" and server["OS-EXT-STS:power_state"] == 4
    finally:
        assert stack.servers("DELETE", f"/{server_id}").status_code == 204
        stack.wait_server(server_id)
    assert server_id not in stack.driver.reconcile()


def test_host_stop_forces_off_a_guest_that_ignores_shutdown_and_leaves_other_domains(
        stack, tmp_path):
    """``soko down``'s compute step on a guest that never shuts down (a blank disk: it sits
    in the BIOS, which ignores ACPI and has no agent): forced off after ``stop_timeout``,
    its domain gone, its row still active (it starts again with the cloud). A domain of the
    prefix that the DB does not know is another cloud's: left running."""
    import dataclasses
    import time

    from soko.common.db import session_scope
    from soko.compute.drivers.base import FileDisk, InstanceSpec, PowerState
    from soko.compute.host import stop_guests
    from soko.compute.manager import ComputeManager
    from soko.compute.models import Instance

    ours, stray = "4b0c5e0e-0000-4000-8000-0000000000dd", "4b0c5e0e-0000-4000-8000-0000000000ee"
    for name in (ours, stray):
        blank = tmp_path / f"{name}.img"
        blank.write_bytes(b"\0" * (1 << 20))
        stack.driver.spawn(InstanceSpec(name=name, uuid=name, vcpus=1, memory_mib=64,
                                        disks=(FileDisk(blank),)))
    with session_scope(stack.compute.sessions) as s:
        s.add(Instance(id=ours, project_id="proj-a", user_id="u", name="deaf", flavor_id="1",
                       vcpus=1, ram=64, vm_state="active", power_state="running"))
    host = ComputeManager(sessions=stack.compute.sessions, driver=stack.driver,
                          settings=dataclasses.replace(stack.compute.settings, stop_timeout=2))
    try:
        began = time.monotonic()
        assert stop_guests(host) == [ours]
        assert 2 <= time.monotonic() - began < 15
        assert ours not in stack.driver.reconcile()
        assert stack.driver.state(stray) is PowerState.RUNNING
        assert stack.server(ours)["status"] == "ACTIVE"
    finally:
        for name in (ours, stray):
            stack.driver.delete(name)
        with session_scope(stack.compute.sessions) as s:
            s.delete(s.get(Instance, ours))


def test_a_volume_claimed_by_another_server_is_a_409(stack, nothing_new):
    """Two boots racing for one available volume: the second claim loses with a 409 (the
    first claim is written here directly, as if its request had won a moment earlier)."""
    from sqlalchemy import delete

    from soko.common.db import session_scope
    from soko.compute.models import Attachment, Instance

    volume_id = stack.create_volume()
    winner = "4b0c5e0e-0000-4000-8000-0000000000dd"
    with session_scope(stack.compute.sessions) as s:
        s.add(Instance(id=winner, project_id="proj-a", user_id="u", name="winner",
                       flavor_id="1", vcpus=1, ram=64, vm_state="building",
                       task_state="spawning"))
        s.flush()
        s.add(Attachment(volume_id=volume_id, server_id=winner, boot=True))
    try:
        resp = stack.servers("POST", json=boot_body(volume_id))
        assert resp.status_code == 409 and "another server" in resp.json()["error"]["message"]
        assert [s["id"] for s in stack.servers("GET").json()["servers"]] == [winner]
    finally:
        with session_scope(stack.compute.sessions) as s:
            s.execute(delete(Attachment).where(Attachment.server_id == winner))
            s.execute(delete(Instance).where(Instance.id == winner))
        stack.volumes("DELETE", f"/volumes/{volume_id}")
