"""Multipart uploads: Create, UploadPart, Complete, Abort, ListParts, ListMultipartUploads.

Parts are objects in the bucket's segments container (``uploads``); Complete checks the
client's part list against them (S3's errors: ``InvalidPart``, ``InvalidPartOrder``,
``EntityTooSmall``) and puts an SLO manifest naming them at the key (``manifests``), with S3's multipart
ETag (the md5 of the parts' binary md5s, ``-<count>``) as system metadata for HEAD/GET and
as a content-type parameter the listings carry (as the SLO keeps its own ETag).
"""

from __future__ import annotations

import hashlib

from soko.object.s3.buckets import container_exists, iso_time, owner
from soko.object.s3.errors import S3Error, from_swift
from soko.object.s3.integrity import CHECKSUM_SYSMETA, sent_checksums
from soko.object.s3.manifests import store_upload
from soko.object.s3.objects import (
    S3_ETAG_SYSMETA,
    STORED_HEADERS,
    md5_etag,
    metadata_headers,
    object_path,
    store_body,
)
from soko.object.s3.overwrites import UPLOAD_ID_SYSMETA, free_upload, mark_bucket
from soko.object.s3.request import S3Request, S3Response
from soko.object.s3.uploads import (
    UPLOAD_ID,
    check_key_length,
    check_part_number,
    delete_segment,
    listing,
    marker_name,
    new_upload_id,
    part_name,
    segments_container,
    segments_path,
    upload_of,
)
from soko.object.s3.xmlio import MAX_BODY, child_text, children, document, parse

MAX_LISTED = 1000
PART_CHECKSUMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
XML = [("Content-Type", "application/xml")]


def create_upload(req: S3Request) -> S3Response:
    check_key_length(req.key)
    headers = metadata_headers(req)
    if not container_exists(req):
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    answer = req.swift.call("PUT", segments_path(req))
    detail = answer.read()
    if answer.status // 100 != 2:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)
    mark_bucket(req)  # before any upload can complete: its overwrite frees its parts
    upload_id = new_upload_id()
    answer = req.swift.call("PUT", segments_path(req, marker_name(req.key, upload_id)),
                            headers=headers, body=b"")
    detail = answer.read()
    if answer.status // 100 != 2:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)
    return S3Response(200, XML, document("InitiateMultipartUploadResult", [
        ("Bucket", req.bucket), ("Key", req.key), ("UploadId", upload_id)]))


def upload_marker(req: S3Request) -> tuple[str, dict[str, str]]:
    """``(upload id, the marker's headers)`` of the upload the request names."""
    upload_id = req.params.get("uploadId", "")
    if UPLOAD_ID.match(upload_id):
        answer = req.swift.call("HEAD", segments_path(req, marker_name(req.key, upload_id)))
        answer.close()
        if answer.status // 100 == 2:
            return upload_id, answer.headers
        if answer.status != 404:
            raise from_swift(answer.status, b"", "NoSuchUpload", UploadId=upload_id)
    if not container_exists(req):
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    raise S3Error("NoSuchUpload", UploadId=upload_id)


def upload_part(req: S3Request) -> S3Response:
    number = check_part_number(req.params.get("partNumber"))
    upload_id, _ = upload_marker(req)
    path = segments_path(req, part_name(req.key, upload_id, number))
    if req.header("x-amz-copy-source") is not None:
        from soko.object.s3.copy import copy_part

        return copy_part(req, path)
    etag = md5_etag(req)
    etag = store_body(req, path, {"ETag": etag} if etag else {})
    return S3Response(200, [("ETag", f'"{etag}"'), *sent_checksums(req.header)])


def stored_parts(req: S3Request, upload_id: str) -> dict[int, dict]:
    """The upload's parts by number (listing entries)."""
    prefix = marker_name(req.key, upload_id) + "/"
    parts = {}
    for entry in listing(req, prefix):
        number = entry["name"][len(prefix):]
        if number.isdigit():
            parts[int(number)] = entry
    return parts


