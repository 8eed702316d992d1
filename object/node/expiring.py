"""A device's index of objects that carry an ``X-Delete-At``, so the expirer reads only
the entries that are due instead of every object's metadata each pass.

An entry is an empty file ``<device>/expiring/<hour>/<delete_at>-<partition>-<hash>``
(hour: ``delete_at`` rounded down to 3600 s), made whenever a ``.data`` or ``.meta`` with
an ``X-Delete-At`` lands on the device (client write, POST, replication). Entries are not
fsynced: the index is a hint. The auditor re-adds any entry missing for an object it
reads, and an object whose entry is lost anyway is still 404 at the proxy and gets the
tombstone from a replica whose expirer did delete it. An entry whose object no longer
expires at that time (rewritten, or a POST moved its ``X-Delete-At``) is simply dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from soko.common.durable import in_directory
from soko.object.node.walk import entries

HOUR = 3600


@dataclasses.dataclass(frozen=True)
class Entry:
    path: Path
    delete_at: int
    partition: str
    digest: str

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def entry_path(device_path: Path, delete_at: int, partition: str, digest: str) -> Path:
    return (device_path / "expiring" / str(delete_at // HOUR * HOUR)
            / f"{delete_at}-{partition}-{digest}")


def add(device_path: Path, delete_at: int, partition: str, digest: str) -> None:
    path = entry_path(device_path, delete_at, partition, digest)
    if not path.exists():
        in_directory(path.parent, path.touch)


def due(device_path: Path, now: float) -> Iterator[Entry]:
    """The entries whose time has come, oldest first; an hour's directory goes once it is
    past and empty."""
    root = device_path / "expiring"
    hours = sorted(int(e.name) for e in entries(root) if e.name.isdigit())
    for hour in hours:
        if hour > now:
            return
        hour_dir = root / str(hour)
        for name in sorted(e.name for e in entries(hour_dir)):
            delete_at, _, rest = name.partition("-")
            partition, _, digest = rest.partition("-")
            if delete_at.isdigit() and int(delete_at) <= now:
                yield Entry(hour_dir / name, int(delete_at), partition, digest)
        if hour + HOUR <= now:
            with contextlib.suppress(OSError):  # not empty: entries not yet handled
                hour_dir.rmdir()
