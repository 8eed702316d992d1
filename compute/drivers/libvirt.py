"""The libvirt/QEMU hypervisor driver, through libvirt-python on ``qemu:///system``.

Instances are persistent domains named ``<prefix><name>``, so the driver can tell its own
domains from anyone else's and find them again after a restart (``reconcile``). Volumes are
``<disk type='network'>`` iSCSI sources whose CHAP password lives in a libvirt secret, never in
domain XML. Guest filesystems are frozen through qemu-guest-agent for consistent snapshots; a
freeze is recorded on disk before it happens and always ends: by ``thaw``, by a watchdog timer,
by ``close``, or, after a crash, by ``reconcile``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import libvirt
import libvirt_qemu

from soko.common.durable import atomic_write, makedirs_durable
from soko.common.procs import ensure_daemon, pid_alive
from soko.compute.drivers import libvirt_xml as lx
from soko.compute.drivers.base import (
    AgentUnavailable,
    Disk,
    HypervisorError,
    InstanceNotFound,
    InstanceSpec,
    IscsiDisk,
    PowerState,
)

log = logging.getLogger(__name__)

# libvirt prints every error to stderr by default; they are raised as libvirtError anyway.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

LIBVIRT_RUN_DIR = Path("/run/libvirt")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}
# Through the guest agent first (the test guest has no ACPI daemon), ACPI if there is none.
POLITE = libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT | libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
AGENT_TIMEOUT = 10  # seconds libvirt waits for a guest agent reply
QMP_QUERY_KVM = '{"execute":"qmp_capabilities"}\n{"execute":"query-kvm"}\n{"execute":"quit"}\n'


def unix_socket_accepts(path: Path) -> bool:
    """True when a daemon listens on ``path`` (a stale socket file refuses the connection)."""
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def ensure_libvirt_daemons(log_dir: Path) -> None:
    """Starts virtlogd (which writes serial console logs) and libvirtd unless they run."""
    for exe, sock in (("virtlogd", "virtlogd-sock"), ("libvirtd", "libvirt-sock")):
        path = LIBVIRT_RUN_DIR / sock
        ensure_daemon(exe, [shutil.which(exe) or f"/usr/sbin/{exe}"], log_path=log_dir / f"{exe}.log",
                      ready=lambda path=path: unix_socket_accepts(path), timeout=60)


@functools.cache
def kvm_usable(timeout: float = 3.0) -> bool:
    """Whether QEMU can use KVM here. Probed, not assumed: /dev/kvm can exist while KVM hangs
    or only runs special guests, so the probe runs under a timeout and is killed after it."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or shutil.which("qemu-system-x86_64") is None:
        return False
    # PVM ("pagetable VM") is a KVM flavour for nesting without hardware virtualisation: it
    # only runs PVM-enabled guest kernels, and a BIOS boot dies in its instruction emulator.
    if Path("/sys/module/kvm_pvm").exists():
        return False
    argv = ["qemu-system-x86_64", "-machine", "none,accel=kvm", "-nodefaults", "-no-user-config",
            "-display", "none", "-qmp", "stdio"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(QMP_QUERY_KVM, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)
        return False
    return '"enabled": true' in out


def choose_virt_type(setting: str) -> str:
    """libvirt's domain type from the config value ``auto``, ``kvm`` or ``qemu`` (TCG)."""
    if setting == "auto":
        return "kvm" if kvm_usable() else "qemu"
    if setting not in ("kvm", "qemu"):
        raise HypervisorError(f"virt_type must be auto, kvm or qemu, not {setting!r}")
    return setting


def no_such_domain(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


class LibvirtDriver:
    """A ``Hypervisor`` on libvirt. ``state_dir`` holds console logs and freeze records."""

    def __init__(self, state_dir: Path, *, uri: str = "qemu:///system", prefix: str = "soko-",
                 virt_type: str = "auto"):
        self.prefix = prefix
        self.console_dir = Path(state_dir) / "console"
        self.freeze_dir = Path(state_dir) / "frozen"
        makedirs_durable(self.console_dir)
        makedirs_durable(self.freeze_dir)
        if uri.startswith("qemu:///"):
            ensure_libvirt_daemons(Path(state_dir) / "logs")
        self.virt_type_setting = virt_type
        self.conn = libvirt.open(uri)
        self._watchdogs: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()

    @functools.cached_property
    def virt_type(self) -> str:
        """Chosen when a domain is first defined: the KVM probe costs seconds where KVM
        hangs, which stopping guests (``soko down``) need not pay."""
        return choose_virt_type(self.virt_type_setting)

    # ------------------------------------------------------------------ names and lookups

    def domain_name(self, name: str) -> str:
        if not NAME_RE.match(name):
            raise HypervisorError(f"bad instance name {name!r}: letters, digits, '_.-', at most 63")
        return self.prefix + name

    def console_path(self, name: str) -> Path:
        return self.console_dir / f"{self.domain_name(name)}.log"

    def _domain(self, name: str) -> libvirt.virDomain:
        try:
            return self.conn.lookupByName(self.domain_name(name))
        except libvirt.libvirtError as exc:
            if no_such_domain(exc):
                raise InstanceNotFound(f"no instance {name!r}") from None
            raise HypervisorError(f"looking up {name!r}: {exc}") from None

    # ------------------------------------------------------------------ lifecycle

    def spawn(self, spec: InstanceSpec) -> None:
        self.define(spec)
        try:
            self.start(spec.name)
        except HypervisorError:
            self.delete(spec.name)
            raise

    def define(self, spec: InstanceSpec) -> None:
        """Defines the domain (and the secrets of its iSCSI disks) without starting it."""
        domain = self.domain_name(spec.name)
        with contextlib.suppress(InstanceNotFound):
            self._domain(spec.name)
            raise HypervisorError(f"instance {spec.name!r} already exists")
        if not spec.disks:
            raise HypervisorError("an instance needs a boot disk")
        try:
            disks, used = [], set()
            for disk in spec.disks:
                target = lx.next_target(used)
                disks.append(self._disk_element(domain, disk, target, boot_order=1 if not used else None))
                used.add(target)
            xml = lx.domain_xml(spec, domain=domain, virt_type=self.virt_type,
                                console_log=self.console_path(spec.name), disks=disks)
            self.conn.defineXML(xml)
        except (libvirt.libvirtError, HypervisorError) as exc:
            self._forget(spec.name)
            raise HypervisorError(f"defining {spec.name!r} failed: {exc}") from None

    def start(self, name: str) -> None:
        dom = self._domain(name)
        if not dom.isActive():
            self._call(dom.create, f"starting {name!r}")

    def stop(self, name: str, timeout: float = 60.0) -> None:
        dom = self._domain(name)
        if not dom.isActive():
            return
        self._end_freeze(name)
        with contextlib.suppress(libvirt.libvirtError):  # no agent and no ACPI: forced below
            dom.shutdownFlags(POLITE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not dom.isActive():
                return
            time.sleep(0.2)
        log.warning("instance %s did not shut down within %.0f s; forcing it off", name, timeout)
        self._destroy(dom)

    def reboot(self, name: str, hard: bool = False) -> None:
        """Soft: the guest reboots itself (agent, else ACPI). Hard: power cycle, which also
        recovers a hung guest and applies changed disk definitions."""
        dom = self._domain(name)
        self._end_freeze(name)
        if hard:
            self._destroy(dom)
            self._call(dom.create, f"starting {name!r}")
        else:
            self._call(lambda: dom.reboot(POLITE), f"rebooting {name!r}")

    def delete(self, name: str) -> None:
        self.undefine(name)
        self.console_path(name).unlink(missing_ok=True)

    def undefine(self, name: str) -> None:
        """Forces the domain off and removes it with its secrets, keeping its console log:
        for a host stop, after which the service defines it again from its own records."""
        try:
            dom = self._domain(name)
        except InstanceNotFound:
            dom = None
        if dom is not None:
            self._end_freeze(name)
            self._destroy(dom)
            flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                     | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            self._call(lambda: dom.undefineFlags(flags), f"undefining {name!r}")
        self._forget(name)

    def state(self, name: str) -> PowerState:
        state, _reason = self._domain(name).state()
        return POWER_STATES.get(state, PowerState.NOSTATE)

    def _destroy(self, dom: libvirt.virDomain) -> None:
        try:
            dom.destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:  # already off
                raise HypervisorError(f"forcing {dom.name()} off: {exc}") from None

    def _forget(self, name: str) -> None:
        """Removes the secrets and freeze record of an instance that has no domain (any more)."""
        domain = self.domain_name(name)
        for secret in self.conn.listAllSecrets(0):
            if (secret.usageType() == libvirt.VIR_SECRET_USAGE_TYPE_ISCSI
                    and secret.usageID().startswith(domain + ":")):
                secret.undefine()
        (self.freeze_dir / domain).unlink(missing_ok=True)

    @staticmethod
    def _call(fn, what: str):
        try:
            return fn()
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"{what}: {exc}") from None

    # ------------------------------------------------------------------ disks

    def _disk_element(self, domain: str, disk: Disk, target: str, boot_order: int | None = None):
        secret_uuid = None
        if isinstance(disk, IscsiDisk) and lx.uses_chap(disk.connection_info):
            secret_uuid = self._define_secret(domain, disk.connection_info)
        return lx.disk_element(disk, target, secret_uuid=secret_uuid, boot_order=boot_order)

    def _define_secret(self, domain: str, info) -> str:
        """A libvirt secret holding the CHAP password; reused if this volume already has one."""
        usage = lx.secret_usage(domain, info)
        try:
            secret = self.conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_ISCSI, usage)
        except libvirt.libvirtError:
            secret = self.conn.secretDefineXML(lx.secret_xml(usage))
        try:
            secret.setValue(str(info["auth_password"]).encode())
        except KeyError:
            secret.undefine()
            raise HypervisorError("CHAP connection info without auth_password") from None
        return secret.UUIDString()

    def attach_disk(self, name: str, disk: Disk, target: str | None = None) -> str:
        dom = self._domain(name)
        used = set(lx.disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)))
        target = target or lx.next_target(used)
        if target in used:
            raise HypervisorError(f"instance {name!r} already has a disk {target}")
        element = self._disk_element(dom.name(), disk, target)
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0)
        try:
            dom.attachDeviceFlags(lx.to_string(element), flags)
        except libvirt.libvirtError as exc:
            self._undefine_secrets(element)
            raise HypervisorError(f"attaching {target} to {name!r}: {exc}") from None
        return target

    def detach_disk(self, name: str, target: str, timeout: float = 30.0) -> None:
        """Detaches live (waiting until the guest released the device) and persistently."""
        dom = self._domain(name)
        element = lx.disk_targets(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).get(target)
        if element is None:
            raise HypervisorError(f"instance {name!r} has no disk {target}")
        live = dom.isActive() and target in lx.disk_targets(dom.XMLDesc(0))
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if live else 0)
        self._call(lambda: dom.detachDeviceFlags(lx.to_string(element), flags), f"detaching {target}")
        deadline = time.monotonic() + timeout
        while live and target in lx.disk_targets(dom.XMLDesc(0)):
            if time.monotonic() > deadline:
                raise HypervisorError(f"the guest of {name!r} did not release {target} in {timeout:.0f} s")
            time.sleep(0.2)
        self._undefine_secrets(element)

    def _undefine_secrets(self, element) -> None:
        for uuid in lx.secret_uuids(element):
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.secretLookupByUUIDString(uuid).undefine()

    # ------------------------------------------------------------------ console and agent

    def console_log(self, name: str, max_bytes: int = 65536) -> str:
        path = self.console_path(name)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - max_bytes))
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def agent_command(self, name: str, command: str, arguments: dict | None = None,
                      timeout: float = 10.0) -> Any:
        """One qemu-guest-agent command; returns its ``return`` value."""
        message = {"execute": command, **({"arguments": arguments} if arguments is not None else {})}
        try:
            reply = libvirt_qemu.qemuAgentCommand(self._domain(name), json.dumps(message), int(timeout), 0)
        except libvirt.libvirtError as exc:
            raise AgentUnavailable(f"guest agent of {name!r}: {command}: {exc}") from None
        return json.loads(reply).get("return")

    def ping_agent(self, name: str, timeout: float = 5.0) -> bool:
        try:
            self.agent_command(name, "guest-ping", timeout=timeout)
        except AgentUnavailable:
            return False
        return True

    # ------------------------------------------------------------------ freeze

    def _agent_domain(self, name: str) -> libvirt.virDomain:
        """The domain, with a bound on how long libvirt waits for its agent (by default it
        would wait forever for a hung agent, and a thaw must never hang)."""
        dom = self._domain(name)
        with contextlib.suppress(libvirt.libvirtError):  # not running: the call itself will say
            dom.agentSetResponseTimeout(AGENT_TIMEOUT, 0)
        return dom

    def mountpoints(self, name: str, target: str) -> list[str]:
        """Where the guest mounted disk ``target`` (vdb...), as its agent reports."""
        try:
            fs_info = self._agent_domain(name).fsInfo(0)
        except libvirt.libvirtError as exc:
            raise AgentUnavailable(f"filesystems of {name!r}: {exc}") from None
        return [mountpoint for mountpoint, _dev, _fstype, disks in fs_info if target in disks]

    def freeze(self, name: str, mountpoints: list[str] | None = None, max_seconds: float = 60.0) -> int:
        """Freezes the guest's filesystems (or only ``mountpoints``); returns how many.

        The freeze is recorded durably first, so a crash between freeze and thaw is undone by
        the next ``reconcile``; a watchdog thaws after ``max_seconds`` if nobody else did.
        """
        dom = self._agent_domain(name)
        record = self.freeze_dir / dom.name()
        with self._lock:
            if dom.name() in self._watchdogs:
                raise HypervisorError(f"instance {name!r} is already frozen")
            atomic_write(record, json.dumps({"pid": os.getpid(), "until": time.time() + max_seconds,
                                             "mountpoints": mountpoints}).encode())
            try:
                count = dom.fsFreeze(mountpoints, 0)
            except libvirt.libvirtError as exc:
                with contextlib.suppress(libvirt.libvirtError):  # a partial freeze must not stay
                    dom.fsThaw(None, 0)
                record.unlink(missing_ok=True)
                raise AgentUnavailable(f"freezing {name!r}: {exc}") from None
            watchdog = threading.Timer(max_seconds, lambda: self._watchdog_thaw(name, watchdog))
            watchdog.daemon = True
            self._watchdogs[dom.name()] = watchdog
            watchdog.start()
        return count

    def thaw(self, name: str) -> int:
        """Thaws every frozen filesystem of the guest; the record goes only once that worked."""
        return self._thaw(name, watchdog=None)

    def _thaw(self, name: str, watchdog: threading.Timer | None) -> int:
        dom = self._agent_domain(name)
        with self._lock:
            current = self._watchdogs.get(dom.name())
            if watchdog is not None and current is not watchdog:
                return 0  # the freeze this watchdog guarded already ended
            if current is not None:
                current.cancel()
                del self._watchdogs[dom.name()]
            try:
                count = dom.fsThaw(None, 0)
            except libvirt.libvirtError as exc:
                raise AgentUnavailable(f"thawing {name!r}: {exc}") from None
            (self.freeze_dir / dom.name()).unlink(missing_ok=True)
        return count

    def _watchdog_thaw(self, name: str, watchdog: threading.Timer) -> None:
        try:
            if self._thaw(name, watchdog):
                log.warning("instance %s stayed frozen past its limit; thawed it", name)
        except HypervisorError:
            log.exception("watchdog could not thaw %s; reconcile will retry", name)

    def _end_freeze(self, name: str) -> None:
        """Thaws a recorded freeze before a power operation: a frozen guest cannot shut down
        cleanly, and its agent refuses most commands."""
        if (self.freeze_dir / self.domain_name(name)).exists():
            with contextlib.suppress(AgentUnavailable):
                self.thaw(name)

    # ------------------------------------------------------------------ reconcile

    def _abandoned(self, record: Path) -> bool:
        """A freeze whose process died, or that outlived its limit (its watchdog is gone too)."""
        try:
            freeze = json.loads(record.read_bytes())
            return not pid_alive(freeze["pid"]) or time.time() > freeze["until"]
        except (OSError, ValueError, KeyError, TypeError):
            return True

    def reconcile(self) -> dict[str, PowerState]:
        """Thaws abandoned freezes; returns every domain of this prefix with its power state."""
        for record in sorted(self.freeze_dir.iterdir()):
            if not record.name.startswith(self.prefix) or not self._abandoned(record):
                continue
            name = record.name[len(self.prefix):]
            try:
                self.thaw(name)
                log.warning("thawed %s, left frozen by an interrupted freeze", name)
            except InstanceNotFound:
                record.unlink(missing_ok=True)
            except AgentUnavailable as exc:
                log.warning("%s is recorded frozen and could not be thawed yet: %s", name, exc)
        return {dom.name()[len(self.prefix):]: POWER_STATES.get(dom.state()[0], PowerState.NOSTATE)
                for dom in self.conn.listAllDomains(0) if dom.name().startswith(self.prefix)}

    def close(self) -> None:
        """Ends every freeze this driver started, then closes the connection."""
        for domain in list(self._watchdogs):
            with contextlib.suppress(HypervisorError):
                self.thaw(domain[len(self.prefix):])
        self.conn.close()