def requested_parts(body: bytes) -> list[tuple[int, str]]:
    """``(part number, etag)`` of the Complete request's body, in increasing order."""
    parts = []
    for part in children(parse(body, "CompleteMultipartUpload"), "Part"):
        number, etag = child_text(part, "PartNumber"), child_text(part, "ETag")
        if number is None or etag is None:
            raise S3Error("MalformedXML")
        number = check_part_number(number.strip())
        if parts and number <= parts[-1][0]:
            raise S3Error("InvalidPartOrder")
        parts.append((number, etag.strip().strip('"')))
    if not parts:
        raise S3Error("MalformedXML")
    return parts


def check_part_checksums(req: S3Request, upload_id: str, body: bytes) -> None:
    """The checksums the Complete names for its parts against those each part was uploaded
    with (a HEAD per part that names one): a mismatch is ``InvalidPart``."""
    for part in children(parse(body, "CompleteMultipartUpload"), "Part"):
        sums = {name: value.strip() for name in PART_CHECKSUMS
                if (value := child_text(part, "Checksum" + name)) is not None}
        if not sums:
            continue
        number = int(child_text(part, "PartNumber").strip())
        head = req.swift.call("HEAD", segments_path(req, part_name(req.key, upload_id, number)))
        head.close()
        for name, value in sums.items():
            if head.headers.get((CHECKSUM_SYSMETA + name.title()).lower()) != value:
                raise S3Error("InvalidPart", UploadId=upload_id, PartNumber=str(number))


def current_upload(req: S3Request) -> tuple[str | None, str | None]:
    """``(upload id, S3 ETag)`` of the completed upload now at the key (Nones if none)."""
    answer = req.swift.call("HEAD", object_path(req))
    answer.close()
    if answer.status // 100 != 2:
        return None, None
    return (answer.headers.get(UPLOAD_ID_SYSMETA.lower()),
            answer.headers.get(S3_ETAG_SYSMETA.lower()))


def completed(req: S3Request, s3_etag: str) -> S3Response:
    return S3Response(200, XML, document("CompleteMultipartUploadResult", [
        ("Location", req.resource), ("Bucket", req.bucket), ("Key", req.key),
        ("ETag", f'"{s3_etag}"')]))


def complete_upload(req: S3Request) -> S3Response:
    try:
        upload_id, marker = upload_marker(req)
    except S3Error as exc:  # a retried Complete (its answer lost) succeeds again, as on AWS
        replaced, etag = current_upload(req)
        if exc.code == "NoSuchUpload" and replaced == req.params.get("uploadId") and etag:
            return completed(req, etag)
        raise
    if any(req.header(name) for name in ("if-match", "if-none-match", "if-modified-since",
                                         "if-unmodified-since")):
        raise S3Error("NotImplemented", "Conditional multipart completes are not supported.")
    body = req.read_body(MAX_BODY)
    requested = requested_parts(body)
    stored = stored_parts(req, upload_id)
    container = segments_container(req.bucket)
    for number, etag in requested:  # every part named is there before any is judged
        if stored.get(number, {}).get("hash") != etag:
            raise S3Error("InvalidPart", UploadId=upload_id, PartNumber=str(number),
                          ETag=etag)
    check_part_checksums(req, upload_id, body)
    manifest, digests = [], []
    for index, (number, etag) in enumerate(requested):
        entry = stored[number]
        if entry["bytes"] < req.min_part_size and index < len(requested) - 1:
            raise S3Error("EntityTooSmall", ProposedSize=str(entry["bytes"]),
                          MinSizeAllowed=str(req.min_part_size), PartNumber=str(number),
                          ETag=etag)
        manifest.append({"path": f"/{container}/{entry['name']}", "etag": etag,
                         "size_bytes": entry["bytes"]})
        digests.append(bytes.fromhex(etag))
    s3_etag = f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-" \
              f"{len(requested)}"
    headers = {name.title(): value for name, value in marker.items()
               if name.startswith("x-object-meta-") or name in STORED_HEADERS}
    headers["Content-Type"] = f"{marker.get('content-type', 'binary/octet-stream')};" \
                              f"s3_etag={s3_etag}"
    headers.update({S3_ETAG_SYSMETA: s3_etag, UPLOAD_ID_SYSMETA: upload_id})
    replaced, _ = current_upload(req)
    store_upload(req, upload_id, manifest, object_path(req), headers)
    delete_segment(req, marker_name(req.key, upload_id))
    used = {number for number, _ in requested}
    for number, entry in stored.items():  # parts uploaded but left out: freed, as AWS does
        if number not in used:
            delete_segment(req, entry["name"])
    free_upload(req, replaced, kept=upload_id)  # the upload this one replaced
    return completed(req, s3_etag)


