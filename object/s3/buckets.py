"""Bucket operations: list, create, delete, head, location, and object listings v1/v2.

A bucket is a container of the credential's project account; its listing is the
container's listing, with Swift's ``subdir`` entries as S3's ``CommonPrefixes``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from urllib.parse import quote

from soko.object.s3.errors import S3Error, from_swift
from soko.object.s3.request import S3Request, S3Response
from soko.object.s3.swift import ACCOUNT_PREFIX
from soko.object.s3.uploads import delete_all_uploads, is_segments_container
from soko.object.s3.xmlio import child_text, document, parse

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEYS = 1000
XML = [("Content-Type", "application/xml")]


def check_bucket_name(name: str) -> None:
    """AWS's rules for new buckets: 3-63 of ``a-z0-9.-``, starting and ending with a letter
    or digit, no ``..``/``.-``/``-.``, not an IP address, no reserved prefix or suffix."""
    bad = (not BUCKET_NAME.match(name) or ".." in name or ".-" in name or "-." in name
           or name.startswith(("xn--", "sthree-")) or name.endswith(("-s3alias", "--ol-s3")))
    if not bad:
        try:
            ipaddress.IPv4Address(name)
            bad = True
        except ValueError:
            pass
    if bad:
        raise S3Error("InvalidBucketName", BucketName=name)


def iso_time(swift_time: str | None) -> str:
    """Swift's listing time (``2024-05-01T12:00:00.123456``) as S3's (ms precision, Z)."""
    if not swift_time:
        return "1970-01-01T00:00:00.000Z"
    return swift_time[:23].ljust(23, "0") + "Z" if "." in swift_time else swift_time + ".000Z"


def owner(req: S3Request) -> list:
    """The bucket's owner: the caller's project (for an anonymous caller, the account's)."""
    if req.who is None:
        project = req.swift.account.removeprefix(ACCOUNT_PREFIX)
        return [("ID", project), ("DisplayName", project)]
    return [("ID", req.who.project_id), ("DisplayName", req.who.project_name)]


def list_buckets(req: S3Request) -> S3Response:
    entries, marker = [], ""
    while True:
        answer = req.swift.call("GET", req.swift.path(), query={"format": "json",
                                                                 "marker": marker})
        if answer.status == 404:
            answer.close()
            break
        if answer.status // 100 != 2:
            raise from_swift(answer.status, answer.read(), "NoSuchBucket")
        page = answer.json() or []
        entries += page
        if len(page) < 10_000:
            break
        marker = page[-1]["name"]
    buckets = [("Bucket", [("Name", e["name"]), ("CreationDate", iso_time(e.get("last_modified")))])
               for e in entries if not is_segments_container(e["name"])]
    return S3Response(200, XML, document("ListAllMyBucketsResult",
                                         [("Owner", owner(req)), ("Buckets", buckets)]))


def container_exists(req: S3Request) -> bool:
    answer = req.swift.call("HEAD", req.swift.path(req.bucket))
    answer.close()
    if answer.status == 404:
        return False
    if answer.status // 100 != 2:
        raise from_swift(answer.status, b"", "NoSuchBucket", BucketName=req.bucket)
    return True


def create_bucket(req: S3Request, acl_headers: dict[str, str] | None) -> S3Response:
    """``acl_headers``: the container ACL of the canned ACL the request gave (``acl``)."""
    check_bucket_name(req.bucket)
    body = req.read_body(64 * 1024)
    if body.strip():
        location = child_text(parse(body, "CreateBucketConfiguration"), "LocationConstraint")
        if location not in (None, "", req.region):
            raise S3Error("InvalidLocationConstraint",
                          f"This endpoint's region is {req.region}, not {location}.")
    if not req.who.has_role("member"):  # before the name is claimed, even for a moment
        raise S3Error("AccessDenied")
    req.owners.claim(req.swift, req.bucket)
    if container_exists(req):
        raise S3Error("BucketAlreadyOwnedByYou", BucketName=req.bucket)
    headers = {name: value for name, value in (acl_headers or {}).items() if value}
    answer = req.swift.call("PUT", req.swift.path(req.bucket), headers=headers)
    body = answer.read()
    if answer.status // 100 != 2:
        req.owners.release(req.swift, req.bucket)
        raise from_swift(answer.status, body, "NoSuchBucket", BucketName=req.bucket)
    return S3Response(200, [("Location", "/" + req.bucket)])


def delete_bucket(req: S3Request) -> S3Response:
    """An empty bucket goes with its uploads in progress (their parts too), as in s3api."""
    head = req.swift.call("HEAD", req.swift.path(req.bucket))
    head.close()
    if head.status // 100 != 2:
        raise from_swift(head.status, b"", "NoSuchBucket", BucketName=req.bucket)
    if head.headers.get("x-container-object-count", "0") != "0":
        raise S3Error("BucketNotEmpty", BucketName=req.bucket)
    delete_all_uploads(req)
    answer = req.swift.call("DELETE", req.swift.path(req.bucket))
    body = answer.read()
    if answer.status == 409:
        raise S3Error("BucketNotEmpty", BucketName=req.bucket)
    if answer.status // 100 != 2:
        raise from_swift(answer.status, body, "NoSuchBucket", BucketName=req.bucket)
    req.owners.release(req.swift, req.bucket)
    return S3Response(204)


def head_bucket(req: S3Request) -> S3Response:
    if not container_exists(req):
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    return S3Response(200, [("x-amz-bucket-region", req.region)])


def get_location(req: S3Request) -> S3Response:
    if not container_exists(req):
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    region = "" if req.region == "us-east-1" else req.region  # as AWS answers
    body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns='
            b'"http://s3.amazonaws.com/doc/2006-03-01/">' + region.encode()
            + b"</LocationConstraint>")
    return S3Response(200, XML, body)


