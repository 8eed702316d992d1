"""Networks, subnets and ports: who may see and change what, and the addresses ports hold.

No HTTP here. Each change is one DB transaction; after it commits, the host is told to
converge (``Agent``): the DB is the truth, the host follows it, and a restart rebuilds the
host from the DB. Routers and floating IPs live in ``routers.py``, security groups in
``security_groups.py``.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from soko.common.auth import AuthContext
from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict, Forbidden
from soko.net import ipam
from soko.net.fields import Body, is_uuid, new_id
from soko.net.lookups import NETWORKS, PORTS, SUBNETS, owned, privileged
from soko.net.models import (
    NETWORK_OWNERS,
    OWNER_COMPUTE,
    OWNER_DHCP,
    IPAllocation,
    Network,
    Port,
    Subnet,
)
from soko.net.security_groups import check_groups, ensure_default_group

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
BINDABLE = ("binding:host_id", "binding:profile")  # the binding:* a request may set
T = TypeVar("T")


class Agent(Protocol):
    """What the manager tells the host after a change commits (``net/agent.py``)."""

    def network_changed(self, network_id: str) -> None: ...
    def ports_changed(self, network_id: str) -> None: ...
    def network_removed(self, network_id: str) -> None: ...
    def router_changed(self, router_id: str) -> None: ...
    def floating_changed(self, router_id: str) -> None: ...
    def router_removed(self, router_id: str) -> None: ...
    def firewall_changed(self) -> None: ...


@dataclass(frozen=True)
class Quotas:
    networks: int = 100
    ports: int = 500
    routers: int = 10
    floatingips: int = 50


def check_quota(s: Session, model: type, project_id: str, limit: int, name: str) -> None:
    used = s.scalar(select(func.count()).select_from(model).where(model.project_id == project_id))
    if used >= limit:
        raise Conflict(f"Quota exceeded for resources: ['{name}'].")


def random_mac() -> str:
    """Neutron's default base MAC, fa:16:3e, with three random octets."""
    return "fa:16:3e:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


def port_binding(auth: AuthContext, body: Body, action: str) -> dict:
    """The ``binding:*`` a request sets, as Port columns: only an admin or a service may
    say where a port is bound (Neutron's ``create_port:binding:host_id`` policy)."""
    named = [key for key in BINDABLE if key in body]
    if named and not privileged(auth):
        raise Forbidden(f"(rule:{action}:{named[0]}) is disallowed by policy")
    binding = {}
    if "binding:host_id" in body:
        binding["host_id"] = body.text("binding:host_id")
    if "binding:profile" in body:
        profile = body.get("binding:profile")
        if not isinstance(profile, dict):
            raise BadRequest(f"Invalid input for binding:profile. Reason: '{profile}' is not "
                             "a dictionary.")
        binding["binding_profile"] = profile
    return binding


def committing(work: Callable[[], T], what: str) -> T:
    """Runs one transaction; a unique constraint lost to a racing request is a 409."""
    try:
        return work()
    except IntegrityError:
        raise Conflict(f"{what} conflicts with a concurrent change; retry.") from None


