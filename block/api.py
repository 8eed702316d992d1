"""The Cinder-v3-shaped volume API: thin falcon resources over ``VolumeManager``.

HTTP in (parse and validate the body), one manager call, HTTP out (Cinder's JSON shapes,
so cinderclient habits carry over). Errors are the manager's domain errors, mapped to
HTTP once by the app factory.
"""

from __future__ import annotations

import falcon

from soko.block import limits
from soko.block.manager import VolumeManager
from soko.block.models import LocalAttachment, Snapshot, Volume
from soko.common.app import make_base_app
from soko.common.auth import AuthMiddleware, TokenValidator, check_project_ref, require_role
from soko.common.config import Config
from soko.common.errors import BadRequest, Forbidden
from soko.common.periodic import Periodic
from soko.common.validation import check_id, check_whole, one_action

LIST_LIMIT_MAX = 1000


def iso(value) -> str | None:
    return value.isoformat(timespec="microseconds") if value is not None else None


def volume_links(req: falcon.Request, volume: Volume) -> list[dict]:
    base = f"{req.prefix}/v3/{volume.project_id}/volumes/{volume.id}"
    return [{"rel": "self", "href": base}, {"rel": "bookmark", "href": base}]


def volume_summary(req: falcon.Request, volume: Volume) -> dict:
    return {"id": volume.id, "name": volume.name, "links": volume_links(req, volume)}


def volume_detail(req: falcon.Request, volume: Volume) -> dict:
    attachments = []
    if volume.attachment_id and volume.status in ("in-use", "detaching"):
        attachments.append({
            "id": volume.id, "attachment_id": volume.attachment_id, "volume_id": volume.id,
            "server_id": volume.server_id,
            "host_name": volume.local.host if volume.local else None,
            "device": volume.local.device if volume.local else None,
            "initiator": volume.initiator, "attached_at": iso(volume.attached_at),
        })
    return {
        **volume_summary(req, volume),
        "status": volume.status,
        "size": volume.size,
        "description": volume.description,
        "metadata": volume.meta or {},
        "availability_zone": "nova",
        "bootable": "true" if volume.bootable else "false",
        **({"volume_image_metadata": volume.image_meta} if volume.image_meta else {}),
        "encrypted": False,
        "multiattach": False,
        "volume_type": "__DEFAULT__",
        "snapshot_id": volume.snapshot_id,
        "source_volid": volume.source_volid,
        "attachments": attachments,
        "user_id": volume.user_id,
        "os-vol-tenant-attr:tenant_id": volume.project_id,
        "created_at": iso(volume.created_at),
        "updated_at": iso(volume.updated_at),
    }


def snapshot_detail(req: falcon.Request, snapshot: Snapshot) -> dict:
    href = f"{req.prefix}/v3/{snapshot.project_id}/snapshots/{snapshot.id}"
    return {
        "id": snapshot.id,
        "name": snapshot.name,
        "description": snapshot.description,
        "status": snapshot.status,
        "size": snapshot.size,
        "volume_id": snapshot.volume_id,
        "metadata": snapshot.meta or {},
        "local_attachment": local_attachment(snapshot.local),
        "progress": "100%" if snapshot.status == "available" else "0%",
        "user_id": snapshot.user_id,
        "os-extended-snapshot-attributes:project_id": snapshot.project_id,
        "os-extended-snapshot-attributes:progress":
            "100%" if snapshot.status == "available" else "0%",
        "created_at": iso(snapshot.created_at),
        "updated_at": iso(snapshot.updated_at),
        "links": [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}],
    }


def snapshot_summary(req: falcon.Request, snapshot: Snapshot) -> dict:
    detail = snapshot_detail(req, snapshot)
    return {k: v for k, v in detail.items() if not k.startswith("os-extended")}


