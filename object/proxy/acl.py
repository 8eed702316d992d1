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

Account ACLs (``X-Account-Access-Control``) are tempauth's JSON: ``{"admin": [...],
"read-write": [...], "read-only": [...]}``. Who is granted what is decided in ``access``.
"""

from __future__ import annotations

import json
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


# -- account ACLs ---------------------------------------------------------------------------

ACCOUNT_ACL_LEVELS = ("admin", "read-write", "read-only")  # most rights first


def clean_account_acl(value: str) -> str:
    """``X-Account-Access-Control`` as stored: tempauth's checks (a JSON object whose keys
    are the three levels and whose values are lists of strings), 400 with its message; the
    stored form is Swift's ``format_acl`` (compact, sorted, ASCII), empty for ``{}``."""
    try:
        acl = json.loads(value) if value else {}
    except ValueError:
        acl = None
    error = None
    if not isinstance(acl, dict):
        error = f"Syntax error in input ({value!r})"
    elif unknown := [key for key in acl if key not in ACCOUNT_ACL_LEVELS]:
        error = f"Key {json.dumps(unknown[0])} not recognized"
    else:
        for level in ACCOUNT_ACL_LEVELS:
            if not isinstance(acl.get(level, []), list):
                error = f"Value for key {json.dumps(level)} must be a list"
            elif not all(isinstance(grantee, str) for grantee in acl.get(level, [])):
                error = f"Elements of {json.dumps(level)} list must be strings"
            if error:
                break
    if error:
        raise BadRequest(f"X-Account-Access-Control invalid: {error}\n\nInput: {value}\n")
    return json.dumps(acl, ensure_ascii=True, separators=(",", ":"), sort_keys=True) \
        if acl else ""


def parse_account_acl(stored: str | None) -> dict[str, list[str]]:
    """The stored account ACL (empty if none, or unreadable: it then grants nothing)."""
    try:
        acl = json.loads(stored) if stored else {}
    except ValueError:
        return {}
    return acl if isinstance(acl, dict) else {}


def account_acl_level(stored: str | None, auth: AuthContext) -> str | None:
    """The most an account ACL grants this user: a grantee is ``<project>:<user>`` (as in
    container ACLs) or a project alone (every user of it: tempauth's account group)."""
    acl = parse_account_acl(stored)
    for level in ACCOUNT_ACL_LEVELS:
        grantees = acl.get(level)
        if isinstance(grantees, list) and (grants_user(grantees, auth)
                                           or auth.project_id in grantees
                                           or auth.project_name in grantees):
            return level
    return None
