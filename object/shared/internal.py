"""Conventions of the internal API between the proxy and the storage nodes (and between
nodes): which headers carry the write's timestamp and where listing updates go."""

from __future__ import annotations

import falcon

from soko.common.errors import BadRequest
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

# What an object POST may set besides X-Object-Meta-* (a PUT too): kept, returned on GET.
# Swift's default ``allowed_headers`` (the S3 API stores Cache-Control and Expires here too).
OBJECT_POST_HEADERS = ("Content-Disposition", "Content-Encoding", "Cache-Control",
                       "Content-Language", "Expires", "X-Robots-Tag", "X-Delete-At",
                       "X-Object-Manifest")
# What only a PUT sets, kept and returned like them: the mark of an SLO manifest.
OBJECT_SYSTEM_HEADERS = (*OBJECT_POST_HEADERS, "X-Static-Large-Object")
# System metadata: set on PUT by the proxy's middlewares only (the pipeline's front strips it
# from clients' requests and from answers), kept with the object, returned to the proxy.
OBJECT_SYSMETA_PREFIX = "X-Object-Sysmeta-"
# The same for a container (set on container PUT/POST, returned on HEAD/GET).
CONTAINER_SYSMETA_PREFIX = "X-Container-Sysmeta-"
# Object system metadata: the ETag the object's container listing shows instead of the
# object's own (a symlink's carries its target there as ``; symlink_target=...``, as Swift).
OVERRIDE_ETAG_HEADER = "X-Object-Sysmeta-Container-Update-Override-Etag"
# Sent by a middleware on GET/HEAD: the comma-separated metadata names whose value (if the
# object has one) the If-Match/If-None-Match are compared with instead of the ETag (an SLO's
# ETag is its segments', not its manifest's).
ETAG_IS_AT_HEADER = "X-Backend-Etag-Is-At"
# Sent by a middleware on GET: if the object has any of these comma-separated metadata, the
# Range is ignored and the whole object answered (a manifest, read whole to serve the range).
IGNORE_RANGE_HEADER = "X-Backend-Ignore-Range-If-Metadata-Present"
# Names starting with NUL are reserved: the proxy refuses them in clients' paths, and
# listings leave them out, unless a middleware sends this header (object versions live there).
ALLOW_RESERVED_HEADER = "X-Backend-Allow-Reserved-Names"
RESERVED = "\x00"
PAST_RESERVED = "\x01"  # the least name that is not reserved
# A node's 304 carries the object's type here (WSGI forbids Content-Type on a 304; the
# proxy's answer has it, as Swift's does).
CONTENT_TYPE_OF_304 = "X-Backend-Content-Type"


def request_timestamp(req: falcon.Request, header: str = "X-TIMESTAMP") -> Timestamp:
    try:
        return Timestamp.parse(req.get_header(header))
    except InvalidTimestamp as exc:
        raise BadRequest(f"{header.title()}: {exc}") from None


def prefixed_headers(req: falcon.Request, prefix: str) -> dict[str, str]:
    """Headers starting with ``prefix`` (upper case), title-cased as Swift stores them."""
    return {k.title(): v for k, v in req.headers.items() if k.startswith(prefix)}


def target_node(req: falcon.Request, kind: str) -> tuple[dict, str] | None:
    """The ``X-<Kind>-Host/-Device/-Partition`` headers: where to send a listing update."""
    host = req.get_header(f"X-{kind}-HOST")
    device = req.get_header(f"X-{kind}-DEVICE")
    partition = req.get_header(f"X-{kind}-PARTITION")
    if not (host and device and partition):
        return None
    ip, _, port = host.rpartition(":")
    if not port.isdigit():
        raise BadRequest(f"X-{kind.title()}-Host: expected ip:port, got {host!r}")
    return {"ip": ip, "port": int(port), "device": device}, partition
