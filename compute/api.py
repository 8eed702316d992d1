"""The Nova-v2.1-shaped compute API: thin falcon resources over ``ComputeManager``.

Routes are Nova's (``/v2.1/servers``, ``/v2.1/flavors``, server actions, volume
attachments); the project is the token's, as with Nova's current microversions. Bodies and
answers keep Nova's shapes, so novaclient/openstack-client habits carry over.
"""

from __future__ import annotations

import re

import falcon

from soko.common.app import make_base_app
from soko.common.auth import AuthMiddleware, TokenValidator
from soko.common.config import Config
from soko.common.errors import BadRequest, Forbidden
from soko.common.periodic import Periodic
from soko.common.shared_secret import METADATA_SECRET_FILE, shared_secret
from soko.common.validation import check_id, check_text, check_whole, one_action
from soko.compute.keypairs import KeyPairs
from soko.compute.keypairs import add_routes as add_keypair_routes
from soko.compute.manager import BootSource, Caller, ComputeManager
from soko.compute.metadata import add_routes as add_metadata_routes
from soko.compute.models import NAME_MAX, Flavor, Instance
from soko.compute.networking import network_request

PREFIX = "/v2.1"
NOVA_POWER = {"nostate": 0, "running": 1, "paused": 3, "shutdown": 4, "shutoff": 4,
              "crashed": 6, "suspended": 7}
TASK_STATUS = {"rebooting": "REBOOT", "rebooting_hard": "HARD_REBOOT"}
VM_STATUS = {"building": "BUILD", "active": "ACTIVE", "stopped": "SHUTOFF", "error": "ERROR"}
FLAVOR_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,35}$")
MAX_QUIESCE_SECONDS = 3600


def iso(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def caller_of(req: falcon.Request) -> Caller:
    auth = req.context.auth
    return Caller(auth.project_id, auth.user_id, req.get_header("X-Auth-Token"), auth.is_admin)


def body_of(req: falcon.Request, key: str) -> dict:
    body = req.get_media(default_when_empty=None)
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f'the body must be a JSON object {{"{key}": {{...}}}}')
    return body[key]


def text(value, what: str, *, required: bool = False, maximum: int = NAME_MAX) -> str | None:
    if value is not None and not (isinstance(value, str) and value.strip()):
        raise BadRequest(f"{what} must be a non-empty string of at most {maximum} characters")
    return check_text(value, what, maximum, required=required)


def flavor_id(value) -> str | None:
    """Nova's flavor id rule, without the characters a URL path gives meaning to: a flavor
    is reached at ``/flavors/{id}``, so ``../x`` would be created and then unreachable."""
    if value is None:
        return None
    if not (isinstance(value, str) and FLAVOR_ID.match(value)):
        raise BadRequest("id must be 1-36 letters, digits, '-', '_' or '.', not starting "
                         "with '.'")
    return value


def flavor_view(req: falcon.Request, flavor: Flavor) -> dict:
    href = f"{req.prefix}{PREFIX}/flavors/{flavor.id}"
    return {"id": flavor.id, "name": flavor.name, "vcpus": flavor.vcpus, "ram": flavor.ram,
            "disk": flavor.disk, "OS-FLV-EXT-DATA:ephemeral": 0, "swap": 0,
            "os-flavor-access:is_public": True, "rxtx_factor": 1.0,
            "links": [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]}


def server_summary(req: falcon.Request, instance: Instance) -> dict:
    href = f"{req.prefix}{PREFIX}/servers/{instance.id}"
    return {"id": instance.id, "name": instance.name,
            "links": [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]}


def addresses_of(req: falcon.Request, manager: ComputeManager,
                 instances: list[Instance]) -> dict[str, dict]:
    return manager.networking.addresses(caller_of(req).token, [i.id for i in instances])


