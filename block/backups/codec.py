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
# A chunk is compressed whole only if samples spread over it shrink (borg's "auto" mode
# tests with lz4 the same way): zstd level 1 spent 0.55 s of CPU per GiB of random data
# here only to find it incompressible; the samples cost 3 % of that. A chunk whose samples
# save under 3 % is stored raw.
SAMPLES, SAMPLE_SIZE, SAMPLED_SAVING = 8, 16 << 10, 0.03


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
    return b"".join(encode_parts(data, codec))


def encode_parts(data: bytes | bytearray, codec: str) -> tuple[bytes, bytes | bytearray]:
    """The chunk object as header and payload, so a raw chunk is sent without a copy."""
    if codec != "none" and looks_incompressible(data, codec):
        codec = "none"
    payload = compress(data, codec)
    if codec != "none" and len(payload) >= len(data):
        codec, payload = "none", data  # incompressible: store it as it is
    return MAGIC + bytes([CODEC_IDS[codec]]), payload


def compress(data, codec: str):
    if codec == "zstd":
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    if codec == "zlib":
        return zlib.compress(data, 1)
    return data


def looks_incompressible(data: bytes | bytearray, codec: str) -> bool:
    if len(data) < 4 * SAMPLES * SAMPLE_SIZE:  # small: compressing it all is cheap
        return False
    view, step = memoryview(data), len(data) // SAMPLES
    sample = b"".join(view[i * step:i * step + SAMPLE_SIZE] for i in range(SAMPLES))
    return len(compress(sample, codec)) > len(sample) * (1 - SAMPLED_SAVING)


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
