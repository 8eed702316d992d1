"""Checking a body against the digests a client sent with it, while it streams.

A signed ``x-amz-content-sha256`` and the ``x-amz-checksum-*`` headers (botocore sends a
CRC32 with every PutObject by default) are each a ``Check``. ``VerifiedBody`` refuses to
hand over the last bytes of a body that fails one: the proxy then never commits the object,
and ``failure`` says which S3 error to answer.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import zlib
from collections.abc import Callable

from soko.common.errors import SokoError
from soko.object.s3.errors import S3Error, not_implemented


class PayloadMismatch(SokoError):
    """The body failed a check (the write must fail; the S3 error is the body's ``failure``)."""

    status, title = 400, "Bad Request"


class Crc32:
    def __init__(self):
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


CHECKSUMS = {"x-amz-checksum-crc32": Crc32, "x-amz-checksum-sha1": hashlib.sha1,
             "x-amz-checksum-sha256": hashlib.sha256}
UNSUPPORTED_CHECKSUMS = ("x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme")


@dataclasses.dataclass
class Check:
    hasher: object  # update() and digest()
    expected: bytes
    error: Callable[[bytes], S3Error]  # the S3 error, given the digest actually computed


def payload_check(expected_hex: str) -> Check:
    return Check(hashlib.sha256(), bytes.fromhex(expected_hex), lambda actual: S3Error(
        "XAmzContentSHA256Mismatch", ClientComputedContentSHA256=expected_hex,
        S3ComputedContentSHA256=actual.hex()))


def checksum_checks(header: Callable[[str], str | None]) -> list[Check]:
    """A check per ``x-amz-checksum-*`` header the request carries."""
    for name in UNSUPPORTED_CHECKSUMS:
        if header(name) is not None:
            raise not_implemented(f"The {name} checksum")
    checks = []
    for name, hasher in CHECKSUMS.items():
        value = header(name)
        if value is None:
            continue
        try:
            expected = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise S3Error("InvalidRequest", f"Value for {name} header is invalid.") from None
        checks.append(Check(hasher(), expected, lambda actual, name=name: S3Error(
            "BadDigest", f"The {name} you specified did not match the calculated checksum.")))
    return checks


class VerifiedBody:
    """``wsgi.input`` (or a decoded aws-chunked body) that checks what is read."""

    def __init__(self, stream, length: int | None, checks: list[Check]):
        self.stream = stream
        self.remaining = length
        self.checks = checks
        self.failure: S3Error | None = None

    def read(self, size: int = -1) -> bytes:
        if self.remaining is not None:
            size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        try:
            chunk = self.stream.read(size) if size != 0 else b""
        except PayloadMismatch:
            self.failure = getattr(self.stream, "failure", None)
            raise
        for check in self.checks:
            check.hasher.update(chunk)
        if self.remaining is not None:
            self.remaining -= len(chunk)
        if self.remaining == 0 or not chunk:
            self.verify()
        return chunk

    def verify(self) -> None:
        for check in self.checks:
            actual = check.hasher.digest()
            if actual != check.expected:
                self.failure = check.error(actual)
                raise PayloadMismatch(self.failure.message)
