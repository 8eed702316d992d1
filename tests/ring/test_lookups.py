"""Ring lookups: Swift's shapes, hashing with the cluster secret, reload on change."""

from __future__ import annotations

import os

import pytest

from soko.ring.builder import RING_NAMES, build_rings
from soko.ring.ring import Ring

from .conftest import make_builder, uniform

NODE_KEYS = {"id", "region", "zone", "ip", "port", "device", "weight", "meta", "index"}


@pytest.fixture
def ring_path(tmp_path, small_builder):
    path = tmp_path / "object.ring"
    small_builder.write_ring(path)
    return path


def test_get_nodes_shape(ring_path):
    ring = Ring(ring_path, hash_prefix="pre", hash_suffix="suf")
    part, nodes = ring.get_nodes("AUTH_test", "photos", "cat.jpg")
    assert 0 <= part < ring.partition_count
    assert [n["index"] for n in nodes] == [0, 1, 2]
    assert all(set(n) == NODE_KEYS for n in nodes)
    assert len({n["zone"] for n in nodes}) == 3
    assert ring.get_part_nodes(part) == nodes
    nodes[0]["ip"] = "changed"  # callers get copies
    assert ring.get_part_nodes(part)[0]["ip"] != "changed"


def test_partition_depends_on_path_and_secret(ring_path):
    plain, salted = Ring(ring_path), Ring(ring_path, hash_suffix=b"secret")
    names = [f"o{i}" for i in range(200)]
    assert len({plain.get_part("a", "c", n) for n in names}) > 100
    assert [plain.get_part("a", "c", n) for n in names] != [
        salted.get_part("a", "c", n) for n in names
    ]
    assert plain.get_part("a", "c", "o") == plain.get_part(b"a", b"c", b"o")


def test_object_needs_container(ring_path):
    with pytest.raises(ValueError):
        Ring(ring_path).get_nodes("a", None, "o")


def test_reloads_when_the_file_changes(tmp_path, ring_path):
    ring = Ring(ring_path, reload_interval=0)
    before = ring.get_part_nodes(0)
    builder = make_builder(uniform(4, 1, 1), part_power=8)
    builder.rebalance(seed=99)
    builder.write_ring(ring_path)
    ring.get_part("a")  # the hot path notices the change
    assert len(ring.devices) == 4
    assert ring.get_part_nodes(0) != before


def test_broken_new_file_keeps_the_old_ring(ring_path):
    ring = Ring(ring_path, reload_interval=0)
    nodes = ring.get_part_nodes(7)
    ring_path.write_bytes(ring_path.read_bytes()[:-3])
    os.utime(ring_path, ns=(1, 1))
    assert ring.reload_if_changed() is False
    assert ring.get_part_nodes(7) == nodes


def test_build_rings_writes_three_rings(tmp_path):
    devices = [
        {
            "region": 1,
            "zone": n,
            "ip": "127.0.0.1",
            "port": 6200 + n,
            "device": f"d{n}",
            "weight": 1,
        }
        for n in (1, 2, 3)
    ]
    paths = build_rings(tmp_path, devices, part_power=6)
    assert set(paths) == set(RING_NAMES)
    for name, path in paths.items():
        ring = Ring(path)
        assert (tmp_path / f"{name}.builder").exists()
        part, nodes = ring.get_nodes("AUTH_x", "c" if name != "account" else None)
        assert sorted(n["port"] for n in nodes) == [6201, 6202, 6203]
