"""Who is calling, and may they: the auth middleware every soko API uses.

A token is resolved by a ``TokenValidator`` (the identity service's, verifying locally
with the shared key, no round trip per request) into an ``AuthContext``. Resources say
what they need with attributes, so policy sits next to the route it guards:

- ``public = True``: no token needed (``/healthcheck``, ``/auth/v1.0``).
- ``allow_anonymous = True``: a token is optional and the resource decides, roles included
  (Swift ACLs and operator roles, ``object/proxy/access.py``).
- ``policy = {"POST": "admin"}``: the least role per method; by default reads need
  ``reader`` and writes ``member``. A tuple names alternatives: ``("member", "service")``
  also lets a service's user in, whose ``service`` role ranks below ``reader``.

A route with a ``{project_id}`` parameter is only for that project's tokens (or an admin's):
another project gets 403 and never a byte of data.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Protocol

from soko.common.errors import BadRequest, Forbidden, Unauthorized

ROLE_RANK = {"reader": 1, "member": 2, "admin": 3}
# What identity can hold as a project id or name (Keystone refers to projects by either).
PROJECT_REF = re.compile(r"^[^\x00-\x1f\x7f:/]{1,64}$")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Where a WSGI layer in front of a service's app puts the caller's ``AuthContext`` once it
# validated the token (the object proxy's middleware pipeline): the app and every sub-request
# the layer makes act as that caller without validating the token again. A client cannot set
# an environ key, only headers.
AUTH_ENVIRON_KEY = "soko.auth"


@dataclasses.dataclass(frozen=True)
class AuthContext:
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: frozenset[str]
    expires_at: float  # unix time

    def has_role(self, role: str) -> bool:
        if role not in ROLE_RANK:  # outside the admin > member > reader line: held or not
            return role in self.roles
        held = max((ROLE_RANK.get(r, 0) for r in self.roles), default=0)
        return held >= ROLE_RANK[role]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class TokenValidator(Protocol):
    def validate(self, token: str) -> AuthContext:
        """Returns who the token speaks for; raises ``Unauthorized`` with the reason."""


def check_project_ref(value: str, what: str = "project") -> str:
    """A project id or name as identity can hold one: no project has any other, so another
    is a 400 before it reaches a database row or an account URL."""
    if not PROJECT_REF.match(value):
        raise BadRequest(f"{what} {value[:40]!r} is not a project id or name (1-64 "
                         "characters, no control characters, ':' or '/')")
    return value


def require_role(auth: AuthContext, role: str | tuple[str, ...], what: str) -> None:
    """403 unless ``auth`` holds ``role`` (or one of them) or a higher one; also for
    per-action policies that a route's method alone cannot express (block's
    ``local_attach_role``)."""
    roles = (role,) if isinstance(role, str) else role
    if not any(auth.has_role(r) for r in roles):
        raise Forbidden(f"{what} needs the {' or '.join(map(repr, roles))} role.")


def required_role(resource: object, method: str) -> str | tuple[str, ...]:
    policy = getattr(resource, "policy", {})
    if method in policy:
        return policy[method]
    return "reader" if method in READ_METHODS else "member"


class AuthMiddleware:
    def __init__(self, validator: TokenValidator):
        self.validator = validator

    def process_resource(self, req, resp, resource, params) -> None:
        req.context.auth = None
        if resource is None or getattr(resource, "public", False):
            return
        auth = req.env.get(AUTH_ENVIRON_KEY)
        if auth is None:
            token = req.get_header("X-Auth-Token")
            if not token:
                if getattr(resource, "allow_anonymous", False):
                    return
                raise Unauthorized(
                    "This request needs a token in X-Auth-Token; "
                    "get one with `soko identity token issue` or POST /v3/auth/tokens."
                )
            auth = self.validator.validate(token)
        req.context.auth = auth
        project = params.get("project_id")
        if project is not None and project != auth.project_id:
            if not auth.is_admin:
                raise Forbidden("This token is scoped to another project.")
            check_project_ref(project)  # an admin may name any project, but only a project
        if not getattr(resource, "allow_anonymous", False):
            require_role(auth, required_role(resource, req.method),
                         f"{req.method} on this resource")
