"""Small rings for the ring tests: one function that builds a builder from a compact
description, so every test states its topology in one line."""

from __future__ import annotations

import pytest

from soko.ring.builder import RingBuilder


def make_builder(
    layout: list[list[list[float]]],
    *,
    part_power: int = 8,
    replicas: float = 3,
    min_part_hours: int = 0,
) -> RingBuilder:
    """``layout[zone][ip][device]`` = weight, all in region 1 (regions come from
    ``make_regions``)."""
    return make_regions(
        [layout], part_power=part_power, replicas=replicas, min_part_hours=min_part_hours
    )


def make_regions(
    regions: list[list[list[list[float]]]],
    *,
    part_power: int = 8,
    replicas: float = 3,
    min_part_hours: int = 0,
) -> RingBuilder:
    builder = RingBuilder(part_power, replicas, min_part_hours)
    for r, zones in enumerate(regions, start=1):
        for z, ips in enumerate(zones, start=1):
            for i, disks in enumerate(ips, start=1):
                for d, weight in enumerate(disks):
                    builder.add_device(
                        region=r,
                        zone=z,
                        ip=f"10.{r}.{z}.{i}",
                        port=6200,
                        device=f"sd{chr(ord('b') + d)}",
                        weight=weight,
                    )
    return builder


def uniform(zones: int, ips: int, disks: int, weight: float = 100.0) -> list[list[list[float]]]:
    return [[[weight] * disks for _ in range(ips)] for _ in range(zones)]


@pytest.fixture
def small_builder() -> RingBuilder:
    builder = make_builder(uniform(3, 2, 2))
    builder.rebalance(seed=7)
    return builder
