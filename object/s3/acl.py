"""Canned ACLs (``x-amz-acl``) on buckets, mapped onto Swift's container ACLs.

``private`` is the owner alone (no container ACL); ``public-read`` is anyone reading the
objects and listing the bucket without signing (``.r:*,.rlistings``, as s3api maps it).
Swift's ACLs cannot say more than that for an anonymous caller (no anonymous writes), and
soko's S3 API addresses only the caller's own project, so everything else (other canned
ACLs, ``x-amz-grant-*``, XML grant lists) is ``NotImplemented``. An object's ACL is its
bucket's in Swift: GetObjectAcl answers the owner's FULL_CONTROL.
"""

from __future__ import annotations

from soko.object.s3.buckets import container_exists, owner
from soko.object.s3.errors import S3Error, from_swift, not_implemented
from soko.object.s3.request import S3Request, S3Response
from soko.object.s3.xmlio import document

CANNED = {"private": {"X-Container-Read": "", "X-Container-Write": ""},
          "public-read": {"X-Container-Read": ".r:*,.rlistings", "X-Container-Write": ""}}
GRANT_HEADERS = ("x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-read-acp",
                 "x-amz-grant-write-acp", "x-amz-grant-full-control")
XSI = 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
XML = [("Content-Type", "application/xml")]


def canned_headers(req: S3Request) -> dict[str, str] | None:
    """The container ACL headers the request's canned ACL means (None: it names none)."""
    for name in GRANT_HEADERS:
        if req.header(name) is not None:
            raise not_implemented(f"The {name} header")
    acl = req.header("x-amz-acl")
    if acl is None:
        return None
    if acl not in CANNED:
        raise not_implemented(f"The canned ACL {acl!r}")
    return CANNED[acl]


def check_object_acl(req: S3Request) -> None:
    """An object's ACL is its bucket's: only ``private`` (the default) is accepted."""
    headers = canned_headers(req)
    if headers is not None and headers is not CANNED["private"]:
        raise not_implemented(f"The object canned ACL {req.header('x-amz-acl')!r} (an "
                              "object's ACL is its bucket's)")


def policy(req: S3Request, public_read: bool) -> S3Response:
    grants = [("Grant", [(f'Grantee {XSI} xsi:type="CanonicalUser"', owner(req)),
                         ("Permission", "FULL_CONTROL")])]
    if public_read:
        grants.append(("Grant", [(f'Grantee {XSI} xsi:type="Group"', [("URI", ALL_USERS)]),
                                 ("Permission", "READ")]))
    return S3Response(200, XML, document("AccessControlPolicy", [
        ("Owner", owner(req)), ("AccessControlList", grants)]))


def refuse_grant_body(req: S3Request) -> None:
    if req.read_body(64 * 1024).strip():
        raise not_implemented("ACLs given as an AccessControlPolicy document")


def put_bucket_acl(req: S3Request) -> S3Response:
    refuse_grant_body(req)
    headers = canned_headers(req)
    if headers is None:
        raise S3Error("InvalidRequest", "Give a canned ACL in the x-amz-acl header.")
    answer = req.swift.call("POST", req.swift.path(req.bucket), headers=headers)
    detail = answer.read()
    if answer.status // 100 != 2:
        raise from_swift(answer.status, detail, "NoSuchBucket", BucketName=req.bucket)
    return S3Response(200)


def get_bucket_acl(req: S3Request) -> S3Response:
    answer = req.swift.call("HEAD", req.swift.path(req.bucket))
    answer.close()
    if answer.status // 100 != 2:
        raise from_swift(answer.status, b"", "NoSuchBucket", BucketName=req.bucket)
    read = [item.strip() for item in answer.headers.get("x-container-read", "").split(",")]
    return policy(req, ".r:*" in read)


def check_object_exists(req: S3Request) -> None:
    answer = req.swift.call("HEAD", req.swift.path(req.bucket, req.key))
    answer.close()
    if answer.status == 404 and container_exists(req):
        raise S3Error("NoSuchKey", Key=req.key)
    if answer.status // 100 != 2:
        raise from_swift(answer.status, b"", "NoSuchBucket", BucketName=req.bucket)


def put_object_acl(req: S3Request) -> S3Response:
    refuse_grant_body(req)
    check_object_acl(req)
    check_object_exists(req)
    return S3Response(200)


def get_object_acl(req: S3Request) -> S3Response:
    check_object_exists(req)
    return policy(req, False)
