"""``soko-identity``'s HTTP API: version discovery and Keystone v3 tokens.

The admin CRUD (projects, users, roles) lives in ``admin_api.py``; both are thin: parse,
call the manager, shape the answer as Keystone does so keystoneauth and openstack-client
work unchanged.
"""

from __future__ import annotations

import falcon

from soko.common.app import make_base_app
from soko.common.auth import AuthMiddleware
from soko.common.config import Config
from soko.common.errors import BadRequest, Forbidden, NotFound, Unauthorized
from soko.identity.catalog import build_catalog
from soko.identity.manager import IdentityManager
from soko.identity.service import identity_section
from soko.identity.tokens import IssuedToken, TokenPayload, iso_time

API_VERSION = "v3.14"
DEFAULT_DOMAIN = {"id": "default", "name": "Default"}


def version_doc(base: str) -> dict:
    return {
        "id": API_VERSION,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base}/v3/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.identity-v3+json"}],
    }


class Versions:
    """``GET /``: the versions this service speaks (keystoneauth's discovery)."""

    public = True

    def on_get(self, req, resp):
        resp.status = falcon.HTTP_300
        resp.media = {"versions": {"values": [version_doc(req.prefix)]}}


class Version:
    """``GET /v3``: the v3 version document."""

    public = True

    def on_get(self, req, resp):
        resp.media = {"version": version_doc(req.prefix)}


def body_object(req: falcon.Request, key: str) -> dict:
    """The request's JSON body ``{key: {...}}``, or 400 saying what was expected."""
    media = req.get_media(default_when_empty=None)
    if not isinstance(media, dict) or not isinstance(media.get(key), dict):
        raise BadRequest(f"The request body must be a JSON object {{\"{key}\": {{...}}}}.")
    return media[key]


def check_domain(where: dict, what: str) -> None:
    domain = where.get("domain")
    if domain is None:
        return
    if not isinstance(domain, dict):
        raise BadRequest(f"{what}.domain must be an object.")
    ok = str(domain.get("id", "default")).lower() == "default" and \
        str(domain.get("name", "Default")).lower() == "default"
    if not ok:
        raise Unauthorized("soko has one domain, 'Default'; no other domain exists.")


class TokenView:
    """Shapes a token as Keystone v3 does (``token`` object with the catalog)."""

    def __init__(self, config: Config, region: str):
        self.config = config
        self.region = region

    def body(self, payload: TokenPayload, with_catalog: bool = True) -> dict:
        token = {
            "methods": list(payload.methods),
            "user": {"id": payload.user_id, "name": payload.user_name,
                     "domain": DEFAULT_DOMAIN, "password_expires_at": None},
            "audit_ids": [payload.token_id],
            "issued_at": iso_time(payload.issued_at),
            "expires_at": iso_time(payload.expires_at),
            "project": {"id": payload.project_id, "name": payload.project_name,
                        "domain": DEFAULT_DOMAIN},
            "is_domain": False,
            "roles": [{"id": r, "name": r} for r in payload.roles],
        }
        if with_catalog:
            token["catalog"] = build_catalog(self.config, payload.project_id, self.region)
        return {"token": token}


