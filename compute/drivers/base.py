"""The seam between the compute service and a hypervisor: what an instance looks like to a
driver, and the operations the service needs (Nova's virt-driver idea, cut to what soko uses).

Instances are named by the service (its instance ids); a driver maps them to its own objects
(libvirt domains ``<prefix><name>``) so it can tell its instances from anyone else's.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


class HypervisorError(RuntimeError):
    """A hypervisor operation failed; the message says which and why."""


class InstanceNotFound(HypervisorError):
    """The hypervisor has no instance by that name."""


class AgentUnavailable(HypervisorError):
    """The guest agent did not answer (not installed, not started yet, or the guest is off)."""


class PowerState(enum.StrEnum):
    """Power states as Nova reports them."""

    RUNNING = "running"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"  # shutting down
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    SUSPENDED = "suspended"
    NOSTATE = "nostate"


@dataclass(frozen=True)
class FileDisk:
    """A disk backed by a local file (test images, a volume in a local pool)."""

    path: Path
    format: str = "raw"


@dataclass(frozen=True)
class IscsiDisk:
    """A volume exported over iSCSI, from the block service's connection info.

    ``connection_info`` is the Cinder/os-brick dict as the block service returns it:
    ``target_portal`` ("host:port"), ``target_iqn``, ``target_lun``, and for CHAP
    ``auth_method``, ``auth_username``, ``auth_password``.
    """

    connection_info: Mapping[str, Any]


Disk = FileDisk | IscsiDisk


@dataclass(frozen=True)
class Nic:
    """A virtio NIC on a Linux bridge. A tenant network's port names the tap too: the
    network service's security-group chains match on that name (Neutron's linuxbridge)."""

    bridge: str
    mac: str | None = None
    tap: str | None = None


@dataclass(frozen=True)
class InstanceSpec:
    """What to boot: the first disk is the boot disk; the others are attached as data disks."""

    name: str
    uuid: str
    vcpus: int
    memory_mib: int
    disks: tuple[Disk, ...]
    nics: tuple[Nic, ...] = ()  # in order: the guest's eth0, eth1, ...


@runtime_checkable
class Hypervisor(Protocol):
    """What the compute service calls. Every ``name`` is the service's instance name."""

    def define(self, spec: InstanceSpec) -> None:
        """Defines the instance persistently, without starting it."""

    def spawn(self, spec: InstanceSpec) -> None:
        """Defines the instance and starts it; nothing is left behind if the start fails."""

    def start(self, name: str) -> None: ...

    def stop(self, name: str, timeout: float = 60.0) -> None:
        """Asks the guest to shut down; forces it off after ``timeout`` seconds."""

    def reboot(self, name: str, hard: bool = False) -> None: ...

    def delete(self, name: str) -> None:
        """Stops and undefines the instance and removes everything the driver made for it."""

    def undefine(self, name: str) -> None:
        """Like ``delete``, but keeps the console log: the service defines it again later."""

    def state(self, name: str) -> PowerState: ...

    def attach_disk(self, name: str, disk: Disk, target: str | None = None) -> str:
        """Attaches ``disk`` (live if running, and persistently); returns the guest device."""

    def detach_disk(self, name: str, target: str, timeout: float = 30.0) -> None: ...

    def console_log(self, name: str, max_bytes: int = 65536) -> str: ...

    def ping_agent(self, name: str, timeout: float = 5.0) -> bool: ...

    def mountpoints(self, name: str, target: str) -> list[str]:
        """Where the guest mounted disk ``target``: what to freeze to quiesce one volume."""

    def freeze(self, name: str, mountpoints: list[str] | None = None,
               max_seconds: float = 60.0) -> int:
        """Freezes guest filesystems; they are thawed after ``max_seconds`` whatever happens."""

    def thaw(self, name: str) -> int: ...

    def reconcile(self) -> dict[str, PowerState]:
        """Every instance this driver owns with its state; also undoes interrupted freezes."""

    def close(self) -> None: ...
