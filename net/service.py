"""What ``soko-net`` is to the rest of soko: its config section and how it starts.

A Neutron-v2.0-shaped subset: networks, subnets, ports, routers, floating IPs and security
groups in its own SQLite DB, realised on this host as Linux bridges, ``qdhcp-``/``qrouter-``
namespaces, dnsmasq and iptables. Imports only the config dataclass, so ``soko --help``
and ``soko up`` stay cheap.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import ClassVar

import xxhash

from soko.common.config import Config, ConfigError, ServerSection
from soko.common.service import ServiceSpec

CLOUD_ID = re.compile(r"^[0-9a-f]{4}$")


@dataclasses.dataclass
class NetConfig(ServerSection):
    port: int = 9696  # Neutron's
    database_url: str | None = None  # default: sqlite in <data_dir>/net/
    # Four hex digits in the name of every bridge, veth and namespace this cloud makes, so
    # a reconcile removes its own orphans and never another cloud's on the same host.
    # Empty: derived from the data directory.
    cloud_id: str = ""
    mtu: int = 1500
    dhcp_lease_seconds: int = 86400
    # Handed to guests of a subnet without dns_nameservers; empty: the host's resolvers
    # (the non-loopback nameservers of /etc/resolv.conf).
    default_dns: list[str] = dataclasses.field(default_factory=list)
    # Seconds between full reconciles (repairs what a crash or an operator left half-done;
    # one worker acts per tick); 0: only at start.
    reconcile_interval: float = 30.0
    # The default networks `soko up` makes, as devstack's: an external `public` on
    # public_cidr whose gateway (the first address) the host holds on the network's bridge,
    # so the host reaches floating IPs; and for the demo project `private` on private_cidr
    # with `router1` gatewayed to public. Empty public_cidr: none made, no host address.
    public_cidr: str = "172.24.4.0/24"
    private_cidr: str = "10.0.0.0/24"
    # Where the metadata proxy forwards guests' requests (compute's API); empty: the
    # [compute] section's endpoint, and no metadata proxy where this cloud has no compute.
    metadata_url: str = ""
    # The key instance identities are signed with; the same as [compute] metadata_secret.
    # Empty: <data_dir>/metadata-secret, made on first use.
    metadata_secret: str = ""
    # The port the metadata proxy listens on inside router namespaces (169.254.169.254:80
    # is redirected to it there).
    metadata_port: int = 9697
    quota_networks: int = 100
    quota_ports: int = 500
    quota_routers: int = 10
    quota_floatingips: int = 50

    catalog_type: ClassVar[str] = "network"
    catalog_name: ClassVar[str] = "neutron"
    catalog_path: ClassVar[str] = ""

    def validate(self) -> None:
        super().validate()
        if self.cloud_id and not CLOUD_ID.match(self.cloud_id):
            raise ConfigError(f"cloud_id: must be 4 lowercase hex digits, got {self.cloud_id!r}")
        if not 576 <= self.mtu <= 9000:
            raise ConfigError(f"mtu: must be 576..9000, got {self.mtu}")
        if self.dhcp_lease_seconds < 120:
            raise ConfigError("dhcp_lease_seconds: must be at least 120")
        for key in ("public_cidr", "private_cidr"):
            value = getattr(self, key)
            try:
                if value and ipaddress.ip_network(value).version != 4:
                    raise ValueError("not IPv4")
            except ValueError as exc:
                raise ConfigError(f"{key}: an IPv4 CIDR like 10.0.0.0/24 or empty, got "
                                  f"{value!r} ({exc})") from None
        if not 1 <= self.metadata_port <= 65535:
            raise ConfigError(f"metadata_port: {self.metadata_port} is not a TCP port")
        if self.reconcile_interval < 0:
            raise ConfigError("reconcile_interval: must be 0 (off) or a number of seconds")


def cloud_id(config: Config) -> str:
    """The configured cloud id, or one derived from the data directory (stable across
    restarts, different for two clouds on one host)."""
    section: NetConfig = config.section("net")
    return section.cloud_id or xxhash.xxh32_hexdigest(str(config.data_dir).encode())[:4]


SERVICE = ServiceSpec(
    name="net",
    summary="Neutron-v2.0-shaped network API: bridges, namespaces, dnsmasq and iptables",
    section=NetConfig,
    app_factory="soko.net.api:make_app",
    bootstrap="soko.net.wiring:bootstrap",
    teardown="soko.net.wiring:teardown",
)
