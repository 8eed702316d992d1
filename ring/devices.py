"""Devices as the builder and the ring see them, and the two small text forms operators type:
swift-ring-builder's compact ``r1z1-127.0.0.1:6200/sdb1_meta`` and its search values
(``d3``, ``r1z2``, ``z1-10.0.0.1:6200/sdb``), so Swift operators feel at home."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from soko.ring.errors import RingError

MAX_DEVICE_ID = 0xFFFE  # 0xFFFF marks an unassigned replica in the 2-byte assignment rows

# The compact form: r<region>z<zone>-<ip or [ipv6]>:<port>/<device>[_<meta>]
_COMPACT = re.compile(
    r"^r(?P<region>\d+)z(?P<zone>\d+)-(?P<ip>\[[^\]]+\]|[^:/\s]+):(?P<port>\d+)"
    r"/(?P<device>[^_\s/]+)(?:_(?P<meta>.*))?$"
)
# A search value: every part optional, in this order (as swift-ring-builder parses them).
_SEARCH = re.compile(
    r"^(?:d(?P<id>\d+))?(?:r(?P<region>\d+))?(?:z(?P<zone>\d+))?"
    r"(?:-?(?P<ip>\[[^\]]+\]|[^:/\s_\[]+))?(?::(?P<port>\d+))?"
    r"(?:/(?P<device>[^_\s/]+))?(?:_(?P<meta>.*))?$"
)


@dataclasses.dataclass
class Device:
    """One disk in the cluster: where it sits in the failure domains and how much it holds."""

    id: int
    region: int
    zone: int
    ip: str
    port: int
    device: str
    weight: float
    meta: str = ""

    def __post_init__(self) -> None:
        check_device_fields(self)

    @property
    def address(self) -> tuple[str, int, str]:
        """What must be unique: two entries for one disk would put two replicas on it."""
        return (self.ip, self.port, self.device)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def label(self) -> str:
        return f"d{self.id}r{self.region}z{self.zone}-{host_port(self.ip, self.port)}/{self.device}"


def host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def check_device_fields(dev: Device) -> None:
    """Rejects a device the cluster could not use, naming the bad field."""
    for name in ("id", "region", "zone", "port"):
        value = getattr(dev, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RingError(f"device {name} must be a non-negative integer, got {value!r}")
    if dev.id > MAX_DEVICE_ID:
        raise RingError(f"device id must be at most {MAX_DEVICE_ID}, got {dev.id}")
    if not 1 <= dev.port <= 65535:
        raise RingError(f"device port must be 1..65535, got {dev.port}")
    for name in ("ip", "device"):
        value = getattr(dev, name)
        if not isinstance(value, str) or not value or any(c.isspace() or c == "/" for c in value):
            raise RingError(
                f"device {name} must be a non-empty name without spaces or '/', got {value!r}"
            )
    if not isinstance(dev.meta, str):
        raise RingError(f"device meta must be a string, got {dev.meta!r}")
    dev.weight = check_weight(dev.weight)


def check_weight(weight: Any) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise RingError(f"weight must be a number, got {weight!r}") from None
    if not math.isfinite(value) or value < 0:
        raise RingError(f"weight must be a finite number >= 0, got {weight!r}")
    return value


def parse_compact(text: str) -> dict[str, Any]:
    """``r1z1-127.0.0.1:6200/sdb1_meta`` → the device fields it names (no weight, no id)."""
    match = _COMPACT.match(text.strip())
    if not match:
        raise RingError(
            f"cannot parse device {text!r}: expected r<region>z<zone>-<ip>:<port>/<device>[_<meta>]"
        )
    fields = match.groupdict()
    return {
        "region": int(fields["region"]),
        "zone": int(fields["zone"]),
        "ip": fields["ip"].strip("[]"),
        "port": int(fields["port"]),
        "device": fields["device"],
        "meta": fields["meta"] or "",
    }


def parse_search(text: str) -> dict[str, Any]:
    """A search value → the fields it constrains; an id alone may be given as a bare number."""
    text = text.strip()
    if text.isdigit():
        return {"id": int(text)}
    match = _SEARCH.match(text)
    if not text or not match:
        raise RingError(
            f"cannot parse device search {text!r}: expected e.g. d3, r1z2, z1-10.0.0.1:6200/sdb"
        )
    found = {k: v for k, v in match.groupdict().items() if v is not None}
    for key in ("id", "region", "zone", "port"):
        if key in found:
            found[key] = int(found[key])
    if "ip" in found:
        found["ip"] = found["ip"].strip("[]")
    if not found:
        raise RingError(f"device search {text!r} matches nothing specific")
    return found


def matches(dev: Device, criteria: dict[str, Any]) -> bool:
    return all(getattr(dev, key) == value for key, value in criteria.items())
