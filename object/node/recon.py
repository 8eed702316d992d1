"""``GET /recon`` on a storage node: what an operator (``soko object recon``) needs to know
about the node's health, as JSON::

    {
      "node": 0,                          # the node index (`--node N`)
      "endpoint": "127.0.0.1:6200",
      "daemons": {                        # last pass of each daemon, from its recon cache
        "object-replicator": {"last_pass_start": 1760000000.0,   # epoch seconds
                              "last_pass_seconds": 0.42,
                              "partitions": 12, ...},            # the daemon's pass stats
        ...
      },
      "quarantined": {"objects": 0, "containers": 0, "accounts": 0},
      "async_pending": 0,                 # container updates waiting for the updater
      "devices": {"d0": {"mounted": true, "size": 8589934592, "used": 123456}}
    }

A daemon that has not finished a pass yet is absent from ``daemons``; a device of the
node's ring entries that is missing shows ``"mounted": false`` (size and used 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import falcon

from soko.common.config import Config
from soko.common.errors import InsufficientStorage
from soko.object.node.diskfile import Devices

QUARANTINE_KINDS = ("objects", "containers", "accounts")


def recon_cache_path(config: Config) -> Path:
    from soko.object.daemons.service import DaemonsSection

    storage = config.section("storage")
    settings = config.sections.get("object-daemons") or DaemonsSection()
    return settings.recon_path(config.data_dir, storage.node)


def count_entries(path: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return 0


def count_files(path: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(path))


class ReconResource:
    def __init__(self, config: Config, devices: Devices):
        self.config = config
        self.devices = devices
        self.storage = config.section("storage")
        self.cache_path = recon_cache_path(config)

    def ring_device_names(self) -> set[str]:
        """This node's devices in the object ring, so a vanished device still shows up."""
        from soko.ring.ring import RingData

        proxy = self.config.sections.get("proxy")
        if proxy is None:
            return set()
        try:
            ring = RingData.load(proxy.rings_dir(self.config.data_dir) / "object.ring")
        except Exception:  # no ring yet (or unreadable): the devices on disk are all we know
            return set()
        here = (self.storage.bind_ip, self.storage.port)
        return {d["device"] for d in ring.devices if d and (d["ip"], d["port"]) == here}

    def device_report(self) -> tuple[dict, dict, int]:
        devices, quarantined, pending = {}, dict.fromkeys(QUARANTINE_KINDS, 0), 0
        for name in sorted(set(self.devices.names()) | self.ring_device_names()):
            try:
                path = self.devices.path(name)
            except InsufficientStorage:
                devices[name] = {"mounted": False, "size": 0, "used": 0}
                continue
            st = os.statvfs(path)
            devices[name] = {"mounted": True, "size": st.f_blocks * st.f_frsize,
                             "used": (st.f_blocks - st.f_bfree) * st.f_frsize}
            for kind in QUARANTINE_KINDS:
                quarantined[kind] += count_entries(path / "quarantined" / kind)
            pending += count_files(path / "async_pending")
        return devices, quarantined, pending

    def on_get(self, req, resp):
        try:
            cache = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            cache = {}
        devices, quarantined, pending = self.device_report()
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({
            "node": self.storage.node,
            "endpoint": f"{self.storage.bind_ip}:{self.storage.port}",
            "daemons": cache.get("daemons", {}),
            "quarantined": quarantined,
            "async_pending": pending,
            "devices": devices,
        })
