"""The seam between the network service and a host: what a network and a router look like
once the DB has been read, and the calls a driver answers.

A driver converges: ``apply_*`` makes the host match a spec whatever it found (nothing, a
half-built namespace, stale rules), so the same call serves a change, a retry and a
restart. Multi-host comes in behind this seam (an RPC driver sending the specs to agents).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SubnetSpec:
    id: str
    cidr: str
    gateway_ip: str | None
    dns_nameservers: tuple[str, ...]  # the subnet's, or the default when it names none
    host_routes: tuple[tuple[str, str], ...]  # (destination, nexthop)
    enable_dhcp: bool


@dataclass(frozen=True)
class Leg:
    """A port the network service itself plugs: DHCP server, router interface or gateway."""

    port_id: str
    network_id: str
    mac: str
    addresses: tuple[str, ...]  # "ip/prefixlen"
    mtu: int = 1500  # the network's


@dataclass(frozen=True)
class HostEntry:
    """One static DHCP answer: this MAC gets this address."""

    mac: str
    ip: str
    hostname: str


@dataclass(frozen=True)
class MetadataEntry:
    """An instance's address (behind a router, or on a network without one), and what the
    metadata proxy says of it:
    ``ports`` are the facts of the instance's ports (address, subnet, MAC, floating IP)
    that compute's metadata API builds ``network_data.json`` from."""

    ip: str
    instance_id: str
    project_id: str
    ports: tuple[dict, ...]


@dataclass(frozen=True)
class NetworkSpec:
    id: str
    mtu: int
    subnets: tuple[SubnetSpec, ...]
    dhcp: Leg | None  # None: no subnet has DHCP on
    hosts: tuple[HostEntry, ...]
    # "ip/prefixlen" the host itself holds on the bridge: the default external network's
    # gateway, so the host reaches floating IPs (devstack's br-ex address); None: none.
    host_address: str | None = None
    # Set when no router serves the network's metadata: the DHCP namespace does (Neutron's
    # isolated metadata), for these instances, and DHCP hands out a route to it.
    metadata: tuple[MetadataEntry, ...] | None = None


@dataclass(frozen=True)
class FloatingPair:
    floating_ip: str
    fixed_ip: str


@dataclass(frozen=True)
class RouterSpec:
    id: str
    interfaces: tuple[Leg, ...]
    gateway: Leg | None
    gateway_nexthop: str | None  # the external subnet's gateway: the default route
    snat_cidrs: tuple[str, ...]  # tenant subnets translated to the gateway address
    floating: tuple[FloatingPair, ...]
    metadata: tuple[MetadataEntry, ...] = ()  # the instances on its tenant subnets


@dataclass(frozen=True)
class FirewallRule:
    """One allowed flow of a security group rule; ``remotes`` None means from/to anywhere."""

    direction: str  # ingress | egress
    protocol: str | None  # tcp | udp | icmp | None (any)
    port_min: int | None
    port_max: int | None
    remotes: tuple[str, ...] | None  # CIDRs (a remote group: its members' addresses)
    remote_group: str | None = None  # the group whose members ``remotes`` are
    group: str = ""  # the security group the rule belongs to


@dataclass(frozen=True)
class PortFirewall:
    """A port with port security on: what it may send (its own MAC and addresses, then
    its egress rules) and receive (its ingress rules)."""

    port_id: str
    mac: str
    ips: tuple[str, ...]
    rules: tuple[FirewallRule, ...]
    network_id: str = ""  # its network's frames are tracked in a zone of their own


class NetworkDriver(Protocol):
    def apply_network(self, spec: NetworkSpec) -> None:
        """The network's bridge, and its DHCP namespace and server when it has one."""

    def remove_network(self, network_id: str) -> None:
        """Everything ``apply_network`` made; a no-op when there is nothing."""

    def apply_ports(self, spec: NetworkSpec) -> None:
        """What a port's coming, going or change alters (DHCP entries, metadata); all of
        ``apply_network`` when the host is not otherwise as ``spec`` has it."""

    def apply_router(self, spec: RouterSpec) -> None:
        """The router's namespace, its legs, routes and NAT table."""

    def apply_floating(self, spec: RouterSpec) -> None:
        """What a floating IP's change alters (gateway addresses, NAT, metadata); all of
        ``apply_router`` when the router's gateway leg is missing."""

    def remove_router(self, router_id: str) -> None: ...

    def apply_metadata(self, router_id: str, entries: tuple[MetadataEntry, ...]) -> None:
        """Who the router's metadata proxy answers for (a port came, went or moved)."""

    def batch(self) -> AbstractContextManager[None]:
        """Applies in a row (a reconcile) may share what each would open or read."""

    def remove_orphans(self, network_ids: set[str], router_ids: set[str]) -> None:
        """Removes this cloud's networks and routers that are not in the given sets."""

    def apply_firewall(self, ports: tuple[PortFirewall, ...], recheck: bool = False) -> None:
        """Exactly these ports' security groups in force on their taps; none: no trace.
        ``recheck``: read what the host has rather than trust what was last applied."""

    def bridge_name(self, network_id: str) -> str:
        """Where an instance's tap is plugged."""

    def tap_name(self, port_id: str) -> str:
        """The name an instance's tap for this port must have (its rules match on it)."""
