"""Where multipart uploads live: the bucket's hidden segments container, as in Swift's s3api.

An upload in progress is a zero-byte marker object ``<key>/<upload id>`` in the container
``<bucket>+segments`` (a name no bucket can have), holding the object's type and metadata
until it is completed; each part is the object ``<key>/<upload id>/<part number>`` beside
it. Completing puts an SLO manifest at the key that names the parts where they are (so the
object streams from them, nothing copied) and deletes the marker: an upload is listed while
its marker exists.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

from soko.object.proxy.constraints import MAX_OBJECT_NAME_LENGTH
from soko.object.s3.errors import S3Error, from_swift
from soko.object.s3.request import S3Request

SEGMENTS_SUFFIX = "+segments"
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_PART_NUMBER = 10_000
LISTING_PAGE = 10_000


def segments_container(bucket: str) -> str:
    return bucket + SEGMENTS_SUFFIX


def is_segments_container(name: str) -> bool:
    return name.endswith(SEGMENTS_SUFFIX)


def new_upload_id() -> str:
    return uuid.uuid4().hex


def marker_name(key: str, upload_id: str) -> str:
    return f"{key}/{upload_id}"


def part_name(key: str, upload_id: str, number: int) -> str:
    return f"{key}/{upload_id}/{number}"


def check_key_length(key: str) -> None:
    """A key whose parts' names would not fit Swift's object name limit is too long."""
    allowed = MAX_OBJECT_NAME_LENGTH - len(part_name("", "0" * 32, MAX_PART_NUMBER))
    if len(key.encode()) > allowed:
        raise S3Error("KeyTooLongError", MaxSizeAllowed=str(allowed))


def check_part_number(value: str | None) -> int:
    if value is None or not value.isdigit() or not 1 <= int(value) <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", f"Part number must be an integer between 1 and "
                                         f"{MAX_PART_NUMBER}, inclusive",
                      ArgumentName="partNumber", ArgumentValue=(value or "")[:64])
    return int(value)


def segments_path(req: S3Request, name: str | None = None) -> str:
    return req.swift.path(segments_container(req.bucket), name)


def listing(req: S3Request, prefix: str, marker: str = "") -> Iterator[dict]:
    """The segments container's entries under ``prefix`` after ``marker``, page by page
    (none if the container does not exist)."""
    while True:
        answer = req.swift.call("GET", segments_path(req), query={
            "format": "json", "prefix": prefix, "marker": marker, "limit": str(LISTING_PAGE)})
        if answer.status == 404:
            answer.close()
            return
        if answer.status // 100 != 2:
            raise from_swift(answer.status, answer.read(), "NoSuchBucket",
                             BucketName=req.bucket)
        page = answer.json() or []
        yield from page
        if len(page) < LISTING_PAGE:
            return
        marker = page[-1]["name"]


def upload_of(name: str) -> tuple[str, str] | None:
    """``(key, upload id)`` if ``name`` is an upload's marker (not a part)."""
    key, _, upload_id = name.rpartition("/")
    return (key, upload_id) if key and UPLOAD_ID.match(upload_id) else None


def delete_segment(req: S3Request, name: str) -> None:
    answer = req.swift.call("DELETE", segments_path(req, name))
    detail = answer.read()
    if answer.status // 100 != 2 and answer.status != 404:
        raise from_swift(answer.status, detail, "NoSuchUpload")


def delete_all_uploads(req: S3Request) -> None:
    """Every upload in progress in the bucket, parts and markers, and the segments
    container itself: what deleting an empty bucket takes with it (as s3api does)."""
    for entry in listing(req, ""):
        delete_segment(req, entry["name"])
    answer = req.swift.call("DELETE", segments_path(req))
    detail = answer.read()
    if answer.status // 100 != 2 and answer.status != 404:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)
