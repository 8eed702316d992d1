"""The expirer: removes objects whose ``X-Delete-At`` has passed, on disk and in listings.

The proxy already answers 404 for an expired object; this makes it gone. Each node reads
the due entries of its devices' expiry index (``soko.object.node.expiring``), not every
object, and for an object on a partition it is a primary for (handoff copies go home
through the replicator first) that is indeed expired writes a tombstone timestamped with
the ``X-Delete-At`` itself: every replica's expirer writes the same tombstone, so they
agree without talking, and a write newer than the expiry still wins. The listing row is
deleted on every container primary with that same timestamp; a container node that cannot
be reached gets an async pending for the updater, as for a client's DELETE.
"""

from __future__ import annotations

import collections
import http.client
import logging
import time

from soko.object.node import expiring
from soko.object.node.diskfile import DiskFile
from soko.object.node.object_server import is_expired, save_async_pending
from soko.object.shared.nodeclient import backend_path
from soko.object.shared.timestamps import Timestamp

log = logging.getLogger(__name__)


class Expirer:
    def __init__(self, node):
        self.node = node

    def run_once(self) -> dict:
        stats = collections.Counter(checked=0, expired=0, listing_failures=0)
        ring = self.node.rings["object"]
        now = time.time()
        for dev, device_path in self.node.mounted_devices("object"):
            primary_parts: dict[str, bool] = {}
            for entry in expiring.due(device_path, now):
                if self.node.stop.is_set():
                    return dict(stats)
                if entry.partition not in primary_parts:
                    primary_parts[entry.partition] = entry.partition.isdigit() and any(
                        n["id"] == dev["id"] for n in ring.get_part_nodes(int(entry.partition)))
                df = DiskFile.at_hash(device_path, entry.partition, entry.digest)
                if primary_parts[entry.partition]:
                    stats["checked"] += 1
                    self.expire(df, now, stats)
                elif df.hash_dir.exists():
                    continue  # a handoff copy: its primaries' expirers handle it
                entry.remove()
        return dict(stats)

    def expire(self, df: DiskFile, now: float, stats) -> None:
        state = df.read_state()
        if not state.exists or not is_expired(state.metadata, now):
            return
        delete_at = Timestamp.parse(int(state.metadata["X-Delete-At"]))
        if state.timestamp >= delete_at:
            return  # rewritten after its expiry time: not this expiry's to delete
        name = state.metadata["name"]
        df.write_marker(delete_at, "ts", {"name": name, "X-Timestamp": delete_at.normal})
        stats["expired"] += 1
        log.info("expired %s (X-Delete-At %s)", name, delete_at.normal)
        stats["listing_failures"] += self.delete_listing_row(df, name, delete_at)

    def delete_listing_row(self, df: DiskFile, name: str, timestamp: Timestamp) -> int:
        """Deletes the row on every container primary; how many got an async pending."""
        account, container, obj = name.lstrip("/").split("/", 2)
        part, nodes = self.node.rings["container"].get_nodes(account, container)
        headers = {"X-Timestamp": timestamp.normal, "X-Trans-Id": f"expirer-{time.time_ns()}"}
        failures = 0
        for node in nodes:
            path = backend_path("container", node, part, account, container, obj)
            try:
                status, _, _ = self.node.pool.request(node, "DELETE", path, headers)
                if status // 100 == 2 or status == 404:
                    continue
            except (OSError, http.client.HTTPException):
                pass
            save_async_pending(df, "DELETE", node, str(part), path, headers)
            failures += 1
        return failures
