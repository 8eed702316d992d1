"""Domain and disk XML, and the KVM probe: no libvirtd needed."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from soko.compute.drivers import libvirt_xml as lx
from soko.compute.drivers.base import FileDisk, HypervisorError, InstanceSpec, IscsiDisk, Nic

CHAP = {"target_portal": "10.0.0.5:3261", "target_iqn": "iqn.2026-11.dev.soko:v1", "target_lun": 1,
        "auth_method": "CHAP", "auth_username": "u", "auth_password": "p4ss"}


@pytest.mark.parametrize("portal, host, port", [
    ("10.0.0.5:3261", "10.0.0.5", "3261"),
    ("[fd00::5]:3260", "fd00::5", "3260"),
    ("storage.example", "storage.example", "3260"),
])
def test_portal_parsing(portal, host, port):
    assert lx.iscsi_target({**CHAP, "target_portal": portal}) == (host, port, "iqn.2026-11.dev.soko:v1/1")


def test_bad_connection_info_is_a_clear_error():
    with pytest.raises(HypervisorError, match="target_lun"):
        lx.iscsi_target({"target_portal": "h:1", "target_iqn": "iqn.x"})
    with pytest.raises(HypervisorError, match="auth_method"):
        lx.uses_chap({**CHAP, "auth_method": "kerberos"})
    assert not lx.uses_chap({**CHAP, "auth_method": None})


def test_iscsi_disk_refers_to_the_secret_and_never_holds_the_password():
    element = lx.disk_element(IscsiDisk(CHAP), "vdb", secret_uuid="8d8f1b0e-0000-4000-8000-000000000001")
    text = lx.to_string(element)
    assert "p4ss" not in text
    assert element.find("auth/secret").attrib == {"type": "iscsi", "uuid": "8d8f1b0e-0000-4000-8000-000000000001"}
    assert element.find("source").get("name") == "iqn.2026-11.dev.soko:v1/1"
    assert element.find("source/initiator") is None  # QEMU's default name unless one is given
    assert lx.secret_uuids(element) == ["8d8f1b0e-0000-4000-8000-000000000001"]


def test_iscsi_disk_logs_in_as_the_attachment_initiator():
    info = {**CHAP, "initiator": "iqn.2026-11.dev.soko:compute-host1"}
    element = lx.disk_element(IscsiDisk(info), "vda")
    assert element.find("source/initiator/iqn").get("name") == info["initiator"]


def test_domain_xml_has_serial_log_agent_channel_and_boot_disk(tmp_path: Path):
    disk = tmp_path / "boot.img"
    disk.write_bytes(b"\0" * 512)
    spec = InstanceSpec(name="x", uuid="6f7e5b1c-0000-4000-8000-000000000002", vcpus=1, memory_mib=128,
                        disks=(FileDisk(disk),), nics=(Nic(bridge="br-test", mac="52:54:00:00:00:01"),))
    root = ET.fromstring(lx.domain_xml(
        spec, domain="soko-x", virt_type="qemu", console_log=tmp_path / "c.log",
        disks=[lx.disk_element(spec.disks[0], "vda", boot_order=1)]))
    assert root.get("type") == "qemu" and root.findtext("name") == "soko-x"
    assert root.find("memory").attrib == {"unit": "MiB"} and root.findtext("memory") == "128"
    assert root.find("devices/serial/log").get("file") == str(tmp_path / "c.log")
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    assert root.find("devices/disk/boot").get("order") == "1"
    assert root.find("devices/interface/source").get("bridge") == "br-test"
    assert lx.next_target(set(lx.disk_targets(ET.tostring(root, encoding="unicode")))) == "vdb"


def test_kvm_probe_answers_quickly_and_virt_type_is_validated():
    libvirt_driver = pytest.importorskip("soko.compute.drivers.libvirt")
    began = time.monotonic()
    libvirt_driver.kvm_usable.cache_clear()
    assert libvirt_driver.kvm_usable() in (True, False)
    assert time.monotonic() - began < 6
    assert libvirt_driver.choose_virt_type("qemu") == "qemu"
    with pytest.raises(HypervisorError, match="virt_type"):
        libvirt_driver.choose_virt_type("xen")
