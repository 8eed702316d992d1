"""The compute manager: instances and flavors, no HTTP.

States as Nova users know them: ``vm_state`` (building, active, stopped, error) says what the
instance should be; ``task_state`` (spawning, powering-off, powering-on, rebooting,
rebooting_hard, deleting, attaching, detaching) says what is being done to it. Every task
starts with a compare-and-swap on both (``UPDATE ... WHERE vm_state IN (...) AND task_state
IS NULL``), so two requests cannot both win and an illegal transition is a 409; the task's
owner (process) is recorded, so ``reconcile`` can finish or fail a task whose process died.

Volumes are attached through the block API with the caller's token: block exports the LUN
to this host's initiator with fresh CHAP credentials, the driver logs in with them (the
secret in a libvirt secret), and block records which server the attachment belongs to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from soko.block.owner import current_owner
from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from soko.compute.clients import (
    ImageClient,
    RemoteError,
    ServiceCredential,
    VolumeClient,
    check_boot_image,
    remote_answer,
)
from soko.compute.drivers.base import (
    AgentUnavailable,
    Hypervisor,
    HypervisorError,
    InstanceNotFound,
    InstanceSpec,
    IscsiDisk,
    Nic,
    PowerState,
)
from soko.compute.models import Attachment, Flavor, Instance, utcnow
from soko.compute.networking import Networking, NetworkRequest

log = logging.getLogger("soko.compute.manager")

DEFAULT_FLAVORS = (  # Nova's ids and sizes; instances boot from volumes, so no disk
    dict(id="1", name="m1.tiny", vcpus=1, ram=512, disk=0),
    dict(id="2", name="m1.small", vcpus=1, ram=2048, disk=0),
)
OFF = (PowerState.SHUTOFF, PowerState.CRASHED, PowerState.SHUTDOWN)
SPAWN_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who asks: their project and token go with every call to block and image."""

    project_id: str
    user_id: str
    token: str
    is_admin: bool = False


@dataclasses.dataclass(frozen=True)
class BootSource:
    """The boot volume: an existing one (``volume_id``) or one made from ``image_id``."""

    volume_id: str | None = None
    image_id: str | None = None
    volume_size: int | None = None
    delete_on_termination: bool = False


@dataclasses.dataclass
class Settings:
    block_url: str
    image_url: str
    initiator: str
    bridge: str = ""
    net_url: str = ""
    stop_timeout: float = 60.0
    freeze_max_seconds: float = 10.0
    volume_timeout: float = 600.0
    host: str = ""  # binding:host_id of the ports bound here
    orphan_port_grace: float = 300.0


