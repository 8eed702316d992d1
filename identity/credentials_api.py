"""Keystone's EC2 credential routes: ``/v3/credentials`` (type ``ec2``) and the
``/v3/users/{user_id}/credentials/OS-EC2`` shortcuts that ec2/S3 tooling uses.

A user manages their own credentials, for projects they hold a role on; an admin manages
anyone's. Reading a credential shows its secret, as Keystone does (the owner needs it).
"""

from __future__ import annotations

import falcon

from soko.common.errors import BadRequest, NotFound
from soko.identity.admin_api import links, optional, require_self_or_admin
from soko.identity.api import body_object
from soko.identity.ec2 import Ec2Credentials, credential_id, os_ec2_record

SELF_SERVICE = {"GET": "reader", "HEAD": "reader", "POST": "reader", "DELETE": "reader"}


def owned(req: falcon.Request, record: dict) -> dict:
    """The credential, if the caller may see it (404 otherwise: its existence is private)."""
    auth = req.context.auth
    if not auth.is_admin and record["user_id"] != auth.user_id:
        raise NotFound("No such credential.")
    return record


def with_link(req: falcon.Request, record: dict) -> dict:
    return {**record, "links": {"self": f"{req.prefix}/v3/credentials/{record['id']}"}}


class Credentials:
    policy = SELF_SERVICE

    def __init__(self, credentials: Ec2Credentials):
        self.credentials = credentials

    def on_get(self, req, resp):
        auth = req.context.auth
        user_id = req.get_param("user_id")
        if not auth.is_admin:
            user_id = auth.user_id
        if req.get_param("type") not in (None, "ec2"):
            records = []
        else:
            records = self.credentials.list(user_id)
        resp.media = {"credentials": [with_link(req, r) for r in records], "links": links(req)}

    def on_post(self, req, resp):
        fields = body_object(req, "credential")
        if fields.get("type") != "ec2":
            raise BadRequest("Only credentials of type ec2 are supported.")
        user_id = optional(fields, "user_id", str, "credential") or req.context.auth.user_id
        project_id = optional(fields, "project_id", str, "credential")
        if project_id is None:
            raise BadRequest("An ec2 credential needs credential.project_id.")
        require_self_or_admin(req, user_id)
        record = self.credentials.create(user_id, project_id, fields.get("blob"))
        resp.status = falcon.HTTP_201
        resp.media = {"credential": with_link(req, record)}


class CredentialById:
    policy = SELF_SERVICE

    def __init__(self, credentials: Ec2Credentials):
        self.credentials = credentials

    def on_get(self, req, resp, credential_id):
        record = owned(req, self.credentials.get(credential_id))
        resp.media = {"credential": with_link(req, record)}

    def on_delete(self, req, resp, credential_id):
        owned(req, self.credentials.get(credential_id))
        self.credentials.delete(credential_id)
        resp.status = falcon.HTTP_204


class OsEc2Credentials:
    """``/v3/users/{user_id}/credentials/OS-EC2``: list, or create for ``tenant_id``."""

    policy = SELF_SERVICE

    def __init__(self, credentials: Ec2Credentials):
        self.credentials = credentials

    def on_get(self, req, resp, user_id):
        require_self_or_admin(req, user_id)
        resp.media = {"credentials": [os_ec2_record(r) for r in self.credentials.list(user_id)],
                      "links": links(req)}

    def on_post(self, req, resp, user_id):
        require_self_or_admin(req, user_id)
        media = req.get_media(default_when_empty=None)
        if not isinstance(media, dict) or not isinstance(media.get("tenant_id"), str):
            raise BadRequest('The request body must be {"tenant_id": "<project id>"}.')
        record = self.credentials.create(user_id, media["tenant_id"])
        resp.status = falcon.HTTP_201
        resp.media = {"credential": os_ec2_record(record)}


class OsEc2Credential:
    policy = SELF_SERVICE

    def __init__(self, credentials: Ec2Credentials):
        self.credentials = credentials

    def record(self, req, user_id: str, access: str) -> dict:
        require_self_or_admin(req, user_id)
        record = self.credentials.get(credential_id(access))
        if record["user_id"] != user_id:  # someone else's: as if it did not exist
            raise NotFound("No such credential.")
        return record

    def on_get(self, req, resp, user_id, access):
        resp.media = {"credential": os_ec2_record(self.record(req, user_id, access))}

    def on_delete(self, req, resp, user_id, access):
        record = self.record(req, user_id, access)
        self.credentials.delete(record["id"])
        resp.status = falcon.HTTP_204


def add_credential_routes(app: falcon.App, credentials: Ec2Credentials) -> None:
    app.add_route("/v3/credentials", Credentials(credentials))
    app.add_route("/v3/credentials/{credential_id}", CredentialById(credentials))
    app.add_route("/v3/users/{user_id}/credentials/OS-EC2", OsEc2Credentials(credentials))
    app.add_route("/v3/users/{user_id}/credentials/OS-EC2/{access}",
                  OsEc2Credential(credentials))

