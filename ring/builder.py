"""The ring builder: the operator's editable description of a ring (devices, weights, the
current assignment and when each partition last moved), saved as a msgpack builder file,
from which ring files are written for the services."""

from __future__ import annotations

import math
import os
import random
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soko.ring import format as ringfile
from soko.ring.devices import Device, check_weight, matches, parse_search
from soko.ring.errors import RingError, RingFileError
from soko.ring.rebalance import NONE_DEV, rebalance
from soko.ring.stats import dispersion_report

MAX_PART_POWER = 24  # 16 M partitions: 32 MiB per replica row, already more than any cluster here
MAX_REPLICAS = 16
MAX_HOURS = 0xFF
RING_NAMES = ("account", "container", "object")


@dataclass
class RebalanceResult:
    moved_slots: int
    moved_partitions: int
    total_slots: int
    balance: float
    seed: int

    @property
    def moved_percent(self) -> float:
        return 100.0 * self.moved_slots / self.total_slots


class RingBuilder:
    """What swift-ring-builder keeps in a ``.builder`` file, with the same verbs."""

    def __init__(self, part_power: int, replicas: float, min_part_hours: int = 1):
        check_int("part power", part_power, 1, MAX_PART_POWER)
        check_int("min_part_hours", min_part_hours, 0, MAX_HOURS)
        try:
            replicas = float(replicas)
        except (TypeError, ValueError):
            raise RingError(f"replicas must be a number, got {replicas!r}") from None
        if not 1 <= replicas <= MAX_REPLICAS:
            raise RingError(f"replicas must be between 1 and {MAX_REPLICAS}, got {replicas:g}")
        self.part_power = part_power
        self.replicas = replicas
        self.min_part_hours = min_part_hours
        self.devices: dict[int, Device] = {}
        self.removing: set[int] = set()  # removed; their partitions move at the next rebalance
        self.next_id = 0
        self.rows: list[array] = []  # rows[replica][partition] = device id, after a rebalance
        self.last_moved = array("B", [MAX_HOURS]) * self.partition_count
        self.moves_epoch: float | None = None
        self.version = 0

    @property
    def partition_count(self) -> int:
        return 1 << self.part_power

    def row_lengths(self) -> list[int]:
        """A fractional replica count gives a last row covering that fraction of partitions."""
        whole, frac = int(self.replicas), self.replicas % 1
        lengths = [self.partition_count] * whole
        if frac:
            lengths.append(math.ceil(self.partition_count * frac))
        return lengths

    # -- devices ---------------------------------------------------------------------------

    def add_device(
        self,
        *,
        region: int,
        zone: int,
        ip: str,
        port: int,
        device: str,
        weight: float,
        meta: str = "",
        id: int | None = None,  # noqa: A002 - the field's name in every Swift tool
    ) -> Device:
        dev_id = self.next_id if id is None else id
        if dev_id in self.devices:
            raise RingError(f"device id {dev_id} is already in use")
        dev = Device(dev_id, region, zone, ip, port, device, weight, meta)
        self._check_unique_address(dev)
        self.devices[dev.id] = dev
        self.next_id = max(self.next_id, dev.id + 1)
        return dev

    def remove_device(self, dev_id: int) -> Device:
        dev = self.device(dev_id)
        self.removing.add(dev_id)
        return dev

    def set_weight(self, dev_id: int, weight: float) -> Device:
        dev = self.device(dev_id)
        dev.weight = check_weight(weight)
        return dev

    def set_info(self, dev_id: int, **changes: Any) -> Device:
        """Changes where a device is reached (ip, port, device name) or its meta, never its
        failure domain: moving a disk between zones is a remove and an add."""
        unknown = set(changes) - {"ip", "port", "device", "meta"}
        if unknown:
            raise RingError(f"set_info cannot change {', '.join(sorted(unknown))}")
        dev = self.device(dev_id)
        updated = Device(**{**dev.as_dict(), **{k: v for k, v in changes.items() if v is not None}})
        self._check_unique_address(updated)
        self.devices[dev_id] = updated
        return updated

    def device(self, dev_id: int) -> Device:
        dev = self.devices.get(dev_id)
        if dev is None or dev_id in self.removing:
            raise RingError(f"no device with id {dev_id}")
        return dev

    def live_devices(self) -> list[Device]:
        return [d for i, d in self.devices.items() if i not in self.removing]

    def search(self, text: str) -> list[Device]:
        criteria = parse_search(text)
        return [d for d in self.live_devices() if matches(d, criteria)]

    def _check_unique_address(self, dev: Device) -> None:
        for other in self.live_devices():
            if other.id != dev.id and other.address == dev.address:
                raise RingError(f"{dev.ip}:{dev.port}/{dev.device} is already device {other.id}")

    # -- rebalancing -----------------------------------------------------------------------

    def rebalance(self, seed: int | None = None, now: float | None = None) -> RebalanceResult:
        """Reassigns partitions; raises before changing anything when the ring cannot work."""
        live = self.live_devices()
        weighted = [d for d in live if d.weight > 0]
        if not weighted:
            raise RingError("total weight is zero: add devices or give them weight first")
        if len(weighted) < math.ceil(self.replicas):
            raise RingError(
                f"{self.replicas:g} replicas need at least {math.ceil(self.replicas)} devices "
                f"with weight > 0, the builder has {len(weighted)}"
            )
        if seed is None:
            seed = random.SystemRandom().randrange(1 << 32)
        now = time.time() if now is None else now
        self._age_last_moved(now)
        if not self.rows:
            self.rows = [array("H", [NONE_DEV]) * n for n in self.row_lengths()]
        outcome = rebalance(
            self.rows,
            live,
            self.last_moved,
            self.min_part_hours,
            self.replicas,
            random.Random(seed),
        )
        for dev_id in self.removing:
            del self.devices[dev_id]
        self.removing.clear()
        self.version += 1
        return RebalanceResult(
            outcome.moved_slots,
            outcome.moved_partitions,
            sum(self.row_lengths()),
            self.balance(),
            seed,
        )

    def _age_last_moved(self, now: float) -> None:
        if self.moves_epoch is None:
            self.moves_epoch = now
            return
        hours = int((now - self.moves_epoch) // 3600)
        if hours > 0:
            self.last_moved = array("B", (min(MAX_HOURS, h + hours) for h in self.last_moved))
            self.moves_epoch += hours * 3600

    def pretend_min_part_hours_passed(self) -> None:
        """Lets the next rebalance move any partition (testing, or after a verified recovery)."""
        self.last_moved = array("B", [MAX_HOURS]) * self.partition_count

    # -- reports ---------------------------------------------------------------------------

    def partitions_per_device(self) -> Counter:
        counts: Counter = Counter()
        for row in self.rows:
            counts.update(row)
        counts.pop(NONE_DEV, None)
        return counts

    def device_report(self) -> list[dict[str, Any]]:
        """Each device with its partitions and balance: % above (+) or below (-) the
        share its weight asks for; draining devices (weight 0) have no balance."""
        counts = self.partitions_per_device()
        total_weight = sum(d.weight for d in self.live_devices())
        slots = sum(self.row_lengths())
        report = []
        for dev in self.devices.values():
            parts = counts.get(dev.id, 0)
            wanted = (
                slots * dev.weight / total_weight
                if total_weight and dev.id not in self.removing
                else 0
            )
            report.append(
                {
                    **dev.as_dict(),
                    "partitions": parts,
                    "balance": round(100.0 * (parts - wanted) / wanted, 2) if wanted else None,
                    "removing": dev.id in self.removing,
                }
            )
        return report

    def balance(self) -> float:
        return max(
            (abs(r["balance"]) for r in self.device_report() if r["balance"] is not None),
            default=0.0,
        )

    def dispersion(self) -> dict[str, Any]:
        return dispersion_report(self.rows, self.live_devices(), self.partition_count)

    # -- files -----------------------------------------------------------------------------

    def to_payload(self) -> dict[str, Any]:
        return {
            "part_power": self.part_power,
            "replicas": self.replicas,
            "min_part_hours": self.min_part_hours,
            "devices": [d.as_dict() for d in self.devices.values()],
            "removing": sorted(self.removing),
            "next_id": self.next_id,
            "rows": ringfile.rows_to_bytes(self.rows),
            "last_moved": self.last_moved.tobytes(),
            "moves_epoch": self.moves_epoch,
            "version": self.version,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], name: str = "builder") -> RingBuilder:
        get = ringfile.field
        try:
            builder = cls(
                get(payload, "part_power", int, name),
                get(payload, "replicas", float, name),
                get(payload, "min_part_hours", int, name),
            )
            for fields in get(payload, "devices", list, name):
                builder.add_device(**fields)
        except RingFileError:
            raise
        except (RingError, TypeError) as exc:
            raise RingFileError(f"{name}: invalid builder contents: {exc}") from None
        builder.removing = set(get(payload, "removing", list, name)) & set(builder.devices)
        builder.next_id = max(get(payload, "next_id", int, name), builder.next_id)
        builder.rows = ringfile.rows_from_bytes(payload.get("rows"), name)
        if builder.rows and [len(r) for r in builder.rows] != builder.row_lengths():
            raise RingFileError(f"{name}: assignment rows do not match part power and replicas")
        builder.last_moved = array("B", get(payload, "last_moved", bytes, name))
        if len(builder.last_moved) != builder.partition_count:
            raise RingFileError(f"{name}: last-moved table does not match the part power")
        epoch = payload.get("moves_epoch")
        builder.moves_epoch = float(epoch) if isinstance(epoch, (int, float)) else None
        builder.version = get(payload, "version", int, name)
        return builder

    def save(self, path: str | os.PathLike) -> None:
        ringfile.write(path, ringfile.BUILDER_MAGIC, self.to_payload())

    @classmethod
    def load(cls, path: str | os.PathLike) -> RingBuilder:
        return cls.from_payload(ringfile.read(path, ringfile.BUILDER_MAGIC), str(path))

    def ring_payload(self) -> dict[str, Any]:
        """What the services read: devices by id and the assignment, nothing editable."""
        if not self.rows or any(NONE_DEV in row for row in self.rows):
            raise RingError("the builder has unassigned partitions: run rebalance first")
        devices: list[dict[str, Any] | None] = [None] * (max(self.devices, default=-1) + 1)
        for dev in self.devices.values():
            devices[dev.id] = dev.as_dict()
        return {
            "part_power": self.part_power,
            "replicas": self.replicas,
            "devices": devices,
            "rows": ringfile.rows_to_bytes(self.rows),
            "version": self.version,
        }

    def write_ring(self, path: str | os.PathLike) -> None:
        ringfile.write(path, ringfile.RING_MAGIC, self.ring_payload())


def check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RingError(f"{name} must be an integer between {low} and {high}, got {value!r}")


def build_rings(
    directory: str | os.PathLike,
    devices: Iterable[Mapping[str, Any]],
    *,
    part_power: int = 10,
    replicas: float = 3,
    min_part_hours: int = 1,
    seed: int = 0,
) -> dict[str, Path]:
    """Creates the account, container and object rings (``<name>.builder`` and
    ``<name>.ring`` in ``directory``) over one list of devices, as ``soko up`` needs.

    Each device is a mapping with region, zone, ip, port, device, weight (and optional meta).
    Returns the ring file paths by name.
    """
    directory = Path(directory)
    devices = list(devices)
    paths = {}
    for offset, name in enumerate(RING_NAMES):
        builder = RingBuilder(part_power, replicas, min_part_hours)
        for dev in devices:
            builder.add_device(**dev)
        builder.rebalance(seed=seed + offset)
        builder.save(directory / f"{name}.builder")
        paths[name] = directory / f"{name}.ring"
        builder.write_ring(paths[name])
    return paths
