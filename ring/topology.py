"""The failure-domain tree (region > zone > ip > device) and what each node of it should hold.

Weight decides how many replicas of a partition every node wants (a real number: a zone
with 40 % of the weight and 3 replicas wants 1.2), capped by how many devices the node has,
since one device holds at most one replica of a partition. Holding ``floor`` or ``ceil`` of
that number for every partition, at every level at once, is both perfectly balanced and as
dispersed as the weights allow; the rebalancer steers towards exactly that. Only devices
with weight take part: a zero-weight device is draining and owns no node here.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from soko.ring.devices import Device

LEVELS = ("region", "zone", "ip", "device")
_EPSILON = 1e-9


@dataclass
class Topology:
    """Nodes are integers (0 is the root); the lists below are indexed by node."""

    children: list[list[int]] = field(default_factory=lambda: [[]])
    level: list[int] = field(default_factory=lambda: [-1])
    weight: list[float] = field(default_factory=lambda: [0.0])
    ndev: list[int] = field(default_factory=lambda: [0])
    wanted: list[float] = field(default_factory=list)  # replicas of each partition
    max_per_part: list[int] = field(default_factory=list)  # ceil(wanted)
    quota: list[int] = field(default_factory=list)  # replica slots, summing to the total
    assigned: list[int] = field(default_factory=list)  # replica slots held now
    path: dict[int, tuple[int, ...]] = field(default_factory=dict)  # device id -> 4 nodes
    device_of: dict[int, int] = field(default_factory=dict)  # leaf node -> device id

    def add_node(self, parent: int, level: int) -> int:
        node = len(self.children)
        self.children.append([])
        self.children[parent].append(node)
        self.level.append(level)
        self.weight.append(0.0)
        self.ndev.append(0)
        return node

    def nodes_at(self, level: int) -> list[int]:
        return [n for n, lvl in enumerate(self.level) if lvl == level]


def build_topology(
    devices: list[Device], replicas: float, total_slots: int, rng: random.Random
) -> Topology:
    """The tree of the weighted devices, with wanted replicas and integer slot quotas.

    Children are shuffled with ``rng`` so ties are broken differently per seed, and the
    same way for the same seed.
    """
    topo = Topology()
    index: dict[tuple, int] = {(): 0}
    for dev in sorted(devices, key=lambda d: (d.region, d.zone, d.ip, d.id)):
        if dev.weight <= 0:
            continue
        key: tuple = ()
        path = []
        for level, part in enumerate((dev.region, dev.zone, dev.ip, dev.id)):
            parent = index[key]
            key = (*key, part)
            if key not in index:
                index[key] = topo.add_node(parent, level)
            path.append(index[key])
        for node in (0, *path):
            topo.weight[node] += dev.weight
            topo.ndev[node] += 1
        topo.path[dev.id] = tuple(path)
        topo.device_of[path[-1]] = dev.id
    count = len(topo.children)
    topo.wanted = [0.0] * count
    topo.wanted[0] = float(min(replicas, topo.ndev[0]))
    for node in range(count):  # parents are numbered before their children
        kids = topo.children[node]
        shares = water_fill(
            topo.wanted[node], [topo.weight[k] for k in kids], [topo.ndev[k] for k in kids]
        )
        for kid, share in zip(kids, shares, strict=True):
            topo.wanted[kid] = share
    topo.max_per_part = [math.ceil(w - _EPSILON) for w in topo.wanted]
    topo.quota = _slot_quotas(topo, replicas, total_slots)
    topo.assigned = [0] * count
    for kids in topo.children:
        rng.shuffle(kids)
    return topo


def water_fill(total: float, weights: list[float], caps: list[int]) -> list[float]:
    """Splits ``total`` by weight, except that no share exceeds its cap: the excess of a
    capped share goes to the others, again by weight."""
    shares = [0.0] * len(weights)
    active = [i for i, w in enumerate(weights) if w > 0]
    remaining = total
    while active:
        weight_sum = sum(weights[i] for i in active)
        capped = [i for i in active if remaining * weights[i] / weight_sum > caps[i] + _EPSILON]
        if not capped:
            for i in active:
                shares[i] = remaining * weights[i] / weight_sum
            break
        for i in capped:
            shares[i] = float(caps[i])
            remaining -= caps[i]
        active = [i for i in active if i not in capped]
    return shares


def _slot_quotas(topo: Topology, replicas: float, total_slots: int) -> list[int]:
    """Integer slots per node, apportioned top-down (largest remainder among siblings), so
    each node's quota is exactly the sum of its children's: a bottom-up rounding could ask
    an ip that holds one replica of every partition for more slots than there are
    partitions."""
    quota = [0] * len(topo.children)
    quota[0] = round(total_slots * topo.wanted[0] / replicas)
    for node, kids in enumerate(topo.children):  # parents are numbered before children
        if not kids:
            continue
        exact = {k: quota[node] * topo.wanted[k] / topo.wanted[node] for k in kids}
        for k in kids:
            quota[k] = int(exact[k])
        spare = quota[node] - sum(quota[k] for k in kids)
        for k in sorted(kids, key=lambda k: (quota[k] - exact[k], k))[: max(0, spare)]:
            quota[k] += 1
    return quota