def server_view(req: falcon.Request, manager: ComputeManager, instance: Instance,
                addresses: dict[str, dict] | None = None) -> dict:
    """``addresses``: every listed server's (``addresses_of``), read once per request."""
    if addresses is None:
        addresses = addresses_of(req, manager, [instance])
    status = TASK_STATUS.get(instance.task_state or "") or VM_STATUS.get(instance.vm_state,
                                                                          "UNKNOWN")
    volumes = [{"id": a.volume_id, "delete_on_termination": a.delete_on_termination,
                "device": f"/dev/{a.device}" if a.device else None, "boot": a.boot}
               for a in manager.attachments(instance.id)]
    view = {
        **server_summary(req, instance),
        "status": status,
        "tenant_id": instance.project_id,
        "user_id": instance.user_id,
        "flavor": {"id": instance.flavor_id, "vcpus": instance.vcpus, "ram": instance.ram},
        "image": {"id": instance.image_id} if instance.image_id else "",
        "OS-EXT-STS:vm_state": instance.vm_state,
        "OS-EXT-STS:task_state": instance.task_state,
        "OS-EXT-STS:power_state": NOVA_POWER.get(instance.power_state, 0),
        "os-extended-volumes:volumes_attached": volumes,
        "metadata": instance.meta or {},
        "key_name": instance.key_name,
        "addresses": addresses.get(instance.id, {}),
        "created": iso(instance.created_at),
        "updated": iso(instance.updated_at or instance.created_at),
    }
    if instance.fault and instance.vm_state == "error":
        view["fault"] = instance.fault
    return view


def boot_source(spec: dict) -> BootSource:
    """Nova's ``block_device_mapping_v2`` boot entry: an existing volume (``source_type``
    volume) or a new volume from an image (``source_type`` image with ``volume_size``)."""
    mappings = spec.get("block_device_mapping_v2")
    if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
        raise BadRequest("instances boot from volumes: give block_device_mapping_v2 with one "
                         "entry of boot_index 0 (source_type volume, or image with volume_size)")
    boot = [m for m in mappings if str(m.get("boot_index")) == "0"]
    if len(boot) != 1 or len(mappings) != 1:
        raise BadRequest("block_device_mapping_v2 must hold exactly one entry, with boot_index 0")
    mapping = boot[0]
    if mapping.get("destination_type", "volume") != "volume":
        raise BadRequest("destination_type must be volume (there are no local disks)")
    delete = mapping.get("delete_on_termination", False)
    if not isinstance(delete, bool):
        raise BadRequest("delete_on_termination must be true or false")
    source_type = mapping.get("source_type")
    if source_type not in ("volume", "image"):
        raise BadRequest("source_type must be volume or image")
    ref = check_id(mapping.get("uuid"), "block_device_mapping_v2 uuid")
    if source_type == "volume":
        return BootSource(volume_id=ref, delete_on_termination=delete)
    size = check_whole(mapping.get("volume_size"), "volume_size (GiB)", minimum=1)
    return BootSource(image_id=ref, volume_size=size, delete_on_termination=delete)


class Flavors:
    policy = {"POST": "admin"}

    def __init__(self, manager: ComputeManager, *, detail: bool):
        self.manager = manager
        self.detail = detail

    def on_get(self, req, resp) -> None:
        resp.media = {"flavors": [flavor_view(req, f) for f in self.manager.flavors()]}

    def on_post(self, req, resp) -> None:
        if self.detail:
            raise falcon.HTTPMethodNotAllowed(["GET"])
        spec = body_of(req, "flavor")
        flavor = self.manager.create_flavor(
            name=text(spec.get("name"), "name", required=True),
            vcpus=check_whole(spec.get("vcpus"), "vcpus", minimum=1),
            ram=check_whole(spec.get("ram"), "ram (MiB)", minimum=16),
            disk=check_whole(spec.get("disk", 0), "disk (GiB)"),
            flavor_id=flavor_id(spec.get("id")))
        resp.media = {"flavor": flavor_view(req, flavor)}


class FlavorItem:
    policy = {"DELETE": "admin"}

    def __init__(self, manager: ComputeManager):
        self.manager = manager

    def on_get(self, req, resp, flavor_id: str) -> None:
        resp.media = {"flavor": flavor_view(req, self.manager.flavor(flavor_id))}

    def on_delete(self, req, resp, flavor_id: str) -> None:
        self.manager.delete_flavor(flavor_id)
        resp.status = falcon.HTTP_202


