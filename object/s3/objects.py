"""Object operations: PutObject, GetObject/HeadObject, DeleteObject, DeleteObjects.

An S3 object is the Swift object of the same name; S3's headers map onto Swift's both ways
(``x-amz-meta-foo`` is ``X-Object-Meta-Foo``; Content-Type/Encoding/Disposition/Language,
Cache-Control and Expires are stored as Swift stores them), so either API reads what the
other wrote.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from soko.object.proxy.constraints import MAX_OBJECT_NAME_LENGTH
from soko.object.s3.buckets import container_exists
from soko.object.s3.errors import S3Error, from_swift
from soko.object.s3.integrity import checksum_sysmeta, sent_checksums, stored_checksums
from soko.object.s3.manifests import part_bounds
from soko.object.s3.overwrites import free_upload, replaced_upload
from soko.object.s3.request import S3Request, S3Response
from soko.object.s3.uploads import check_part_number
from soko.object.s3.xmlio import MAX_BODY, child_text, children, document, parse
from soko.object.shared.internal import ETAG_IS_AT_HEADER

STORED_HEADERS = ("content-type", "content-encoding", "content-disposition", "content-language",
                  "cache-control", "expires")
READ_CONDITIONS = ("range", "if-match", "if-none-match", "if-modified-since",
                   "if-unmodified-since")
ANSWER_HEADERS = ("content-type", "content-length", "content-range", "last-modified",
                  "accept-ranges", *STORED_HEADERS[1:])
OVERRIDES = {"response-content-type": "Content-Type",
             "response-content-language": "Content-Language",
             "response-expires": "Expires", "response-cache-control": "Cache-Control",
             "response-content-disposition": "Content-Disposition",
             "response-content-encoding": "Content-Encoding"}
MAX_DELETE_KEYS = 1000
# A completed multipart upload's S3 ETag (its SLO's own is the md5 of the parts' hex md5s).
S3_ETAG_SYSMETA = "X-Object-Sysmeta-S3-Etag"


def object_path(req: S3Request, key: str | None = None) -> str:
    key = req.key if key is None else key
    if len(key.encode()) > MAX_OBJECT_NAME_LENGTH:
        raise S3Error("KeyTooLongError", MaxSizeAllowed=str(MAX_OBJECT_NAME_LENGTH))
    return req.swift.path(req.bucket, key)


def md5_etag(req: S3Request) -> str | None:
    """``Content-MD5`` (base64) as the hex ETag Swift checks the body against."""
    value = req.header("content-md5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise S3Error("InvalidDigest")
    return digest.hex()


def metadata_headers(req: S3Request) -> dict[str, str]:
    """The object's type, stored headers and user metadata, from the request."""
    headers = {"Content-Type": "binary/octet-stream"}  # S3's default, not a guess by name
    for name in STORED_HEADERS:
        value = req.header(name)
        if name == "content-encoding" and value is not None:  # aws-chunked is the transfer's
            value = ",".join(v for v in value.split(",") if v.strip() != "aws-chunked") or None
        if value is not None:
            headers[name.title()] = value
    for key, value in req.environ.items():
        if key.startswith("HTTP_X_AMZ_META_"):
            headers["X-Object-Meta-" + key[len("HTTP_X_AMZ_META_"):].replace("_", "-")] = value
    return headers


def write_headers(req: S3Request) -> dict[str, str]:
    headers = metadata_headers(req)
    etag = md5_etag(req)
    if etag:
        headers["ETag"] = etag
    condition = req.header("if-none-match")
    if condition is not None:
        if condition != "*":
            raise S3Error("NotImplemented", "Only If-None-Match: * is supported on PUT.")
        headers["If-None-Match"] = "*"
    return headers


def store_body(req: S3Request, path: str, headers: dict[str, str]) -> str:
    """The request's body stored at ``path`` (an object or a part); its ETag."""
    length = req.content_length()
    if length is None:
        if "chunked" not in (req.header("transfer-encoding") or "").lower():
            raise S3Error("MissingContentLength")
        headers["Transfer-Encoding"] = "chunked"
    body, length = req.body_stream(length)
    headers.update(checksum_sysmeta(req.header))
    answer = req.swift.call("PUT", path, headers=headers, body=body, length=length)
    detail = answer.read()
    if getattr(body, "failure", None) is not None:  # the body failed its checks
        raise body.failure
    if answer.status // 100 != 2:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)
    return answer.headers.get("etag", "")


def put_object(req: S3Request) -> S3Response:
    path = object_path(req)
    replaced = replaced_upload(req, path)
    etag = store_body(req, path, write_headers(req))
    free_upload(req, replaced)
    return S3Response(200, [("ETag", f'"{etag}"'), *sent_checksums(req.header)])


def s3_etag(swift: dict[str, str]) -> str:
    """The object's ETag as S3 has it: a multipart upload's ``<md5 of md5s>-<n>``."""
    return swift.get(S3_ETAG_SYSMETA.lower()) or swift.get("etag", "").strip('"')


def answer_headers(req: S3Request, swift: dict[str, str]) -> list[tuple[str, str]]:
    headers = [(name.title(), swift[name]) for name in ANSWER_HEADERS if name in swift]
    if "etag" in swift:
        headers.append(("ETag", f'"{s3_etag(swift)}"'))
    for name, value in swift.items():
        if name.startswith("x-object-meta-"):
            headers.append(("x-amz-meta-" + name[len("x-object-meta-"):], value))
    if (req.header("x-amz-checksum-mode") or "").upper() == "ENABLED" and \
            swift.get("content-range") is None:  # of the whole object only, as AWS
        headers += stored_checksums(swift)
    overrides = {header: req.params[param] for param, header in OVERRIDES.items()
                 if param in req.params}
    if overrides:
        headers = [(k, v) for k, v in headers if k not in overrides] + list(overrides.items())
    return headers


