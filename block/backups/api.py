"""Cinder-v3's backup API: ``/v3/{project_id}/backups[/detail|/{id}[/restore]]``.

Thin resources over ``BackupManager``; backup, restore and delete answer 202 at once and
run in the background, with ``status`` and ``progress`` (percent) to poll.
"""

from __future__ import annotations

import falcon

from soko.block import limits
from soko.block.api import body_of, check_bool, iso
from soko.block.backups.manager import BackupManager
from soko.block.backups.models import Backup
from soko.common.errors import Forbidden
from soko.common.validation import check_id


def backup_summary(req: falcon.Request, backup: Backup) -> dict:
    href = f"{req.prefix}/v3/{backup.project_id}/backups/{backup.id}"
    return {"id": backup.id, "name": backup.name,
            "links": [{"rel": "self", "href": href}, {"rel": "bookmark", "href": href}]}


def backup_detail(req: falcon.Request, backup: Backup, manager: BackupManager) -> dict:
    return {
        **backup_summary(req, backup),
        "status": backup.status,
        "description": backup.description,
        "availability_zone": "nova",
        "volume_id": backup.volume_id,
        "snapshot_id": backup.snapshot_id,
        "parent_id": backup.parent_id,
        "size": backup.size,
        "object_count": backup.object_count,
        "container": backup.container,
        "fail_reason": backup.fail_reason,
        "is_incremental": backup.is_incremental,
        "has_dependent_backups": manager.has_dependents(backup.id),
        "progress": backup.progress,  # soko's: percent of the running step
        "stats": backup.stats or {},  # soko's: what the backup (and last restore) measured
        "user_id": backup.user_id,
        "os-backup-project-attr:project_id": backup.project_id,
        "created_at": iso(backup.created_at),
        "updated_at": iso(backup.updated_at),
        "data_timestamp": iso(backup.data_timestamp),
    }


def token_of(req: falcon.Request) -> str:
    """The caller's token: the block service reaches the object store as the caller."""
    return req.get_header("X-Auth-Token")


class Backups:
    """``.../backups`` (summaries, and POST to create) and ``.../backups/detail``."""

    def __init__(self, manager: BackupManager, *, detail: bool):
        self.manager = manager
        self.detail = detail

    def on_get(self, req, resp, project_id: str) -> None:
        everyone = req.get_param_as_bool("all_tenants", default=False)
        if everyone and not req.context.auth.is_admin:
            raise Forbidden("all_tenants=1 is for admins")
        backups = self.manager.list(None if everyone else project_id,
                                    volume_id=req.get_param("volume_id"),
                                    status=req.get_param("status"), name=req.get_param("name"))
        if self.detail:
            resp.media = {"backups": [backup_detail(req, b, self.manager) for b in backups]}
        else:
            resp.media = {"backups": [backup_summary(req, b) for b in backups]}

    def on_post(self, req, resp, project_id: str) -> None:
        if self.detail:
            raise falcon.HTTPMethodNotAllowed(["GET"])
        spec = body_of(req, "backup")
        volume_id = check_id(spec.get("volume_id"), "backup.volume_id")
        backup = self.manager.create(
            project_id=project_id, user_id=req.context.auth.user_id, token=token_of(req),
            volume_id=volume_id,
            name=limits.check_text(spec.get("name"), "name", limits.NAME_MAX),
            description=limits.check_text(spec.get("description"), "description",
                                          limits.DESCRIPTION_MAX),
            incremental=check_bool(spec.get("incremental", False), "incremental"),
            force=check_bool(spec.get("force", False), "force"),
            snapshot_id=check_id(spec.get("snapshot_id"), "snapshot_id", required=False))
        resp.status = falcon.HTTP_202
        resp.media = {"backup": backup_detail(req, backup, self.manager)}


class BackupItem:
    def __init__(self, manager: BackupManager):
        self.manager = manager

    def on_get(self, req, resp, project_id: str, backup_id: str) -> None:
        backup = self.manager.get(project_id, backup_id)
        resp.media = {"backup": backup_detail(req, backup, self.manager)}

    def on_delete(self, req, resp, project_id: str, backup_id: str) -> None:
        self.manager.delete(project_id=project_id, token=token_of(req), backup_id=backup_id)
        resp.status = falcon.HTTP_202


class BackupRestore:
    """``POST .../backups/{id}/restore`` ``{"restore": {"volume_id"?, "name"?}}``."""

    def __init__(self, manager: BackupManager):
        self.manager = manager

    def on_post(self, req, resp, project_id: str, backup_id: str) -> None:
        spec = body_of(req, "restore")
        backup, volume_id = self.manager.restore(
            project_id=project_id, user_id=req.context.auth.user_id, token=token_of(req),
            backup_id=backup_id,
            volume_id=check_id(spec.get("volume_id"), "restore.volume_id", required=False),
            name=limits.check_text(spec.get("name"), "name", limits.NAME_MAX))
        volume = self.manager.volumes.get(project_id, volume_id)
        resp.status = falcon.HTTP_202
        resp.media = {"restore": {"backup_id": backup.id, "volume_id": volume_id,
                                  "volume_name": volume.name}}


def add_routes(app: falcon.App, manager: BackupManager) -> None:
    prefix = "/v3/{project_id}/backups"
    app.add_route(prefix, Backups(manager, detail=False))
    app.add_route(f"{prefix}/detail", Backups(manager, detail=True))
    app.add_route(f"{prefix}/{{backup_id}}", BackupItem(manager))
    app.add_route(f"{prefix}/{{backup_id}}/restore", BackupRestore(manager))
