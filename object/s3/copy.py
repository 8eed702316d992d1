"""CopyObject and UploadPartCopy: ``x-amz-copy-source`` read and written again.

The source is read through the Swift app as the caller (so a multipart upload's object is
read whole, across its parts) and its bytes streamed into the target's PUT, as Swift's own
copy does. The ``x-amz-copy-source-if-*`` conditions are judged here, against the source's
S3 ETag (a multipart one included) and Last-Modified, before a byte is written.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote

from soko.object.middleware.subrequest import IterableInput
from soko.object.s3.errors import S3Error, from_swift
from soko.object.s3.objects import (
    STORED_HEADERS,
    metadata_headers,
    object_path,
    s3_etag,
)
from soko.object.s3.overwrites import free_upload, replaced_upload
from soko.object.s3.request import S3Request, S3Response
from soko.object.s3.xmlio import document
from soko.object.shared.nodeclient import STREAM_CHUNK

COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")
XML = [("Content-Type", "application/xml")]
SELF_COPY = ("This copy request is illegal because it is trying to copy an object to itself "
             "without changing the object's metadata, storage class, website redirect "
             "location or encryption attributes.")


def copy_source(req: S3Request) -> tuple[str, str]:
    """``(bucket, key)`` of ``x-amz-copy-source`` (``bucket/key``, URL-encoded, optionally
    with a leading ``/`` and ``?versionId=null``)."""
    value = req.header("x-amz-copy-source") or ""
    path, _, query = value.partition("?")
    if query:
        name, _, version = query.partition("=")
        if name != "versionId":
            raise S3Error("InvalidArgument", "Unsupported copy source parameter.",
                          ArgumentName="x-amz-copy-source", ArgumentValue=value[:256])
        if version != "null":  # soko's buckets are not versioned
            raise S3Error("InvalidArgument", "Invalid version id specified",
                          ArgumentName="versionId", ArgumentValue=version[:64])
    bucket, _, key = unquote(path, errors="strict").lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and "
                                         "key: sourcebucket/sourcekey",
                      ArgumentName="x-amz-copy-source", ArgumentValue=value[:256])
    req.owners.check(req.swift, bucket)
    return bucket, key


def http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def check_conditions(req: S3Request, headers: dict[str, str]) -> None:
    """``PreconditionFailed`` unless the source meets the copy's conditions (AWS: a met
    if-match overrides if-unmodified-since, an unmet if-none-match if-modified-since)."""
    etag = s3_etag(headers)
    modified = http_date(headers.get("last-modified", "")) or 0.0

    def matches(value: str) -> bool:
        return any(tag.strip().strip('"') in (etag, "*") for tag in value.split(","))

    if_match = req.header("x-amz-copy-source-if-match")
    if_none_match = req.header("x-amz-copy-source-if-none-match")
    unmodified = http_date(req.header("x-amz-copy-source-if-unmodified-since") or "")
    since = http_date(req.header("x-amz-copy-source-if-modified-since") or "")
    if if_match is not None:
        failed = not matches(if_match)
    else:
        failed = unmodified is not None and modified > unmodified
    if if_none_match is not None:
        failed = failed or matches(if_none_match)
    elif since is not None:
        failed = failed or modified <= since
    if failed:
        raise S3Error("PreconditionFailed", Condition="x-amz-copy-source-If-*")


def open_source(req: S3Request, bucket: str, key: str, byte_range: str | None = None):
    """The source's answer, conditions met, its body not yet read."""
    headers = {"Range": byte_range} if byte_range else {}
    answer = req.swift.call("GET", req.swift.path(bucket, key), headers=headers)
    if answer.status not in (200, 206):
        detail = answer.read()
        if answer.status == 416:
            raise S3Error("InvalidRange")
        if answer.status == 404:
            bucket_there = req.swift.call("HEAD", req.swift.path(bucket))
            bucket_there.close()
            if bucket_there.status == 404:
                raise S3Error("NoSuchBucket", BucketName=bucket)
        raise from_swift(answer.status, detail, "NoSuchKey", Key=key)
    try:
        check_conditions(req, answer.headers)
    except S3Error:
        answer.close()
        raise
    return answer


def write_copy(req: S3Request, path: str, source, headers: dict[str, str]) -> dict[str, str]:
    """The source's bytes PUT at ``path``; the PUT's answer headers."""
    body = io.BufferedReader(IterableInput(source.body), STREAM_CHUNK)
    try:
        answer = req.swift.call("PUT", path, headers=headers, body=body,
                                length=int(source.headers.get("content-length", 0)))
        detail = answer.read()
    finally:
        source.close()
    if answer.status // 100 != 2:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)
    return answer.headers


def copied_headers(source: dict[str, str]) -> dict[str, str]:
    """What a ``COPY`` directive keeps of the source: type, stored headers, metadata."""
    return {name.title(): value for name, value in source.items()
            if name.startswith("x-object-meta-") or name in STORED_HEADERS}


def result(name: str, answer: dict[str, str]) -> S3Response:
    modified = http_date(answer.get("last-modified", "")) or 0.0
    when = datetime.fromtimestamp(modified, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return S3Response(200, XML, document(name, [
        ("LastModified", when), ("ETag", f'"{answer.get("etag", "").strip(chr(34))}"')]))


def copy_object(req: S3Request) -> S3Response:
    bucket, key = copy_source(req)
    target = object_path(req)
    directive = (req.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.",
                      ArgumentName="x-amz-metadata-directive", ArgumentValue=directive[:64])
    if (bucket, key) == (req.bucket, req.key) and directive == "COPY":
        raise S3Error("InvalidRequest", SELF_COPY)
    replaced = replaced_upload(req, target)
    source = open_source(req, bucket, key)
    headers = copied_headers(source.headers) if directive == "COPY" else metadata_headers(req)
    answer = write_copy(req, target, source, headers)
    free_upload(req, replaced)
    return result("CopyObjectResult", answer)


def copy_part(req: S3Request, path: str) -> S3Response:
    """UploadPartCopy: the source, or ``x-amz-copy-source-range`` of it, as the part."""
    bucket, key = copy_source(req)
    wanted = req.header("x-amz-copy-source-range")
    match = COPY_RANGE.match(wanted or "") if wanted is not None else None
    if wanted is not None and (match is None or int(match[1]) > int(match[2])):
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the "
                                         "form bytes=first-last where first and last are "
                                         "the zero-based offsets of the first and last bytes "
                                         "to copy", ArgumentName="x-amz-copy-source-range",
                      ArgumentValue=wanted[:64])
    source = open_source(req, bucket, key, wanted)
    if match is not None:
        total = source.headers.get("content-range", "").rpartition("/")[2]
        size = int(total) if total.isdigit() else int(source.headers.get("content-length", 0))
        if int(match[2]) >= size:
            source.close()
            raise S3Error("InvalidArgument", f"Range specified is not valid for source "
                                             f"object of size: {size}",
                          ArgumentName="x-amz-copy-source-range", ArgumentValue=wanted)
    return result("CopyPartResult", write_copy(req, path, source, {}))
