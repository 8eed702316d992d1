"""How a chunk is compressed in the object store: a 4-byte header names the codec, so
every chunk object describes itself and a chunk stored by an older backup with another
codec is still deduplicated and restored."""

from __future__ import annotations

import zlib

try:
    import zstandard

    DECODE_ERRORS: tuple = (zlib.error, zstandard.ZstdError)
except ImportError:  # zlib is always there
    zstandard = None
    DECODE_ERRORS = (zlib.error,)

MAGIC = b"SKC"
CODECS = ("zstd", "zlib", "none")
CODEC_IDS = {"none": 0, "zlib": 1, "zstd": 2}
# Measured on this 2-core VM, CPU time per 4 MiB chunk: shared libraries compress at
# 158 MB/s to 0.25 of their size at level 3 and at 314 MB/s to 0.30 at level 1; random
# data at 1.8 and 2.5 GB/s. Level 1 keeps a backup of real data off the CPU's limit. The
# level is not part of the format: chunks of any level decode alike.
ZSTD_LEVEL = 1


class CorruptChunk(ValueError):
    """A chunk object is not what its manifest says it is."""


def resolve(name: str) -> str:
    """``auto`` is zstd where the module is installed, else zlib."""
    if name == "auto":
        return "zstd" if zstandard is not None else "zlib"
    if name not in CODECS:
        raise ValueError(f"unknown compression {name!r} (auto, {', '.join(CODECS)})")
    if name == "zstd" and zstandard is None:
        raise ValueError("compression zstd needs the zstandard module (pip install zstandard)")
    return name


def encode(data: bytes, codec: str) -> bytes:
    if codec == "zstd":
        payload = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    elif codec == "zlib":
        payload = zlib.compress(data, 1)
    else:
        payload = data
    if codec != "none" and len(payload) >= len(data):
        codec, payload = "none", data  # incompressible: store it as it is
    return MAGIC + bytes([CODEC_IDS[codec]]) + payload


def decode(blob: bytes, max_size: int) -> bytes | memoryview:
    """The chunk's raw bytes (a view into ``blob`` when stored raw: no copy);
    ``CorruptChunk`` for an unknown header or a bad stream."""
    if blob[:3] != MAGIC or len(blob) < 4:
        raise CorruptChunk("the chunk has no soko chunk header")
    codec, payload = blob[3], memoryview(blob)[4:]
    try:
        if codec == CODEC_IDS["none"]:
            return payload
        if codec == CODEC_IDS["zlib"]:
            return zlib.decompressobj().decompress(payload, max_size)
        if codec == CODEC_IDS["zstd"] and zstandard is not None:
            return zstandard.ZstdDecompressor().decompress(payload, max_output_size=max_size)
    except DECODE_ERRORS as exc:
        raise CorruptChunk(f"the chunk does not decompress: {exc}") from None
    raise CorruptChunk(f"the chunk uses codec {codec}, which this host cannot read")
