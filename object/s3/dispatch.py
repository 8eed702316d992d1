"""Which S3 operation a request is: by method, bucket/key and subresource.

What soko does not do yet answers ``NotImplemented`` (501) by name, never a wrong answer
from an operation that ignored the subresource it was asked about.
"""

from __future__ import annotations

from soko.object.s3 import acl, buckets, copy, multipart, objects
from soko.object.s3.errors import S3Error, not_implemented

# Subresources a client may ask about that soko's S3 API does not serve yet.
BUCKET_SUBRESOURCES = ("accelerate", "analytics", "cors", "encryption",
                       "intelligent-tiering", "inventory", "lifecycle", "logging", "metrics",
                       "notification", "object-lock", "ownershipControls", "policy",
                       "policyStatus", "publicAccessBlock", "replication", "requestPayment",
                       "tagging", "versioning", "versions", "website")
OBJECT_SUBRESOURCES = ("attributes", "legal-hold", "restore", "retention", "select",
                       "tagging", "torrent")
UNSUPPORTED_HEADERS = ("x-amz-server-side-encryption",
                       "x-amz-server-side-encryption-customer-algorithm", "x-amz-tagging",
                       "x-amz-object-lock-mode", "x-amz-website-redirect-location")


def dispatch(req):
    params = req.params
    if req.bucket is None:
        if req.method == "GET":
            return buckets.list_buckets(req)
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType="SERVICE")
    # CreateBucket claims the name itself; an anonymous read is on the owner's account
    if req.who is not None and not (req.key is None and req.method == "PUT"):
        req.owners.check(req.swift, req.bucket)
    if req.key is None:
        return bucket_operation(req, params)
    return object_operation(req, params)


def bucket_operation(req, params: dict):
    for name in BUCKET_SUBRESOURCES:
        if name in params:
            raise not_implemented(f"The bucket subresource ?{name}")
    special = {("GET", "location"): buckets.get_location,
               ("POST", "delete"): objects.delete_objects,
               ("GET", "uploads"): multipart.list_uploads,
               ("GET", "acl"): acl.get_bucket_acl, ("PUT", "acl"): acl.put_bucket_acl}
    for (method, name), operation in special.items():
        if name in params and method == req.method:
            return operation(req)
    operation = {"PUT": create_bucket, "DELETE": buckets.delete_bucket,
                 "HEAD": buckets.head_bucket, "GET": buckets.list_objects}.get(req.method)
    if operation is None or any(name in params for _, name in special):
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType="BUCKET")
    return operation(req)


def create_bucket(req):
    return buckets.create_bucket(req, acl.canned_headers(req))


def object_operation(req, params: dict):
    for name in OBJECT_SUBRESOURCES:
        if name in params:
            raise not_implemented(f"The object subresource ?{name}")
    for name in UNSUPPORTED_HEADERS:
        if req.header(name) is not None:
            raise not_implemented(f"The {name} header")
    if "acl" in params:
        operation = {"GET": acl.get_object_acl, "PUT": acl.put_object_acl}.get(req.method)
    elif "uploadId" in params:
        operation = {"PUT": multipart.upload_part, "POST": multipart.complete_upload,
                     "DELETE": multipart.abort_upload,
                     "GET": multipart.list_parts}.get(req.method)
    elif "partNumber" in params:  # GetObject/HeadObject of one part of a completed upload
        operation = {"GET": objects.get_object, "HEAD": objects.get_object}.get(req.method)
    elif "uploads" in params:
        operation = {"POST": multipart.create_upload}.get(req.method)
    elif req.method == "PUT" and req.header("x-amz-copy-source") is not None:
        operation = copy.copy_object
    else:
        operation = {"PUT": objects.put_object, "GET": objects.get_object,
                     "HEAD": objects.get_object, "DELETE": objects.delete_object,
                     }.get(req.method)
    if req.method in ("PUT", "POST") and "acl" not in params:
        acl.check_object_acl(req)
    if operation is None:
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType="OBJECT")
    return operation(req)