class NetManager:
    def __init__(self, *, sessions: sessionmaker[Session], agent: Agent, mtu: int = 1500,
                 quotas: Quotas | None = None):
        self.sessions = sessions
        self.agent = agent
        self.mtu = mtu
        self.quotas = quotas or Quotas()

    # -- networks ---------------------------------------------------------------------

    def own_network(self, s: Session, auth: AuthContext, network_id: str) -> Network:
        network = NETWORKS.one(s, auth, network_id)
        if not owned(auth, network):
            raise Forbidden(f"Network {network_id} belongs to another project.")
        return network

    def create_network(self, auth: AuthContext, raw: object) -> Network:
        body = Body(raw, "network", {"name", "description", "admin_state_up", "shared",
                                     "router:external", "port_security_enabled", "mtu"})
        external = body.flag("router:external", False)
        shared = body.flag("shared", False)
        if (external or shared) and not auth.is_admin:
            field = "router:external" if external else "shared"
            raise Forbidden(f"(rule:create_network:{field}) is disallowed by policy")
        mtu = body.get("mtu", self.mtu)
        if isinstance(mtu, bool) or not isinstance(mtu, int) or not 576 <= mtu <= self.mtu:
            raise BadRequest(f"Invalid input for mtu. Reason: must be 576..{self.mtu}.")
        network = Network(id=new_id(), project_id=body.project(auth), name=body.text("name"),
                          description=body.text("description"), shared=shared,
                          external=external, mtu=mtu,
                          admin_state_up=body.flag("admin_state_up", True),
                          port_security_enabled=body.flag("port_security_enabled", True))
        with session_scope(self.sessions) as s:
            check_quota(s, Network, network.project_id, self.quotas.networks, "network")
            s.add(network)
            s.flush()
            s.refresh(network)
        self.agent.network_changed(network.id)
        return network

    def update_network(self, auth: AuthContext, network_id: str, raw: object) -> Network:
        body = Body(raw, "network", {"name", "description", "admin_state_up", "shared",
                                     "router:external", "port_security_enabled"})
        with session_scope(self.sessions) as s:
            network = self.own_network(s, auth, network_id)
            for field, attr in (("router:external", "external"), ("shared", "shared")):
                if field in body:
                    if not auth.is_admin:
                        raise Forbidden(f"(rule:update_network:{field}) is disallowed by policy")
                    setattr(network, attr, body.flag(field, False))
            for field in ("name", "description"):
                if field in body:
                    setattr(network, field, body.text(field))
            for field in ("admin_state_up", "port_security_enabled"):
                if field in body:
                    setattr(network, field, body.flag(field, True))
        self.agent.network_changed(network_id)
        return network

    def delete_network(self, auth: AuthContext, network_id: str) -> None:
        with session_scope(self.sessions) as s:
            network = self.own_network(s, auth, network_id)
            ports = s.scalars(select(Port).where(Port.network_id == network_id)).all()
            in_use = [p for p in ports if p.device_owner != OWNER_DHCP]
            if in_use:
                raise Conflict(f"Unable to complete operation on network {network_id}. There "
                               f"are one or more ports still in use on the network "
                               f"({len(in_use)}).")
            for port in ports:
                s.delete(port)
            s.flush()
            for subnet in network.subnets:
                s.delete(subnet)
            s.delete(network)
        self.agent.network_removed(network_id)

    # -- subnets ----------------------------------------------------------------------

    def create_subnet(self, auth: AuthContext, raw: object) -> Subnet:
        body = Body(raw, "subnet", {"name", "description", "network_id", "ip_version", "cidr",
                                    "gateway_ip", "allocation_pools", "dns_nameservers",
                                    "host_routes", "enable_dhcp"})
        if body.get("ip_version", 4) != 4:
            raise BadRequest("Invalid input for ip_version. Reason: only 4 is supported.")
        if "cidr" not in body:
            raise BadRequest("Failed to create subnet: a cidr is required (no subnet pools).")
        net = ipam.parse_cidr(body.get("cidr"))
        gw = ipam.gateway(net, body.get("gateway_ip", None), "gateway_ip" in body)
        pools = ipam.pools(net, gw, body.get("allocation_pools", None))
        subnet = Subnet(
            id=new_id(), network_id=body.uuid("network_id"), name=body.text("name"),
            description=body.text("description"), cidr=str(net),
            gateway_ip=str(gw) if gw else None,
            allocation_pools=[{"start": str(a), "end": str(b)} for a, b in pools],
            dns_nameservers=ipam.dns_nameservers(body.get("dns_nameservers", None)),
            host_routes=ipam.host_routes(body.get("host_routes", None), net),
            enable_dhcp=body.flag("enable_dhcp", True))

        def work() -> Subnet:
            with session_scope(self.sessions) as s:
                network = self.own_network(s, auth, subnet.network_id)
                subnet.project_id = body.project(auth) if auth.is_admin else network.project_id
                for other in network.subnets:
                    if ipaddress.ip_network(other.cidr).overlaps(net):
                        raise BadRequest(f"Invalid input for operation: Requested subnet with "
                                         f"cidr: {net} for network: {network.id} overlaps with "
                                         f"another subnet ({other.cidr}).")
                s.add(subnet)
                s.flush()
                self.sync_dhcp_port(s, network)
                return subnet

        committing(work, "The subnet")
        self.agent.network_changed(subnet.network_id)
        return subnet

    def update_subnet(self, auth: AuthContext, subnet_id: str, raw: object) -> Subnet:
        body = Body(raw, "subnet", {"name", "description", "dns_nameservers", "host_routes",
                                    "enable_dhcp"})
        with session_scope(self.sessions) as s:
            subnet = SUBNETS.one(s, auth, subnet_id)
            if not owned(auth, subnet.network):
                raise Forbidden(f"Subnet {subnet_id} belongs to another project.")
            for field in ("name", "description"):
                if field in body:
                    setattr(subnet, field, body.text(field))
            if "dns_nameservers" in body:
                subnet.dns_nameservers = ipam.dns_nameservers(body.get("dns_nameservers"))
            if "host_routes" in body:
                subnet.host_routes = ipam.host_routes(body.get("host_routes"),
                                                      ipaddress.ip_network(subnet.cidr))
            if "enable_dhcp" in body:
                subnet.enable_dhcp = body.flag("enable_dhcp", True)
            s.flush()
            self.sync_dhcp_port(s, subnet.network)
        self.agent.network_changed(subnet.network_id)
        return subnet

    def delete_subnet(self, auth: AuthContext, subnet_id: str) -> None:
        with session_scope(self.sessions) as s:
            subnet = SUBNETS.one(s, auth, subnet_id)
            if not owned(auth, subnet.network):
                raise Forbidden(f"Subnet {subnet_id} belongs to another project.")
            users = s.scalars(select(Port).join(IPAllocation).where(
                IPAllocation.subnet_id == subnet_id, Port.device_owner != OWNER_DHCP)).all()
            if users:
                raise Conflict(f"Unable to complete operation on subnet {subnet_id}: One or "
                               f"more ports have an IP allocation from this subnet.")
            network = subnet.network
            s.execute(IPAllocation.__table__.delete().where(IPAllocation.subnet_id == subnet_id))
            s.delete(subnet)
            s.flush()
            self.sync_dhcp_port(s, network)
        self.agent.network_changed(network.id)

    def sync_dhcp_port(self, s: Session, network: Network) -> None:
        """The network's DHCP port holds one address on each subnet with DHCP on (as
        Neutron's); it goes when no such subnet is left."""
        dhcp_subnets = list(s.scalars(select(Subnet).where(Subnet.network_id == network.id,
                                                           Subnet.enable_dhcp.is_(True))))
        port = s.scalars(select(Port).where(Port.network_id == network.id,
                                            Port.device_owner == OWNER_DHCP)).first()
        if not dhcp_subnets:
            if port is not None:
                s.delete(port)
            return
        if port is None:
            port = Port(id=new_id(), project_id=network.project_id, network_id=network.id,
                        mac_address=random_mac(), device_owner=OWNER_DHCP,
                        device_id=f"dhcp-{network.id}", port_security_enabled=False)
            s.add(port)
        held = {a.subnet_id for a in port.fixed_ips}
        for sub in dhcp_subnets:
            if sub.id not in held:
                port.fixed_ips.append(IPAllocation(subnet_id=sub.id,
                                                   ip_address=self.next_free(s, sub)))
        wanted = {sub.id for sub in dhcp_subnets}
        port.fixed_ips = [a for a in port.fixed_ips if a.subnet_id in wanted]

    # -- addresses --------------------------------------------------------------------

    def next_free(self, s: Session, subnet: Subnet) -> str:
        taken = set(s.scalars(select(IPAllocation.ip_address)
                              .where(IPAllocation.subnet_id == subnet.id)))
        for addr in ipam.free_addresses(subnet.allocation_pools, taken):
            return addr
        raise Conflict(f"No more IP addresses available on subnet {subnet.id}.")

    def allocate(self, s: Session, network: Network, requested: object, *,
                 gateway_ok: bool = False) -> list[IPAllocation]:
        """The addresses for a new port: as requested, or the next free one."""
        if requested is None:
            for subnet in network.subnets:
                try:
                    return [IPAllocation(subnet_id=subnet.id,
                                         ip_address=self.next_free(s, subnet))]
                except Conflict:
                    continue
            if network.subnets:
                raise Conflict(f"No more IP addresses available on network {network.id}.")
            return []
        if not isinstance(requested, list):
            raise BadRequest("Invalid input for fixed_ips. Reason: a list is expected.")
        result = []
        for item in requested:
            result.append(self.fixed_ip(s, network, item, gateway_ok))
        return result

    def fixed_ip(self, s: Session, network: Network, item: object,
                 gateway_ok: bool) -> IPAllocation:
        if not isinstance(item, dict) or not item or set(item) - {"subnet_id", "ip_address"}:
            raise BadRequest('Invalid input for fixed_ips. Reason: each entry is '
                             '{"subnet_id": ..., "ip_address": ...}.')
        subnets = {sub.id: sub for sub in network.subnets}
        if "subnet_id" in item:
            if not is_uuid(item["subnet_id"]):
                raise BadRequest(f"Invalid input for fixed_ips. Reason: '{item['subnet_id']}' "
                                 "is not a valid UUID.")
            subnet = subnets.get(item["subnet_id"])
            if subnet is None:
                raise BadRequest(f"Invalid input for operation: subnet {item['subnet_id']} "
                                 f"is not on network {network.id}.")
        else:
            addr = ipam.parse_address("fixed_ips", item["ip_address"])
            subnet = next((sub for sub in subnets.values()
                           if addr in ipaddress.ip_network(sub.cidr)), None)
            if subnet is None:
                raise BadRequest(f"Invalid input for operation: IP address {addr} is not a "
                                 f"valid IP for any of the subnets on network {network.id}.")
        if "ip_address" not in item:
            return IPAllocation(subnet_id=subnet.id, ip_address=self.next_free(s, subnet))
        addr = ipam.parse_address("fixed_ips", item["ip_address"])
        ipam.check_inside("fixed_ips", addr, ipaddress.ip_network(subnet.cidr))
        if str(addr) == subnet.gateway_ip and not gateway_ok:
            raise Conflict(f"IP address {addr} is the gateway of subnet {subnet.id}.")
        if s.scalar(select(IPAllocation.id).where(IPAllocation.subnet_id == subnet.id,
                                                  IPAllocation.ip_address == str(addr))):
            raise Conflict(f"IP address {addr} already allocated in subnet {subnet.id}")
        return IPAllocation(subnet_id=subnet.id, ip_address=str(addr))

    # -- ports ------------------------------------------------------------------------

    def create_port(self, auth: AuthContext, raw: object) -> Port:
        body = Body(raw, "port", {"name", "description", "network_id", "mac_address",
                                  "fixed_ips", "device_id", "device_owner", "admin_state_up",
                                  "security_groups", "port_security_enabled", *BINDABLE})
        binding = port_binding(auth, body, "create_port")
        network_id = body.uuid("network_id")
        owner = body.text("device_owner")
        if owner in NETWORK_OWNERS and not auth.is_admin:
            raise Forbidden(f"(rule:create_port:device_owner) {owner} is for the network "
                            "service itself")
        mac = body.get("mac_address", None)
        if mac is not None and (not isinstance(mac, str) or not MAC.match(mac.lower())
                                or int(mac[:2], 16) & 1):
            raise BadRequest(f"Invalid input for mac_address. Reason: '{mac}' is not a valid "
                             "unicast MAC address.")

        def work() -> Port:
            with session_scope(self.sessions) as s:
                network = NETWORKS.one(s, auth, network_id)
                if not (owned(auth, network) or network.shared):  # an external one is seen
                    raise Forbidden(f"(rule:create_port) network {network.id} is another "
                                    "project's and not shared: use a floating IP on it")
                project = body.project(auth)
                check_quota(s, Port, project, self.quotas.ports, "port")
                security = body.flag("port_security_enabled", network.port_security_enabled)
                groups = body.get("security_groups", None)
                if groups is None:
                    groups = [ensure_default_group(s, project).id] if security else []
                elif groups:
                    if not security:
                        raise BadRequest("Port has security group associated. Cannot disable "
                                         "port security or IP address until security group "
                                         "is removed")
                    check_groups(s, auth, groups)
                port_mac = mac.lower() if mac else random_mac()
                if s.scalar(select(Port.id).where(Port.network_id == network.id,
                                                  Port.mac_address == port_mac)):
                    raise Conflict(f"Unable to complete operation for network {network.id}. "
                                   f"The mac address {port_mac} is in use.")
                port = Port(id=new_id(), project_id=project, network_id=network.id,
                            name=body.text("name"), description=body.text("description"),
                            mac_address=port_mac, device_id=body.text("device_id"),
                            device_owner=owner, admin_state_up=body.flag("admin_state_up", True),
                            port_security_enabled=security, security_groups=list(groups),
                            **binding)
                port.fixed_ips = self.allocate(s, network, body.get("fixed_ips", None))
                s.add(port)
                s.flush()
                return port

        port = committing(work, "The port")
        self.agent.ports_changed(port.network_id)
        return port

    def update_port(self, auth: AuthContext, port_id: str, raw: object) -> Port:
        body = Body(raw, "port", {"name", "description", "device_id", "device_owner",
                                  "admin_state_up", "security_groups", "port_security_enabled",
                                  *BINDABLE})
        binding = port_binding(auth, body, "update_port")
        with session_scope(self.sessions) as s:
            port = PORTS.one(s, auth, port_id)
            for field, value in binding.items():
                setattr(port, field, value)
            device = body.text("device_id", port.device_id)
            if port.device_id and device and device != port.device_id:
                raise Conflict(f"Unable to complete operation on port {port_id} for network "
                               f"{port.network_id}. Port already has an attached device "
                               f"{port.device_id}.")
            for field in ("name", "description", "device_id", "device_owner"):
                if field in body:
                    setattr(port, field, body.text(field))
            if "admin_state_up" in body:
                port.admin_state_up = body.flag("admin_state_up", True)
            if "security_groups" in body:
                groups = body.get("security_groups") or []
                check_groups(s, auth, groups)
                port.security_groups = list(groups)
            if "port_security_enabled" in body:
                port.port_security_enabled = body.flag("port_security_enabled", True)
            if port.security_groups and not port.port_security_enabled:
                raise BadRequest("Port has security group associated. Cannot disable port "
                                 "security or IP address until security group is removed")
        self.agent.ports_changed(port.network_id)
        return port

    def delete_port(self, auth: AuthContext, port_id: str,
                    on_delete: Callable[[Session, Port], list[str]]) -> None:
        """``on_delete`` releases what points at the port (floating IPs) and names the
        routers that changed."""
        with session_scope(self.sessions) as s:
            port = PORTS.one(s, auth, port_id)
            if port.device_owner in NETWORK_OWNERS and not auth.is_admin:
                raise Conflict(f"Port {port_id} cannot be deleted directly via the port API: "
                               f"it is owned by {port.device_owner}.")
            if port.device_owner.startswith(OWNER_COMPUTE) and port.device_id:
                raise Conflict(f"Port {port_id} is in use by server {port.device_id}: delete "
                               "the server first (or unbind the port: device_id '').")
            routers = on_delete(s, port)
            network_id = port.network_id
            s.delete(port)
        self.agent.ports_changed(network_id)
        for router_id in routers:
            self.agent.router_changed(router_id)
