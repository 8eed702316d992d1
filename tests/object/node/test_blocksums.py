"""Block sums of a ``.data``: computed as the body streams, stored in xattrs, checked on read."""

from __future__ import annotations

import os

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from soko.object.node.blocksums import (
    BLOCK_SIZE,
    DIGEST_SIZE,
    PER_XATTR,
    BlockHasher,
    BlockMismatch,
    SumsOf,
    read_verified_range,
    save_sums,
    stored_sums,
)

BODY = bytes(range(256)) * (5 * BLOCK_SIZE // 256 + 3)  # five blocks and a bit


def digests_of(body: bytes) -> bytes:
    return b"".join(xxhash.xxh3_64_digest(body[i:i + BLOCK_SIZE])
                    for i in range(0, len(body), BLOCK_SIZE))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 3 * BLOCK_SIZE), max_size=8))
def test_digests_do_not_depend_on_how_the_body_is_chunked(cuts):
    hasher, offset = BlockHasher(), 0
    for cut in cuts:
        hasher.update(memoryview(BODY)[offset:offset + cut])
        offset += cut
    hasher.update(BODY[offset:])
    assert hasher.finish() == digests_of(BODY)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "1.data"
    path.write_bytes(BODY)
    with open(path, "rb") as f:
        save_sums(f.fileno(), digests_of(BODY))
    return path


@pytest.mark.parametrize("start,end", [(0, len(BODY)), (5, 9), (BLOCK_SIZE - 3, BLOCK_SIZE + 4),
                                       (len(BODY) - 10, len(BODY)), (2 * BLOCK_SIZE, 3 * BLOCK_SIZE)])
def test_ranges_read_back_exactly(data_file, start, end):
    assert b"".join(read_verified_range(data_file, start, end)) == BODY[start:end]


def test_a_flipped_byte_stops_the_read_before_its_block(data_file):
    with open(data_file, "r+b") as f:
        f.seek(3 * BLOCK_SIZE + 7)
        f.write(b"\x00" if BODY[3 * BLOCK_SIZE + 7] else b"\x01")
    received = []
    with pytest.raises(BlockMismatch, match="block 3"):
        for chunk in read_verified_range(data_file, BLOCK_SIZE, len(BODY)):
            received.append(chunk)
    sent = b"".join(received)  # a prefix of blocks 1 and 2 at most, nothing of block 3
    assert BODY[BLOCK_SIZE:].startswith(sent) and len(sent) <= 2 * BLOCK_SIZE
    assert b"".join(read_verified_range(data_file, 0, 3 * BLOCK_SIZE)) == BODY[:3 * BLOCK_SIZE]


def test_missing_sums_are_a_mismatch(tmp_path):
    path = tmp_path / "1.data"
    path.write_bytes(BODY)
    with pytest.raises(BlockMismatch, match="unreadable"):
        b"".join(read_verified_range(path, 0, 10))


def test_sums_beyond_one_xattr_go_to_the_next(xfs_dir):
    """More than 8,192 blocks (512 MiB of body) spill into ``user.soko.blocks.1``."""
    digests = os.urandom((PER_XATTR + 3) * DIGEST_SIZE)
    path = xfs_dir / "big.data"
    path.write_bytes(b"")
    with open(path, "rb") as f:
        save_sums(f.fileno(), digests)
        sums = SumsOf(f.fileno())
        assert sums.digest(PER_XATTR + 1) == digests[(PER_XATTR + 1) * DIGEST_SIZE:
                                                     (PER_XATTR + 2) * DIGEST_SIZE]
        assert stored_sums(f.fileno(), (PER_XATTR + 3) * BLOCK_SIZE) == digests
    assert len(os.getxattr(path, "user.soko.blocks.0")) == 64 * 1024
