"""Assigning every (partition, replica) slot to a device: balanced by weight, dispersed
across failure domains, moving as little as possible.

Slots that must move (their device was removed, or their partition is crowded into one
failure domain) are placed by walking down the failure-domain tree, at every level taking
the child that still has room for this partition (holds fewer of its replicas than it
wants) and, among those, the one furthest below its quota. Balance is then restored by
pulling: each device below quota takes replicas straight from devices above it, where
dispersion allows, so every such move is one the new weights require.

A fresh ring is filled differently, because walking the tree for every slot is slow in
Python: the weighted devices are laid end to end on a line, each as long as the replicas
per partition it wants (at most 1), and a partition's replicas sit at ``u, u+1, u+2…`` for
an offset ``u`` spread evenly over [0, 1). Every failure domain is an interval, so each
gets ``floor`` or ``ceil`` of its wanted replicas of every partition: exact dispersion and
balance to within a slot or so per device, in one bisect per slot. Every small group of
partitions gets its own random ordering of the line, so a device's replica partners are
many (a failed disk is rebuilt from many others, and a removed one's partitions have many
places to go); pulling then evens out what the groups left uneven.
"""

from __future__ import annotations

import math
import random
from array import array
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate

from soko.ring.devices import Device
from soko.ring.topology import LEVELS, Topology, build_topology

