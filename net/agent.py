"""The host side of every change: reads what the DB says a network or router is, and has
the driver make the host match, one change at a time.

Changes are serialised by a lock file (gunicorn's workers share one host), and each one
re-reads the DB under the lock, so the last writer always applies the newest state. A
reconcile applies every network and router and removes this cloud's orphans: it runs at
start, and is what repairs the host after a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from soko.common.db import session_scope
from soko.net.drivers.base import (
    FirewallRule,
    FloatingPair,
    HostEntry,
    Leg,
    MetadataEntry,
    NetworkDriver,
    NetworkSpec,
    PortFirewall,
    RouterSpec,
    SubnetSpec,
)
from soko.net.models import (
    NETWORK_OWNERS,
    OWNER_DHCP,
    OWNER_ROUTER_INTERFACE,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    Router,
    SecurityGroup,
    Subnet,
)
from soko.net.routers import interfaces

log = logging.getLogger("soko.net.agent")


def host_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    """The host's nameservers a guest can reach: loopback ones (a local stub) are skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            with contextlib.suppress(ValueError):
                addr = ipaddress.ip_address(parts[1])
                if addr.version == 4 and not addr.is_loopback:
                    found.append(str(addr))
    return found


def leg_of(s: Session, port: Port) -> Leg:
    addresses = []
    for allocation in port.fixed_ips:
        prefix = ipaddress.ip_network(s.get(Subnet, allocation.subnet_id).cidr).prefixlen
        addresses.append(f"{allocation.ip_address}/{prefix}")
    return Leg(port_id=port.id, network_id=port.network_id, mac=port.mac_address,
               addresses=tuple(addresses), mtu=s.get(Network, port.network_id).mtu)


def subnets_of(ports: list[Port]) -> list[str]:
    return [a.subnet_id for port in ports for a in port.fixed_ips]


