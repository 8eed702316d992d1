"""Conventions of the internal API between the proxy and the storage nodes (and between
nodes): which headers carry the write's timestamp and where listing updates go."""

from __future__ import annotations

import falcon

from soko.common.errors import BadRequest
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

# What an object PUT/POST may set besides X-Object-Meta-*: kept with the object, returned on GET.
# Swift's default ``allowed_headers`` (the S3 API stores Cache-Control and Expires here too),
# then X-Delete-At, which the proxy checks apart.
OBJECT_SYSTEM_HEADERS = ("Content-Disposition", "Content-Encoding", "Cache-Control",
                         "Content-Language", "Expires", "X-Robots-Tag", "X-Delete-At")


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
