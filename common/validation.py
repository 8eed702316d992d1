"""What every soko API checks in what a client sends, before any of it reaches a database,
another service's URL or a tool.

- JSON bodies are bounded (``MAX_JSON_BYTES``, ``MAX_JSON_DEPTH``) and hold only finite
  numbers: a body nested a thousand deep would otherwise raise ``RecursionError`` in the
  parser (a 500), and ``NaN``/``1e400`` are not numbers any API field means.
- Whole numbers stay in the SQL ``INTEGER`` range (``DB_INT_MAX``, Cinder's and Nova's
  ``db.MAX_INT``): a bigger one would reach the database and fail there.
- Ids are ids (``check_id``): a client-supplied id becomes part of another service's URL,
  so ``../../v2/images`` must never get that far.
- Text has no NUL: PostgreSQL cannot store it, and no name or description needs it.

Every violation is a ``BadRequest`` naming the field and the rule.
"""

from __future__ import annotations

import json
import math
import re

import falcon
import falcon.media

from soko.common.errors import BadRequest, PayloadTooLarge

MAX_JSON_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
DB_INT_MAX = 2**31 - 1
UUID_PATTERN = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _too_deep(value) -> bool:
    """Whether ``value`` nests deeper than ``MAX_JSON_DEPTH``, level by level (no recursion)."""
    level = [value] if isinstance(value, (dict, list)) else []
    for _ in range(MAX_JSON_DEPTH):
        level = [child for node in level
                 for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]
        if not level:
            return False
    return True


class BoundedJSONHandler(falcon.media.JSONHandler):
    """falcon's JSON request handler with soko's bounds; malformed JSON stays falcon's 400."""

    def __init__(self):
        super().__init__(loads=lambda text: json.loads(
            text, parse_float=_finite, parse_constant=_no_constant))

    def deserialize(self, stream, content_type, content_length):
        if content_length is not None and content_length > MAX_JSON_BYTES:
            raise PayloadTooLarge(f"a JSON body may hold at most {MAX_JSON_BYTES} bytes")
        data = stream.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise PayloadTooLarge(f"a JSON body may hold at most {MAX_JSON_BYTES} bytes")
        try:
            value = self._deserialize(data)
        except RecursionError:
            value = None
        else:
            if not _too_deep(value):
                return value
        raise BadRequest(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")


def json_only_handlers() -> falcon.media.Handlers:
    """Request bodies are JSON (or a stream a resource reads itself): form and multipart
    bodies are 415, not dictionaries of strings that look almost like the real thing."""
    return falcon.media.Handlers({falcon.MEDIA_JSON: BoundedJSONHandler()})


def one_action(req: falcon.Request, actions: tuple[str, ...]) -> tuple[str, dict]:
    """The single ``{action: args}`` of an OpenStack action body (``POST .../action``);
    the arguments are an object, or null for none."""
    body = req.get_media(default_when_empty=None)
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in actions:
        raise BadRequest(f"the body must hold exactly one action of: {', '.join(actions)}")
    action, args = next(iter(body.items()))
    if args is not None and not isinstance(args, dict):
        raise BadRequest(f"the arguments of {action} must be an object")
    return action, args or {}


def check_whole(value, what: str, minimum: int = 0, maximum: int = DB_INT_MAX) -> int:
    """A whole number in ``minimum..maximum`` (a string of digits too, as the Cinder and
    Nova clients sometimes send)."""
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{what} must be a whole number, got {str(value)[:40]!r}")
    if not minimum <= value <= maximum:
        shown = value if abs(value) < 10**30 else f"a {len(str(abs(value)))}-digit number"
        raise BadRequest(f"{what} must be between {minimum} and {maximum}, got {shown}")
    return value


def check_text(value, what: str, maximum: int, *, required: bool = False) -> str | None:
    """A string of at most ``maximum`` characters without NUL (None when not required)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"{what} must be a {'non-empty ' if required else ''}string, "
                         f"got {type(value).__name__}")
    if len(value) > maximum:
        raise BadRequest(f"{what} is {len(value)} characters; the limit is {maximum}")
    if "\x00" in value:
        raise BadRequest(f"{what} must not contain NUL characters")
    return value


def is_id(value) -> bool:
    return isinstance(value, str) and UUID_PATTERN.match(value) is not None


def check_id(value, what: str, *, required: bool = True) -> str | None:
    """A UUID (``8-4-4-4-12`` hex), as every volume, snapshot, backup, image and server id
    is; anything else is refused before it can become part of a URL."""
    if value is None and not required:
        return None
    if not is_id(value):
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise BadRequest(f"{what} must be an id (a UUID), got {shown!r}")
    return value
