"""How a completed multipart upload's parts are laid out, and where one part lies in it.

S3 allows 10000 parts, an SLO manifest 1000 segments (``[proxy] slo_max_manifest_segments``,
at least 100 so that two levels hold 10000). An upload of up to 1000 parts is one
manifest at the key naming the parts; a bigger one is a manifest of sub-manifests, each an
SLO of 1000 consecutive parts stored beside them in the segments container
(``<key>/<upload id>/m<i>``). Nested SLOs stream, range and delete (``multipart-manifest=
delete`` recurses) as one, so nothing is copied and Abort or DeleteObject still remove
every part; a sub-manifest's name has no part number, so ListParts and Complete ignore it.
"""

from __future__ import annotations

import json
import math

from soko.object.s3.errors import S3Error, from_swift
from soko.object.s3.request import S3Request
from soko.object.s3.uploads import (
    MAX_PART_NUMBER,
    marker_name,
    segments_container,
    segments_path,
)

MANIFEST_PUT = {"multipart-manifest": "put"}
# Two levels of manifests hold its square: the least ``[proxy] slo_max_manifest_segments``
# under which every part number S3 allows completes (100 for 10000), checked at start.
MIN_PARTS_PER_MANIFEST = math.isqrt(MAX_PART_NUMBER - 1) + 1


def sub_manifest_name(key: str, upload_id: str, index: int) -> str:
    return f"{marker_name(key, upload_id)}/m{index}"


def put_manifest(req: S3Request, path: str, entries: list[dict],
                 headers: dict[str, str], upload_id: str) -> str:
    """The SLO manifest stored at ``path``; its SLO ETag. A 400 is a part that changed or
    went since it was listed."""
    answer = req.swift.call("PUT", path, query=MANIFEST_PUT, headers=headers,
                            body=json.dumps(entries).encode())
    detail = answer.read()
    if answer.status == 400:
        raise S3Error("InvalidPart", UploadId=upload_id)
    if answer.status // 100 != 2:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)
    return answer.headers.get("etag", "").strip('"')


def store_upload(req: S3Request, upload_id: str, parts: list[dict], path: str,
                 headers: dict[str, str]) -> None:
    """The completed object at ``path`` over ``parts`` (SLO manifest entries, in order):
    one manifest, or sub-manifests of ``[proxy] slo_max_manifest_segments`` parts under a
    top one."""
    size = req.parts_per_manifest
    if len(parts) > size:
        container, top = segments_container(req.bucket), []
        for index in range(0, len(parts), size):
            group = parts[index:index + size]
            name = sub_manifest_name(req.key, upload_id, index // size)
            etag = put_manifest(req, segments_path(req, name), group, {}, upload_id)
            top.append({"path": f"/{container}/{name}", "etag": etag,
                        "size_bytes": sum(entry["size_bytes"] for entry in group)})
        parts = top
    put_manifest(req, path, parts, headers, upload_id)


def manifest_entries(req: S3Request, path: str) -> list[dict]:
    """A stored manifest's entries (``name``, ``bytes``, ``sub_slo``...)."""
    answer = req.swift.call("GET", path, query={"multipart-manifest": "get"})
    detail = answer.read()
    if answer.status != 200:
        raise from_swift(answer.status, detail, "NoSuchKey", Key=req.key)
    return json.loads(detail)


def part_bounds(req: S3Request, path: str, number: int) -> tuple[int, int]:
    """``(first byte, last byte)`` of the ``number``-th part (1-based, in the order of the
    Complete) of the completed upload at ``path``: at most two manifests read."""
    entries, offset, index = manifest_entries(req, path), 0, number - 1
    if entries and entries[0].get("sub_slo"):
        group, index = divmod(index, req.parts_per_manifest)
        offset = sum(entry["bytes"] for entry in entries[:group])
        entries = manifest_entries(req, req.swift.path() + entries[group]["name"])
    first = offset + sum(entry["bytes"] for entry in entries[:index])
    return first, first + entries[index]["bytes"] - 1
