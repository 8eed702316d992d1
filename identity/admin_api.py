"""Keystone-v3-shaped CRUD for projects, users, roles and role assignments.

Policy (enforced by ``common.auth.AuthMiddleware`` from the ``policy`` attributes, plus the
self-service checks below): creating, changing and deleting anything needs ``admin``; a
project's members may read that project and its role assignments; a user may read
themselves and change their own password.
"""

from __future__ import annotations

import falcon

from soko.common.errors import BadRequest, Forbidden
from soko.common.validation import check_text
from soko.identity.api import body_object
from soko.identity.manager import IdentityManager
from soko.identity.roles import ROLES

TEXT_MAX = {"description": 65535, "password": 4096}  # others: 255 (names, email)
ADMIN_ALL = {"GET": "admin", "HEAD": "admin", "POST": "admin", "PUT": "admin",
             "PATCH": "admin", "DELETE": "admin"}


def links(req: falcon.Request) -> dict:
    return {"self": req.uri, "next": None, "previous": None}


def with_link(req: falcon.Request, record: dict, collection: str) -> dict:
    return {**record, "links": {"self": f"{req.prefix}/v3/{collection}/{record['id']}"}}


def optional(fields: dict, key: str, kind: type, what: str):
    """An optional field of ``kind``; a string also within its column (``TEXT_MAX``) and
    without NUL."""
    value = fields.get(key)
    if value is not None and not isinstance(value, kind):
        raise BadRequest(f"{what}.{key} must be a {kind.__name__}.")
    if isinstance(value, str):
        check_text(value, f"{what}.{key}", TEXT_MAX.get(key, 255))
    return value


def require_self_or_admin(req: falcon.Request, user_id: str) -> None:
    auth = req.context.auth
    if not auth.is_admin and user_id not in (auth.user_id, auth.user_name):
        raise Forbidden("Only an admin may see or change another user.")


class Projects:
    policy = ADMIN_ALL

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_get(self, req, resp):
        projects = self.manager.list_projects(name=req.get_param("name"))
        resp.media = {"projects": [with_link(req, p, "projects") for p in projects],
                      "links": links(req)}

    def on_post(self, req, resp):
        fields = body_object(req, "project")
        project = self.manager.create_project(
            fields.get("name"),
            description=optional(fields, "description", str, "project") or "",
            enabled=optional(fields, "enabled", bool, "project") is not False,
        )
        resp.status = falcon.HTTP_201
        resp.media = {"project": with_link(req, project, "projects")}


class Project:
    policy = {**ADMIN_ALL, "GET": "reader"}  # members read their own project

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_get(self, req, resp, project_id):
        resp.media = {"project": with_link(req, self.manager.get_project(project_id),
                                           "projects")}

    def on_patch(self, req, resp, project_id):
        fields = body_object(req, "project")
        project = self.manager.update_project(
            project_id,
            name=optional(fields, "name", str, "project"),
            description=optional(fields, "description", str, "project"),
            enabled=optional(fields, "enabled", bool, "project"),
        )
        resp.media = {"project": with_link(req, project, "projects")}

    def on_delete(self, req, resp, project_id):
        self.manager.delete_project(project_id)
        resp.status = falcon.HTTP_204


class Users:
    policy = ADMIN_ALL

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_get(self, req, resp):
        users = self.manager.list_users(name=req.get_param("name"))
        resp.media = {"users": [with_link(req, u, "users") for u in users], "links": links(req)}

    def on_post(self, req, resp):
        fields = body_object(req, "user")
        user = self.manager.create_user(
            fields.get("name"),
            fields.get("password"),
            default_project=optional(fields, "default_project_id", str, "user"),
            email=optional(fields, "email", str, "user") or "",
            enabled=optional(fields, "enabled", bool, "user") is not False,
        )
        resp.status = falcon.HTTP_201
        resp.media = {"user": with_link(req, user, "users")}