def max_keys(params: dict) -> int:
    value = params.get("max-keys", str(MAX_KEYS))
    if not value.isdigit():
        raise S3Error("InvalidArgument", "Provided max-keys not an integer or within "
                                         "integer range", ArgumentName="max-keys",
                      ArgumentValue=value[:64])
    return min(int(value), MAX_KEYS)


def decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect",
                      ArgumentName="continuation-token") from None


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode()).decode()


def skip_marker(marker: str, delimiter: str) -> str:
    """Where a listing resumes after ``marker``: past every key under a common prefix, which
    Swift would otherwise list again as the same ``subdir``."""
    if delimiter and marker.endswith(delimiter):
        return marker + "\U0010ffff"
    return marker


def listed_etag(entry: dict) -> str:
    """A listing entry's S3 ETag: a multipart upload's, a large object's, or its md5."""
    return entry.get("s3_etag") or entry.get("slo_etag") or f'"{entry["hash"]}"'


def list_objects(req: S3Request) -> S3Response:
    params = req.params
    v2 = params.get("list-type") == "2"
    if params.get("list-type") not in (None, "2"):
        raise S3Error("InvalidArgument", "list-type must be 2", ArgumentName="list-type")
    encoding = params.get("encoding-type")
    if encoding not in (None, "url"):
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type")
    prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
    limit = max_keys(params)
    if v2:
        token = params.get("continuation-token")
        marker = decode_token(token) if token is not None else params.get("start-after", "")
    else:
        marker = params.get("marker", "")
    query = {"format": "json", "limit": str(limit + 1), "prefix": prefix,
             "marker": skip_marker(marker, delimiter)}
    if delimiter:
        query["delimiter"] = delimiter
    answer = req.swift.call("GET", req.swift.path(req.bucket), query=query)
    if answer.status // 100 != 2:
        raise from_swift(answer.status, answer.read(), "NoSuchBucket", BucketName=req.bucket)
    entries = answer.json() or []
    truncated = len(entries) > limit
    entries = entries[:limit]

    def text(value: str) -> str:
        return quote(value, safe="/") if encoding == "url" else value

    contents, prefixes = [], []
    for entry in entries:
        if "subdir" in entry:
            prefixes.append(("CommonPrefixes", [("Prefix", text(entry["subdir"]))]))
            continue
        item = [("Key", text(entry["name"])), ("LastModified", iso_time(entry["last_modified"])),
                ("ETag", listed_etag(entry)), ("Size", entry["bytes"])]
        if not v2 or params.get("fetch-owner") == "true":
            item.append(("Owner", owner(req)))
        contents.append(("Contents", [*item, ("StorageClass", "STANDARD")]))
    last = (entries[-1].get("subdir") or entries[-1]["name"]) if entries else ""
    fields = [("Name", req.bucket), ("Prefix", text(prefix))]
    if v2:
        fields += [("KeyCount", len(entries)), ("MaxKeys", limit)]
        if "continuation-token" in params:
            fields.append(("ContinuationToken", params["continuation-token"]))
        if "start-after" in params:
            fields.append(("StartAfter", text(params["start-after"])))
        if truncated:
            fields.append(("NextContinuationToken", encode_token(last)))
    else:
        fields += [("Marker", text(marker)), ("MaxKeys", limit)]
        if truncated and delimiter:
            fields.append(("NextMarker", text(last)))
    if delimiter:
        fields.append(("Delimiter", text(delimiter)))
    if encoding:
        fields.append(("EncodingType", encoding))
    fields += [("IsTruncated", truncated), *contents, *prefixes]
    return S3Response(200, XML, document("ListBucketResult", fields))
