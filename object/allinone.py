"""The object store on one host for ``soko up``: storage nodes, their devices, the rings.

Node ``N`` serves two devices, ``d<2N>`` and ``d<2N+1>``, each a loop-backed XFS image
mounted at ``<devices_dir>/node<N>/<device>`` (as a Swift all-in-one does): two per node so
that with one node down the ring still has a handoff device for every partition. Rings for
3 replicas are built on first start and left alone afterwards (``soko ring`` changes them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from soko.common.config import Config
from soko.common.service import Unit, serve_argv
from soko.object.node.xfs import ensure_mounted, release

DEVICES_PER_NODE = 2
PART_POWER = 10


def node_device_names(node: int) -> list[str]:
    return [f"d{node * DEVICES_PER_NODE + i}" for i in range(DEVICES_PER_NODE)]


def ring_devices(section) -> list[dict]:
    """Every device of this host's nodes as the ring builder takes them: one zone per node."""
    return [
        {"region": 1, "zone": node + 1, "ip": section.bind_ip, "port": section.port + node,
         "device": device, "weight": 100.0}
        for node in range(section.nodes)
        for device in node_device_names(node)
    ]


def device_image(config: Config, device: str) -> Path:
    return config.data_dir / "object" / "images" / f"{device}.img"


def prepare_devices(config: Config) -> list[str]:
    """Mounts (creating on first use) one XFS image per device; plain dirs without mount_check."""
    section = config.section("storage")
    for node in range(section.nodes):
        for device in node_device_names(node):
            mount_point = section.node_devices(config.data_dir, node) / device
            if not section.mount_check:
                mount_point.mkdir(parents=True, exist_ok=True)
                continue
            if os.geteuid() != 0 or shutil.which("mkfs.xfs") is None:
                raise RuntimeError(
                    "storage devices are loop-mounted XFS images, which needs root and "
                    "xfsprogs; run as root, or set `mount_check = false` in [storage] of "
                    "soko.toml to use plain directories (ext4 limits metadata to ~4 KiB)")
            ensure_mounted(device_image(config, device), mount_point, section.device_size_gib << 30)
    kind = "loop-mounted XFS" if section.mount_check else "plain directories"
    return [f"object storage: {section.nodes} nodes x {DEVICES_PER_NODE} devices ({kind}) "
            f"under {section.node_devices(config.data_dir, 0).parent}"]


def ensure_rings(config: Config) -> list[str]:
    from soko.object.shared.hash_secret import create_secret
    from soko.ring.builder import build_rings

    ring_dir = config.section("proxy").rings_dir(config.data_dir)
    if all((ring_dir / f"{name}.ring").exists() for name in ("account", "container", "object")):
        return []
    ring_dir.mkdir(parents=True, exist_ok=True)
    create_secret(ring_dir)  # before the rings: new rings always come with a salt
    build_rings(ring_dir, ring_devices(config.section("storage")), part_power=PART_POWER,
                replicas=3)
    return [f"object rings: 3 replicas, 2^{PART_POWER} partitions, in {ring_dir} "
            f"(with a new hash path secret)"]


def bootstrap(config: Config) -> list[str]:
    return prepare_devices(config) + ensure_rings(config)


def storage_units(config: Config) -> list[Unit]:
    section = config.section("storage")
    units = []
    for node in range(section.nodes):
        endpoint = section.for_node(node).endpoint
        units.append(Unit(name=f"storage-{node}",
                          argv=serve_argv("storage", config, "--node", str(node)),
                          endpoint=endpoint, health_url=f"{endpoint}/healthcheck"))
    return units


def teardown(config: Config) -> None:
    """Unmounts the device images ``prepare_devices`` mounted and detaches their loop devices
    (one a failed or killed start left attached but unmounted too)."""
    section = config.section("storage")
    if not section.mount_check:
        return
    for node in range(section.nodes):
        for device in node_device_names(node):
            release(device_image(config, device),
                    section.node_devices(config.data_dir, node) / device)
