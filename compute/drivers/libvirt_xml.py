"""Domain, disk and secret XML for libvirt, built as element trees (names and paths are
escaped by the serializer, never pasted into strings).

CHAP passwords never appear here: an iSCSI disk refers to a libvirt secret by uuid, and the
secret's value is set through the secret API.
"""

from __future__ import annotations

import os
import string
import xml.etree.ElementTree as ET
from pathlib import Path

from soko.compute.drivers.base import Disk, FileDisk, HypervisorError, InstanceSpec, IscsiDisk

GUEST_AGENT_CHANNEL = "org.qemu.guest_agent.0"


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def to_string(element: ET.Element) -> str:
    return ET.tostring(element, encoding="unicode")


def iscsi_target(info) -> tuple[str, str, str]:
    """(host, port, "IQN/LUN") from os-brick connection info; LUN 0 on tgt is the controller,
    so the LUN is always given."""
    try:
        portal, iqn, lun = str(info["target_portal"]), str(info["target_iqn"]), int(info["target_lun"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HypervisorError(f"bad iSCSI connection info: {exc!r}") from None
    host, sep, port = portal.rpartition(":")
    if not sep or not port.isdigit():
        host, port = portal, "3260"
    return host.strip("[]"), port, f"{iqn}/{lun}"


def uses_chap(info) -> bool:
    method = str(info.get("auth_method") or "").upper()
    if method not in ("", "NONE", "CHAP"):
        raise HypervisorError(f"unsupported iSCSI auth_method {info.get('auth_method')!r}")
    return method == "CHAP"


def secret_usage(domain: str, info) -> str:
    """The libvirt secret usage id for one volume of one domain: unique, and findable by the
    domain's prefix when the domain's XML is gone."""
    return f"{domain}:{iscsi_target(info)[2]}"


def secret_xml(usage: str) -> str:
    # private='no': an operator (root on qemu:///system) can read it back, as with Nova's.
    secret = ET.Element("secret", ephemeral="no", private="no")
    sub(secret, "description", f"soko iSCSI CHAP secret {usage}")
    usage_el = sub(secret, "usage", type="iscsi")
    sub(usage_el, "target", usage)
    return to_string(secret)


def file_cache_mode(path: Path) -> str:
    """cache='none' (O_DIRECT, the guest's flushes go straight to storage) where the file's
    filesystem supports O_DIRECT; tmpfs does not, so there it is 'writethrough'."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError:
        return "writethrough"
    os.close(fd)
    return "none"


def disk_element(disk: Disk, target: str, *, secret_uuid: str | None = None,
                 boot_order: int | None = None) -> ET.Element:
    if isinstance(disk, FileDisk):
        element = ET.Element("disk", type="file", device="disk")
        sub(element, "driver", name="qemu", type=disk.format, cache=file_cache_mode(disk.path))
        sub(element, "source", file=str(disk.path))
    elif isinstance(disk, IscsiDisk):
        host, port, name = iscsi_target(disk.connection_info)
        element = ET.Element("disk", type="network", device="disk")
        sub(element, "driver", name="qemu", type="raw", cache="none")
        source = sub(element, "source", protocol="iscsi", name=name)
        sub(source, "host", name=host, port=port)
        if disk.connection_info.get("initiator"):  # the target's ACL admits only this name
            sub(sub(source, "initiator"), "iqn", name=str(disk.connection_info["initiator"]))
        if secret_uuid is not None:
            auth = sub(element, "auth", username=str(disk.connection_info["auth_username"]))
            sub(auth, "secret", type="iscsi", uuid=secret_uuid)
    else:
        raise HypervisorError(f"unsupported disk {disk!r}")
    sub(element, "target", dev=target, bus="virtio")
    if boot_order is not None:
        sub(element, "boot", order=str(boot_order))
    return element


def domain_xml(spec: InstanceSpec, *, domain: str, virt_type: str, console_log: Path,
               disks: list[ET.Element]) -> str:
    root = ET.Element("domain", type=virt_type)
    sub(root, "name", domain)
    sub(root, "uuid", spec.uuid)
    sub(root, "memory", str(spec.memory_mib), unit="MiB")
    sub(root, "vcpu", str(spec.vcpus))
    os_el = sub(root, "os")
    sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    # SeaBIOS and the boot loader print on the serial log too: boot failures are visible there.
    sub(os_el, "bios", useserial="yes")
    sub(sub(root, "features"), "acpi")
    sub(root, "clock", offset="utc")
    for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
        sub(root, event, action)
    devices = sub(root, "devices")
    devices.extend(disks)
    for spec_nic in spec.nics:
        nic = sub(devices, "interface", type="bridge")
        sub(nic, "source", bridge=spec_nic.bridge)
        if spec_nic.mac:
            sub(nic, "mac", address=spec_nic.mac)
        if spec_nic.tap:
            sub(nic, "target", dev=spec_nic.tap)
        sub(nic, "model", type="virtio")
        sub(nic, "rom", enabled="no")  # no iPXE: instances boot from their volume
    serial = sub(devices, "serial", type="pty")
    # append='off': each start begins a fresh log, so "the marker appeared" means this boot.
    sub(serial, "log", file=str(console_log), append="off")
    sub(serial, "target", port="0")
    sub(sub(devices, "console", type="pty"), "target", type="serial", port="0")
    channel = sub(devices, "channel", type="unix")
    sub(channel, "target", type="virtio", name=GUEST_AGENT_CHANNEL)
    sub(devices, "controller", type="usb", model="none")
    sub(devices, "memballoon", model="none")
    return to_string(root)


def disk_targets(domain_xml_text: str) -> dict[str, ET.Element]:
    """The domain's disks by guest device name (vda, vdb, ...)."""
    root = ET.fromstring(domain_xml_text)
    return {d.find("target").get("dev"): d for d in root.iterfind("./devices/disk")}


def next_target(used: set[str]) -> str:
    for letter in string.ascii_lowercase:
        if f"vd{letter}" not in used:
            return f"vd{letter}"
    raise HypervisorError("no free virtio disk name left (vda..vdz all used)")


def secret_uuids(disk: ET.Element) -> list[str]:
    return [s.get("uuid") for s in disk.iterfind("./auth/secret")]