class User:
    policy = {**ADMIN_ALL, "GET": "reader"}  # and only themselves, checked below

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_get(self, req, resp, user_id):
        require_self_or_admin(req, user_id)
        resp.media = {"user": with_link(req, self.manager.get_user(user_id), "users")}

    def on_patch(self, req, resp, user_id):
        fields = body_object(req, "user")
        kwargs = {}
        if "default_project_id" in fields:
            kwargs["default_project"] = optional(fields, "default_project_id", str, "user")
        user = self.manager.update_user(
            user_id,
            name=optional(fields, "name", str, "user"),
            password=optional(fields, "password", str, "user"),
            enabled=optional(fields, "enabled", bool, "user"),
            email=optional(fields, "email", str, "user"),
            **kwargs,
        )
        resp.media = {"user": with_link(req, user, "users")}

    def on_delete(self, req, resp, user_id):
        self.manager.delete_user(user_id)
        resp.status = falcon.HTTP_204


class UserPassword:
    """``POST /v3/users/{user_id}/password``: a user changes their own password."""

    policy = {"POST": "reader"}

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_post(self, req, resp, user_id):
        if user_id != req.context.auth.user_id:
            raise Forbidden("A user may change only their own password this way.")
        fields = body_object(req, "user")
        original, new = fields.get("original_password"), fields.get("password")
        if not isinstance(original, str) or not isinstance(new, str):
            raise BadRequest("user.original_password and user.password must be strings.")
        self.manager.change_password(user_id, original, new)
        resp.status = falcon.HTTP_204


class UserProjects:
    policy = {"GET": "reader"}

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_get(self, req, resp, user_id):
        require_self_or_admin(req, user_id)
        user = self.manager.get_user(user_id)
        resp.media = {"projects": [with_link(req, p, "projects")
                                   for p in self.manager.projects_of(user["id"])],
                      "links": links(req)}


class Roles:
    def on_get(self, req, resp):
        resp.media = {"roles": [{"id": r, "name": r, "domain_id": None} for r in ROLES],
                      "links": links(req)}


class Role:
    def on_get(self, req, resp, role_id):
        if role_id not in ROLES:
            raise falcon.HTTPNotFound(description=f"No role {role_id:.40}; the roles are "
                                                  f"{', '.join(ROLES)}.")
        resp.media = {"role": {"id": role_id, "name": role_id, "domain_id": None}}


class UserRoles:
    """``GET /v3/projects/{project_id}/users/{user_id}/roles``."""

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_get(self, req, resp, project_id, user_id):
        roles = self.manager.roles_of(project_id, user_id)
        resp.media = {"roles": [{"id": r, "name": r} for r in roles], "links": links(req)}


class Grant:
    """``PUT/HEAD/GET/DELETE /v3/projects/{project_id}/users/{user_id}/roles/{role_id}``."""

    policy = {**ADMIN_ALL, "GET": "reader", "HEAD": "reader"}

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_put(self, req, resp, project_id, user_id, role_id):
        self.manager.grant_role(project_id, user_id, role_id)
        resp.status = falcon.HTTP_204

    def on_head(self, req, resp, project_id, user_id, role_id):
        if not self.manager.has_role(project_id, user_id, role_id):
            raise falcon.HTTPNotFound(description="No such role assignment.")
        resp.status = falcon.HTTP_204

    on_get = on_head

    def on_delete(self, req, resp, project_id, user_id, role_id):
        self.manager.revoke_role(project_id, user_id, role_id)
        resp.status = falcon.HTTP_204


def add_admin_routes(app: falcon.App, manager: IdentityManager) -> None:
    app.add_route("/v3/projects", Projects(manager))
    app.add_route("/v3/projects/{project_id}", Project(manager))
    app.add_route("/v3/projects/{project_id}/users/{user_id}/roles", UserRoles(manager))
    app.add_route("/v3/projects/{project_id}/users/{user_id}/roles/{role_id}", Grant(manager))
    app.add_route("/v3/users", Users(manager))
    app.add_route("/v3/users/{user_id}", User(manager))
    app.add_route("/v3/users/{user_id}/password", UserPassword(manager))
    app.add_route("/v3/users/{user_id}/projects", UserProjects(manager))
    app.add_route("/v3/roles", Roles())
    app.add_route("/v3/roles/{role_id}", Role())
