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

from awscrt.checksums import crc32c, crc64nvme

from soko.common.errors import SokoError
from soko.object.s3.errors import S3Error


class PayloadMismatch(SokoError):
    """The body failed a check (the write must fail; the S3 error is the body's ``failure``)."""

    status, title = 400, "Bad Request"


class Crc:
    """A running CRC with hashlib's ``update``/``digest`` (big-endian, as S3 sends it)."""

    def __init__(self, function: Callable[[bytes, int], int], size: int):
        self.function, self.size, self.value = function, size, 0

    def update(self, data: bytes) -> None:
        self.value = self.function(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.size, "big")


# Every checksum an AWS SDK sends; CRC32C and CRC64NVME from awscrt (the AWS SDKs' own C
# runtime: as fast as zlib's crc32 here, ~200 MB/s a core on this loaded machine).
CHECKSUMS = {"x-amz-checksum-crc32": lambda: Crc(zlib.crc32, 4),
             "x-amz-checksum-crc32c": lambda: Crc(crc32c, 4),
             "x-amz-checksum-crc64nvme": lambda: Crc(crc64nvme, 8),
             "x-amz-checksum-sha1": hashlib.sha1, "x-amz-checksum-sha256": hashlib.sha256}
# Where an object keeps the checksum it was stored with (``x-amz-checksum-mode: ENABLED``).
CHECKSUM_SYSMETA = "X-Object-Sysmeta-S3-Checksum-"


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


def checksum_sysmeta(header: Callable[[str], str | None]) -> dict[str, str]:
    """The checksums the request sent, as the object's system metadata (stored only if the
    body matches them: a mismatch fails the write)."""
    return {CHECKSUM_SYSMETA + name[len("x-amz-checksum-"):].title(): value
            for name in CHECKSUMS if (value := header(name)) is not None}


def stored_checksums(swift: dict[str, str]) -> list[tuple[str, str]]:
    """``x-amz-checksum-<algorithm>`` answer headers from an object's system metadata."""
    prefix = CHECKSUM_SYSMETA.lower()
    return [("x-amz-checksum-" + name[len(prefix):], value) for name, value in swift.items()
            if name.startswith(prefix)]


def sent_checksums(header: Callable[[str], str | None]) -> list[tuple[str, str]]:
    """The checksums a write was sent (and stored) with, answered back as AWS does."""
    return [(name, value) for name in CHECKSUMS if (value := header(name)) is not None]


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
