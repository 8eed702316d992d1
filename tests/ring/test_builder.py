"""Builder verbs and their errors: bad input never changes the builder."""

from __future__ import annotations

import pytest

from soko.ring.builder import RingBuilder
from soko.ring.devices import parse_compact, parse_search
from soko.ring.errors import RingError

from .conftest import make_builder, uniform


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 3, 1), "part power"),
        ((25, 3, 1), "part power"),
        ((8, 0.5, 1), "replicas"),
        ((8, "x", 1), "replicas"),
        ((8, 3, 256), "min_part_hours"),
    ],
)
def test_create_rejects_bad_shapes(args, message):
    with pytest.raises(RingError, match=message):
        RingBuilder(*args)


def test_add_rejects_duplicates_and_bad_fields(small_builder):
    before = small_builder.to_payload()
    dev = small_builder.devices[0]
    with pytest.raises(RingError, match="already device 0"):
        small_builder.add_device(
            region=1, zone=9, ip=dev.ip, port=dev.port, device=dev.device, weight=1
        )
    with pytest.raises(RingError, match="id 0 is already in use"):
        small_builder.add_device(
            id=0, region=1, zone=9, ip="10.9.9.9", port=1, device="x", weight=1
        )
    for bad in ({"port": 0}, {"weight": -1}, {"weight": float("nan")}, {"ip": ""}, {"zone": -1}):
        fields = {
            "region": 1,
            "zone": 9,
            "ip": "10.9.9.9",
            "port": 6200,
            "device": "x",
            "weight": 1,
        }
        with pytest.raises(RingError):
            small_builder.add_device(**{**fields, **bad})
    assert small_builder.to_payload() == before


def test_unknown_device_is_an_error(small_builder):
    for verb in (small_builder.remove_device, lambda i: small_builder.set_weight(i, 1)):
        with pytest.raises(RingError, match="no device with id 99"):
            verb(99)


def test_set_info_changes_address_not_domain(small_builder):
    dev = small_builder.set_info(0, ip="10.7.7.7", meta="ssd")
    assert (dev.ip, dev.meta, dev.zone) == ("10.7.7.7", "ssd", 1)
    with pytest.raises(RingError, match="cannot change zone"):
        small_builder.set_info(0, zone=3)
    other = small_builder.devices[1]
    with pytest.raises(RingError, match="already device 1"):
        small_builder.set_info(0, ip=other.ip, port=other.port, device=other.device)


def test_rebalance_refuses_impossible_rings_without_changing_anything():
    builder = make_builder(uniform(1, 1, 2))
    with pytest.raises(RingError, match="need at least 3 devices"):
        builder.rebalance()
    assert builder.rows == []
    zero = make_builder(uniform(3, 1, 1, weight=0))
    with pytest.raises(RingError, match="total weight is zero"):
        zero.rebalance()


def test_removed_device_leaves_at_rebalance(small_builder):
    small_builder.remove_device(0)
    assert [d.id for d in small_builder.search("d0")] == []
    small_builder.rebalance(seed=1)
    assert 0 not in small_builder.devices
    assert 0 not in small_builder.partitions_per_device()
    assert small_builder.next_id == 12  # ids are not reused


def test_min_part_hours_ages_with_time():
    builder = make_builder(uniform(3, 1, 2), min_part_hours=2)
    builder.rebalance(seed=1, now=0)
    builder.set_weight(0, 0)
    result = builder.rebalance(seed=1, now=3600)  # one hour: everything is still locked
    assert result.moved_slots == 0
    result = builder.rebalance(seed=1, now=2 * 3600)
    assert builder.partitions_per_device()[0] == 0
    assert result.moved_slots > 0


def test_search_values():
    assert parse_search("d3") == {"id": 3}
    assert parse_search("7") == {"id": 7}
    assert parse_search("r1z2-10.0.0.1:6200/sdb_fast") == {
        "region": 1,
        "zone": 2,
        "ip": "10.0.0.1",
        "port": 6200,
        "device": "sdb",
        "meta": "fast",
    }
    assert parse_search("z1-[::1]:6200") == {"zone": 1, "ip": "::1", "port": 6200}
    with pytest.raises(RingError):
        parse_search("")


def test_compact_device_form():
    assert parse_compact("r1z2-127.0.0.1:6200/sdb1_meta") == {
        "region": 1,
        "zone": 2,
        "ip": "127.0.0.1",
        "port": 6200,
        "device": "sdb1",
        "meta": "meta",
    }
    with pytest.raises(RingError, match="cannot parse device"):
        parse_compact("127.0.0.1:6200/sdb1")


def test_device_report_balance(small_builder):
    report = small_builder.device_report()
    assert sum(r["partitions"] for r in report) == 3 * 256
    assert all(abs(r["balance"]) < 1 for r in report)
    assert small_builder.balance() < 1