class Servers:
    def __init__(self, manager: ComputeManager, *, detail: bool,
                 keypairs: KeyPairs | None = None):
        self.manager = manager
        self.detail = detail
        self.keypairs = keypairs

    def on_get(self, req, resp) -> None:
        everyone = req.get_param_as_bool("all_tenants", default=False)
        if everyone and not req.context.auth.is_admin:
            raise Forbidden("all_tenants=1 is for admins")
        instances = self.manager.list(caller_of(req), all_projects=everyone)
        if self.detail:
            addresses = addresses_of(req, self.manager, instances)
            resp.media = {"servers": [server_view(req, self.manager, i, addresses)
                                      for i in instances]}
        else:
            resp.media = {"servers": [server_summary(req, i) for i in instances]}

    def on_post(self, req, resp) -> None:
        if self.detail:
            raise falcon.HTTPMethodNotAllowed(["GET"])
        spec = body_of(req, "server")
        if spec.get("imageRef") and not spec.get("block_device_mapping_v2"):
            raise BadRequest("instances boot from volumes: give block_device_mapping_v2 with "
                             "source_type image and volume_size (soko server create --image "
                             "IMAGE --boot-volume-size GIB)")
        instance = self.manager.create(
            caller_of(req), name=text(spec.get("name"), "name", required=True),
            flavor_ref=text(spec.get("flavorRef"), "flavorRef", required=True, maximum=64),
            source=boot_source(spec),
            network=network_request(spec.get("networks"), spec.get("security_groups")),
            guest=self.keypairs.guest_data(req.context.auth.user_id, spec))
        resp.status = falcon.HTTP_202
        resp.media = {"server": server_view(req, self.manager, instance)}


class ServerItem:
    def __init__(self, manager: ComputeManager):
        self.manager = manager

    def on_get(self, req, resp, server_id: str) -> None:
        instance = self.manager.get(caller_of(req), server_id)
        resp.media = {"server": server_view(req, self.manager, instance)}

    def on_delete(self, req, resp, server_id: str) -> None:
        self.manager.delete(caller_of(req), server_id)
        resp.status = falcon.HTTP_204


class ServerAction:
    """``POST /v2.1/servers/{id}/action`` with one of Nova's action bodies, plus soko's
    guest-agent quiesce pair."""

    ACTIONS = ("os-start", "os-stop", "reboot", "os-getConsoleOutput", "soko-quiesce",
               "soko-unquiesce")

    def __init__(self, manager: ComputeManager):
        self.manager = manager

    def on_post(self, req, resp, server_id: str) -> None:
        action, args = one_action(req, self.ACTIONS)
        caller = caller_of(req)
        resp.status = falcon.HTTP_202
        if action == "os-start":
            self.manager.start(caller, server_id)
        elif action == "os-stop":
            self.manager.stop(caller, server_id)
        elif action == "reboot":
            kind = str(args.get("type", "SOFT")).upper()
            if kind not in ("SOFT", "HARD"):
                raise BadRequest("reboot type must be SOFT or HARD")
            self.manager.reboot(caller, server_id, hard=kind == "HARD")
        elif action == "os-getConsoleOutput":
            length = args.get("length")
            lines = None if length in (None, -1) else check_whole(length, "length", minimum=1)
            resp.status = falcon.HTTP_200
            resp.media = {"output": self.manager.console_log(caller, server_id, lines)}
        elif action == "soko-quiesce":
            mountpoints = args.get("mountpoints")
            if mountpoints is not None and not (isinstance(mountpoints, list) and all(
                    isinstance(m, str) and m.startswith("/") for m in mountpoints)):
                raise BadRequest("mountpoints must be a list of absolute guest paths")
            max_seconds = args.get("max_seconds")
            if max_seconds is not None and (isinstance(max_seconds, bool) or not isinstance(
                    max_seconds, (int, float)) or not 0 < max_seconds <= MAX_QUIESCE_SECONDS):
                raise BadRequest(f"max_seconds must be a number of seconds in "
                                 f"(0, {MAX_QUIESCE_SECONDS}]")
            resp.status = falcon.HTTP_200
            resp.media = {"quiesce": self.manager.quiesce(
                caller, server_id, volume_id=check_id(args.get("volume_id"), "volume_id",
                                                      required=False),
                mountpoints=mountpoints, max_seconds=max_seconds)}
        else:
            resp.status = falcon.HTTP_200
            resp.media = {"quiesce": self.manager.unquiesce(caller, server_id)}