def check_bool(value, what: str) -> bool:
    """A JSON boolean, or the strings cinderclient sends ("True", "false", ...)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if not isinstance(value, bool):
        raise BadRequest(f"{what} must be true or false, got {value!r}")
    return value


def check_quiesce(value) -> bool | str:
    """``true`` (the volume's default plan), a plan name, or false/absent (no quiesce)."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    if isinstance(value, str) and 0 < len(value) <= limits.NAME_MAX:
        return value
    raise BadRequest('quiesce must be true (the volume\'s default plan) or the name of a '
                     'quiesce plan from the service\'s config; commands are never accepted')


def list_page(req: falcon.Request, resp: falcon.Response, key: str, rows: list, show,
              limit: int | None) -> None:
    """``{key: [...]}`` plus Cinder's ``<key>_links`` next link when the page is full."""
    resp.media = {key: [show(req, row) for row in rows]}
    if limit is not None and len(rows) == limit:
        href = falcon.to_query_str({**req.params, "marker": rows[-1].id})
        resp.media[f"{key}_links"] = [{"rel": "next", "href": req.prefix + req.path + href}]


def local_attachment(row: LocalAttachment | None) -> dict | None:
    if row is None:
        return None
    return {"attachment_id": row.id, "volume_id": row.volume_id,
            "snapshot_id": row.snapshot_id, "host_name": row.host, "device": row.device,
            "read_only": row.snapshot_id is not None, "attached_at": iso(row.created_at)}


def body_of(req: falcon.Request, key: str) -> dict:
    """The object under ``key`` in the JSON body (Cinder wraps every body this way)."""
    body = req.get_media()
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise BadRequest(f'the body must be a JSON object {{"{key}": {{...}}}}')
    return body[key]


def list_params(req: falcon.Request) -> dict:
    limit = req.get_param_as_int("limit", min_value=1, max_value=LIST_LIMIT_MAX)
    return {"name": req.get_param("name"), "status": req.get_param("status"),
            "limit": limit, "marker": req.get_param("marker")}


class Volumes:
    """``/v3/{project_id}/volumes`` (summaries) and ``.../volumes/detail``."""

    def __init__(self, manager: VolumeManager, *, detail: bool):
        self.manager = manager
        self.detail = detail

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        everyone = req.get_param_as_bool("all_tenants", default=False)
        if everyone and not req.context.auth.is_admin:
            raise Forbidden("all_tenants=1 is for admins")
        params = list_params(req)
        volumes = self.manager.list(None if everyone else project_id, **params)
        list_page(req, resp, "volumes", volumes,
                  volume_detail if self.detail else volume_summary, params["limit"])

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        if self.detail:
            raise falcon.HTTPMethodNotAllowed(["GET"])
        spec = body_of(req, "volume")
        volume = self.manager.create(
            project_id=project_id,
            user_id=req.context.auth.user_id,
            size=limits.check_size(spec.get("size")),
            name=limits.check_text(spec.get("name"), "name", limits.NAME_MAX),
            description=limits.check_text(spec.get("description"), "description",
                                          limits.DESCRIPTION_MAX),
            metadata=limits.check_metadata(spec.get("metadata")),
            source_volid=check_id(spec.get("source_volid"), "source_volid", required=False),
            snapshot_id=check_id(spec.get("snapshot_id"), "snapshot_id", required=False),
        )
        resp.status = falcon.HTTP_202
        resp.media = {"volume": volume_detail(req, volume)}


def text_updates(spec: dict) -> dict:
    """The name/description/metadata changes of a PUT body, checked."""
    values = {}
    if "name" in spec:
        values["name"] = limits.check_text(spec["name"], "name", limits.NAME_MAX)
    if "description" in spec:
        values["description"] = limits.check_text(spec["description"], "description",
                                                  limits.DESCRIPTION_MAX)
    if "metadata" in spec:
        values["meta"] = limits.check_metadata(spec["metadata"])
    if not values:
        raise BadRequest("nothing to update: give name, description or metadata")
    return values


class ItemResource:
    """GET, PUT (name, description, metadata) and DELETE of one volume or snapshot;
    ``store`` is the manager of that kind, ``detail`` renders one."""

    def __init__(self, key: str, store, detail):
        self.key, self.store, self.detail = key, store, detail

    def on_get(self, req, resp, project_id: str, **ids: str) -> None:
        resp.media = {self.key: self.detail(req, self.store.get(project_id, *ids.values()))}

    def on_put(self, req, resp, project_id: str, **ids: str) -> None:
        values = text_updates(body_of(req, self.key))
        item = self.store.update(project_id, *ids.values(), **values)
        resp.media = {self.key: self.detail(req, item)}

    def on_delete(self, req, resp, project_id: str, **ids: str) -> None:
        self.store.delete(project_id, *ids.values())
        resp.status = falcon.HTTP_202


def connector_initiator(args) -> str:
    connector = args.get("connector") if isinstance(args, dict) else None
    if not isinstance(connector, dict):
        raise BadRequest('attach needs {"connector": {"initiator": "iqn...."}}')
    return limits.check_iqn(connector.get("initiator"))


def check_local_attach(req: falcon.Request, role: str) -> None:
    """The ``local_attach_role`` policy: loop devices on the storage host are for admins
    unless the operator lets members make them."""
    require_role(req.context.auth, role, "os-local_attach and os-local_detach")


class VolumeAction:
    """``POST .../volumes/{id}/action`` with one of Cinder's action bodies."""

    ACTIONS = ("os-extend", "os-attach", "os-initialize_connection", "os-detach",
               "os-terminate_connection", "os-local_attach", "os-local_detach")

    def __init__(self, manager: VolumeManager, local_attach_role: str = "admin"):
        self.manager = manager
        self.local_attach_role = local_attach_role

    def on_post(self, req, resp, project_id: str, volume_id: str) -> None:
        action, args = one_action(req, self.ACTIONS)
        if action in ("os-local_attach", "os-local_detach"):
            check_local_attach(req, self.local_attach_role)
        if action == "os-extend":
            new_size = limits.check_size(args.get("new_size"), "new_size")
            self.manager.extend(project_id, volume_id, new_size)
            resp.status = falcon.HTTP_202
        elif action in ("os-attach", "os-initialize_connection"):
            initiator = connector_initiator(args)  # checks that args is an object
            server_id = check_id(args.get("instance_uuid"), "instance_uuid", required=False)
            connection = self.manager.attach(project_id, volume_id, initiator,
                                             server_id=server_id)
            resp.media = {"connection_info": connection.as_cinder()}
        elif action == "os-local_attach":
            row = self.manager.local.attach_volume(project_id, volume_id)
            resp.media = {"local_attachment": local_attachment(row)}
        elif action == "os-local_detach":
            self.manager.local.detach_volume(project_id, volume_id)
            resp.status = falcon.HTTP_202
        else:
            self.manager.detach(project_id, volume_id)
            resp.status = falcon.HTTP_202


class Snapshots:
    """``/v3/{project_id}/snapshots`` and ``.../snapshots/detail``."""

    def __init__(self, manager: VolumeManager, *, detail: bool):
        self.snapshots = manager.snapshots
        self.detail = detail

    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        everyone = req.get_param_as_bool("all_tenants", default=False)
        if everyone and not req.context.auth.is_admin:
            raise Forbidden("all_tenants=1 is for admins")
        params = list_params(req)
        rows = self.snapshots.list(None if everyone else project_id,
                                   volume_id=req.get_param("volume_id"), **params)
        list_page(req, resp, "snapshots", rows,
                  snapshot_detail if self.detail else snapshot_summary, params["limit"])

    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        if self.detail:
            raise falcon.HTTPMethodNotAllowed(["GET"])
        spec = body_of(req, "snapshot")
        volume_id = check_id(spec.get("volume_id"), "snapshot.volume_id")
        snapshot = self.snapshots.create(
            project_id=project_id,
            user_id=req.context.auth.user_id,
            volume_id=volume_id,
            force=check_bool(spec.get("force", False), "force"),
            name=limits.check_text(spec.get("name"), "name", limits.NAME_MAX),
            description=limits.check_text(spec.get("description"), "description",
                                          limits.DESCRIPTION_MAX),
            metadata=limits.check_metadata(spec.get("metadata")),
            quiesce=check_quiesce(spec.get("quiesce")),
            token=req.get_header("X-Auth-Token"),  # a guest-agent step acts as the caller
        )
        resp.status = falcon.HTTP_202
        resp.media = {"snapshot": snapshot_detail(req, snapshot)}


class SnapshotAction:
    """``POST .../snapshots/{id}/action``: ``os-local_attach`` (read-only) or
    ``os-local_detach``, on the storage host."""

    def __init__(self, manager: VolumeManager, local_attach_role: str = "admin"):
        self.local = manager.local
        self.local_attach_role = local_attach_role

    def on_post(self, req, resp, project_id: str, snapshot_id: str) -> None:
        action, _ = one_action(req, ("os-local_attach", "os-local_detach"))
        check_local_attach(req, self.local_attach_role)
        if action == "os-local_attach":
            row = self.local.attach_snapshot(project_id, snapshot_id)
            resp.media = {"local_attachment": local_attachment(row)}
        else:
            self.local.detach_snapshot(project_id, snapshot_id)
            resp.status = falcon.HTTP_202


class QuotaSets:
    """``/v3/{project_id}/os-quota-sets/{target_id}``: read your own; admins set anyone's."""

    policy = {"PUT": "admin"}
    RESOURCES = ("volumes", "gigabytes", "snapshots")

    def __init__(self, manager: VolumeManager):
        self.manager = manager

    def on_get(self, req, resp, project_id: str, target_id: str) -> None:
        if target_id != req.context.auth.project_id and not req.context.auth.is_admin:
            raise Forbidden("only admins read another project's quotas")
        usage = self.manager.quota_usage(target_id)
        if req.get_param_as_bool("usage", default=False):
            quota_set = dict(usage)
        else:
            quota_set = {name: item["limit"] for name, item in usage.items()}
        resp.media = {"quota_set": {"id": target_id, **quota_set}}

    def on_put(self, req, resp, project_id: str, target_id: str) -> None:
        check_project_ref(target_id)
        spec = body_of(req, "quota_set")
        values = {}
        for name, value in spec.items():
            if name not in self.RESOURCES:
                raise BadRequest(f"unknown quota {name!r} (known: {', '.join(self.RESOURCES)})")
            values[name] = check_whole(value, f"quota {name} (-1: unlimited)", minimum=-1)
        self.manager.set_quota(target_id, values)
        self.on_get(req, resp, project_id, target_id)


class Info:
    """``GET /info``: the API's limits, as Swift publishes its constraints."""

    public = True

    def on_get(self, req, resp) -> None:
        resp.media = {"block": limits.published()}


def make_app(config: Config, *, validator: TokenValidator | None = None,
             manager: VolumeManager | None = None, backups=None) -> falcon.App:
    """The block API. Tests inject ``validator``, ``manager`` and ``backups``; production
    builds them from config, sets up the pool, reconciles, and runs the reconcile loop."""
    if validator is None:
        # Production wiring: identity's tokens, verified locally with the shared keys.
        from soko.identity.tokens import FernetTokenValidator

        validator = FernetTokenValidator.from_config(config)
    if manager is None:
        from soko.block import wiring

        manager = wiring.make_manager(config)
        wiring.start(manager)
        interval = config.section("block").reconcile_interval
        if interval > 0:
            Periodic("block-reconcile", interval, lambda: wiring.reconcile_unless_busy(manager))
    app = make_base_app(middleware=[AuthMiddleware(validator)])
    prefix = "/v3/{project_id}"
    from soko.block.images import image_resources

    local_attach_role = config.section("block").local_attach_role
    volumes, actions = image_resources(manager, config, local_attach_role)
    app.add_route(f"{prefix}/volumes", volumes)
    app.add_route(f"{prefix}/volumes/detail", Volumes(manager, detail=True))
    app.add_route(f"{prefix}/volumes/{{volume_id}}",
                  ItemResource("volume", manager, volume_detail))
    app.add_route(f"{prefix}/volumes/{{volume_id}}/action", actions)
    app.add_route(f"{prefix}/snapshots", Snapshots(manager, detail=False))
    app.add_route(f"{prefix}/snapshots/detail", Snapshots(manager, detail=True))
    app.add_route(f"{prefix}/snapshots/{{snapshot_id}}",
                  ItemResource("snapshot", manager.snapshots, snapshot_detail))
    app.add_route(f"{prefix}/snapshots/{{snapshot_id}}/action", SnapshotAction(manager, local_attach_role))
    app.add_route(f"{prefix}/os-quota-sets/{{target_id}}", QuotaSets(manager))
    from soko.block.backups import api as backup_api
    from soko.block.backups import wiring as backup_wiring

    if backups is None:
        backups = backup_wiring.make_manager(config, manager)
        backups.recover()
    backup_api.add_routes(app, backups)
    app.add_route("/info", Info())
    return app
