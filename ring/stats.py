"""How well a ring is dispersed, measured the way an operator asks it: for how many
partitions could the replicas have sat in more distinct regions, zones, ips or devices?"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Any

from soko.ring.devices import Device
from soko.ring.rebalance import partition_devices
from soko.ring.topology import LEVELS


def dispersion_report(rows: list[array], devices: Iterable[Device], parts: int) -> dict[str, Any]:
    """Per level: how many partitions use fewer distinct nodes than ``min(replicas, nodes
    with weight at that level)``. Weights can force this (a zone holding half the weight
    must hold more than one replica of some partitions), so it is a report, not a check."""
    weighted = [d for d in devices if d.weight > 0]
    keys = {
        "region": lambda d: d.region,
        "zone": lambda d: (d.region, d.zone),
        "ip": lambda d: (d.region, d.zone, d.ip),
        "device": lambda d: d.id,
    }
    node_of = {name: {d.id: key(d) for d in weighted} for name, key in keys.items()}
    available = {name: len(set(nodes.values())) for name, nodes in node_of.items()}
    undispersed = dict.fromkeys(LEVELS, 0)
    any_level = 0
    by_id = {d.id for d in weighted}
    for devs in partition_devices(rows, parts):
        devs = [d for d in devs if d in by_id]
        worse = False
        for name in LEVELS:
            best = min(len(devs), available[name])
            if len({node_of[name][d] for d in devs}) < best:
                undispersed[name] += 1
                worse = True
        any_level += worse
    return {
        "partitions": parts,
        "undispersed_partitions": any_level,
        "dispersion": round(100.0 * any_level / parts, 4) if parts else 0.0,
        "levels": {
            name: {
                "nodes": available[name],
                "undispersed_partitions": undispersed[name],
                "percent": round(100.0 * undispersed[name] / parts, 4) if parts else 0.0,
            }
            for name in LEVELS
        },
    }