def attachment_view(server_id: str, volume_id: str, device: str | None) -> dict:
    return {"id": volume_id, "volumeId": volume_id, "serverId": server_id,
            "device": f"/dev/{device}" if device else None}


class VolumeAttachments:
    """``/v2.1/servers/{id}/os-volume_attachments``: attach live, list."""

    def __init__(self, manager: ComputeManager):
        self.manager = manager

    def on_get(self, req, resp, server_id: str) -> None:
        instance = self.manager.get(caller_of(req), server_id)
        resp.media = {"volumeAttachments": [
            attachment_view(instance.id, a.volume_id, a.device)
            for a in self.manager.attachments(instance.id)]}

    def on_post(self, req, resp, server_id: str) -> None:
        spec = body_of(req, "volumeAttachment")
        volume_id = check_id(spec.get("volumeId"), "volumeId")
        attachment = self.manager.attach_volume(caller_of(req), server_id, volume_id)
        resp.media = {"volumeAttachment": attachment_view(server_id, volume_id,
                                                          attachment.device)}


class VolumeAttachmentItem:
    def __init__(self, manager: ComputeManager):
        self.manager = manager

    def on_delete(self, req, resp, server_id: str, volume_id: str) -> None:
        self.manager.detach_volume(caller_of(req), server_id, volume_id)
        resp.status = falcon.HTTP_202


def make_app(config: Config, *, validator: TokenValidator | None = None,
             manager: ComputeManager | None = None) -> falcon.App:
    """The compute API. Tests inject ``validator`` and ``manager``; production builds both
    from config, reconciles (starting what should run), and runs the sync loop."""
    if validator is None:
        from soko.identity.tokens import FernetTokenValidator

        validator = FernetTokenValidator.from_config(config)
    if manager is None:
        from soko.compute import wiring

        manager = wiring.make_manager(config)
        manager.reconcile(on_start=True)
        interval = config.section("compute").reconcile_interval
        if interval > 0:
            Periodic("compute-reconcile", interval, manager.reconcile)
    app = make_base_app(middleware=[AuthMiddleware(validator)])
    app.add_route(f"{PREFIX}/flavors", Flavors(manager, detail=False))
    app.add_route(f"{PREFIX}/flavors/detail", Flavors(manager, detail=True))
    app.add_route(f"{PREFIX}/flavors/{{flavor_id}}", FlavorItem(manager))
    section = config.section("compute")
    add_metadata_routes(app, manager.sessions, shared_secret(
        config.data_dir, METADATA_SECRET_FILE, section.metadata_secret))
    keypairs = KeyPairs(manager.sessions)
    add_keypair_routes(app, PREFIX, keypairs)
    app.add_route(f"{PREFIX}/servers", Servers(manager, detail=False, keypairs=keypairs))
    app.add_route(f"{PREFIX}/servers/detail", Servers(manager, detail=True))
    app.add_route(f"{PREFIX}/servers/{{server_id}}", ServerItem(manager))
    app.add_route(f"{PREFIX}/servers/{{server_id}}/action", ServerAction(manager))
    app.add_route(f"{PREFIX}/servers/{{server_id}}/os-volume_attachments",
                  VolumeAttachments(manager))
    app.add_route(f"{PREFIX}/servers/{{server_id}}/os-volume_attachments/{{volume_id}}",
                  VolumeAttachmentItem(manager))
    return app
