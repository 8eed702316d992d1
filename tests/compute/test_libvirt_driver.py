"""The libvirt driver against real libvirtd/QEMU and the real test guest.

Boots are expensive under TCG, so one instance serves the module: it boots once, gets a data
disk, is frozen and thawed, rebooted, and stopped and started. Each test still sets up what it
needs through fixtures, so any one of them runs alone. iSCSI disks are checked without a boot
(tgtd belongs to the block tests).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from soko.compute.drivers.base import (
    AgentUnavailable,
    FileDisk,
    Hypervisor,
    HypervisorError,
    InstanceNotFound,
    InstanceSpec,
    IscsiDisk,
    PowerState,
)
from soko.image.guest_files import (
    DISK_READY_MARKER,
    READY_MARKER,
    WRITER_ACKED,
    WRITER_RECORDS,
    verify_writer_records,
)
from tests.compute.conftest import boot_disk, guest_exec, timed_boot, wait_console

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def spec(name: str, *disks, memory_mib: int = 192) -> InstanceSpec:
    return InstanceSpec(name=name, uuid=str(uuid.uuid4()), vcpus=1, memory_mib=memory_mib, disks=disks)


@pytest.fixture(scope="module")
def instance(driver, guest_image, tmp_path_factory) -> str:
    """A running test guest, booted once for the module."""
    name = "vm1"
    disk = boot_disk(guest_image, tmp_path_factory.mktemp("vm1"))
    timed_boot(driver, name, lambda: driver.spawn(spec(name, FileDisk(disk))))
    assert driver.ping_agent(name, timeout=10)
    yield name
    driver.delete(name)


@pytest.fixture(scope="module")
def data_disk(driver, instance, tmp_path_factory) -> str:
    """A blank disk hot-plugged into the instance; returns its mountpoint in the guest."""
    blank = tmp_path_factory.mktemp("vm1-data") / "data.img"
    with open(blank, "wb") as f:
        f.truncate(32 << 20)
    target = driver.attach_disk(instance, FileDisk(blank))
    wait_console(driver, instance, f"{DISK_READY_MARKER} dev=/dev/{target}", timeout=60)
    return f"/mnt/{target}"


def mounts(driver, name: str) -> str:
    code, out = guest_exec(driver, name, "/bin/cat", "/proc/mounts")
    assert code == 0
    return out


def test_guest_boots_to_its_ready_marker_with_a_running_agent(driver, instance):
    log = driver.console_log(instance)
    marker = log[log.index(READY_MARKER):].splitlines()[0]
    assert "ga=running" in marker
    assert driver.state(instance) is PowerState.RUNNING
    assert driver.reconcile()[instance] is PowerState.RUNNING


def test_driver_conforms_to_the_hypervisor_protocol(driver):
    assert isinstance(driver, Hypervisor)


def test_hot_plugged_blank_disk_is_formatted_and_mounted(driver, instance, data_disk):
    assert f" {data_disk} ext4 rw" in mounts(driver, instance)
    assert driver.mountpoints(instance, data_disk.removeprefix("/mnt/")) == [data_disk]


def test_detach_releases_the_disk_in_the_guest_and_in_the_definition(driver, instance, tmp_path):
    # Formatted on the host with a file in it: the guest must mount it as it is, not reformat.
    content = tmp_path / "content"
    content.mkdir()
    (content / "hello").write_text("from the host\n")
    disk = tmp_path / "formatted.img"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(content), str(disk), "16M"], check=True)
    target = driver.attach_disk(instance, FileDisk(disk))
    wait_console(driver, instance, f"{DISK_READY_MARKER} dev=/dev/{target}", timeout=60)
    assert guest_exec(driver, instance, "/bin/cat", f"/mnt/{target}/hello") == (0, "from the host\n")

    driver.detach_disk(instance, target)
    wait_console(driver, instance, f"SOKO-DISK-REMOVED dev=/dev/{target}", timeout=30)
    assert f"/mnt/{target} " not in mounts(driver, instance)
    with pytest.raises(HypervisorError, match="no disk"):
        driver.detach_disk(instance, target)


def start_writer(driver, name: str, directory: str) -> None:
    code, _ = guest_exec(driver, name, "/bin/sh", "-c",
                         f"soko-writer {directory} 0.05 </dev/null >/dev/null 2>&1 &")
    assert code == 0


def acked(driver, name: str) -> int:
    code, out = guest_exec(driver, name, "/bin/cat", WRITER_ACKED)
    return int(out) if code == 0 and out.strip() else 0


def test_freeze_stalls_writes_and_thaw_loses_no_acknowledged_record(driver, instance, data_disk):
    start_writer(driver, instance, data_disk)
    deadline = time.monotonic() + 30
    while acked(driver, instance) < 5:
        assert time.monotonic() < deadline, "the writer never acknowledged a record"
        time.sleep(0.2)
    acked_before = acked(driver, instance)
    hold = 2.0
    try:
        assert driver.freeze(instance, [data_disk]) == 1
        assert driver.agent_command(instance, "guest-fsfreeze-status") == "frozen"
        time.sleep(hold)
    finally:
        assert driver.thaw(instance) == 1
    assert driver.agent_command(instance, "guest-fsfreeze-status") == "thawed"
    time.sleep(0.5)
    guest_exec(driver, instance, "/bin/sh", "-c", "kill $(cat /run/soko-writer.pid)")
    code, records = guest_exec(driver, instance, "/bin/cat", f"{data_disk}/{WRITER_RECORDS}")
    assert code == 0
    assert verify_writer_records(records) >= acked_before
    uptimes = [float(line.split()[1]) for line in records.splitlines()]
    assert max(b - a for a, b in zip(uptimes, uptimes[1:], strict=False)) >= hold * 0.8


def test_freeze_nobody_thaws_is_thawed_by_the_watchdog(driver, instance):
    driver.freeze(instance, max_seconds=1.0)
    assert driver.agent_command(instance, "guest-fsfreeze-status") == "frozen"
    deadline = time.monotonic() + 15
    while driver.agent_command(instance, "guest-fsfreeze-status") != "thawed":
        assert time.monotonic() < deadline, "the watchdog did not thaw the guest"
        time.sleep(0.2)
    assert not any(driver.freeze_dir.iterdir())


def test_freeze_left_by_a_crashed_process_is_thawed_by_reconcile(driver, instance):
    """The freezing process dies (SIGKILL) mid-freeze; the next reconcile thaws the guest."""
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from soko.compute.drivers.libvirt import LibvirtDriver
        d = LibvirtDriver(Path({str(driver.freeze_dir.parent)!r}), prefix={driver.prefix!r})
        d.freeze({instance!r}, max_seconds=600)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    # A live freeze of a live process is not reconcile's to end.
    driver.freeze(instance, max_seconds=60)
    driver.reconcile()
    assert driver.agent_command(instance, "guest-fsfreeze-status") == "frozen"
    driver.thaw(instance)

    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2])
    assert proc.returncode == -9, proc.stderr
    assert driver.agent_command(instance, "guest-fsfreeze-status") == "frozen"
    driver.reconcile()
    assert driver.agent_command(instance, "guest-fsfreeze-status") == "thawed"
    assert not any(driver.freeze_dir.iterdir())


def test_soft_reboot_boots_the_guest_again(driver, instance):
    boots = driver.console_log(instance, max_bytes=1 << 20).count(READY_MARKER)
    timed_boot(driver, instance, lambda: driver.reboot(instance), count=boots + 1)
    assert driver.state(instance) is PowerState.RUNNING


def test_stop_then_start(driver, instance, data_disk):
    driver.stop(instance, timeout=60)
    assert driver.state(instance) is PowerState.SHUTOFF
    driver.stop(instance)  # already off: nothing to do
    timed_boot(driver, instance, lambda: driver.start(instance))
    # The hot-plugged disk was attached persistently too: it comes back, formatted already.
    assert f" {data_disk} ext4 rw" in mounts(driver, instance)


def test_forced_stop_hard_reboot_and_delete_of_a_running_instance(driver, guest_image, tmp_path):
    driver.spawn(spec("short-lived", FileDisk(boot_disk(guest_image, tmp_path))))
    wait_console(driver, "short-lived", "SeaBIOS", timeout=60)
    with pytest.raises(AgentUnavailable):  # still in the BIOS: no agent to freeze with
        driver.freeze("short-lived")
    assert not any(driver.freeze_dir.iterdir())
    driver.stop("short-lived", timeout=1)  # nothing in the guest answers: forced off
    assert driver.state("short-lived") is PowerState.SHUTOFF
    driver.reboot("short-lived", hard=True)  # a power cycle also starts a stopped instance
    assert driver.state("short-lived") is PowerState.RUNNING
    driver.delete("short-lived")
    with pytest.raises(InstanceNotFound):
        driver.state("short-lived")
    assert not driver.console_path("short-lived").exists()
    assert "short-lived" not in driver.reconcile()
    driver.delete("short-lived")  # idempotent


CHAP = {"target_portal": "127.0.0.1:3260", "target_iqn": "iqn.2026-11.dev.soko:volume-1",
        "target_lun": 1, "auth_method": "CHAP", "auth_username": "soko-user",
        "auth_password": "s3cret-not-in-xml"}


def soko_secrets(driver) -> dict[str, str]:
    """usage id -> value of every libvirt secret this driver made."""
    return {s.usageID(): s.value().decode() for s in driver.conn.listAllSecrets(0)
            if s.usageID().startswith(driver.prefix)}


def test_iscsi_disks_keep_the_chap_password_in_a_libvirt_secret(driver):
    driver.define(spec("iscsi", IscsiDisk(CHAP)))
    try:
        xml = driver.conn.lookupByName(driver.domain_name("iscsi")).XMLDesc(0)
        assert CHAP["auth_password"] not in xml
        disk = ET.fromstring(xml).find("./devices/disk")
        assert disk.get("type") == "network"
        source = disk.find("source")
        assert (source.get("protocol"), source.get("name")) == ("iscsi", f"{CHAP['target_iqn']}/1")
        assert disk.find("source/host").attrib == {"name": "127.0.0.1", "port": "3260"}
        assert disk.find("auth").get("username") == "soko-user"
        secret_uuid = disk.find("auth/secret").get("uuid")
        assert driver.conn.secretLookupByUUIDString(secret_uuid).value() == b"s3cret-not-in-xml"

        # A second volume, attached to the stopped instance: only its definition changes.
        second = {**CHAP, "target_iqn": "iqn.2026-11.dev.soko:volume-2", "auth_password": "other"}
        assert driver.attach_disk("iscsi", IscsiDisk(second)) == "vdb"
        assert sorted(soko_secrets(driver).values()) == ["other", "s3cret-not-in-xml"]
        driver.detach_disk("iscsi", "vdb")
        assert list(soko_secrets(driver).values()) == ["s3cret-not-in-xml"]
        assert driver.state("iscsi") is PowerState.SHUTOFF
        with pytest.raises(AgentUnavailable, match="not running"):
            driver.freeze("iscsi")
    finally:
        driver.delete("iscsi")
    assert soko_secrets(driver) == {}
    assert "iscsi" not in driver.reconcile()


def test_a_failed_define_leaves_no_secret_behind(driver):
    bad = {**CHAP, "target_iqn": "iqn.2026-11.dev.soko:volume-3"}
    with pytest.raises(HypervisorError, match="defining 'bad' failed"):
        driver.define(spec("bad", IscsiDisk(bad), FileDisk(Path("/nonexistent.img"), format="vmdk-ish")))
    assert soko_secrets(driver) == {}
    with pytest.raises(InstanceNotFound):
        driver.state("bad")