class ComputeManager:
    def __init__(self, *, sessions: sessionmaker[Session], driver: Hypervisor,
                 settings: Settings, background: Callable[[Callable[[], None]], None] | None = None,
                 service: ServiceCredential | None = None):
        self.sessions = sessions
        self.driver = driver
        self.settings = settings
        self.background = background or run_in_thread
        self.networking = Networking(sessions, settings.net_url, service=service,
                                     host=settings.host)
        with session_scope(sessions) as s:
            if s.scalar(select(Flavor.id).limit(1)) is None:
                s.add_all(Flavor(**flavor) for flavor in DEFAULT_FLAVORS)

    def volumes(self, caller: Caller) -> VolumeClient:
        return VolumeClient(self.settings.block_url, caller.project_id, caller.token)

    # -- flavors --------------------------------------------------------------------

    def flavors(self) -> list[Flavor]:
        with session_scope(self.sessions) as s:
            return list(s.scalars(select(Flavor).order_by(Flavor.ram, Flavor.id)))

    def flavor(self, ref: str) -> Flavor:
        """By id, or by name (the CLI and users say ``m1.tiny``)."""
        with session_scope(self.sessions) as s:
            found = s.get(Flavor, ref) or s.scalar(select(Flavor).where(Flavor.name == ref))
        if found is None:
            raise NotFound(f"Flavor {ref} could not be found.")
        return found

    def create_flavor(self, *, name: str, vcpus: int, ram: int, disk: int = 0,
                      flavor_id: str | None = None) -> Flavor:
        flavor = Flavor(id=flavor_id or str(uuid.uuid4()), name=name, vcpus=vcpus, ram=ram,
                        disk=disk)
        with session_scope(self.sessions) as s:
            clash = s.scalar(select(Flavor).where((Flavor.id == flavor.id)
                                                  | (Flavor.name == name)))
            if clash is not None:
                raise Conflict(f"Flavor with name {name} or id {flavor.id} already exists.")
            s.add(flavor)
        return flavor

    def delete_flavor(self, flavor_id: str) -> None:
        """Instances keep running: they copied the flavor's sizes at boot, as in Nova."""
        with session_scope(self.sessions) as s:
            if s.execute(delete(Flavor).where(Flavor.id == flavor_id)).rowcount != 1:
                raise NotFound(f"Flavor {flavor_id} could not be found.")

    # -- reading instances ------------------------------------------------------------

    def get(self, caller: Caller, server_id: str) -> Instance:
        with session_scope(self.sessions) as s:
            instance = s.get(Instance, server_id)
        if instance is None or (instance.project_id != caller.project_id and not caller.is_admin):
            raise NotFound(f"Instance {server_id} could not be found.")
        return instance

    def list(self, caller: Caller, *, all_projects: bool = False) -> list[Instance]:
        query = select(Instance).order_by(Instance.created_at.desc(), Instance.id)
        if not (all_projects and caller.is_admin):
            query = query.where(Instance.project_id == caller.project_id)
        with session_scope(self.sessions) as s:
            return list(s.scalars(query))

    def attachments(self, server_id: str) -> list[Attachment]:
        with session_scope(self.sessions) as s:
            return list(s.scalars(select(Attachment).where(Attachment.server_id == server_id)
                                  .order_by(Attachment.device)))

    # -- create -----------------------------------------------------------------------

    def create(self, caller: Caller, *, name: str, flavor_ref: str, source: BootSource,
               network: NetworkRequest | None = None, guest: dict | None = None) -> Instance:
        """Checks what the request names (flavor, volume or image) and makes its ports
        before the server exists (undone if it cannot be); the build (volume from image,
        attach, define, start) then runs in the background. ``guest``: what the metadata
        API serves it (``compute/keypairs.py``)."""
        try:
            flavor = self.flavor(flavor_ref)
        except NotFound as exc:
            raise BadRequest(exc.message) from None
        if source.volume_id is not None:
            try:
                volume = self.volumes(caller).get(source.volume_id)
            except RemoteError as exc:
                raise remote_answer(exc, f"Volume {source.volume_id}") from None
            if volume["status"] != "available":
                raise BadRequest(f"Invalid volume: volume {source.volume_id} is "
                                 f"{volume['status']}; booting needs it available.")
        else:
            if not self.settings.image_url:
                raise BadRequest("this cloud has no image service: boot from a volume")
            try:
                image = ImageClient(self.settings.image_url, caller.token).get(source.image_id)
            except RemoteError as exc:
                raise remote_answer(exc, f"Image {source.image_id}") from None
            check_boot_image(image, source.volume_size)
            self._check_volume_quota(caller, source.volume_size)
        instance = Instance(
            id=str(uuid.uuid4()), project_id=caller.project_id, user_id=caller.user_id,
            name=name, flavor_id=flavor.id, vcpus=flavor.vcpus, ram=flavor.ram,
            image_id=source.image_id, vm_state="building", task_state="spawning",
            power_state=PowerState.NOSTATE.value, owner=current_owner(), meta={},
            **(guest or {}))
        vifs = self.networking.plug(caller, instance.id, network)
        try:
            with claiming(source.volume_id), session_scope(self.sessions) as s:
                s.add(instance)
                s.flush()  # the instance row first: the attachment and NICs refer to it
                if source.volume_id is not None:
                    s.add(Attachment(volume_id=source.volume_id, server_id=instance.id,
                                     boot=True,
                                     delete_on_termination=source.delete_on_termination))
                s.add_all(vifs)
        except BaseException:
            if vifs:
                self.networking.unplug(caller.token, vifs)
            raise
        self.background(lambda: self._build(caller, instance, source))
        return instance

    def _check_volume_quota(self, caller: Caller, size: int) -> None:
        """The project's block quotas, asked before anything exists, so a boot volume beyond
        them is a 413 now rather than a server in ERROR later (block checks again when it
        creates the volume)."""
        try:
            quota = self.volumes(caller).quota_usage()
        except RemoteError as exc:
            raise remote_answer(exc, "Block quotas") from None
        for resource, wanted in (("volumes", 1), ("gigabytes", size)):
            limit, used = quota[resource]["limit"], quota[resource]["in_use"]
            if 0 <= limit < used + wanted:
                raise PayloadTooLarge(f"the boot volume would exceed the project's {resource} "
                                      f"quota: {used} of {limit} used, {wanted} more asked")

    def _build(self, caller: Caller, instance: Instance, source: BootSource) -> None:
        volumes = self.volumes(caller)
        try:
            volume_id = source.volume_id
            if volume_id is None:
                created = volumes.create(source.volume_size, name=f"boot-{instance.name}",
                                         image_ref=source.image_id)
                volume_id = created["id"]
                with session_scope(self.sessions) as s:  # recorded first: delete cleans it up
                    s.add(Attachment(volume_id=volume_id, server_id=instance.id, boot=True,
                                     delete_on_termination=source.delete_on_termination))
                volumes.wait_available(volume_id, self.settings.volume_timeout)
            info = volumes.attach(volume_id, initiator=self.settings.initiator,
                                  server_id=instance.id)
            self._set_device(volume_id, "vda", info)
            self._spawn(self.spec_of(instance, IscsiDisk(info)))
        except (RemoteError, HypervisorError) as exc:
            log.warning("building instance %s failed: %s", instance.id, exc)
            self.finish_task(instance.id, "spawning", "error", power_state=PowerState.NOSTATE.value,
                         fault={"code": getattr(exc, "status", 500), "message": str(exc),
                                "created": utcnow().isoformat()})
            return
        self.finish_task(instance.id, "spawning", "active", power_state=PowerState.RUNNING.value)

    def _spawn(self, spec: InstanceSpec) -> None:
        """Spawns, retrying a failed start: QEMU gives up when its iSCSI login fails, and a
        target can vanish for a moment (while block re-creates an export its tgtd lost)."""
        for attempt in range(1, SPAWN_ATTEMPTS + 1):
            try:
                self.driver.spawn(spec)
                return
            except HypervisorError as exc:
                if attempt == SPAWN_ATTEMPTS:
                    raise
                log.warning("starting %s failed (attempt %d): %s; retrying", spec.name,
                            attempt, exc)
                time.sleep(attempt)

    def spec_of(self, instance: Instance, boot: IscsiDisk) -> InstanceSpec:
        """What the driver defines for ``instance``: at its build, and again from the DB
        after a host stop (``compute/host.py``)."""
        nics = self.networking.nics(instance.id)
        if not nics and self.settings.bridge:
            nics = (Nic(self.settings.bridge),)
        return InstanceSpec(name=instance.id, uuid=instance.id, vcpus=instance.vcpus,
                            memory_mib=instance.ram, disks=(boot,), nics=nics)

    def _set_device(self, volume_id: str, device: str, connection_info: dict) -> None:
        with session_scope(self.sessions) as s:
            s.execute(update(Attachment).where(Attachment.volume_id == volume_id)
                      .values(device=device, connection_info=connection_info))

    # -- power --------------------------------------------------------------------------

    def start(self, caller: Caller, server_id: str) -> None:
        self._task(caller, server_id, ("stopped",), "powering-on", "start")
        self._run(server_id, "powering-on", lambda: self.driver.start(server_id), "active",
                  PowerState.RUNNING)

    def stop(self, caller: Caller, server_id: str) -> None:
        self._task(caller, server_id, ("active",), "powering-off", "stop")
        self._run(server_id, "powering-off",
                  lambda: self.driver.stop(server_id, self.settings.stop_timeout), "stopped",
                  PowerState.SHUTOFF)

    def reboot(self, caller: Caller, server_id: str, hard: bool = False) -> None:
        """Soft: the guest reboots itself. Hard: a power cycle, which also revives a
        stopped or failed instance, as Nova's."""
        if hard:
            self._task(caller, server_id, ("active", "stopped", "error"), "rebooting_hard",
                       "reboot --hard")
            self._run(server_id, "rebooting_hard",
                      lambda: self.driver.reboot(server_id, hard=True), "active",
                      PowerState.RUNNING)
        else:
            self._task(caller, server_id, ("active",), "rebooting", "reboot")
            self._run(server_id, "rebooting", lambda: self.driver.reboot(server_id), "active",
                      PowerState.RUNNING)

    def _run(self, server_id: str, task: str, step: Callable[[], None], vm_state: str,
             power: PowerState) -> None:
        def work() -> None:
            try:
                step()
            except HypervisorError as exc:
                log.warning("%s of instance %s failed: %s", task, server_id, exc)
                self.finish_task(server_id, task, self._observed_vm_state(server_id),
                             power_state=self._power(server_id).value,
                             fault={"code": 500, "message": str(exc),
                                    "created": utcnow().isoformat()})
                return
            self.finish_task(server_id, task, vm_state, power_state=power.value, fault=None)

        self.background(work)

    def _power(self, server_id: str) -> PowerState:
        try:
            return self.driver.state(server_id)
        except InstanceNotFound:
            return PowerState.NOSTATE

    def _observed_vm_state(self, server_id: str) -> str:
        power = self._power(server_id)
        if power is PowerState.RUNNING:
            return "active"
        return "stopped" if power in OFF else "error"

    # -- delete -------------------------------------------------------------------------

    def delete(self, caller: Caller, server_id: str) -> None:
        """Allowed in any state but during another task. The domain goes first (forced off,
        as Nova's delete), then its volumes are detached, and deleted where asked."""
        self._task(caller, server_id, ("active", "stopped", "error"), "deleting", "delete")
        self.background(lambda: self.tear_down(caller, server_id))

    def tear_down(self, caller: Caller, server_id: str) -> None:
        try:
            self.driver.delete(server_id)
        except HypervisorError as exc:
            log.warning("deleting the domain of %s failed: %s", server_id, exc)
            self.finish_task(server_id, "deleting", "error", fault={
                "code": 500, "message": str(exc), "created": utcnow().isoformat()})
            return
        volumes = self.volumes(caller)
        kept = [a.volume_id for a in self.attachments(server_id) if not self._release_volume(
            volumes, a, server_id, delete=a.delete_on_termination)]
        ports = self.networking.release(caller.token, server_id)
        with session_scope(self.sessions) as s:
            s.execute(delete(Attachment).where(Attachment.server_id == server_id,
                                               Attachment.volume_id.not_in(kept)))
            if not kept and not ports:
                s.execute(delete(Instance).where(Instance.id == server_id))
        if kept or ports:  # the domain is gone; the server stays, so nothing is forgotten
            held = [f"volumes {', '.join(kept)}"] * bool(kept) + \
                [f"ports {', '.join(ports)}"] * bool(ports)
            self.finish_task(server_id, "deleting", "error", power_state=PowerState.NOSTATE.value,
                         fault={"code": 500, "created": utcnow().isoformat(), "message":
                                f"{' and '.join(held)} could not be released; "
                                "delete the server again"})

    @staticmethod
    def _release_volume(volumes: VolumeClient, attachment: Attachment, server_id: str, *,
                        delete: bool) -> bool:
        """Ends block's side of the server's attachment and deletes the volume if asked;
        True when done (a volume already gone is done). A volume block shows attached to
        anything else is never detached or deleted: the record here was stale."""
        try:
            volume = volumes.get(attachment.volume_id)
            ours = any(a.get("server_id") == server_id for a in volume.get("attachments", []))
            if volume["status"] == "in-use" and ours:
                volumes.detach(attachment.volume_id)
            if delete and (ours or volume["status"] == "available"):
                volumes.delete(attachment.volume_id)
        except RemoteError as exc:
            if exc.status == 404:
                return True
            log.warning("releasing volume %s failed: %s", attachment.volume_id, exc)
            return False
        return True

    # -- volumes --------------------------------------------------------------------------

    def attach_volume(self, caller: Caller, server_id: str, volume_id: str) -> Attachment:
        """Live on a running instance, persistently on a stopped one."""
        volumes = self.volumes(caller)
        try:
            volume = volumes.get(volume_id)
        except RemoteError as exc:
            raise remote_answer(exc, f"Volume {volume_id}") from None
        if volume["status"] != "available":
            raise BadRequest(f"Invalid volume: volume {volume_id} is {volume['status']}; "
                             "attaching needs it available.")
        self._task(caller, server_id, ("active", "stopped"), "attaching", "attach a volume")
        try:
            with claiming(volume_id), session_scope(self.sessions) as s:
                s.add(Attachment(volume_id=volume_id, server_id=server_id))
            try:
                info = volumes.attach(volume_id, initiator=self.settings.initiator,
                                      server_id=server_id)
            except RemoteError as exc:
                self._forget_attachment(volume_id)
                raise remote_answer(exc, f"Volume {volume_id}") from None
            try:
                device = self.driver.attach_disk(server_id, IscsiDisk(info))
            except HypervisorError as exc:
                self._release_volume(volumes, Attachment(volume_id=volume_id), server_id,
                                     delete=False)
                self._forget_attachment(volume_id)
                raise Conflict(f"attaching volume {volume_id} failed: {exc}") from None
            self._set_device(volume_id, device, info)
        finally:
            self._end_task(server_id, "attaching")
        return Attachment(volume_id=volume_id, server_id=server_id, device=device)

    def detach_volume(self, caller: Caller, server_id: str, volume_id: str) -> None:
        attachment = next((a for a in self.attachments(self.get(caller, server_id).id)
                           if a.volume_id == volume_id), None)
        if attachment is None:
            raise NotFound(f"volume {volume_id} is not attached to server {server_id}")
        if attachment.boot:
            raise BadRequest("the boot volume cannot be detached; delete the server instead")
        self._task(caller, server_id, ("active", "stopped"), "detaching", "detach a volume")
        try:
            if attachment.device is not None:
                self.driver.detach_disk(server_id, attachment.device)
            if not self._release_volume(self.volumes(caller), attachment, server_id,
                                        delete=False):
                raise Conflict(f"the block service did not release volume {volume_id}; "
                               "try again")
            self._forget_attachment(volume_id)
        except HypervisorError as exc:
            raise Conflict(f"detaching volume {volume_id} failed: {exc}") from None
        finally:
            self._end_task(server_id, "detaching")

    def _forget_attachment(self, volume_id: str) -> None:
        with session_scope(self.sessions) as s:
            s.execute(delete(Attachment).where(Attachment.volume_id == volume_id))

    # -- console and guest agent ------------------------------------------------------------

    def console_log(self, caller: Caller, server_id: str, lines: int | None = None) -> str:
        self.get(caller, server_id)
        text = self.driver.console_log(server_id, max_bytes=1 << 20)
        return "".join(text.splitlines(keepends=True)[-lines:]) if lines else text

    def quiesce(self, caller: Caller, server_id: str, *, volume_id: str | None = None,
                mountpoints: list[str] | None = None, max_seconds: float | None = None) -> dict:
        """Freezes the guest's filesystems through its agent (only those on ``volume_id``,
        or only ``mountpoints``, else all), for a consistent snapshot. The freeze is thawed
        by ``unquiesce``, or by the driver's watchdog after ``max_seconds`` whatever happens."""
        instance = self.get(caller, server_id)
        if instance.vm_state != "active" or instance.task_state is not None:
            raise Conflict(f"Cannot quiesce instance {server_id} while it is "
                           f"{instance.task_state or instance.vm_state}; it must be active.")
        limit = min(max_seconds or self.settings.freeze_max_seconds,
                    self.settings.freeze_max_seconds)
        try:
            if volume_id is not None:
                attachment = next((a for a in self.attachments(server_id)
                                   if a.volume_id == volume_id and a.device), None)
                if attachment is None:
                    raise BadRequest(f"volume {volume_id} is not attached to server {server_id}")
                mountpoints = self.driver.mountpoints(server_id, attachment.device)
                if not mountpoints:  # not mounted in the guest: nothing writes to it
                    return {"frozen": 0, "mountpoints": [], "max_seconds": limit}
            frozen = self.driver.freeze(server_id, mountpoints or None, max_seconds=limit)
        except AgentUnavailable as exc:
            raise Conflict(f"the guest agent of server {server_id} did not answer ({exc}); "
                           "without it only a crash-consistent snapshot is possible") from None
        except HypervisorError as exc:
            raise Conflict(str(exc)) from None
        return {"frozen": frozen, "mountpoints": mountpoints or [], "max_seconds": limit}

    def unquiesce(self, caller: Caller, server_id: str) -> dict:
        self.get(caller, server_id)
        try:
            return {"thawed": self.driver.thaw(server_id)}
        except HypervisorError as exc:
            raise Conflict(f"thawing server {server_id} failed: {exc}; the freeze watchdog "
                           "thaws it at its limit") from None

    # -- state changes ---------------------------------------------------------------------

    def _task(self, caller: Caller, server_id: str, from_states: tuple[str, ...], task: str,
              action: str) -> None:
        """The compare-and-swap that starts a task; 409 names the state that forbids it."""
        instance = self.get(caller, server_id)
        with session_scope(self.sessions) as s:
            moved = s.execute(
                update(Instance)
                .where(Instance.id == server_id, Instance.vm_state.in_(from_states),
                       Instance.task_state.is_(None))
                .values(task_state=task, owner=current_owner(), updated_at=utcnow())).rowcount
        if moved != 1:
            current = self.get(caller, server_id)
            busy = f"task_state {current.task_state}" if current.task_state else \
                f"vm_state {current.vm_state}"
            raise Conflict(f"Cannot '{action}' instance {instance.id} while it is in {busy}.")

    def _end_task(self, server_id: str, task: str) -> None:
        with session_scope(self.sessions) as s:
            s.execute(update(Instance).where(Instance.id == server_id,
                                             Instance.task_state == task)
                      .values(task_state=None, owner=None))

    def finish_task(self, server_id: str, task: str, vm_state: str, **values) -> None:
        with session_scope(self.sessions) as s:
            s.execute(update(Instance).where(Instance.id == server_id,
                                             Instance.task_state == task)
                      .values(vm_state=vm_state, task_state=None, owner=None,
                              updated_at=utcnow(), **values))

    # -- reconcile ------------------------------------------------------------------------

    def reconcile(self, *, on_start: bool = False) -> list[str]:
        """Makes the DB and the hypervisor agree (``compute/reconcile.py``); returns the
        orphan domains, which are reported, never destroyed."""
        from soko.compute import reconcile

        return reconcile.reconcile(self, on_start=on_start)


@contextlib.contextmanager
def claiming(volume_id: str | None) -> Iterator[None]:
    """An attachment row is the claim on a volume: a second claim (two requests racing for
    one available volume) is a 409, not a database error."""
    try:
        yield
    except IntegrityError:
        raise Conflict(f"volume {volume_id} is being attached to another server") from None


def run_in_thread(work: Callable[[], None]) -> None:
    """Runs a task after the request that started it has been answered (Nova's 202)."""
    def guarded() -> None:
        try:
            work()
        except Exception:
            log.exception("a background task failed")

    threading.Thread(target=guarded, daemon=True, name="compute-task").start()
