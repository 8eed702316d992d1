"""What ``soko-compute`` is to the rest of soko: its config section and how it starts.

Imports only the config dataclass, so ``soko --help`` and ``soko up`` stay cheap.
"""

from __future__ import annotations

import dataclasses
import re
import socket

from soko.common.config import ConfigError, ServerSection
from soko.common.service import ServiceSpec


def default_initiator() -> str:
    """This host's iSCSI name, as os-brick derives one when /etc/iscsi has none."""
    host = re.sub(r"[^a-z0-9.-]", "-", socket.gethostname().lower()) or "host"
    return f"iqn.2026-11.dev.soko:compute-{host}"


@dataclasses.dataclass
class ComputeConfig(ServerSection):
    port: int = 8774  # Nova's
    # One process: the libvirt connection and the freeze watchdogs live in it, so a freeze
    # and its thaw (two requests) meet the same watchdog. Threads serve the concurrency.
    workers: int = 1
    database_url: str | None = None  # default: sqlite in <data_dir>/compute/
    # The block API without the project (http://host:8776); empty: the [block] section's.
    block_url: str = ""
    net_url: str = ""  # the network API (http://host:9696); empty: the [net] section's
    libvirt_uri: str = "qemu:///system"
    virt_type: str = "auto"  # auto (kvm where a probe shows it works, else qemu/TCG) | kvm | qemu
    domain_prefix: str = "soko-"  # every domain soko-compute owns is named <prefix><server id>
    initiator: str = ""  # this host's iSCSI name; empty: derived from the host name
    bridge: str = ""  # instances get a virtio NIC on this existing bridge; empty: no NIC
    reconcile_interval: float = 5.0  # seconds between power-state syncs; 0 turns them off
    # Seconds a guest gets to shut down (stop, and every guest at `soko down`) before it is
    # forced off: Nova's shutdown_timeout.
    stop_timeout: float = 60.0
    freeze_max_seconds: float = 10.0  # a guest freeze is thawed after this, whatever happens
    volume_timeout: float = 600.0  # seconds to wait for a boot volume to be filled
    # The key the metadata proxy signs instance identities with ([net] metadata_secret
    # must be the same); empty: <data_dir>/metadata-secret, made on first use.
    metadata_secret: str = ""
    # Compute's own user (Nova's [neutron] section): it binds ports to this host, which a
    # tenant may not. `soko up` makes it in identity (project service, role service) with
    # this password; empty: <data_dir>/compute-service-password, made on first use.
    service_user: str = "nova"
    service_project: str = "service"
    service_password: str = ""
    auth_url: str = ""  # identity's, to log in as service_user; empty: the [identity] section's
    host: str = ""  # binding:host_id of the ports bound here; empty: the host name
    # Seconds before a port bound here for a server that does not exist is deleted by the
    # reconcile (left by a crash mid-create); a younger one may be a create in flight.
    orphan_port_grace: float = 300.0

    def validate(self) -> None:
        super().validate()
        if self.workers != 1:
            raise ConfigError("workers: soko-compute runs one worker (use threads to scale)")
        if self.virt_type not in ("auto", "kvm", "qemu"):
            raise ConfigError(f"virt_type: must be auto, kvm or qemu, got {self.virt_type!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,24}", self.domain_prefix):
            raise ConfigError(f"domain_prefix: 1-24 of letters, digits, '_.-', got "
                              f"{self.domain_prefix!r}")
        if self.initiator and not self.initiator.startswith(("iqn.", "eui.", "naa.")):
            raise ConfigError(f"initiator: not an iSCSI name: {self.initiator!r}")
        for key in ("stop_timeout", "freeze_max_seconds", "volume_timeout"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}: must be positive")
        if self.orphan_port_grace < 0:
            raise ConfigError("orphan_port_grace: must be 0 or more")

    @property
    def initiator_name(self) -> str:
        return self.initiator or default_initiator()

    @property
    def host_name(self) -> str:
        return self.host or socket.gethostname()


SERVICE = ServiceSpec(
    name="compute",
    summary="Nova-shaped compute API: flavors, instances on libvirt booted from iSCSI volumes",
    section=ComputeConfig,
    app_factory="soko.compute.api:make_app",
    teardown="soko.compute.wiring:teardown",
    bootstrap="soko.compute.wiring:bootstrap",
)