class AuthTokens:
    """``/v3/auth/tokens``: POST logs in; GET/HEAD validate ``X-Subject-Token``; DELETE revokes.

    POST needs no token, so the resource is public and checks the caller's token itself
    for the other methods: a token may inspect or revoke itself, an admin any token.
    """

    public = True

    def __init__(self, manager: IdentityManager, view: TokenView):
        self.manager = manager
        self.view = view

    def on_post(self, req, resp):
        auth = body_object(req, "auth")
        identity = auth.get("identity")
        if not isinstance(identity, dict) or not isinstance(identity.get("methods"), list):
            raise BadRequest("auth.identity.methods must list the login methods (\"password\").")
        project_id, project_name = self.scope(auth)
        methods = identity["methods"]
        if "password" in methods:
            issued = self.password_login(identity, project_id, project_name)
        elif "token" in methods:
            issued = self.token_login(identity, project_id, project_name)
        else:
            raise Unauthorized("soko supports the 'password' and 'token' login methods.")
        resp.status = falcon.HTTP_201
        resp.set_header("X-Subject-Token", issued.token)
        resp.media = self.view.body(issued.payload, "nocatalog" not in req.params)

    def password_login(self, identity, project_id, project_name) -> IssuedToken:
        password = identity.get("password")
        user = password.get("user") if isinstance(password, dict) else None
        if not isinstance(user, dict):
            raise BadRequest("auth.identity.password.user must be an object.")
        check_domain(user, "auth.identity.password.user")
        return self.manager.authenticate(
            password=user.get("password"), user_name=user.get("name"),
            user_id=None if "name" in user else user.get("id"),
            project_id=project_id, project_name=project_name,
        )

    def token_login(self, identity, project_id, project_name) -> IssuedToken:
        token = identity.get("token")
        if not isinstance(token, dict) or not isinstance(token.get("id"), str):
            raise BadRequest("auth.identity.token.id must be the token to exchange.")
        payload = self.manager.validator.payload(token["id"])
        return self.manager.rescope(payload, project_id=project_id, project_name=project_name)

    @staticmethod
    def scope(auth: dict) -> tuple[str | None, str | None]:
        scope = auth.get("scope")
        if scope is None:
            return None, None
        if scope == "unscoped" or not isinstance(scope, dict):
            raise Unauthorized("soko tokens are always scoped to a project; name one in "
                               "auth.scope.project.")
        project = scope.get("project")
        if not isinstance(project, dict):
            raise Unauthorized("soko tokens are scoped to projects only (no domain or system "
                               "scope); name one in auth.scope.project.")
        check_domain(project, "auth.scope.project")
        if isinstance(project.get("id"), str):
            return project["id"], None
        if isinstance(project.get("name"), str):
            return None, project["name"]
        raise BadRequest("auth.scope.project needs an id or a name.")

    def subject(self, req) -> tuple[TokenPayload, TokenPayload]:
        """(caller, subject) payloads; the caller must be the subject or an admin."""
        caller_token = req.get_header("X-Auth-Token")
        if not caller_token:
            raise Unauthorized("Send your token in X-Auth-Token.")
        caller = self.manager.validator.payload(caller_token)
        subject_token = req.get_header("X-Subject-Token")
        if not subject_token:
            raise BadRequest("Send the token to check in X-Subject-Token.")
        if subject_token == caller_token:
            return caller, caller
        if "admin" not in caller.roles:
            raise Forbidden("Only an admin may inspect or revoke another user's token.")
        try:
            return caller, self.manager.validator.payload(subject_token)
        except Unauthorized as exc:  # Keystone's answer for a bad subject token
            raise NotFound(f"X-Subject-Token: {exc.message}") from None

    def on_get(self, req, resp):
        _, subject = self.subject(req)
        resp.set_header("X-Subject-Token", req.get_header("X-Subject-Token"))
        resp.media = self.view.body(subject, "nocatalog" not in req.params)

    def on_head(self, req, resp):
        self.subject(req)
        resp.status = falcon.HTTP_200

    def on_delete(self, req, resp):
        _, subject = self.subject(req)
        self.manager.revoke_token(subject)
        resp.status = falcon.HTTP_204


class AuthProjects:
    """``GET /v3/auth/projects``: the projects the caller's user may scope to."""

    def __init__(self, manager: IdentityManager):
        self.manager = manager

    def on_get(self, req, resp):
        projects = self.manager.projects_of(req.context.auth.user_id)
        resp.media = {"projects": projects, "links": {"self": req.uri, "next": None,
                                                      "previous": None}}


class AuthCatalog:
    """``GET /v3/auth/catalog``: the caller's catalog."""

    def __init__(self, view: TokenView):
        self.view = view

    def on_get(self, req, resp):
        auth = req.context.auth
        resp.media = {"catalog": build_catalog(self.view.config, auth.project_id,
                                               self.view.region)}


def make_app(config: Config, *, manager: IdentityManager | None = None) -> falcon.App:
    from soko.identity.admin_api import add_admin_routes
    from soko.identity.credentials_api import add_credential_routes
    from soko.identity.ec2 import CredentialCipher, Ec2Credentials

    manager = manager or IdentityManager.from_config(config)
    view = TokenView(config, identity_section(config).region)
    app = make_base_app(middleware=[AuthMiddleware(manager.validator)])
    app.add_route("/", Versions())
    app.add_route("/v3", Version())
    app.add_route("/v3/", Version())
    app.add_route("/v3/auth/tokens", AuthTokens(manager, view))
    app.add_route("/v3/auth/projects", AuthProjects(manager))
    app.add_route("/v3/auth/catalog", AuthCatalog(view))
    add_admin_routes(app, manager)
    add_credential_routes(app, Ec2Credentials(
        manager.sessions, CredentialCipher.from_config(config, create=True)))
    return app
