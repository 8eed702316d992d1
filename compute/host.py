"""What the compute host does when soko stops and starts on it.

On stop (``soko down``, Ctrl-C of ``soko up``), before block takes the iSCSI targets away,
every guest of this cloud is shut down (agent or ACPI, forced off after ``stop_timeout``,
Nova's ``shutdown_timeout``) and its domain and secrets are removed: no QEMU is left
writing to a target that is gone. The instance rows keep what should run (``vm_state``) and
each volume's connection info, so on the next start the domains are defined again from the
DB and the active ones started (Nova's ``resume_guests_state_on_host_boot``).
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from soko.common.db import session_scope
from soko.compute.drivers.base import HypervisorError, IscsiDisk, PowerState
from soko.compute.manager import ComputeManager
from soko.compute.models import Instance

log = logging.getLogger("soko.compute.host")

RESTORABLE = ("active", "stopped")  # instances whose domain must exist


def stop_guests(manager: ComputeManager) -> list[str]:
    """Shuts down (all at once) and undefines the domain of every instance in the DB; returns
    their ids. Domains of the prefix that the DB does not know are another cloud's: left."""
    ours = sorted({i.id for i in instances(manager)} & set(manager.driver.reconcile()))
    timeout = manager.settings.stop_timeout
    with ThreadPoolExecutor(max_workers=max(1, len(ours))) as pool:  # they mostly wait
        failures = list(pool.map(lambda name: shut_down(manager, name, timeout), ours))
    for name, failure in zip(ours, failures, strict=True):
        if failure:
            log.warning("instance %s: %s", name, failure)
    return ours


def shut_down(manager: ComputeManager, name: str, timeout: float) -> str | None:
    """One guest: a clean shutdown within ``timeout``, then its domain goes (forced off first
    if it is still running, whatever failed before)."""
    failures = []
    try:
        manager.driver.stop(name, timeout)
    except HypervisorError as exc:
        failures.append(f"clean shutdown failed: {exc}")
    try:
        manager.driver.undefine(name)
    except HypervisorError as exc:
        failures.append(f"removing its domain failed: {exc}")
    return "; ".join(failures) or None


def restore_domains(manager: ComputeManager, domains: dict[str, PowerState]) -> list[str]:
    """Defines again, from the DB, the domains of instances that should have one and have
    none (undefined by ``stop_guests``); returns their ids. Starting the active ones is
    left to the reconcile pass that follows, as after a host reboot."""
    restored = []
    for instance in instances(manager):
        if (instance.id in domains or instance.vm_state not in RESTORABLE
                or instance.task_state in ("spawning", "deleting")):
            continue
        attached = [a for a in manager.attachments(instance.id) if a.device and a.connection_info]
        boot = next((a for a in attached if a.boot), None)
        if boot is None:
            continue  # nothing to define it from: reconcile reports the domain vanished
        try:
            manager.driver.define(manager.spec_of(instance, IscsiDisk(boot.connection_info)))
            for a in attached:
                if not a.boot:
                    manager.driver.attach_disk(instance.id, IscsiDisk(a.connection_info),
                                               target=a.device)
        except HypervisorError as exc:
            log.warning("could not define instance %s again: %s", instance.id, exc)
            with contextlib.suppress(HypervisorError):  # not half of it
                manager.driver.undefine(instance.id)
            continue
        restored.append(instance.id)
    return restored


def instances(manager: ComputeManager) -> list[Instance]:
    with session_scope(manager.sessions) as s:
        return list(s.scalars(select(Instance)))

