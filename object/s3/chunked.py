"""``aws-chunked`` uploads: the body arrives as signed chunks, or unsigned with a checksum.

``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: each chunk is ``<hex size>;chunk-signature=<sig>``
CRLF data CRLF, and its signature chains from the previous one (the first from the request's
own signature), so no chunk can be changed, dropped or reordered.
``STREAMING-UNSIGNED-PAYLOAD-TRAILER``: plain ``<hex size>`` chunks, then trailing headers
with a checksum of the whole body (``x-amz-checksum-crc32``, ``-sha1`` or ``-sha256``).

Chunks are handed on only once the next one has been read and checked, and the last data
only once the final chunk and trailer were: a body that fails anywhere fails the read that
would have completed it, so the proxy never commits the object.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from soko.object.s3.errors import S3Error
from soko.object.s3.integrity import CHECKSUMS, PayloadMismatch

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_CHUNK = 16 * 1024 * 1024
MAX_LINE = 4096


class AwsChunkedBody:
    """The decoded body of an aws-chunked upload, verified as it is read."""

    def __init__(self, stream, encoded_length: int, decoded_length: int, *,
                 signing_key: bytes | None, seed_signature: str, amz_date: str, scope: str,
                 trailer: str | None):
        self.stream = stream
        self.remaining = encoded_length
        self.unserved = decoded_length
        self.signing_key = signing_key  # None: unsigned chunks
        self.previous = seed_signature
        self.amz_date = amz_date
        self.scope = scope
        self.checksum_name = (trailer or "").strip().lower() or None
        if self.checksum_name is not None and self.checksum_name not in CHECKSUMS:
            raise S3Error("InvalidRequest", f"The trailer {trailer} is not supported.")
        self.checksum = CHECKSUMS[self.checksum_name]() if self.checksum_name else None
        self.buffer = b""
        self.pending: bytes | None = None  # a checked chunk not handed on yet
        self.done = False
        self.failure: S3Error | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            while not self.buffer and not self.done:
                self.advance()
            size = len(self.buffer) if size is None or size < 0 else size
            chunk, self.buffer = self.buffer[:size], self.buffer[size:]
            self.unserved -= len(chunk)
            if self.unserved <= 0:
                # The reader stops here: whatever follows must be checked now, and be nothing.
                while not self.done:
                    self.advance()
                if self.buffer or self.unserved < 0:
                    raise S3Error("IncompleteBody", "The chunks hold more than "
                                                    "x-amz-decoded-content-length says.")
        except S3Error as exc:
            self.failure = exc
            raise PayloadMismatch(exc.message) from None
        return chunk

    def advance(self) -> None:
        """Reads one more chunk; what the previous one held becomes readable."""
        data = self.next_chunk()
        if data is None:  # the final chunk and the trailer passed their checks
            self.buffer, self.pending, self.done = self.pending or b"", None, True
            return
        if self.pending is not None:
            self.buffer = self.pending
        self.pending = data

    def next_chunk(self) -> bytes | None:
        header = self.line()
        size_text, _, extension = header.partition(";")
        try:
            size = int(size_text, 16)
        except ValueError:
            raise S3Error("IncompleteBody", "A chunk header is malformed.") from None
        if not 0 <= size <= MAX_CHUNK:
            raise S3Error("InvalidArgument", f"Chunks must be at most {MAX_CHUNK} bytes.")
        data = self.exactly(size)
        if self.signing_key is not None:
            name, _, signature = extension.partition("=")
            if name.strip() != "chunk-signature":
                raise S3Error("SignatureDoesNotMatch", "A chunk has no signature.")
            self.check_signature("AWS4-HMAC-SHA256-PAYLOAD", hashlib.sha256(data).hexdigest(),
                                 signature.strip())
        if size:
            if self.line() != "":
                raise S3Error("IncompleteBody", "A chunk is longer than its size says.")
            if self.checksum is not None:
                self.checksum.update(data)
            return data
        self.finish()
        return None

    def finish(self) -> None:
        """After the final chunk: the trailer (if any), then the end of the body."""
        trailer = {}
        while (line := self.line()) != "":
            name, _, value = line.partition(":")
            trailer[name.strip().lower()] = value.strip()
        if self.checksum_name is not None and trailer.get(self.checksum_name) != \
                base64.b64encode(self.checksum.digest()).decode():
            raise S3Error("BadDigest", f"The {self.checksum_name} trailer does not match the "
                                       "body.")
        if self.remaining:
            raise S3Error("IncompleteBody", "There are bytes after the final chunk.")

    def check_signature(self, kind: str, data_hash: str, signature: str) -> None:
        parts = [kind, self.amz_date, self.scope, self.previous, EMPTY_SHA256, data_hash]
        expected = hmac.new(self.signing_key, "\n".join(parts).encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise S3Error("SignatureDoesNotMatch", "A chunk's signature does not match.")
        self.previous = signature

    def line(self) -> str:
        data = b""
        while not data.endswith(b"\r\n"):
            if len(data) > MAX_LINE or self.remaining <= 0:
                raise S3Error("IncompleteBody", "The chunked body ended early.")
            byte = self.stream.read(1)
            if not byte:
                raise S3Error("IncompleteBody", "The chunked body ended early.")
            self.remaining -= 1
            data += byte
        return data[:-2].decode("latin-1")

    def exactly(self, size: int) -> bytes:
        if size > self.remaining:
            raise S3Error("IncompleteBody", "A chunk is longer than the body.")
        parts, wanted = [], size
        while wanted:
            part = self.stream.read(min(wanted, 1 << 20))
            if not part:
                raise S3Error("IncompleteBody", "The chunked body ended early.")
            parts.append(part)
            wanted -= len(part)
        self.remaining -= size
        return b"".join(parts)
