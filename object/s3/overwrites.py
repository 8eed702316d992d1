"""What a write over a completed multipart upload frees: its parts.

A completed upload's object is an SLO manifest naming its parts where they lie, in
``<bucket>+segments``. A PutObject, CopyObject or CompleteMultipartUpload that replaces it
frees them once the new object is stored, as AWS frees an overwritten object's storage
(Swift's s3api leaves them orphaned) and as DeleteObject of it already does. Not in a bucket
that keeps versions (Swift's ``versioned_writes`` or ``object_versioning``, enabled or
suspended): the archived version is the same manifest and still needs them.

Finding what a write replaces costs a HEAD of the key before it. Only buckets that ever
had an upload pay it: CreateMultipartUpload marks the bucket's container
(``UPLOADS_SYSMETA``), and every write reads that mark from the proxy's container-info
cache, which object writes fill anyway. A worker that cached the bucket's info just before
its first upload began sees the mark within ``[proxy] container_info_ttl`` (5 s).
"""

from __future__ import annotations

from soko.object.s3.errors import from_swift
from soko.object.s3.request import S3Request
from soko.object.s3.uploads import delete_segment, listing, marker_name

UPLOAD_ID_SYSMETA = "X-Object-Sysmeta-S3-Upload-Id"  # which upload completed the object
UPLOADS_SYSMETA = "X-Container-Sysmeta-S3-Uploads"  # the bucket has had an upload
UPLOADS_FLAG = UPLOADS_SYSMETA[len("X-Container-Sysmeta-"):].lower()
# The container system metadata of the two versioning middlewares (versioned_writes'
# X-Versions-Location / X-History-Location, object_versioning's X-Versions-Enabled).
VERSIONING_SYSMETA = ("versions-location", "versions-enabled")


def bucket_info(req: S3Request) -> dict | None:
    """The bucket container's info from the proxy's cache (None: no such container)."""
    return req.swift.app.container_info(req.trans_id, req.swift.account, req.bucket)


def keeps_versions(info: dict | None) -> bool:
    return info is not None and any(info["sysmeta"].get(k) for k in VERSIONING_SYSMETA)


def mark_bucket(req: S3Request) -> None:
    """Records that the bucket has (had) multipart uploads, once."""
    info = bucket_info(req)
    if info is not None and UPLOADS_FLAG in info["sysmeta"]:
        return
    answer = req.swift.call("POST", req.swift.path(req.bucket), headers={UPLOADS_SYSMETA: "1"})
    detail = answer.read()
    if answer.status // 100 != 2:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)


def current_upload_id(req: S3Request, path: str) -> str | None:
    """The completed upload now at ``path`` (a HEAD), if any."""
    answer = req.swift.call("HEAD", path)
    answer.close()
    return answer.headers.get(UPLOAD_ID_SYSMETA.lower()) if answer.status // 100 == 2 else None


def replaced_upload(req: S3Request, path: str) -> str | None:
    """The completed upload a write to ``path`` is about to replace and may free."""
    info = bucket_info(req)
    if info is None or UPLOADS_FLAG not in info["sysmeta"] or keeps_versions(info):
        return None
    return current_upload_id(req, path)


def free_upload(req: S3Request, upload_id: str | None, kept: str | None = None) -> None:
    """Deletes the parts (and sub-manifests) of ``upload_id``, which the write that just
    succeeded replaced, unless it is ``kept`` or the bucket keeps versions."""
    if upload_id is None or upload_id == kept or keeps_versions(bucket_info(req)):
        return
    for entry in listing(req, marker_name(req.key, upload_id) + "/"):
        delete_segment(req, entry["name"])
