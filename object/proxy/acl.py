"""Swift container ACLs: ``X-Container-Read`` / ``X-Container-Write``, with the grammar of
Swift's ``common/middleware/acl.py`` and the meanings of its ``keystoneauth`` (soko's tokens
are Keystone's, so a request has a project, a user and roles).

Items, comma-separated:

- ``.r:<host>`` referrer designations (``.ref``, ``.referer``, ``.referrer`` too): ``*``
  any referrer, ``.example.com`` (or ``*.example.com``) a domain, ``-`` in front denies;
  applied in order. They let anyone read objects without a token; listings need
  ``.rlistings`` as well. Read ACLs only.
- ``<project>:<user>``: that user of that project (ids or names, either side ``*``).
- anything else (``AUTH_<id>``, a project name alone, ``.rlistings``...) is a group, which
  keystoneauth matches against the role names of a user of the account's own project.

A value is stored as Swift stores it, cleaned (``bob , sue`` → ``bob,sue``,
``.ref:*.example.com`` → ``.r:.example.com``).
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from soko.common.auth import AuthContext
from soko.common.errors import BadRequest

REFERRER_DESIGNATORS = (".r", ".ref", ".referer", ".referrer")


def clean_acl(header: str, value: str) -> str:
    """The ACL as Swift stores it; 400 with Swift's message for what it refuses."""
    items = []
    for raw in (item.strip() for item in value.split(",")):
        if not raw:
            continue
        first, colon, second = (part.strip() for part in raw.partition(":"))
        if not colon or not first.startswith("."):
            items.append(raw)
            continue
        if first not in REFERRER_DESIGNATORS:
            raise BadRequest(f"Unknown designator {first!r} in ACL: {raw!r}")
        if "write" in header.lower():
            raise BadRequest(f"Referrers not allowed in write ACL: {raw!r}")
        negate = second.startswith("-")
        if negate:
            second = second[1:].strip()
        if second != "*" and second.startswith("*"):
            second = second[1:].strip()
        if second in ("", "."):
            raise BadRequest(f"No host/domain value after referrer designation in ACL: "
                             f"{raw!r}")
        items.append(f".r:{'-' if negate else ''}{second}")
    return ",".join(items)


def parse_acl(value: str | None) -> tuple[list[str], list[str]]:
    """(referrer designations without ``.r:``, groups) of a stored ACL."""
    referrers, groups = [], []
    for item in filter(None, (value or "").split(",")):
        if item.startswith(".r:"):
            referrers.append(item[3:])
        else:
            groups.append(unquote(item))
    return referrers, groups


def referrer_allowed(referer: str | None, referrers: list[str]) -> bool:
    """The last designation matching the ``Referer`` host decides."""
    host = urlparse(referer or "").hostname or "unknown"
    allow = False
    for designation in referrers:
        denies = designation.startswith("-")
        pattern = designation.removeprefix("-")
        matches = pattern == host or (pattern.startswith(".") and host.endswith(pattern))
        if denies and matches:
            allow = False
        elif not denies and (matches or pattern == "*"):
            allow = True
    return allow


def grants_user(groups: list[str], auth: AuthContext) -> bool:
    """A ``<project>:<user>`` group naming this user (keystoneauth's cross-tenant ACL)."""
    return any(f"{project}:{user}" in groups
               for project in ("*", auth.project_id, auth.project_name)
               for user in ("*", auth.user_id, auth.user_name))


def may_access(acl: str | None, auth: AuthContext | None, *, own_project: bool,
               referer: str | None, listing: bool = False) -> bool:
    """keystoneauth's order for a request that is not the owner's: a ``project:user``
    grant, then the referrer designations (an object, or a listing with ``.rlistings``),
    then, for a user of the account's own project, a group naming one of its roles."""
    referrers, groups = parse_acl(acl)
    if auth is not None and grants_user(groups, auth):
        return True
    if referrer_allowed(referer, referrers):
        return not listing or ".rlistings" in groups
    if auth is None or not own_project:
        return False
    lowered = {group.lower() for group in groups}
    return any(role.lower() in lowered for role in auth.roles)
