"""A backup's manifest: where every byte of the volume lives in the chunk store.

Each backup's manifest is complete on its own: ``extents`` cover the whole volume in
order, each either zeros (no chunk) or a slice of one content-addressed chunk, so a
restore of any backup in a chain reads its manifest and the chunks it names, nothing
else. The block map (one xxh3-128 digest per 64 KiB block) is what the next incremental
compares against; it lives in its own object so manifests stay small for mark-and-sweep.

On the wire: magic, version, an xxh3-64 of the body, then the msgpack body (no pickle).
"""

from __future__ import annotations

import bisect
import dataclasses

import msgpack
import xxhash

MAGIC = b"SOKOBKUP"
VERSION = 1


class BadManifest(ValueError):
    """The manifest object is truncated, tampered with or of an unknown version."""


@dataclasses.dataclass(frozen=True)
class Extent:
    """``length`` bytes at ``offset`` in the volume: zeros (``digest`` None) or the bytes at
    ``chunk_offset`` in the chunk named by ``digest``."""

    offset: int
    length: int
    digest: bytes | None
    chunk_offset: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.length

    def clip(self, start: int, stop: int) -> Extent:
        start, stop = max(start, self.offset), min(stop, self.end)
        shift = start - self.offset if self.digest is not None else 0
        return Extent(start, stop - start, self.digest, self.chunk_offset + shift)

    def continues(self, other: Extent) -> bool:
        """Whether ``other`` directly follows this one in the volume and in its chunk."""
        if other.offset != self.end or other.digest != self.digest:
            return False
        return self.digest is None or other.chunk_offset == self.chunk_offset + self.length


def append_extent(extents: list[Extent], extent: Extent) -> None:
    """Appends, merging with the last extent where it simply continues it."""
    if extents and extents[-1].continues(extent):
        last = extents[-1]
        extents[-1] = Extent(last.offset, last.length + extent.length, last.digest,
                             last.chunk_offset)
    else:
        extents.append(extent)


def slice_extents(extents: list[Extent], starts: list[int], start: int, stop: int):
    """The parts of sorted, contiguous ``extents`` (``starts`` their offsets) in a range."""
    i = max(bisect.bisect_right(starts, start) - 1, 0)
    while i < len(extents) and extents[i].offset < stop:
        if extents[i].end > start:
            yield extents[i].clip(start, stop)
        i += 1


@dataclasses.dataclass
class Manifest:
    backup_id: str
    volume_id: str
    size: int  # bytes
    block_size: int
    chunk_size: int
    compression: str  # what this backup used for the chunks it uploaded
    parent_id: str | None
    extents: list[Extent]
    chunk_sizes: dict[bytes, int]  # every referenced chunk's raw length

    def chunk_names(self) -> set[str]:
        return {chunk_name(d) for d in self.chunk_sizes}

    def pack(self) -> bytes:
        body = msgpack.packb({
            "backup_id": self.backup_id, "volume_id": self.volume_id, "size": self.size,
            "block_size": self.block_size, "chunk_size": self.chunk_size,
            "compression": self.compression, "parent_id": self.parent_id,
            "extents": [[e.offset, e.length, e.digest, e.chunk_offset] for e in self.extents],
            "chunks": [[d, n] for d, n in self.chunk_sizes.items()],
        })
        return seal(body)

    @classmethod
    def unpack(cls, data: bytes) -> Manifest:
        body = msgpack.unpackb(unseal(data))
        try:
            return cls(body["backup_id"], body["volume_id"], body["size"], body["block_size"],
                       body["chunk_size"], body["compression"], body["parent_id"],
                       [Extent(*e) for e in body["extents"]],
                       {d: n for d, n in body["chunks"]})
        except (KeyError, TypeError) as exc:
            raise BadManifest(f"the manifest lacks a field: {exc}") from None


def seal(body: bytes) -> bytes:
    return MAGIC + bytes([VERSION]) + xxhash.xxh3_64_digest(body) + body


def unseal(data: bytes) -> bytes:
    if data[:8] != MAGIC or len(data) < 17:
        raise BadManifest("not a soko backup manifest")
    if data[8] != VERSION:
        raise BadManifest(f"manifest version {data[8]} is newer than this soko")
    body = data[17:]
    if xxhash.xxh3_64_digest(body) != data[9:17]:
        raise BadManifest("the manifest's checksum does not match: it is corrupted")
    return body


def chunk_name(digest: bytes) -> str:
    return f"chunks/{digest.hex()}"


def manifest_name(backup_id: str) -> str:
    return f"manifests/{backup_id}"


def block_map_name(backup_id: str) -> str:
    return f"blockmaps/{backup_id}"