def abort_upload(req: S3Request) -> S3Response:
    """The parts first, then the marker: an abort cut short leaves the upload listed (and
    abortable again), never parts nothing names."""
    upload_id, _ = upload_marker(req)
    for entry in listing(req, marker_name(req.key, upload_id) + "/"):
        delete_segment(req, entry["name"])
    delete_segment(req, marker_name(req.key, upload_id))
    return S3Response(204)


def count_param(req: S3Request, name: str, default: int) -> int:
    value = req.params.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise S3Error("InvalidArgument", f"Provided {name} not an integer or within integer "
                                         "range", ArgumentName=name, ArgumentValue=value[:64])
    return int(value)


def list_parts(req: S3Request) -> S3Response:
    upload_id, _ = upload_marker(req)
    limit = min(count_param(req, "max-parts", MAX_LISTED), MAX_LISTED)
    after = count_param(req, "part-number-marker", 0)
    parts = stored_parts(req, upload_id)
    numbers = sorted(n for n in parts if n > after)
    page, truncated = numbers[:limit], len(numbers) > limit
    fields = [("Bucket", req.bucket), ("Key", req.key), ("UploadId", upload_id),
              ("Initiator", owner(req)), ("Owner", owner(req)), ("StorageClass", "STANDARD"),
              ("PartNumberMarker", after), ("NextPartNumberMarker", page[-1] if page else 0),
              ("MaxParts", limit), ("IsTruncated", truncated)]
    fields += [("Part", [("PartNumber", n), ("LastModified", iso_time(parts[n]["last_modified"])),
                         ("ETag", f'"{parts[n]["hash"]}"'), ("Size", parts[n]["bytes"])])
               for n in page]
    return S3Response(200, XML, document("ListPartsResult", fields))


def list_uploads(req: S3Request) -> S3Response:
    """``GET ?uploads``: the uploads in progress (markers; completed ones have none), by key
    then by when they began, as AWS orders them."""
    if not container_exists(req):
        raise S3Error("NoSuchBucket", BucketName=req.bucket)
    params = req.params
    prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
    key_marker, id_marker = params.get("key-marker", ""), params.get("upload-id-marker", "")
    limit = min(count_param(req, "max-uploads", MAX_LISTED), MAX_LISTED)
    uploads = sorted(((*found, entry["last_modified"]) for entry in listing(req, prefix)
                      if (found := upload_of(entry["name"]))), key=lambda u: (u[0], u[2]))
    if key_marker:
        after_marker = [u for u in uploads if u[0] > key_marker]
        if id_marker:
            ids = [u[1] for u in uploads if u[0] == key_marker]
            kept = ids[ids.index(id_marker) + 1:] if id_marker in ids else []
            after_marker = [u for u in uploads if u[0] == key_marker and u[1] in kept] \
                + after_marker
        uploads = after_marker
    items, prefixes, last, truncated = [], [], None, False
    for key, upload_id, initiated in uploads:
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        common = key[:cut + len(delimiter)] if cut >= 0 else None
        if common is not None and common in prefixes:
            continue
        if len(items) + len(prefixes) == limit:
            truncated = True
            break
        if common is not None:
            prefixes.append(common)
        else:
            items.append(("Upload", [("Key", key), ("UploadId", upload_id),
                                     ("Initiator", owner(req)), ("Owner", owner(req)),
                                     ("StorageClass", "STANDARD"),
                                     ("Initiated", iso_time(initiated))]))
        last = (key, upload_id)
    fields = [("Bucket", req.bucket), ("KeyMarker", key_marker), ("UploadIdMarker", id_marker)]
    if truncated and last:
        fields += [("NextKeyMarker", last[0]), ("NextUploadIdMarker", last[1])]
    if delimiter:
        fields.append(("Delimiter", delimiter))
    fields += [("Prefix", prefix), ("MaxUploads", limit), ("IsTruncated", truncated), *items,
               *(("CommonPrefixes", [("Prefix", p)]) for p in prefixes)]
    return S3Response(200, XML, document("ListMultipartUploadsResult", fields))
