"""Assigning every (partition, replica) slot to a device: balanced by weight, dispersed
across failure domains, moving as little as possible.

Each pass gathers the slots that must or should move (lost with a removed device, crowded
into one failure domain, or sitting on a device above its quota), then places each one by
walking down the failure-domain tree, at every level taking the child that still has room
for this partition (holds fewer of its replicas than it wants) and, among those, the one
furthest below its quota. A few passes settle what dispersion forced off target.

A fresh ring is filled differently, because walking the tree for every slot is slow in
Python: the weighted devices are laid end to end on a line, each as long as the replicas
per partition it wants (at most 1), and a partition's replicas sit at ``u, u+1, u+2…`` for
an offset ``u`` spread evenly over [0, 1). Every failure domain is an interval, so each
gets ``floor`` or ``ceil`` of its wanted replicas of every partition: exact dispersion and
balance to within a slot or so per device, in one bisect per slot. Several orderings of the
line keep each device's replica partners many, so a failed disk is rebuilt from many others.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate

from soko.ring.devices import Device
from soko.ring.topology import LEVELS, Topology, build_topology

NONE_DEV = 0xFFFF  # an unassigned slot
ID_SPACE = NONE_DEV + 1
MAX_PASSES = 8
MAX_ORDERINGS = 32
_ROOM = 1 << 40  # outranks any quota difference: room for the partition comes first


@dataclass
class RebalanceOutcome:
    moved_slots: int
    moved_partitions: int
    passes: int


def rebalance(
    rows: list[array],
    devices: Iterable[Device],
    last_moved: array,
    min_part_hours: int,
    replicas: float,
    rng: random.Random,
) -> RebalanceOutcome:
    """Reassigns ``rows`` in place (``rows[replica][partition]`` = device id) and marks the
    partitions that moved in ``last_moved`` (hours since each partition last moved).

    The caller guarantees at least ``ceil(replicas)`` devices with weight."""
    return _Rebalancer(rows, list(devices), last_moved, min_part_hours, replicas, rng).run()


def partition_devices(rows: list[array], parts: int) -> Iterator[tuple[int, ...]]:
    """Each partition's device ids in partition order; a fractional last row is shorter."""
    short = min((len(row) for row in rows), default=parts)
    yield from zip(*rows, strict=False)
    if short < parts:
        yield from zip(*[row[short:] for row in rows if len(row) == parts], strict=True)


