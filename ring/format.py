"""The on-disk container shared by ring and builder files.

Layout: ``magic (8 bytes) | format version (u16 BE) | payload length (u64 BE) |
xxh64 of the payload (u64 BE) | msgpack payload``. The magic tells a ring from a builder
(and from a Swift pickle), the version lets the format grow, the checksum turns a torn copy
or a flipped bit into a clear error instead of wrong placement. Never pickle: a ring file
travels between hosts, and unpickling one is running code from it.
"""

from __future__ import annotations

import os
import struct
from array import array
from typing import Any

import msgpack
import xxhash

from soko.common.durable import atomic_write
from soko.ring.errors import RingFileError

RING_MAGIC = b"SOKORING"
BUILDER_MAGIC = b"SOKOBLDR"
FORMAT_VERSION = 1
_HEADER = struct.Struct(">8sHQQ")
_KINDS = {RING_MAGIC: "ring", BUILDER_MAGIC: "builder"}


def encode(magic: bytes, payload: dict[str, Any]) -> bytes:
    body = msgpack.packb(payload, use_bin_type=True)
    return _HEADER.pack(magic, FORMAT_VERSION, len(body), xxhash.xxh64_intdigest(body)) + body


def decode(magic: bytes, data: bytes, name: str = "file") -> dict[str, Any]:
    """Checks the header and the checksum before trusting a byte of the payload."""
    want = _KINDS[magic]
    if len(data) < _HEADER.size:
        raise RingFileError(f"{name}: not a soko {want} file (only {len(data)} bytes)")
    found_magic, version, length, checksum = _HEADER.unpack_from(data)
    if found_magic != magic:
        other = _KINDS.get(found_magic)
        hint = f"it is a soko {other} file" if other else "unknown magic"
        raise RingFileError(f"{name}: not a soko {want} file ({hint})")
    if version != FORMAT_VERSION:
        raise RingFileError(
            f"{name}: {want} format version {version} is not supported (this soko reads {FORMAT_VERSION})"
        )
    body = data[_HEADER.size :]
    if len(body) != length:
        raise RingFileError(
            f"{name}: truncated {want} file ({len(body)} of {length} payload bytes)"
        )
    if xxhash.xxh64_intdigest(body) != checksum:
        raise RingFileError(f"{name}: checksum mismatch, the {want} file is corrupted")
    try:
        payload = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData) as exc:  # a checksum collision is all that gets here
        raise RingFileError(f"{name}: undecodable {want} payload: {exc}") from None
    if not isinstance(payload, dict):
        raise RingFileError(f"{name}: malformed {want} payload")
    return payload


def write(path: str | os.PathLike, magic: bytes, payload: dict[str, Any]) -> None:
    atomic_write(path, encode(magic, payload))


def read(path: str | os.PathLike, magic: bytes) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise RingFileError(f"cannot read {path}: {exc.strerror}") from None
    return decode(magic, data, str(path))


_BIG_ENDIAN_HOST = struct.pack("=H", 1) != b"\x01\x00"


def rows_to_bytes(rows: list[array]) -> list[bytes]:
    """Assignment rows are stored little-endian whatever the host, so files move freely."""
    out = []
    for row in rows:
        if _BIG_ENDIAN_HOST:
            row = array("H", row)
            row.byteswap()
        out.append(row.tobytes())
    return out


def rows_from_bytes(blobs: Any, name: str) -> list[array]:
    if not isinstance(blobs, list):
        raise RingFileError(f"{name}: malformed assignment rows")
    rows = []
    for blob in blobs:
        if not isinstance(blob, bytes) or len(blob) % 2:
            raise RingFileError(f"{name}: malformed assignment row")
        row = array("H")
        row.frombytes(blob)
        if _BIG_ENDIAN_HOST:
            row.byteswap()
        rows.append(row)
    return rows


def field(payload: dict[str, Any], key: str, kind: type | tuple[type, ...], name: str) -> Any:
    """A payload field of the expected type, or a clear error naming it."""
    value = payload.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RingFileError(f"{name}: field {key!r} is missing or malformed")
    return value