class HostAgent:
    def __init__(self, *, sessions: sessionmaker[Session], driver: NetworkDriver,
                 lock_path: Path, default_dns: list[str] | None = None,
                 host_gateway_cidr: str = ""):
        self.sessions = sessions
        self.host_gateway_cidr = host_gateway_cidr
        self.driver = driver
        self.lock_path = lock_path
        self.default_dns = tuple(default_dns) if default_dns else tuple(host_resolvers())

    @contextlib.contextmanager
    def locked(self, wait: bool = True) -> Iterator[bool]:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True

    # -- specs from the DB --------------------------------------------------------------

    def network_spec(self, s: Session, network_id: str) -> NetworkSpec | None:
        network = s.get(Network, network_id)
        if network is None:
            return None
        subnets = tuple(SubnetSpec(
            id=sub.id, cidr=sub.cidr, gateway_ip=sub.gateway_ip,
            dns_nameservers=tuple(sub.dns_nameservers) or self.default_dns,
            host_routes=tuple((r["destination"], r["nexthop"]) for r in sub.host_routes),
            enable_dhcp=sub.enable_dhcp) for sub in network.subnets)
        dhcp_subnets = {sub.id for sub in subnets if sub.enable_dhcp}
        dhcp = s.scalars(select(Port).where(Port.network_id == network_id,
                                            Port.device_owner == OWNER_DHCP)
                         .order_by(Port.created_at).limit(1)).first()
        # The other ports' addresses as plain rows: loaded as ORM objects with their
        # allocations, the network's ports were a third of a port change's CPU.
        rows = s.execute(select(Port.mac_address, IPAllocation.ip_address)
                         .join(IPAllocation, IPAllocation.port_id == Port.id)
                         .where(Port.network_id == network_id,
                                Port.id != (dhcp.id if dhcp is not None else ""),
                                IPAllocation.subnet_id.in_(dhcp_subnets))
                         .order_by(Port.created_at, Port.id, IPAllocation.id)
                         ).all() if dhcp_subnets else []
        hosts = tuple(HostEntry(mac=mac, ip=ip, hostname="host-" + ip.replace(".", "-"))
                      for mac, ip in rows)
        isolated = dhcp is not None and dhcp_subnets and not self.routers_on(s, network_id)
        return NetworkSpec(id=network.id, mtu=network.mtu, subnets=subnets,
                           dhcp=leg_of(s, dhcp) if dhcp is not None and dhcp_subnets else None,
                           hosts=hosts, host_address=self.host_address(network),
                           metadata=self.instances_on(s, dhcp_subnets) if isolated else None)

    def host_address(self, network: Network) -> str | None:
        """The gateway of the external subnet on ``host_gateway_cidr`` (``soko up``'s
        ``public``), held by the host so it reaches floating IPs, as devstack's br-ex."""
        if not network.external or not self.host_gateway_cidr:
            return None
        for sub in network.subnets:
            if sub.cidr == self.host_gateway_cidr and sub.gateway_ip:
                return f"{sub.gateway_ip}/{ipaddress.ip_network(sub.cidr).prefixlen}"
        return None

    def router_spec(self, s: Session, router_id: str) -> RouterSpec | None:
        router = s.get(Router, router_id)
        if router is None:
            return None
        ports = interfaces(s, router_id)
        legs = [leg_of(s, port) for port in ports]
        gateway = nexthop = None
        if router.gw_port is not None and router.gw_port.fixed_ips:
            gateway = leg_of(s, router.gw_port)
            nexthop = s.get(Subnet, router.gw_port.fixed_ips[0].subnet_id).gateway_ip
        snat = () if gateway is None or not router.enable_snat else tuple(
            str(ipaddress.ip_interface(a).network) for leg in legs for a in leg.addresses)
        floating = tuple(FloatingPair(f.floating_ip_address, f.fixed_ip_address)
                         for f in s.scalars(select(FloatingIP).where(
                             FloatingIP.router_id == router_id,
                             FloatingIP.port_id.is_not(None)).order_by(FloatingIP.created_at)))
        return RouterSpec(id=router.id, interfaces=tuple(legs), gateway=gateway,
                          gateway_nexthop=nexthop, snat_cidrs=snat,
                          floating=floating if gateway is not None else (),
                          metadata=self.instances_on(s, subnets_of(ports)))

    def metadata_spec(self, s: Session, router_id: str) -> tuple[MetadataEntry, ...]:
        return self.instances_on(s, subnets_of(interfaces(s, router_id)))

    def instances_on(self, s: Session, subnet_ids) -> tuple[MetadataEntry, ...]:
        """The instances' addresses on these subnets (a port of a device that is not the
        network service's own), each with the facts of all that instance's ports."""
        found = s.execute(select(IPAllocation.ip_address, Port.device_id, Port.project_id)
                          .join(Port).where(IPAllocation.subnet_id.in_(list(subnet_ids)),
                                            Port.device_id != "",
                                            Port.device_owner.not_in(NETWORK_OWNERS))
                          .order_by(IPAllocation.ip_address)).all()
        facts = self.instance_ports(s, {device for _, device, _ in found})
        return tuple(MetadataEntry(ip=ip, instance_id=device, project_id=project,
                                   ports=facts[device]) for ip, device, project in found)

    def instance_ports(self, s: Session, device_ids: set[str]) -> dict[str, tuple[dict, ...]]:
        """Each device's port facts, read in one query of plain rows whatever the count:
        port by port (~1 s for a hundred instances), then as ORM objects, it was most of
        a change's time."""
        rows = s.execute(
            select(Port.device_id, Port.id, Port.mac_address, Port.network_id,
                   IPAllocation.ip_address, Subnet.cidr, Subnet.gateway_ip, Subnet.enable_dhcp,
                   Subnet.dns_nameservers, Network.mtu, FloatingIP.floating_ip_address)
            .join(IPAllocation, IPAllocation.port_id == Port.id)
            .join(Subnet, Subnet.id == IPAllocation.subnet_id)
            .join(Network, Network.id == Port.network_id)
            .outerjoin(FloatingIP, (FloatingIP.port_id == Port.id)
                       & (FloatingIP.fixed_ip_address == IPAllocation.ip_address))
            .where(Port.device_id.in_(device_ids))
            .order_by(Port.created_at, Port.id, IPAllocation.id)).all() if device_ids else []
        facts: dict[str, dict[tuple, dict]] = {device: {} for device in device_ids}
        for (device, port_id, mac, network_id, ip, cidr, gateway, dhcp, dns, mtu,
             floating) in rows:  # an address with floating IPs on two networks: the last
            facts[device][port_id, ip] = {
                "id": port_id, "mac": mac, "network_id": network_id, "ip": ip, "cidr": cidr,
                "gateway": gateway, "dhcp": dhcp, "floating_ip": floating, "mtu": mtu,
                "dns": list(dns) or list(self.default_dns)}
        return {device: tuple(items.values()) for device, items in facts.items()}

    def routers_on(self, s: Session, network_id: str) -> list[str]:
        return list(s.scalars(select(Port.device_id).where(
            Port.network_id == network_id, Port.device_owner == OWNER_ROUTER_INTERFACE)
            .distinct()))

    def firewall_spec(self, s: Session) -> tuple[PortFirewall, ...]:
        """Every secured port's rules; a remote group stands for its members' addresses."""
        rows = s.execute(select(Port.id, Port.mac_address, Port.security_groups,
                                Port.network_id, IPAllocation.ip_address)
                         .outerjoin(IPAllocation, IPAllocation.port_id == Port.id)
                         .where(Port.port_security_enabled.is_(True))
                         .order_by(Port.created_at, Port.id, IPAllocation.id)).all()
        ports: dict[str, tuple[str, list, str, list[str]]] = {}  # plain rows, not ORM
        for port_id, mac, groups, network_id, ip in rows:
            ips = ports.setdefault(port_id, (mac, groups, network_id, []))[3]
            if ip is not None:
                ips.append(ip)
        members: dict[str, list[str]] = {}
        for _, groups, _, ips in ports.values():
            for group_id in groups:
                members.setdefault(group_id, []).extend(f"{ip}/32" for ip in ips)
        groups = {g.id: g for g in s.scalars(select(SecurityGroup))}

        def remotes(rule) -> tuple[str, ...] | None:
            if rule.remote_group_id is not None:
                return tuple(members.get(rule.remote_group_id, ()))
            if rule.remote_ip_prefix not in (None, "0.0.0.0/0"):
                return (rule.remote_ip_prefix,)
            return None

        # Each group's rules once, shared by its ports (per port, a remote group's member
        # list was copied into every rule of every port: N*N addresses).
        rules = {group_id: tuple(FirewallRule(r.direction, r.protocol, r.port_range_min,
                                              r.port_range_max, remotes(r), r.remote_group_id,
                                              group_id) for r in group.rules)
                 for group_id, group in groups.items()}
        return tuple(PortFirewall(
            port_id=port_id, mac=mac, ips=tuple(ips),
            rules=tuple(r for group_id in groups for r in rules.get(group_id, ())),
            network_id=network_id)
            for port_id, (mac, groups, network_id, ips) in ports.items())

    # -- what the manager calls ---------------------------------------------------------

    def network_changed(self, network_id: str, ports_only: bool = False) -> None:
        """``ports_only``: only its ports changed, so the driver may leave its links be."""
        with self.locked():
            with session_scope(self.sessions) as s:
                spec = self.network_spec(s, network_id)
            if spec is None:
                self.driver.remove_network(network_id)
            elif ports_only:
                self.driver.apply_ports(spec)
            else:
                self.driver.apply_network(spec)
            self.apply_firewall()
            self.apply_metadata(network_id)

    def ports_changed(self, network_id: str) -> None:
        self.network_changed(network_id, ports_only=True)

    def apply_metadata(self, network_id: str) -> None:
        """The metadata maps of the routers on this network (its ports changed)."""
        with session_scope(self.sessions) as s:
            maps = {r: self.metadata_spec(s, r) for r in self.routers_on(s, network_id)}
        for router_id, entries in maps.items():
            self.driver.apply_metadata(router_id, entries)

    def firewall_changed(self) -> None:
        with self.locked():
            self.apply_firewall()

    def apply_firewall(self, recheck: bool = False) -> None:
        with session_scope(self.sessions) as s:
            ports = self.firewall_spec(s)
        self.driver.apply_firewall(ports, recheck)

    def network_removed(self, network_id: str) -> None:
        with self.locked():
            self.driver.remove_network(network_id)
            self.apply_firewall()

    def router_changed(self, router_id: str, floating_only: bool = False) -> None:
        """``floating_only``: only its floating IPs changed, so the driver may leave its
        legs be."""
        with self.locked():
            with session_scope(self.sessions) as s:
                spec = self.router_spec(s, router_id)
            if spec is None:
                self.driver.remove_router(router_id)
            elif floating_only:
                self.driver.apply_floating(spec)
            else:
                self.driver.apply_router(spec)

    def floating_changed(self, router_id: str) -> None:
        self.router_changed(router_id, floating_only=True)

    def router_removed(self, router_id: str) -> None:
        with self.locked():
            self.driver.remove_router(router_id)

    def reconcile(self, wait: bool = True) -> bool:
        """Rebuilds the host from the DB; False if another process was already at it."""
        started = time.monotonic()
        with self.locked(wait) as held:
            if not held:
                return False
            with session_scope(self.sessions) as s:
                # Every network, subnet and router read at once into the session, where
                # the specs' lookups by id then find them without a query each.
                loaded = (s.scalars(select(Network)).all(), s.scalars(select(Subnet)).all(),
                          s.scalars(select(Router)).all())
                networks = [self.network_spec(s, n.id) for n in loaded[0]]
                routers = [self.router_spec(s, r.id) for r in loaded[2]]
            with self.driver.batch():
                for network in networks:
                    self.driver.apply_network(network)
                for router in routers:
                    self.driver.apply_router(router)
            self.apply_firewall(recheck=True)
            self.driver.remove_orphans({n.id for n in networks}, {r.id for r in routers})
        log.info("reconciled %d networks and %d routers in %.2f s", len(networks),
                 len(routers), time.monotonic() - started)
        return True
