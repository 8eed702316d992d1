"""Reading a Neutron request body: the resource's object, each field checked by type.

Neutron answers an unknown attribute, a wrong type or a missing required field with 400
and a message naming the field; so does this, before anything touches the DB.
"""

from __future__ import annotations

import uuid

from soko.common.auth import AuthContext
from soko.common.errors import BadRequest, Forbidden
from soko.net.models import NAME_MAX

UNSET = object()


class Body:
    """The ``{"<resource>": {...}}`` object of a request, with typed accessors."""

    def __init__(self, raw: object, resource: str, allowed: set[str]):
        if not isinstance(raw, dict) or not isinstance(raw.get(resource), dict):
            raise BadRequest(f"Resource body required: a JSON object {{\"{resource}\": {{...}}}}.")
        self.values: dict = raw[resource]
        unknown = sorted(set(self.values) - allowed - {"project_id", "tenant_id"})
        if unknown:
            raise BadRequest(f"Unrecognized attribute(s) '{', '.join(unknown)}'")

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: object = UNSET) -> object:
        return self.values.get(key, default)

    def text(self, key: str, default: str = "") -> str:
        value = self.values.get(key, default)
        if not isinstance(value, str) or len(value) > NAME_MAX:
            raise BadRequest(f"Invalid input for {key}. Reason: '{value}' is not a string of "
                             f"at most {NAME_MAX} characters.")
        if "\x00" in value:  # PostgreSQL cannot store it (common/validation.py's text rule)
            raise BadRequest(f"Invalid input for {key}. Reason: it contains a NUL character.")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.values.get(key, default)
        if not isinstance(value, bool):
            raise BadRequest(f"Invalid input for {key}. Reason: '{value}' is not a boolean.")
        return value

    def uuid(self, key: str, *, required: bool = True) -> str | None:
        value = self.values.get(key)
        if value is None and not required:
            return None
        if not is_uuid(value):
            raise BadRequest(f"Invalid input for {key}. Reason: '{value}' is not a valid UUID.")
        return value

    def project(self, auth: AuthContext) -> str:
        """The owning project: the caller's, or (admin only) the one the body names."""
        named = self.values.get("project_id", self.values.get("tenant_id"))
        if named is None or named == auth.project_id:
            return auth.project_id
        if not isinstance(named, str) or not named:
            raise BadRequest(f"Invalid input for project_id. Reason: '{named}' is not a string.")
        if not auth.is_admin:
            raise Forbidden("Only an admin may create a resource for another project.")
        return named


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def new_id() -> str:
    return str(uuid.uuid4())
