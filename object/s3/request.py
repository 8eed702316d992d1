"""One S3 request as the operations see it, and their answer."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable

from soko.common.auth import AuthContext
from soko.object.s3 import sigv4
from soko.object.s3.chunked import AwsChunkedBody
from soko.object.s3.errors import S3Error, not_implemented
from soko.object.s3.integrity import VerifiedBody, checksum_checks, payload_check
from soko.object.s3.owners import BucketOwners
from soko.object.s3.swift import SwiftCaller


@dataclasses.dataclass
class S3Response:
    status: int = 200
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    body: bytes | Iterable[bytes] = b""


@dataclasses.dataclass
class S3Request:
    environ: dict
    method: str
    bucket: str | None
    key: str | None
    query: list[tuple[str, str]]
    signed: sigv4.SignedRequest | None  # None: an anonymous read
    who: AuthContext | None
    swift: SwiftCaller
    trans_id: str
    region: str
    owners: BucketOwners
    signing_key: bytes  # what signs aws-chunked uploads' chunks
    min_part_size: int = 5 * 1024 * 1024  # [proxy] s3_min_part_size
    parts_per_manifest: int = 1000  # [proxy] slo_max_manifest_segments

    @functools.cached_property
    def params(self) -> dict[str, str]:
        return dict(self.query)

    def header(self, name: str) -> str | None:
        return sigv4.header_value(self.environ, name)

    def content_length(self) -> int | None:
        value = self.environ.get("CONTENT_LENGTH") or None
        if value is None:
            return None
        if not value.isdigit():
            raise S3Error("InvalidArgument", "Content-Length must be a number.")
        return int(value)

    def body_stream(self, length: int | None):
        """(body, its length) to store, checked while it streams against what the client
        signed and the checksums it sent."""
        payload = self.signed.payload_hash
        stream = self.environ["wsgi.input"]
        checks = checksum_checks(self.header)
        if payload in (sigv4.SIGNED_CHUNKS, sigv4.UNSIGNED_CHUNKS):
            stream, length = self.chunked_body(stream, length)
        elif payload in sigv4.STREAMING_PAYLOADS:
            raise not_implemented(f"{payload} uploads")
        elif payload != sigv4.UNSIGNED_PAYLOAD:
            checks.append(payload_check(payload))
        return (VerifiedBody(stream, length, checks) if checks else stream), length

    def chunked_body(self, stream, length: int | None) -> tuple[AwsChunkedBody, int]:
        decoded = self.header("x-amz-decoded-content-length") or ""
        if length is None or not decoded.isdigit():
            raise S3Error("MissingContentLength", "aws-chunked uploads need Content-Length "
                                                  "and x-amz-decoded-content-length.")
        signed = self.signed.payload_hash == sigv4.SIGNED_CHUNKS
        if signed and self.header("x-amz-trailer"):
            raise not_implemented("Trailers on signed aws-chunked uploads")
        body = AwsChunkedBody(stream, length, int(decoded),
                              signing_key=self.signing_key if signed else None,
                              seed_signature=self.signed.signature,
                              amz_date=self.signed.amz_date, scope=self.signed.scope,
                              trailer=self.header("x-amz-trailer"))
        return body, int(decoded)

    def read_body(self, limit: int) -> bytes:
        """A small request body (XML), whole and verified."""
        length = self.content_length() or 0
        if length > limit:
            raise S3Error("InvalidRequest", f"The request body must be at most {limit} bytes.")
        body = self.environ["wsgi.input"].read(length) if length else b""
        if len(body) < length:
            raise S3Error("IncompleteBody")
        payload = self.signed.payload_hash
        if payload in sigv4.STREAMING_PAYLOADS:
            raise not_implemented("aws-chunked uploads (STREAMING-*)")
        if payload != sigv4.UNSIGNED_PAYLOAD and hashlib.sha256(body).hexdigest() != payload:
            raise S3Error("XAmzContentSHA256Mismatch")
        return body

    @property
    def resource(self) -> str:
        return "/" + "/".join(p for p in (self.bucket, self.key) if p is not None)
