"""The updater: replays the container listing updates an object server could not deliver.

An object PUT/DELETE whose container replica was down leaves an async-pending record
(``<device>/async_pending/<suffix>/<hash>-<timestamp>``, see ``object_server``). Each pass
sends every record to the container node it names, or, if that one fails, to another
primary of the container's partition (DB replication spreads it from there); a record is
deleted only after a container node accepted it. Listing rows merge by timestamp, so
replaying an old record never undoes a newer write.
"""

from __future__ import annotations

import http.client
import logging
import os
from pathlib import Path

import msgpack

from soko.common.durable import fsync_dir
from soko.object.node.walk import entries

log = logging.getLogger(__name__)


class Updater:
    def __init__(self, node):
        self.node = node

    def run_once(self) -> dict:
        stats = {"found": 0, "successes": 0, "failures": 0}
        for _, device_path in self.node.mounted_devices("object"):
            for record_path in sorted(pending_records(device_path)):
                if self.node.stop.is_set():
                    return stats
                stats["found"] += 1
                if self.replay(record_path):
                    stats["successes"] += 1
                else:
                    stats["failures"] += 1
        return stats

    def replay(self, record_path: Path) -> bool:
        try:
            record = msgpack.unpackb(record_path.read_bytes())
        except (OSError, ValueError) as exc:
            log.warning("unreadable async pending %s: %s", record_path, exc)
            return False
        for node in self.targets(record):
            path = record["path"].replace(f"/{record['node']['device']}/",
                                          f"/{node['device']}/", 1)
            try:
                status, _, _ = self.node.pool.request(node, record["method"], path,
                                                      record["headers"])
            except (OSError, http.client.HTTPException):
                continue
            if status // 100 == 2:
                os.unlink(record_path)
                fsync_dir(record_path.parent)
                try:
                    record_path.parent.rmdir()
                except OSError:
                    pass
                return True
        return False

    def targets(self, record: dict) -> list[dict]:
        """The node the record names first, then the partition's other container primaries."""
        first = record["node"]
        others = self.node.rings["container"].get_part_nodes(int(record["partition"]))
        return [first] + [n for n in others
                          if (n["ip"], n["port"], n["device"]) !=
                          (first["ip"], first["port"], first["device"])]


def pending_records(device_path: Path):
    root = device_path / "async_pending"
    for suffix in entries(root):
        for entry in entries(suffix.path):
            if not entry.name.startswith(".tmp-"):
                yield Path(entry.path)
