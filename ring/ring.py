"""The read side of a ring: what the proxy and the storage nodes consult on every request.

A path hashes (xxh3-64 over the cluster's secret prefix and suffix around
``/account/container/object``) to a partition, its top ``part_power`` bits; the partition's
replicas are one array lookup each. The ring file is re-read when it changes on disk, but
looked at only every ``reload_interval`` seconds, so the hot path pays one clock read.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import xxhash

from soko.ring import format as ringfile
from soko.ring.errors import RingError, RingFileError

log = logging.getLogger(__name__)
RELOAD_INTERVAL = 15.0  # seconds, as Swift's ring


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


class RingData:
    """A loaded ring file, checked for consistency (every slot names a device)."""

    def __init__(self, payload: dict[str, Any], name: str = "ring"):
        field = ringfile.field
        self.part_power: int = field(payload, "part_power", int, name)
        self.replicas: float = float(field(payload, "replicas", (int, float), name))
        self.version: int = field(payload, "version", int, name)
        self.rows = ringfile.rows_from_bytes(payload.get("rows"), name)
        devices = field(payload, "devices", list, name)
        if not 0 < self.part_power <= 32 or not self.rows:
            raise RingFileError(f"{name}: malformed ring header")
        if any(len(row) > 1 << self.part_power for row in self.rows):
            raise RingFileError(f"{name}: an assignment row is longer than the partition count")
        self.devices: list[dict[str, Any] | None] = []
        for i, dev in enumerate(devices):
            if dev is not None and (not isinstance(dev, dict) or dev.get("id") != i):
                raise RingFileError(f"{name}: malformed device entry {i}")
            self.devices.append(dev)
        for row in self.rows:
            if row and (max(row) >= len(devices) or any(devices[d] is None for d in set(row))):
                raise RingFileError(f"{name}: assignment names a device the ring does not have")

    @classmethod
    def load(cls, path: str | os.PathLike) -> RingData:
        return cls(ringfile.read(path, ringfile.RING_MAGIC), str(path))


class Ring:
    """Partition and node lookups for one ring file (account, container or an object policy).

    Node dicts carry Swift's keys (id, region, zone, ip, port, device, weight, meta) plus
    ``index``, the replica's position, for primaries, or ``handoff_index`` for handoffs.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        hash_prefix: str | bytes = b"",
        hash_suffix: str | bytes = b"",
        reload_interval: float = RELOAD_INTERVAL,
    ):
        self.path = os.fspath(path)
        self._prefix = _as_bytes(hash_prefix) + b"/"
        self._suffix = _as_bytes(hash_suffix)
        self.reload_interval = reload_interval
        self._stamp = self._file_stamp()
        self._install(RingData.load(self.path))
        self._next_check = time.monotonic() + reload_interval

    # -- loading ---------------------------------------------------------------------------

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _install(self, data: RingData) -> None:
        """Precomputes everything a lookup needs, so a lookup only indexes lists."""
        self.data = data
        self._shift = 64 - data.part_power
        self._nodes = [
            [None if d is None else {**d, "index": i} for d in data.devices]
            for i in range(len(data.rows))
        ]
        self._row_tables = list(zip(data.rows, self._nodes, strict=True))
        self._full_rows = [
            (row, table) for row, table in self._row_tables if len(row) == self.partition_count
        ]
        self._short_rows = [
            (row, table) for row, table in self._row_tables if len(row) < self.partition_count
        ]
        present = [d for d in data.devices if d is not None]
        self._handoff_groups = [
            [d for d in present if d["weight"] > 0],
            [d for d in present if d["weight"] <= 0],  # draining: only when nothing else is left
        ]

    def reload_if_changed(self, force: bool = False) -> bool:
        """Re-reads the file if it changed; a broken new file keeps the old ring serving."""
        self._next_check = time.monotonic() + self.reload_interval
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp and not force:
                return False
            data = RingData.load(self.path)
        except (OSError, RingError) as exc:
            log.warning("keeping the loaded ring %s: %s", self.path, exc)
            return False
        self._stamp = stamp
        self._install(data)
        return True

    # -- shape -----------------------------------------------------------------------------

    @property
    def partition_count(self) -> int:
        return 1 << self.data.part_power

    @property
    def replica_count(self) -> float:
        return self.data.replicas

    @property
    def part_power(self) -> int:
        return self.data.part_power

    @property
    def devices(self) -> list[dict[str, Any]]:
        """Every device of the ring (no holes), as stored."""
        return [d for d in self.data.devices if d is not None]

    # -- lookups ---------------------------------------------------------------------------

    def get_part(
        self,
        account: str | bytes,
        container: str | bytes | None = None,
        obj: str | bytes | None = None,
    ) -> int:
        if time.monotonic() >= self._next_check:
            self.reload_if_changed()
        if obj is not None:
            if container is None:
                raise ValueError("an object needs a container")
            key = b"/".join((_as_bytes(account), _as_bytes(container), _as_bytes(obj)))
        elif container is not None:
            key = _as_bytes(account) + b"/" + _as_bytes(container)
        else:
            key = _as_bytes(account)
        return xxhash.xxh3_64_intdigest(self._prefix + key + self._suffix) >> self._shift

    def get_part_nodes(self, part: int) -> list[dict[str, Any]]:
        """The primary nodes of a partition, in replica order (fresh dicts: callers may edit)."""
        nodes = [table[row[part]].copy() for row, table in self._full_rows]
        for row, table in self._short_rows:
            if part < len(row):
                nodes.append(table[row[part]].copy())
        return nodes

    def get_nodes(
        self,
        account: str | bytes,
        container: str | bytes | None = None,
        obj: str | bytes | None = None,
    ) -> tuple[int, list[dict[str, Any]]]:
        part = self.get_part(account, container, obj)
        return part, self.get_part_nodes(part)

    def handoff_nodes(self, part: int) -> Iterator[dict[str, Any]]:
        """Where to write when primaries fail, best first: a device in a region none of the
        primaries use, then a new zone, then a new ip, then any other device; every device
        eventually, each once. The order is fixed per partition (a rotation of the device
        list picked by hashing the partition), so every proxy agrees on it."""
        primaries = {row[part] for row, _ in self._row_tables if part < len(row)}
        used = {
            level: {_tier(self.data.devices[d], level) for d in primaries} for level in (1, 2, 3)
        }
        spin = xxhash.xxh3_64_intdigest(part.to_bytes(4, "big"))
        rotated = [
            dev
            for group in self._handoff_groups
            if group
            for dev in group[spin % len(group) :] + group[: spin % len(group)]
        ]
        yielded = set(primaries)
        count = 0
        for level in (1, 2, 3, 4):
            for dev in rotated:
                if dev["id"] in yielded:
                    continue
                if level < 4:
                    if _tier(dev, level) in used[level]:
                        continue
                    for lvl in range(level, 4):
                        used[lvl].add(_tier(dev, lvl))
                yielded.add(dev["id"])
                yield {**dev, "handoff_index": count}
                count += 1


def _tier(dev: dict[str, Any], level: int) -> tuple:
    """The failure domain of a device at level 1 (region), 2 (zone) or 3 (ip)."""
    return (dev["region"], dev["zone"], dev["ip"])[:level]
