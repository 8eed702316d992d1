"""Reconcile: makes the compute DB and the hypervisor agree, on service start and every
``reconcile_interval`` seconds (Nova's ``_sync_power_states`` and its start-up cleanup).

- A task whose process died: a build fails (error), a delete is redone (the server stays in
  error if its volumes cannot be released without the user's token), others end and the
  instance takes the state its domain is in.
- On service start, the domains ``soko down`` removed are defined again from the DB
  (``compute/host.py``) and instances that should run are started (after a host reboot).
- Always: an active instance whose domain is off (its QEMU died or the guest shut itself
  down) becomes stopped, a stopped one found running becomes active, one whose domain
  vanished becomes error; domains of our prefix unknown to the DB are reported, never
  destroyed.
- Always: ports bound to this host for a server that does not exist (compute died between
  making them and writing the server row) are deleted with compute's service user, once
  older than ``orphan_port_grace`` (a younger one may be a create in flight).
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from soko.block.owner import owner_alive
from soko.common.db import session_scope
from soko.compute.clients import RemoteError
from soko.compute.drivers.base import HypervisorError, PowerState
from soko.compute.host import restore_domains
from soko.compute.manager import OFF, Caller, ComputeManager
from soko.compute.models import Instance, utcnow

log = logging.getLogger("soko.compute.reconcile")


def reconcile(manager: ComputeManager, *, on_start: bool = False) -> list[str]:
    """One pass; returns the orphan domains."""
    domains = manager.driver.reconcile()
    if on_start and restore_domains(manager, domains):
        domains = manager.driver.reconcile()
    with session_scope(manager.sessions) as s:
        instances = list(s.scalars(select(Instance)))
    for instance in instances:
        if instance.task_state is not None:
            if instance.owner is None or not owner_alive(instance.owner):
                recover(manager, instance, domains.get(instance.id))
            continue
        sync(manager, instance, domains.get(instance.id), on_start)
    remove_orphan_ports(manager)
    orphans = sorted(set(domains) - {i.id for i in instances})
    for name in orphans:
        log.warning("domain %s%s is not an instance soko knows: left alone",
                    getattr(manager.driver, "prefix", ""), name)
    return orphans


def remove_orphan_ports(manager: ComputeManager) -> None:
    """The instances are read before the ports: a server written in between has ports
    younger than the grace."""
    with session_scope(manager.sessions) as s:
        known = set(s.scalars(select(Instance.id)))
    try:
        manager.networking.remove_orphan_ports(known, manager.settings.orphan_port_grace)
    except RemoteError as exc:
        log.warning("orphan ports not checked: the network service answered %s", exc)


def recover(manager: ComputeManager, instance: Instance, power: PowerState | None) -> None:
    log.warning("instance %s was left %s by a process that died", instance.id,
                instance.task_state)
    if instance.task_state == "deleting":
        # The domain goes; without the user's token the volumes cannot be released, so
        # the server is left in error for the user to delete again.
        manager.tear_down(Caller(instance.project_id, instance.user_id, token=""), instance.id)
    elif instance.task_state == "spawning":
        manager.finish_task(instance.id, "spawning", "error", fault={
            "code": 500, "message": "the build was interrupted (service restart)",
            "created": utcnow().isoformat()})
    else:
        vm_state = "active" if power is PowerState.RUNNING else (
            "stopped" if power in OFF else "error")
        manager.finish_task(instance.id, instance.task_state, vm_state,
                     power_state=(power or PowerState.NOSTATE).value)


def sync(manager: ComputeManager, instance: Instance, power: PowerState | None,
     on_start: bool) -> None:
    values: dict = {}
    if power is None:
        if instance.vm_state in ("active", "stopped"):
            log.warning("instance %s has no domain any more", instance.id)
            values = dict(vm_state="error", power_state=PowerState.NOSTATE.value,
                          fault={"code": 500, "message": "the domain vanished",
                                 "created": utcnow().isoformat()})
    elif instance.vm_state == "active" and power in OFF:
        if on_start:
            try:
                manager.driver.start(instance.id)
                power = PowerState.RUNNING
                log.info("started instance %s, which should run", instance.id)
            except HypervisorError as exc:
                log.warning("could not start instance %s: %s", instance.id, exc)
        if power in OFF:
            log.warning("instance %s is %s behind soko's back: now stopped",
                        instance.id, power.value)
            values = dict(vm_state="stopped")
        values["power_state"] = power.value
    elif instance.vm_state == "stopped" and power is PowerState.RUNNING:
        values = dict(vm_state="active", power_state=power.value)
    elif instance.power_state != power.value:
        values = dict(power_state=power.value)
    if values:
        with session_scope(manager.sessions) as s:  # only if no task started meanwhile
            s.execute(update(Instance).where(Instance.id == instance.id,
                                             Instance.vm_state == instance.vm_state,
                                             Instance.task_state.is_(None))
                      .values(**values))