def part_range(req: S3Request, number: int) -> tuple[int, int, int, int] | None:
    """``(first byte, last byte, object size, parts count)`` of the object's part
    ``number`` (``?partNumber=``): of a completed upload, the part at that place in its
    Complete; of any other object, part 1 is the whole object. None: no object (the read
    that follows answers why)."""
    path = object_path(req)
    head = req.swift.call("HEAD", path)
    head.close()
    if head.status // 100 != 2:
        return None
    size = int(head.headers.get("content-length", 0))
    etag = head.headers.get(S3_ETAG_SYSMETA.lower())
    count = int(etag.rpartition("-")[2]) if etag else 1
    if number > count:
        raise S3Error("InvalidPartNumber")
    first, last = part_bounds(req, path, number) if etag else (0, size - 1)
    return first, last, size, count


def get_object(req: S3Request) -> S3Response:
    headers = {name: req.header(name) for name in READ_CONDITIONS if req.header(name)}
    headers[ETAG_IS_AT_HEADER] = S3_ETAG_SYSMETA  # If-Match a multipart upload's S3 ETag
    part = None
    if "partNumber" in req.params:
        if req.header("range"):
            raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber "
                                            "query parameter")
        part = part_range(req, check_part_number(req.params["partNumber"]))
        if part is not None and part[2] > 0:
            headers["Range"] = f"bytes={part[0]}-{part[1]}"
    answer = req.swift.call(req.method, object_path(req), headers=headers)
    if answer.status in (200, 206):
        headers = answer_headers(req, answer.headers)
        status = answer.status
        if part is not None and part[2] > 0:  # 206 on HEAD too (the SLO ignores its Range)
            first, last, size, count = part
            kept = [(k, v) for k, v in headers if k not in ("Content-Length", "Content-Range")]
            headers = [*kept, ("Content-Length", str(last - first + 1)),
                       ("Content-Range", f"bytes {first}-{last}/{size}"),
                       ("x-amz-mp-parts-count", str(count))]
            status = 206
        if req.method == "GET":
            return S3Response(status, headers, answer.body)
        answer.close()
        return S3Response(status, headers)
    detail = answer.read()
    if answer.status == 304:
        kept = [(k, v) for k, v in answer_headers(req, answer.headers)
                if k in ("ETag", "Last-Modified")]
        return S3Response(304, kept)
    if answer.status == 404 and container_exists(req):
        raise S3Error("NoSuchKey", Key=req.key)
    if answer.status == 416:
        raise S3Error("InvalidRange", ActualObjectSize=answer.headers.get(
            "content-range", "").rpartition("/")[2])
    raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)


def delete_key(req: S3Request, key: str) -> tuple[int, bytes]:
    """Deletes the object, and a completed multipart upload's parts with it (the SLO
    layer's manifest delete), so none is left behind in the segments container."""
    path = object_path(req, key)
    head = req.swift.call("HEAD", path)
    head.close()
    if S3_ETAG_SYSMETA.lower() not in head.headers:
        answer = req.swift.call("DELETE", path)
        return answer.status, answer.read()
    answer = req.swift.call("DELETE", path, query={"multipart-manifest": "delete"},
                            headers={"Accept": "application/json"})
    detail = answer.read()
    if answer.status // 100 != 2:
        return answer.status, detail
    report = json.loads(detail)
    if report.get("Errors"):
        return 503, detail
    return (404 if report.get("Number Deleted") == 0 else 204), detail


def delete_object(req: S3Request) -> S3Response:
    status, detail = delete_key(req, req.key)
    if status == 404 and not container_exists(req):
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    if status // 100 != 2 and status != 404:
        raise from_swift(status, detail, "NoSuchKey", Key=req.key)
    return S3Response(204)


def delete_objects(req: S3Request) -> S3Response:
    """``POST ?delete``: up to 1000 keys in one request; ``Quiet`` reports only errors."""
    body = req.read_body(MAX_BODY)
    expected = md5_etag(req)
    if expected is not None and hashlib.md5(body, usedforsecurity=False).hexdigest() != expected:
        raise S3Error("BadDigest")
    tree = parse(body, "Delete")
    entries = children(tree, "Object")
    keys = [child_text(entry, "Key") for entry in entries]
    if not keys or len(keys) > MAX_DELETE_KEYS or any(not key for key in keys):
        raise S3Error("MalformedXML")
    quiet = (child_text(tree, "Quiet") or "").strip().lower() == "true"
    if not container_exists(req):
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    results = []
    for entry, key in zip(entries, keys, strict=True):
        if child_text(entry, "VersionId") is not None:
            results.append(("Error", [("Key", key), ("Code", "NotImplemented"),
                                      ("Message", "Object versions are not supported.")]))
            continue
        try:
            status, detail = delete_key(req, key)
            if status // 100 != 2 and status != 404:
                raise from_swift(status, detail, "NoSuchKey")
        except S3Error as exc:
            results.append(("Error", [("Key", key), ("Code", exc.code),
                                      ("Message", exc.message)]))
            continue
        if not quiet:
            results.append(("Deleted", [("Key", key)]))
    return S3Response(200, [("Content-Type", "application/xml")],
                      document("DeleteResult", results))