class _Rebalancer:
    def __init__(self, rows, devices, last_moved, min_part_hours, replicas, rng):
        self.rows = rows
        self.rng = rng
        self.parts = len(rows[0])
        self.min_part_hours = min_part_hours
        self.replicas = replicas
        total = sum(len(row) for row in rows)
        self.topo: Topology = build_topology(devices, replicas, total, rng)
        self.known = bytearray(ID_SPACE)
        for dev in devices:
            self.known[dev.id] = 1
        self.before = [array("H", row) for row in rows]
        self.locked = bytearray(1 if hours < min_part_hours else 0 for hours in last_moved)
        self.last_moved = last_moved
        self.fresh = [bytearray(len(row)) for row in rows]  # slots holding no live data
        self.count = [0] * ID_SPACE  # slots per device id
        self.gathered: list[tuple[int, int]] = []
        self.crowded: list[int] = []

    def run(self) -> RebalanceOutcome:
        spread_rows = self._fresh_whole_rows()
        for r, row in enumerate(self.rows):
            if r not in spread_rows:
                self._count(row)
        self._spread(spread_rows)
        self._gather_lost(r for r in range(len(self.rows)) if r not in spread_rows)
        passes = 0
        for passes in range(1, MAX_PASSES + 1):
            self._gather_crowded(None if passes == 1 else self.crowded)
            self._gather_overweight()
            if not self.gathered:
                break
            self._place()
        return self._finish(passes)

    # -- bookkeeping ---------------------------------------------------------------------

    def _count(self, row: array, sign: int = 1) -> None:
        path, assigned, count = self.topo.path, self.topo.assigned, self.count
        for dev, n in Counter(row).items():
            count[dev] += sign * n
            for node in path.get(dev, ()):
                assigned[node] += sign * n

    def _take(self, p: int, r: int) -> None:
        """Unassigns one slot; moving live data locks the partition for min_part_hours."""
        row = self.rows[r]
        dev = row[p]
        row[p] = NONE_DEV
        self.count[dev] -= 1
        for node in self.topo.path.get(dev, ()):
            self.topo.assigned[node] -= 1
        if not self.fresh[r][p]:
            self.fresh[r][p] = 1
            if self.min_part_hours:
                self.locked[p] = 1
        self.gathered.append((p, r))

    def _devices_of(self, p: int) -> list[tuple[int, int]]:
        return [(r, row[p]) for r, row in enumerate(self.rows) if p < len(row)]

    # -- fresh rings ---------------------------------------------------------------------

    def _fresh_whole_rows(self) -> set[int]:
        """Whole rows in which no slot holds a known device: a new ring, filled by _spread."""
        known = self.known
        whole = [r for r, row in enumerate(self.rows) if len(row) == self.parts]
        if any(known[dev] for r in whole for dev in set(self.rows[r])):
            return set()
        return set(whole)

    def _spread(self, row_ids: set[int]) -> None:
        if not row_ids:
            return
        topo, rng, parts = self.topo, self.rng, self.parts
        orderings = min(MAX_ORDERINGS, max(1, parts >> 8))
        per_group = parts // orderings
        for group in range(orderings):
            leaves = self._shuffled_leaves(0)
            devs = [topo.device_of[leaf] for leaf in leaves]
            devs.append(devs[-1])  # guards the float edge at the end of the line
            ends = list(accumulate(topo.wanted[leaf] for leaf in leaves))
            stride, start = rng.randrange(per_group) | 1, rng.randrange(per_group)
            mask = per_group - 1
            offsets = [(((j * stride + start) & mask) + 0.5) / per_group for j in range(per_group)]
            for r in row_ids:
                picked = [devs[bisect_right(ends, u + r)] for u in offsets]
                self.rows[r][group::orderings] = array("H", picked)
        for r in row_ids:
            self.fresh[r] = bytearray(b"\x01") * parts
            self._count(self.rows[r])

    def _shuffled_leaves(self, node: int) -> list[int]:
        kids = self.topo.children[node]
        if not kids:
            return [node]
        kids = self.rng.sample(kids, len(kids))
        return [leaf for kid in kids for leaf in self._shuffled_leaves(kid)]

    # -- gathering -----------------------------------------------------------------------

    def _gather_lost(self, row_ids: Iterable[int]) -> None:
        """Slots never assigned or on a device removed from the builder must move."""
        known = self.known
        for r in row_ids:
            row = self.rows[r]
            lost = {dev for dev in set(row) if not known[dev]}
            if lost:
                for p in [p for p, dev in enumerate(row) if dev in lost]:
                    self._take(p, r)

    def _gather_crowded(self, partitions: list[int] | None) -> None:
        """Partitions with more replicas in a failure domain than it wants, all of them
        (``None``) or those a previous pass had to crowd."""
        limits = self.topo.max_per_part
        unique_level, counted_levels = self._dispersion_checks()
        node_of = self._node_map(unique_level).__getitem__
        counted = [self._node_map(level).__getitem__ for level in counted_levels]
        if partitions is None:
            candidates: Iterable = enumerate(partition_devices(self.rows, self.parts))
        else:
            candidates = (
                (p, tuple(d for _, d in self._devices_of(p))) for p in sorted(set(partitions))
            )
            self.crowded = []
        for p, devs in candidates:
            if len(set(map(node_of, devs))) < len(devs) or any(
                n >= 0 and held > limits[n]
                for nodes in counted
                for n, held in Counter(map(nodes, devs)).items()
            ):
                self._uncrowd(p)

    def _dispersion_checks(self) -> tuple[int, list[int]]:
        """The highest level whose nodes each want at most one replica of a partition (a
        distinct-check there covers every level below), and the levels above it that a
        partition could still crowd."""
        topo = self.topo
        most = math.ceil(self.replicas)
        unique = next(
            lvl
            for lvl in range(len(LEVELS))
            if all(topo.max_per_part[n] <= 1 for n in topo.nodes_at(lvl))
        )
        counted = [
            lvl
            for lvl in range(unique)
            if any(topo.max_per_part[n] < most for n in topo.nodes_at(lvl))
        ]
        return unique, counted

    def _node_map(self, level: int) -> list[int]:
        """Device id -> its node at ``level``; devices outside the tree (draining,
        unassigned) get distinct negative values so they never look crowded here."""
        nodes = [-1 - dev for dev in range(ID_SPACE)]
        for dev, path in self.topo.path.items():
            nodes[dev] = path[level]
        return nodes

    def _uncrowd(self, p: int) -> None:
        """Moves replicas out of crowded domains, the one on the fullest device first."""
        topo = self.topo
        while True:
            live = [(r, d) for r, d in self._devices_of(p) if d in topo.path]
            held = Counter(node for _, d in live for node in topo.path[d])
            crowded = {node for node, n in held.items() if n > topo.max_per_part[node]}
            movable = [
                (r, d)
                for r, d in live
                if crowded.intersection(topo.path[d]) and (not self.locked[p] or self.fresh[r][p])
            ]
            if not movable:
                return
            r, _ = max(movable, key=lambda rd: self.count[rd[1]] - topo.quota[topo.path[rd[1]][-1]])
            self._take(p, r)

    def _gather_overweight(self) -> None:
        """Takes slots from devices above quota (draining devices have none), visiting
        partitions in a seeded pseudo-random order, one replica per partition per pass."""
        topo, count = self.topo, self.count
        over = [0] * ID_SPACE
        for dev in range(NONE_DEV):
            if count[dev]:
                path = topo.path.get(dev)
                over[dev] = max(0, count[dev] - (topo.quota[path[-1]] if path else 0))
        remaining = sum(over)
        if not remaining:
            return
        rows, locked, fresh = self.rows, self.locked, self.fresh
        lengths = [len(row) for row in rows]
        nrows = range(len(rows))
        mask = self.parts - 1
        start, stride = self.rng.randrange(self.parts), self.rng.randrange(self.parts) | 1
        for i in range(self.parts):
            p = (start + i * stride) & mask
            best, best_r, is_locked = 0, -1, locked[p]
            for r in nrows:
                if p < lengths[r]:
                    excess = over[rows[r][p]]
                    if excess > best and (not is_locked or fresh[r][p]):
                        best, best_r = excess, r
            if best_r >= 0:
                over[rows[best_r][p]] -= 1
                self._take(p, best_r)
                remaining -= 1
                if not remaining:
                    return

    # -- placing -------------------------------------------------------------------------

    def _place(self) -> None:
        topo, rows, count = self.topo, self.rows, self.count
        path, children, device_of = topo.path, topo.children, topo.device_of
        ndev, max_per_part, quota, assigned = (
            topo.ndev,
            topo.max_per_part,
            topo.quota,
            topo.assigned,
        )
        for p, r in self.gathered:
            held: dict[int, int] = {}
            for other, row in enumerate(rows):
                if other != r and p < len(row):
                    for node in path.get(row[p], ()):
                        held[node] = held.get(node, 0) + 1
            node, crowded = 0, False
            kids = children[0]
            while kids:
                best, best_score = -1, 0
                for kid in kids:
                    n = held.get(kid, 0)
                    if n < ndev[kid]:
                        score = quota[kid] - assigned[kid] + (_ROOM if n < max_per_part[kid] else 0)
                        if best < 0 or score > best_score:
                            best, best_score = kid, score
                crowded = crowded or held.get(best, 0) >= max_per_part[best]
                node, kids = best, children[best]
            dev = device_of[node]
            rows[r][p] = dev
            count[dev] += 1
            for n in path[dev]:
                assigned[n] += 1
            if crowded:
                self.crowded.append(p)
        self.gathered = []

    def _finish(self, passes: int) -> RebalanceOutcome:
        moved_parts: set[int] = set()
        moved_slots = 0
        for old, new in zip(self.before, self.rows, strict=True):
            changed = [p for p, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
            moved_slots += len(changed)
            moved_parts.update(changed)
        for p in moved_parts:
            self.last_moved[p] = 0
        return RebalanceOutcome(moved_slots, len(moved_parts), passes)
