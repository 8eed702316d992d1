"""Swift container ACLs: ``X-Container-Read`` / ``X-Container-Write``.

Items, comma-separated: ``.r:*`` (anyone may read objects, no token needed), ``.rlistings``
(with ``.r:*``: anyone may list too), and ``<project>:<user>`` where either side may be
``*`` and names or ids both match.
"""

from __future__ import annotations

from soko.common.auth import AuthContext
from soko.common.errors import BadRequest


def parse_acl(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def validate_acl(value: str, header: str) -> None:
    for item in parse_acl(value):
        if item.startswith(".") and item not in (".rlistings",) and not item.startswith(".r:"):
            raise BadRequest(f"{header}: unknown ACL element {item!r}")
        if item.startswith(".r:") and item.removeprefix(".r:").lstrip("-") == "":
            raise BadRequest(f"{header}: no host/domain value after referrer designation "
                             f"in {item!r}")
        if header.lower().endswith("write") and item.startswith("."):
            raise BadRequest(f"{header}: referrer elements are only for read ACLs")
        if not item.startswith(".") and ":" not in item:
            raise BadRequest(f"{header}: expected <project>:<user>, got {item!r}")


def grants_user(items: list[str], auth: AuthContext | None) -> bool:
    if auth is None:
        return False
    for item in items:
        if item.startswith("."):
            continue
        project, _, user = item.partition(":")
        project_ok = project in ("*", auth.project_id, auth.project_name)
        user_ok = user in ("*", auth.user_id, auth.user_name)
        if project_ok and user_ok:
            return True
    return False


def public_read(items: list[str]) -> bool:
    return any(item in (".r:*", ".r:*.*") for item in items)


def may_read(read_acl: str | None, auth: AuthContext | None, listing: bool) -> bool:
    items = parse_acl(read_acl)
    if grants_user(items, auth):
        return True
    return public_read(items) and (not listing or ".rlistings" in items)


def may_write(write_acl: str | None, auth: AuthContext | None) -> bool:
    return grants_user(parse_acl(write_acl), auth)
