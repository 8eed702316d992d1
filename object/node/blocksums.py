"""Per-block checksums of each ``.data``: a corrupt block never leaves the storage node.

The object's MD5 (its ETag) can only be checked over the whole body, so a ranged read of a
rotten copy would go out unchecked (Swift has that hole). Every ``.data`` therefore carries
an xxh3-64 of each 64 KiB block of its body, and every read checks the blocks it covers
before their bytes are sent; a full GET needs no MD5 then (xxh3 costs ~1/30 of it).

Where they live: in xattrs of the ``.data`` itself, ``user.soko.blocks.<n>``, each holding
the 8-byte digests of up to 8,192 blocks (64 KiB: XFS's largest xattr value, so one xattr
covers 512 MiB of body), set on the temp file before its fsync and rename: a ``.data``
never exists without them. The object's metadata says ``Block-Sums: xxh3-64/65536``; a
``.data`` without that key is of the older format (see ``object_server.answer_read``).
Replication needs nothing new: the receiving writer hashes what it writes like any other
and commits only a body whose MD5 is the ETag, so the copy's sums are of the right bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import xxhash

BLOCK_SIZE = 64 * 1024
DIGEST_SIZE = 8
METADATA_KEY = "Block-Sums"
LAYOUT = f"xxh3-64/{BLOCK_SIZE}"
XATTR_PREFIX = "user.soko.blocks."
PER_XATTR = 64 * 1024 // DIGEST_SIZE
BLOCKS_PER_READ = 4  # 256 KiB reads, as diskfile.READ_CHUNK


class BlockMismatch(Exception):
    """A block of a ``.data`` is not the one that was written (or its sums are gone)."""


def has_block_sums(metadata: dict[str, str]) -> bool:
    return metadata.get(METADATA_KEY) == LAYOUT


class BlockHasher:
    """The digests of a body's blocks, fed in chunks of any size as the body streams."""

    def __init__(self):
        self.digests = bytearray()
        self.block = xxhash.xxh3_64()
        self.filled = 0

    def update(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk)
        while view:
            if not self.filled and len(view) >= BLOCK_SIZE:  # a whole block: one call
                self.digests += xxhash.xxh3_64_digest(view[:BLOCK_SIZE])
                view = view[BLOCK_SIZE:]
                continue
            take = min(len(view), BLOCK_SIZE - self.filled)
            self.block.update(view[:take])
            self.filled += take
            view = view[take:]
            if self.filled == BLOCK_SIZE:
                self.digests += self.block.digest()
                self.block.reset()
                self.filled = 0

    def finish(self) -> bytes:
        """All digests, the last (partial) block's included."""
        if self.filled:
            self.digests += self.block.digest()
            self.block.reset()
            self.filled = 0
        return bytes(self.digests)


def save_sums(fd: int, digests: bytes) -> None:
    """Sets the digests as xattrs on the open file (the caller fsyncs)."""
    step = PER_XATTR * DIGEST_SIZE
    for index, offset in enumerate(range(0, len(digests), step)):
        os.setxattr(fd, f"{XATTR_PREFIX}{index}", digests[offset:offset + step])


def stored_sums(fd: int, size: int) -> bytes | None:
    """All stored digests of an open ``.data`` of ``size`` bytes (None if any are missing)."""
    blocks = -(-size // BLOCK_SIZE)
    try:
        return b"".join(os.getxattr(fd, f"{XATTR_PREFIX}{index}")
                        for index in range(-(-blocks // PER_XATTR)))
    except OSError:
        return None


class SumsOf:
    """The stored digests of one open ``.data``, read one xattr at a time as needed."""

    def __init__(self, fd: int):
        self.fd = fd
        self.loaded: dict[int, bytes] = {}

    def digest(self, block: int) -> bytes:
        index, within = divmod(block, PER_XATTR)
        if index not in self.loaded:
            try:
                self.loaded[index] = os.getxattr(self.fd, f"{XATTR_PREFIX}{index}")
            except OSError as exc:
                raise BlockMismatch(f"block sums {index} unreadable: {exc}") from None
        return self.loaded[index][within * DIGEST_SIZE:(within + 1) * DIGEST_SIZE]


def read_verified_range(path: Path, start: int, end: int) -> Iterator[bytes]:
    """Yields bytes ``[start, end)`` of ``path``, reading whole blocks and checking each
    against its stored digest before any of its bytes is yielded; raises BlockMismatch."""
    if start >= end:
        return
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        sums = SumsOf(fd)
        block, last = start // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        while block <= last:
            count = min(BLOCKS_PER_READ, last - block + 1)
            offset = block * BLOCK_SIZE
            data = os.pread(fd, count * BLOCK_SIZE, offset)
            view = memoryview(data)
            for i in range(count):
                piece = view[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE]
                if not piece or xxhash.xxh3_64_digest(piece) != sums.digest(block + i):
                    raise BlockMismatch(f"{path}: block {block + i} fails its checksum")
            lo, hi = max(start - offset, 0), min(end - offset, len(data))
            yield data if (lo, hi) == (0, len(data)) else data[lo:hi]
            block += count
