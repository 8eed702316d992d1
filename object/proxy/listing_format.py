"""Swift's listing formats for account and container GETs: plain, JSON, XML.

The storage node always answers JSON; the proxy renders what the client asked for with
``?format=`` or ``Accept``. A plain listing with nothing in it is a 204, as Swift's.
"""

from __future__ import annotations

import json
from xml.sax.saxutils import escape, quoteattr

import falcon

from soko.common.errors import BadRequest, PreconditionFailed
from soko.object.proxy.constraints import CONTAINER_LISTING_LIMIT

QUERY_KEYS = ("limit", "marker", "end_marker", "prefix", "delimiter", "reverse")
XML_FIELDS = {
    "container": ("name", "hash", "bytes", "content_type", "last_modified"),
    "account": ("name", "count", "bytes", "last_modified"),
}


def listing_query(req: falcon.Request) -> dict[str, str]:
    """The listing parameters to pass to the node, checked as Swift checks them."""
    query = {k: req.get_param(k) for k in QUERY_KEYS if req.get_param(k) is not None}
    if "limit" in query:
        if not query["limit"].isdigit():
            raise BadRequest("limit must be a whole number")
        if int(query["limit"]) > CONTAINER_LISTING_LIMIT:
            raise PreconditionFailed(f"Maximum limit is {CONTAINER_LISTING_LIMIT}")
    if len(query.get("delimiter", "")) > 1:
        raise PreconditionFailed("Bad delimiter: one character at most")
    query["format"] = "json"
    return query


def wanted_format(req: falcon.Request) -> str:
    fmt = (req.get_param("format") or "").lower()
    if fmt in ("json", "xml", "plain"):
        return fmt
    accept = req.get_header("Accept") or ""
    if "application/json" in accept:
        return "json"
    if "application/xml" in accept or "text/xml" in accept:
        return "xml"
    return "plain"


def render(req: falcon.Request, resp: falcon.Response, entries: list[dict], kind: str,
           name: str) -> None:
    fmt = wanted_format(req)
    if fmt == "json":
        resp.content_type = "application/json; charset=utf-8"
        resp.text = json.dumps(entries)
    elif fmt == "xml":
        resp.content_type = "application/xml; charset=utf-8"
        item = "object" if kind == "container" else "container"
        parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{kind} name={quoteattr(name)}>']
        for entry in entries:
            if "subdir" in entry:
                sub = escape(entry["subdir"])
                parts.append(f"<subdir name={quoteattr(entry['subdir'])}><name>{sub}</name></subdir>")
                continue
            fields = "".join(f"<{f}>{escape(str(entry[f]))}</{f}>" for f in XML_FIELDS[kind])
            parts.append(f"<{item}>{fields}</{item}>")
        parts.append(f"</{kind}>")
        resp.text = "".join(parts)
    else:
        if not entries:
            resp.status = falcon.HTTP_204
            return
        resp.content_type = "text/plain; charset=utf-8"
        resp.text = "".join(e.get("name", e.get("subdir")) + "\n" for e in entries)
