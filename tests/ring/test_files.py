"""Builder and ring files: round trips, and every kind of damage is a clear error."""

from __future__ import annotations

import msgpack
import pytest

from soko.ring import format as ringfile
from soko.ring.builder import RingBuilder
from soko.ring.errors import RingError, RingFileError
from soko.ring.ring import Ring

from .conftest import make_builder, uniform


def test_builder_round_trip_keeps_everything(tmp_path, small_builder):
    small_builder.remove_device(3)
    small_builder.set_weight(1, 50)
    path = tmp_path / "object.builder"
    small_builder.save(path)
    loaded = RingBuilder.load(path)
    assert loaded.to_payload() == small_builder.to_payload()
    assert loaded.removing == {3}


def test_builder_is_msgpack_not_pickle(tmp_path, small_builder):
    path = tmp_path / "object.builder"
    small_builder.save(path)
    data = path.read_bytes()
    assert data.startswith(ringfile.BUILDER_MAGIC)
    assert isinstance(msgpack.unpackb(data[ringfile._HEADER.size :]), dict)


def test_ring_round_trip(tmp_path, small_builder):
    path = tmp_path / "object.ring"
    small_builder.write_ring(path)
    ring = Ring(path)
    assert ring.partition_count == 256
    assert ring.replica_count == 3
    assert ring.data.rows == small_builder.rows
    assert {d["id"] for d in ring.devices} == set(small_builder.devices)


def test_fractional_replicas_round_trip(tmp_path):
    builder = make_builder(uniform(3, 1, 2), replicas=2.5)
    builder.rebalance(seed=1)
    path = tmp_path / "object.ring"
    builder.write_ring(path)
    ring = Ring(path)
    counts = [len(ring.get_part_nodes(p)) for p in range(ring.partition_count)]
    assert counts.count(3) == 128 and counts.count(2) == 128


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum mismatch"),
        (lambda b: b[:-10], "truncated"),
        (lambda b: b[:5], "not a soko ring file"),
        (lambda b: b"X" + b[1:], "not a soko ring file"),
        (lambda b: b[:8] + b"\x00\x09" + b[10:], "format version 9 is not supported"),
    ],
)
def test_damaged_ring_file_is_rejected(tmp_path, small_builder, damage, message):
    path = tmp_path / "object.ring"
    small_builder.write_ring(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(RingFileError, match=message):
        Ring(path)


def test_builder_file_is_not_a_ring_file(tmp_path, small_builder):
    path = tmp_path / "object.builder"
    small_builder.save(path)
    with pytest.raises(RingFileError, match="it is a soko builder file"):
        Ring(path)


def test_ring_naming_a_missing_device_is_rejected(tmp_path, small_builder):
    payload = small_builder.ring_payload()
    payload["devices"][0] = None
    path = tmp_path / "object.ring"
    ringfile.write(path, ringfile.RING_MAGIC, payload)
    with pytest.raises(RingFileError, match="names a device the ring does not have"):
        Ring(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RingFileError, match="cannot read"):
        RingBuilder.load(tmp_path / "nope.builder")


def test_unbalanced_builder_cannot_write_a_ring(tmp_path):
    builder = make_builder(uniform(3, 1, 1))
    with pytest.raises(RingError, match="run rebalance first"):
        builder.write_ring(tmp_path / "object.ring")
    assert not (tmp_path / "object.ring").exists()