NONE_DEV = 0xFFFF  # an unassigned slot
ID_SPACE = NONE_DEV + 1
MAX_PASSES = 8
MAX_ORDERINGS = 4096
MIN_GROUP = 16  # partitions sharing one ordering of the line
SETTLE_DEPTH = 3
SETTLE_VISITS = 16  # partition visits per partition, at most, to settle balance
PLACE_TRIES = 4
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
        self.ids = sorted(dev.id for dev in devices)
        self.domains = {dev.id: (dev.region, dev.zone, dev.ip) for dev in devices}
        self.known = bytearray(ID_SPACE)
        for dev_id in self.ids:
            self.known[dev_id] = 1
        self.before = [array("H", row) for row in rows]
        self.locked = bytearray(1 if hours < min_part_hours else 0 for hours in last_moved)
        self.last_moved = last_moved
        self.fresh = [bytearray(len(row)) for row in rows]  # slots holding no live data
        self.count = [0] * ID_SPACE  # slots per device id
        self.gathered: list[tuple[int, int]] = []
        self.crowded: list[int] = []
        self.budget = 0
        unique_level, counted_levels = self._dispersion_checks()
        self.unique_nodes = self._node_map(unique_level)
        self.counted_nodes = [self._node_map(level) for level in counted_levels]

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
            if not self.gathered:
                break
            self._place()
        self._settle()
        return self._finish(passes)

    # -- bookkeeping ---------------------------------------------------------------------

    def _count(self, row: array) -> None:
        path, assigned, count = self.topo.path, self.topo.assigned, self.count
        for dev, n in Counter(row).items():
            count[dev] += n
            for node in path.get(dev, ()):
                assigned[node] += n

    def _take(self, p: int, r: int) -> None:
        """Unassigns one slot to be placed later."""
        self._unassign(p, r)
        self.gathered.append((p, r))

    def _unassign(self, p: int, r: int) -> None:
        """Moving live data locks the partition for min_part_hours."""
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

    def _assign(self, p: int, r: int, dev: int) -> None:
        self.rows[r][p] = dev
        self.count[dev] += 1
        for node in self.topo.path[dev]:
            self.topo.assigned[node] += 1

    def _held(self, p: int, skip: int) -> dict[int, int]:
        """Replicas of partition ``p`` per tree node, leaving out replica ``skip``."""
        held: dict[int, int] = {}
        path = self.topo.path
        for r, row in enumerate(self.rows):
            if r != skip and p < len(row):
                for node in path.get(row[p], ()):
                    held[node] = held.get(node, 0) + 1
        return held

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
        orderings = min(MAX_ORDERINGS, max(1, parts // MIN_GROUP))
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
        node_of = self.unique_nodes.__getitem__
        counted = [nodes.__getitem__ for nodes in self.counted_nodes]
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

    def _excess(self) -> list[int]:
        """Slots above quota per device id (a draining device's quota is zero)."""
        topo, count = self.topo, self.count
        over = [0] * ID_SPACE
        for dev in self.ids:
            path = topo.path.get(dev)
            over[dev] = max(0, count[dev] - (topo.quota[path[-1]] if path else 0))
        return over

    def _scan_order(self) -> Iterator[int]:
        """Every partition once, in a seeded pseudo-random order (parts is a power of two,
        so any odd stride visits all)."""
        mask = self.parts - 1
        start, stride = self.rng.randrange(self.parts), self.rng.randrange(self.parts) | 1
        return ((start + i * stride) & mask for i in range(self.parts))

    # -- placing -------------------------------------------------------------------------

    def _place(self) -> None:
        """Places every gathered slot. When the walk ends on a device already at quota (the
        emptier devices of that domain hold this partition already), the walk is retried
        with that device ruled out, a few times, before settling for the first choice."""
        topo = self.topo
        quota, assigned = topo.quota, topo.assigned
        for p, r in self.gathered:
            held = self._held(p, r)
            blocked: dict[int, int] = {}
            first = None
            for _ in range(PLACE_TRIES):
                choice = self._descend(held, blocked)
                if choice is None:
                    break
                first = first or choice
                leaf, crowded = choice
                if quota[leaf] > assigned[leaf] and crowded <= first[1]:
                    first = choice
                    break
                for node in topo.path[topo.device_of[leaf]]:
                    blocked[node] = blocked.get(node, 0) + 1
            leaf, crowded = first
            self._assign(p, r, topo.device_of[leaf])
            if crowded:
                self.crowded.append(p)
        self.gathered = []

    def _descend(self, held: dict[int, int], blocked: dict[int, int]) -> tuple[int, bool] | None:
        """From the root, the child with room for the partition and furthest below quota,
        down to a device: (leaf node, whether some level had to crowd)."""
        topo = self.topo
        children, ndev, max_per_part = topo.children, topo.ndev, topo.max_per_part
        quota, assigned = topo.quota, topo.assigned
        node, crowded = 0, False
        kids = children[0]
        while kids:
            best, best_score = -1, 0
            for kid in kids:
                n = held.get(kid, 0)
                if n + blocked.get(kid, 0) < ndev[kid]:
                    score = quota[kid] - assigned[kid] + (_ROOM if n < max_per_part[kid] else 0)
                    if best < 0 or score > best_score:
                        best, best_score = kid, score
            if best < 0:
                return None
            crowded = crowded or held.get(best, 0) >= max_per_part[best]
            node, kids = best, children[best]
        return node, crowded

    def _settle(self) -> None:
        """Brings every device to its quota by moves into devices below it. A move comes
        from a device above quota if one fits; else from a device sharing an ip, a zone or
        a region with one above quota, which then refills itself the same way (the
        under-filled and the over-filled device may have no partition they can trade).
        Partition visits are budgeted: what locked partitions or dispersion make
        impossible must not cost a full scan per device, again and again."""
        topo = self.topo
        over = self._excess()
        self.budget = SETTLE_VISITS * self.parts + 4096
        queue = deque((d, 0) for d in self.ids if d in topo.path)
        queued = set(self.ids)
        while queue and self.budget > 0 and any(over[d] for d in self.ids):
            dev, depth = queue.popleft()
            queued.discard(dev)
            need = topo.quota[topo.path[dev][-1]] - self.count[dev]
            if need > 0:
                need -= len(self._fill(dev, need, over, None))
            for depth_of_domain in (3, 2, 1):  # same ip, same zone, same region
                if need <= 0 or depth >= SETTLE_DEPTH:
                    break
                near = {self.domains[d][:depth_of_domain] for d in self.ids if over[d]}
                allowed = {
                    d for d in topo.path if d != dev and self.domains[d][:depth_of_domain] in near
                }
                donors = self._fill(dev, need, over, allowed)
                need -= len(donors)
                for donor in donors:
                    if donor not in queued:
                        queued.add(donor)
                        queue.append((donor, depth + 1))

    def _fill(self, dev: int, need: int, over: list[int], allowed: set[int] | None) -> list[int]:
        """Moves up to ``need`` replicas onto ``dev`` where dispersion allows, from devices
        above quota (``allowed`` None) or from ``allowed``; returns the donors."""
        topo, donors = self.topo, []
        path, max_per_part, locked, fresh = topo.path, topo.max_per_part, self.locked, self.fresh
        target = path[dev]
        for p in self._scan_order():
            if len(donors) == need or self.budget <= 0:
                break
            self.budget -= 1
            replicas = self._devices_of(p)
            eligible = [
                (over[d], r, d)
                for r, d in replicas
                if (over[d] if allowed is None else d in allowed) and (not locked[p] or fresh[r][p])
            ]
            if not eligible or any(d == dev for _, d in replicas):
                continue
            held = self._held(p, -1)
            chosen = next(
                (
                    (r, d)
                    for _, r, d in sorted(eligible, reverse=True)
                    if all(
                        held.get(n, 0) - (n in path.get(d, ())) < max_per_part[n] for n in target
                    )
                ),
                None,
            )
            if chosen is None:
                continue
            r, donor = chosen
            self._unassign(p, r)
            self._assign(p, r, dev)
            over[donor] = max(0, over[donor] - 1)
            donors.append(donor)
        return donors

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
