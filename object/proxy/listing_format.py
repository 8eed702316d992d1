"""Swift's listing formats for account and container GETs and HEADs: plain, JSON, XML.

The storage node always answers JSON; the proxy renders what the client asked for with
``?format=`` or ``Accept``, exactly as Swift's ``listing_formats`` middleware does: the
same content types (``; charset=utf-8`` always, HEAD as GET), JSON with non-ASCII escaped,
XML as ElementTree writes it, a plain listing with nothing in it as a 204.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, unquote, unquote_plus
from xml.etree.ElementTree import Element, SubElement, tostring

import falcon

from soko.common.errors import BadRequest, PreconditionFailed
from soko.object.proxy.constraints import ACCOUNT_LISTING_LIMIT, CONTAINER_LISTING_LIMIT
from soko.object.shared.version_names import parse_version_name

QUERY_KEYS = {
    "account": ("marker", "end_marker", "prefix", "delimiter", "reverse"),
    "container": ("marker", "end_marker", "prefix", "delimiter", "reverse", "path"),
}
LIMITS = {"account": ACCOUNT_LISTING_LIMIT, "container": CONTAINER_LISTING_LIMIT}
FORMAT_TYPES = {"plain": "text/plain", "json": "application/json", "xml": "application/xml"}
OFFERED = ("text/plain", "application/json", "application/xml", "text/xml")
XML_FIELDS = {
    "container": ("name", "hash", "bytes", "content_type", "last_modified"),
    "account": ("name", "count", "bytes", "last_modified", "storage_policy"),
}
# RFC 7231 media ranges, as Swift's ``swob.Accept`` reads them
TOKEN = r'[^()<>@,;:\"/\[\]?={}\x00-\x20\x7f]+'
PARAM = r'(?:\s*;\s*' + TOKEN + r'\s*=\s*(?:' + TOKEN + r'|"(?:[^"\\]|\\.)*"))'
MEDIA_RANGE = re.compile(r"^\s*(" + TOKEN + r")/(" + TOKEN + r")(" + PARAM + r"*?\s*)$")


def query_params(req: falcon.Request) -> dict[str, str]:
    """The query as Swift reads it: blank values kept (``path=``), the last of a repeated
    name wins, and a value that is not UTF-8 is a 400."""
    params = {}
    for pair in filter(None, req.query_string.split("&")):
        name, _, value = pair.partition("=")
        name = unquote_plus(name)
        try:
            params[name] = unquote_plus(value, errors="strict")
        except UnicodeDecodeError:
            raise BadRequest(f'"{name}" parameter not valid UTF-8',
                             content_type="text/plain") from None
    return params


def listing_query(req: falcon.Request, kind: str) -> dict[str, str]:
    """The listing parameters to pass to the node, checked as Swift checks them: a
    ``limit`` over the cap is 412, one that is not all digits is ignored."""
    params = query_params(req)
    query = {k: params[k] for k in QUERY_KEYS[kind] if k in params}
    limit = params.get("limit", "")
    if limit.isdigit():
        if int(limit) > LIMITS[kind]:
            raise PreconditionFailed(f"Maximum limit is {LIMITS[kind]}")
        query["limit"] = limit
    query["format"] = "json"
    return query


def accepted_types(accept: str) -> list[str]:
    """The media-range patterns of ``Accept``, best first (by q, exact before wildcards)."""
    ranges = []
    for item in accept.split(","):
        match = MEDIA_RANGE.match(item)
        if not match:
            raise BadRequest("Invalid Accept header")
        main, sub, params = match.groups()
        quality = 1.0
        for param in filter(None, (p.strip() for p in params.split(";"))):
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    raise BadRequest("Invalid Accept header") from None
        pattern = (TOKEN if main == "*" else re.escape(main)) + "/" + (
            TOKEN if sub == "*" else re.escape(sub))
        ranges.append((f"^{pattern}$", quality, "*" not in (main, sub)))
    ranges.sort(key=lambda r: (r[1], r[2]), reverse=True)
    return [r[0] for r in ranges]


def listing_content_type(req: falcon.Request) -> str:
    """``format=`` (unknown values mean plain) or else the best match for ``Accept``."""
    fmt = query_params(req).get("format")
    accept = FORMAT_TYPES.get(fmt.lower(), "text/plain") if fmt else req.get_header("Accept")
    if not accept:
        return OFFERED[0]
    for pattern in accepted_types(accept):
        for offered in OFFERED:
            if re.match(pattern, offered):
                return offered
    raise falcon.HTTPNotAcceptable()


def xml_listing(entries: list[dict], kind: str, name: str) -> bytes:
    doc = Element(kind, name=name)
    if kind == "account":
        doc.text = "\n"
    for entry in entries:
        if "subdir" in entry:
            item = SubElement(doc, "subdir", name=entry["subdir"])
            if kind == "container":
                SubElement(item, "name").text = entry["subdir"]
        else:
            item = SubElement(doc, "object" if kind == "container" else "container")
            for field in XML_FIELDS[kind]:
                if field in entry:
                    SubElement(item, field).text = str(entry[field])
        if kind == "account":
            item.tail = "\n"
    body = tostring(doc, encoding="UTF-8")
    declaration = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    return declaration + body[body.index(b"?>\n") + 3:] if body.startswith(b"<?xml") \
        else declaration + body


def large_object_entry(entry: dict) -> dict:
    """An SLO manifest's entry as Swift lists it: the object's size (kept as ``swift_bytes``
    in the content type, the entry's ``bytes`` being the manifest's), its ``slo_etag`` and,
    for an S3 multipart upload, its ``s3_etag``."""
    content_type = entry.get("content_type", "")
    if ";" not in content_type:
        return entry
    kept, params = [], {}
    for part in content_type.split(";"):
        name, _, value = part.strip().partition("=")
        if name.lower() in ("swift_bytes", "slo_etag", "s3_etag"):
            params[name.lower()] = value
        else:
            kept.append(part)
    if not params:
        return entry
    entry = {**entry, "content_type": ";".join(kept)}
    if params.get("swift_bytes", "").isdigit():
        entry["bytes"] = int(params["swift_bytes"])
    for name in ("slo_etag", "s3_etag"):
        if name in params:
            entry[name] = f'"{params[name]}"'
    return entry


def symlink_entry(entry: dict, version: str, account: str) -> dict:
    """A symlink's entry as Swift lists it: the ``; symlink_target=...`` parameters its
    listed hash carries (``OVERRIDE_ETAG_HEADER``) become ``symlink_path`` (and a static
    link's ``symlink_etag`` and ``symlink_bytes``, and an SLO target's ``slo_etag``); other
    parameters stay in the hash."""
    hash_value, *params = entry.get("hash", "").split(";")
    if not params:
        return entry
    entry, target, kept = dict(entry), None, [hash_value.strip()]
    for param in params:
        name, _, value = param.strip().partition("=")
        if name == "symlink_target":
            target = value
        elif name == "symlink_target_account":
            account = value
        elif name == "symlink_target_etag":
            entry["symlink_etag"] = value
        elif name == "symlink_target_bytes" and value.isdigit():
            entry["symlink_bytes"] = int(value)
        elif name == "slo_etag":  # a static link to an SLO
            entry["slo_etag"] = f'"{value}"'
        else:
            kept.append(param.strip())
    entry["hash"] = "; ".join(kept)
    if target:
        entry["symlink_path"] = f"/{version}/{account}/{target}"
        container, _, name = unquote(target).partition("/")
        if parse_version_name(name):  # the latest version of a versioned object
            entry = version_link_entry(entry, f"/{version}/{account}/{container}", name)
    return entry


def version_link_entry(entry: dict, container_path: str, name: str) -> dict:
    """A versioned object's entry (a static link to its latest version), as Swift lists it:
    the version's size and ETag, and the link as ``<object>?version-id=<id>``."""
    obj, version_id = parse_version_name(name)
    entry = dict(entry)
    entry["hash"] = entry.pop("symlink_etag", entry["hash"])
    entry["bytes"] = entry.pop("symlink_bytes", entry["bytes"])
    entry["symlink_path"] = f"{container_path}/{quote(obj)}?version-id={version_id}"
    entry["version_symlink"] = True
    return entry


def render(req: falcon.Request, resp: falcon.Response, entries: list[dict] | None,
           kind: str, name: str, content_type: str) -> None:
    """The listing (``entries``; None for a HEAD) in ``content_type``."""
    resp.content_type = f"{content_type}; charset=utf-8"
    resp.accept_ranges = "bytes"  # Swift's proxy says so on every account/container GET/HEAD
    if "format" not in query_params(req):
        resp.vary = ("Accept",)
    if entries is None:
        resp.status = falcon.HTTP_204
        return
    if kind == "container":
        version, account = req.path.split("/")[1:3]
        entries = [symlink_entry(large_object_entry(entry), version, account)
                   for entry in entries]
    if content_type.endswith("/xml"):
        body = xml_listing(entries, kind, name)
    elif content_type == "application/json":
        body = json.dumps(entries).encode("ascii")
    else:
        body = "".join(e.get("name", e.get("subdir")) + "\n" for e in entries).encode()
    if not body:
        resp.status = falcon.HTTP_204
        return
    resp.data = body
