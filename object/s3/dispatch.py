"""Which S3 operation a request is: by method, bucket/key and subresource.

What soko does not do yet answers ``NotImplemented`` (501) by name, never a wrong answer
from an operation that ignored the subresource it was asked about.
"""

from __future__ import annotations

from soko.object.s3 import buckets, objects
from soko.object.s3.errors import S3Error, not_implemented

# Subresources a client may ask about that soko's S3 API does not serve yet.
BUCKET_SUBRESOURCES = ("accelerate", "acl", "analytics", "cors", "encryption",
                       "intelligent-tiering", "inventory", "lifecycle", "logging", "metrics",
                       "notification", "object-lock", "ownershipControls", "policy",
                       "policyStatus", "publicAccessBlock", "replication", "requestPayment",
                       "tagging", "uploads", "versioning", "versions", "website")
OBJECT_SUBRESOURCES = ("acl", "attributes", "legal-hold", "partNumber", "restore",
                       "retention", "select", "tagging", "torrent", "uploadId", "uploads")
UNSUPPORTED_HEADERS = ("x-amz-copy-source", "x-amz-server-side-encryption",
                       "x-amz-server-side-encryption-customer-algorithm", "x-amz-tagging",
                       "x-amz-object-lock-mode", "x-amz-website-redirect-location")


def dispatch(req):
    params = req.params
    if req.bucket is None:
        if req.method == "GET":
            return buckets.list_buckets(req)
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType="SERVICE")
    if not (req.key is None and req.method == "PUT"):  # CreateBucket claims the name itself
        req.owners.check(req.swift, req.bucket)
    if req.key is None:
        return bucket_operation(req, params)
    return object_operation(req, params)


def bucket_operation(req, params: dict):
    for name in BUCKET_SUBRESOURCES:
        if name in params:
            raise not_implemented(f"The bucket subresource ?{name}")
    if "location" in params and req.method == "GET":
        return buckets.get_location(req)
    if "delete" in params and req.method == "POST":
        return objects.delete_objects(req)
    operation = {"PUT": buckets.create_bucket, "DELETE": buckets.delete_bucket,
                 "HEAD": buckets.head_bucket, "GET": buckets.list_objects}.get(req.method)
    if operation is None or "location" in params or "delete" in params:
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType="BUCKET")
    return operation(req)


def object_operation(req, params: dict):
    for name in OBJECT_SUBRESOURCES:
        if name in params:
            raise not_implemented(f"The object subresource ?{name}")
    for name in UNSUPPORTED_HEADERS:
        if req.header(name) is not None:
            raise not_implemented(f"The {name} header")
    acl = req.header("x-amz-acl")
    if acl not in (None, "private"):
        raise not_implemented(f"The canned ACL {acl!r}")
    operation = {"PUT": objects.put_object, "GET": objects.get_object,
                 "HEAD": objects.get_object, "DELETE": objects.delete_object}.get(req.method)
    if operation is None:
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType="OBJECT")
    return operation(req)
