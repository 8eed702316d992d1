"""Which project owns each bucket name: S3's bucket names are global, Swift's containers are
per account.

A bucket created through S3 is recorded as an object named after it in a reserved account
(``.s3_buckets/owners/<bucket>``, the owner's project id in its metadata), claimed with
``If-None-Match: *`` so two projects racing for one name cannot both win. Another project's
request for that bucket then gets ``AccessDenied`` (and ``BucketAlreadyExists`` on create),
as S3 answers, instead of reaching a same-named container of its own.

Data never depends on this record: every request still addresses only the caller's own
account, so a worker's cached answer (``ttl`` seconds) can at worst show a stale error code,
never another project's data. Containers made through the Swift API have no record and are
served to their own project as buckets.
"""

from __future__ import annotations

import math

from soko.common.auth import AuthContext
from soko.common.ttl_cache import TtlCache
from soko.object.s3.errors import S3Error, from_swift
from soko.object.s3.swift import SwiftCaller

REGISTRY = "/v1/.s3_buckets/owners"
OWNER_HEADER = "X-Object-Meta-Project"
# The S3 layer's own identity for the registry (an admin on the reserved account only:
# every call it makes with it names REGISTRY).
REGISTRAR = AuthContext("s3-registry", "s3-registry", "", "", frozenset({"admin"}), math.inf)


class BucketOwners:
    def __init__(self, ttl: float = 5.0):
        self._cache = TtlCache(ttl)

    def registry(self, caller: SwiftCaller) -> SwiftCaller:
        return SwiftCaller(caller.app, caller.environ, REGISTRAR, caller.trans_id)

    def owner(self, caller: SwiftCaller, bucket: str) -> str | None:
        return self._cache.get(bucket, lambda: self.read_owner(caller, bucket))

    def read_owner(self, caller: SwiftCaller, bucket: str) -> str | None:
        answer = self.registry(caller).call("HEAD", f"{REGISTRY}/{bucket}")
        answer.close()
        if answer.status // 100 == 2:
            return answer.headers.get(OWNER_HEADER.lower())
        if answer.status == 404:
            return None
        raise from_swift(answer.status, b"", "NoSuchBucket")

    def remember(self, bucket: str, owner: str | None) -> None:
        self._cache.put(bucket, owner)

    def check(self, caller: SwiftCaller, bucket: str) -> None:
        """``AccessDenied`` unless the bucket is the caller's (or unrecorded)."""
        owner = self.owner(caller, bucket)
        if owner is not None and owner != caller.who.project_id:
            raise S3Error("AccessDenied")

    def claim(self, caller: SwiftCaller, bucket: str) -> None:
        """Records the caller's project as the bucket's owner (``BucketAlreadyExists`` if
        another project holds it)."""
        registry = self.registry(caller)
        headers = {OWNER_HEADER: caller.who.project_id, "If-None-Match": "*"}
        answer = registry.call("PUT", f"{REGISTRY}/{bucket}", headers=headers, body=b"")
        if answer.status == 404:  # the registry container's first use
            registry.call("PUT", REGISTRY).read()
            answer = registry.call("PUT", f"{REGISTRY}/{bucket}", headers=headers, body=b"")
        detail = answer.read()
        if answer.status == 412:
            self._cache.forget(bucket)
            if self.owner(caller, bucket) != caller.who.project_id:
                raise S3Error("BucketAlreadyExists", BucketName=bucket)
            return
        if answer.status // 100 != 2:
            raise from_swift(answer.status, detail, "NoSuchBucket")
        self.remember(bucket, caller.who.project_id)

    def release(self, caller: SwiftCaller, bucket: str) -> None:
        if self.owner(caller, bucket) == caller.who.project_id:
            self.registry(caller).call("DELETE", f"{REGISTRY}/{bucket}").read()
        self.remember(bucket, None)
