"""Where object versioning (``object/middleware/object_versioning.py``) keeps an object's
versions: in its own container, under the reserved name ``NUL <object> NUL <inverted
version id>``, so that clients' requests and listings never meet them (``internal.RESERVED``)
and a container's ACLs apply to its versions as to its objects. The inverted id makes a
listing give each object's versions newest first, as Swift's versions container does.
"""

from __future__ import annotations

from soko.object.shared.internal import RESERVED
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

LAST_TICKS = 10**15 - 1  # 9999999999.99999


def version_name(obj: str, version_id: str) -> str:
    inverted = Timestamp(LAST_TICKS - Timestamp.parse(version_id).ticks)
    return f"{RESERVED}{obj}{RESERVED}{inverted.normal}"


def parse_version_name(name: str) -> tuple[str, str] | None:
    """``(object, version id)`` of a version's name, None if it is not one."""
    if not name.startswith(RESERVED):
        return None
    obj, _, inverted = name[1:].rpartition(RESERVED)
    try:
        return obj, Timestamp(LAST_TICKS - Timestamp.parse(inverted).ticks).normal
    except InvalidTimestamp:
        return None
