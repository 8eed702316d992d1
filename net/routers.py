"""Routers (external gateway, interfaces on tenant subnets) and floating IPs.

A router's legs are ports (``network:router_interface`` holding the subnet's gateway
address, ``network:router_gateway`` holding an address on the external network), and a
floating IP holds its address through a ``network:floatingip`` port: the same allocation
table guards every address. A floating IP is served by the router that joins its external
network to the subnet of the port it points at; without one it is refused (404, as Neutron).
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from soko.common.auth import AuthContext
from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict, Forbidden, NotFound
from soko.net.fields import Body, is_uuid, new_id
from soko.net.lookups import FLOATING_IPS, NETWORKS, PORTS, ROUTERS, SUBNETS, owned
from soko.net.manager import NetManager, check_quota, committing, random_mac
from soko.net.models import (
    OWNER_FLOATINGIP,
    OWNER_ROUTER_GATEWAY,
    OWNER_ROUTER_INTERFACE,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    Router,
    Subnet,
)


def interfaces(s: Session, router_id: str) -> list[Port]:
    return list(s.scalars(select(Port).where(Port.device_id == router_id,
                                             Port.device_owner == OWNER_ROUTER_INTERFACE)))


class RouterManager:
    def __init__(self, nets: NetManager):
        self.nets = nets
        self.sessions = nets.sessions
        self.agent = nets.agent

    # -- routers ----------------------------------------------------------------------

    def create_router(self, auth: AuthContext, raw: object) -> Router:
        body = Body(raw, "router", {"name", "description", "admin_state_up",
                                    "external_gateway_info"})
        router = Router(id=new_id(), project_id=body.project(auth), name=body.text("name"),
                        description=body.text("description"),
                        admin_state_up=body.flag("admin_state_up", True))

        def work() -> Router:
            with session_scope(self.sessions) as s:
                check_quota(s, Router, router.project_id, self.nets.quotas.routers, "router")
                s.add(router)
                s.flush()
                self.set_gateway(s, auth, router, body.get("external_gateway_info", None))
                s.flush()
                s.refresh(router)
                return router

        committing(work, "The router")
        self.agent.router_changed(router.id)
        return router

    def update_router(self, auth: AuthContext, router_id: str, raw: object) -> Router:
        body = Body(raw, "router", {"name", "description", "admin_state_up",
                                    "external_gateway_info"})

        def work() -> Router:
            with session_scope(self.sessions) as s:
                router = ROUTERS.one(s, auth, router_id)
                for field in ("name", "description"):
                    if field in body:
                        setattr(router, field, body.text(field))
                if "admin_state_up" in body:
                    router.admin_state_up = body.flag("admin_state_up", True)
                if "external_gateway_info" in body:
                    self.set_gateway(s, auth, router, body.get("external_gateway_info"))
                s.flush()
                s.refresh(router)
                return router

        router = committing(work, "The router")
        self.agent.router_changed(router_id)
        return router

    def set_gateway(self, s: Session, auth: AuthContext, router: Router, info: object) -> None:
        """Sets (or with ``null``/``{}`` clears) the router's external gateway."""
        if info in (None, {}):
            if router.gw_port_id is None:
                return
            if s.scalar(select(FloatingIP.id).where(FloatingIP.router_id == router.id)):
                raise Conflict(f"Gateway cannot be updated for router {router.id}, since a "
                               "gateway to external network is required by one or more "
                               "floating IPs.")
            port = router.gw_port
            router.gw_port_id = None
            s.flush()
            s.delete(port)
            return
        if not isinstance(info, dict) or set(info) - {"network_id", "enable_snat",
                                                      "external_fixed_ips"}:
            raise BadRequest("Invalid input for external_gateway_info. Reason: expected "
                             '{"network_id": ..., "enable_snat": ..., "external_fixed_ips": ...}.')
        gw = Body({"g": info}, "g", {"network_id", "enable_snat", "external_fixed_ips"})
        network = NETWORKS.one(s, auth, gw.uuid("network_id"))
        if not network.external:
            raise BadRequest(f"Bad router request: External network {network.id} is not a "
                             "valid external network.")
        router.enable_snat = gw.flag("enable_snat", True)
        port = router.gw_port
        if port is not None and port.network_id == network.id and \
                "external_fixed_ips" not in gw:
            return
        if port is not None:
            self.set_gateway(s, auth, router, None)
        if not network.subnets:
            raise BadRequest(f"Bad router request: external network {network.id} has no "
                             "subnet to take an address from.")
        port = Port(id=new_id(), project_id=router.project_id, network_id=network.id,
                    mac_address=random_mac(), device_owner=OWNER_ROUTER_GATEWAY,
                    device_id=router.id, port_security_enabled=False)
        port.fixed_ips = self.nets.allocate(s, network, gw.get("external_fixed_ips", None))
        s.add(port)
        s.flush()
        router.gw_port_id = port.id

    def delete_router(self, auth: AuthContext, router_id: str) -> None:
        with session_scope(self.sessions) as s:
            router = ROUTERS.one(s, auth, router_id)
            legs = interfaces(s, router_id)
            if legs:
                raise Conflict(f"Router {router_id} still has ports ({len(legs)} "
                               "interface(s)); remove them with remove_router_interface first.")
            gw_port = router.gw_port
            router.gw_port_id = None
            s.flush()
            if gw_port is not None:
                s.delete(gw_port)
            s.delete(router)
        self.agent.router_removed(router_id)

    # -- interfaces -------------------------------------------------------------------

    def add_interface(self, auth: AuthContext, router_id: str, raw: object) -> dict:
        if not isinstance(raw, dict) or len(set(raw) & {"subnet_id", "port_id"}) != 1 or \
                set(raw) - {"subnet_id", "port_id"}:
            raise BadRequest("Bad router request: Either subnet_id or port_id must be "
                             "specified.")
        key = "subnet_id" if "subnet_id" in raw else "port_id"
        if not is_uuid(raw[key]):
            raise BadRequest(f"Invalid input for {key}. Reason: '{raw[key]}' is not a valid "
                             "UUID.")

        def work() -> tuple[Port, Subnet]:
            with session_scope(self.sessions) as s:
                router = ROUTERS.one(s, auth, router_id)
                if key == "subnet_id":
                    port, subnet = self.gateway_port(s, auth, router, raw[key])
                else:
                    port, subnet = self.adopt_port(s, auth, router, raw[key])
                taken = [s.get(Subnet, a.subnet_id) for leg in interfaces(s, router_id)
                         for a in leg.fixed_ips]
                for other in taken:
                    if ipaddress.ip_network(other.cidr).overlaps(
                            ipaddress.ip_network(subnet.cidr)):
                        raise BadRequest(f"Bad router request: Cidr {subnet.cidr} of subnet "
                                         f"{subnet.id} overlaps with cidr {other.cidr} of "
                                         f"subnet {other.id}.")
                port.device_owner = OWNER_ROUTER_INTERFACE
                port.device_id = router.id
                s.add(port)
                s.flush()
                return port, subnet

        port, subnet = committing(work, "The router interface")
        self.agent.network_changed(port.network_id)
        self.agent.router_changed(router_id)
        return {"id": router_id, "port_id": port.id, "subnet_id": subnet.id,
                "subnet_ids": [subnet.id], "network_id": port.network_id,
                "project_id": port.project_id, "tenant_id": port.project_id}

    def gateway_port(self, s: Session, auth: AuthContext, router: Router,
                     subnet_id: str) -> tuple[Port, Subnet]:
        subnet = SUBNETS.one(s, auth, subnet_id)
        if not owned(auth, subnet.network):
            raise NotFound(f"Subnet {subnet_id} could not be found.")
        if subnet.gateway_ip is None:
            raise BadRequest(f"Bad router request: Subnet {subnet_id} does not have a "
                             "gateway IP.")
        port = Port(id=new_id(), project_id=router.project_id, network_id=subnet.network_id,
                    mac_address=random_mac(), port_security_enabled=False)
        port.fixed_ips = self.nets.allocate(
            s, subnet.network, [{"subnet_id": subnet.id, "ip_address": subnet.gateway_ip}],
            gateway_ok=True)
        return port, subnet

    def adopt_port(self, s: Session, auth: AuthContext, router: Router,
                   port_id: str) -> tuple[Port, Subnet]:
        port = PORTS.one(s, auth, port_id)
        if port.device_id or port.device_owner:
            raise Conflict(f"Port {port_id} is in use by {port.device_owner or 'a device'} "
                           f"{port.device_id}.")
        if len(port.fixed_ips) != 1:
            raise BadRequest(f"Bad router request: Router port must have exactly one fixed "
                             f"IP; port {port_id} has {len(port.fixed_ips)}.")
        return port, s.get(Subnet, port.fixed_ips[0].subnet_id)

    def remove_interface(self, auth: AuthContext, router_id: str, raw: object) -> dict:
        if not isinstance(raw, dict) or not ({"subnet_id", "port_id"} & set(raw)):
            raise BadRequest("Bad router request: Either subnet_id or port_id must be "
                             "specified.")
        with session_scope(self.sessions) as s:
            ROUTERS.one(s, auth, router_id)
            legs = interfaces(s, router_id)
            port = next((leg for leg in legs if leg.id == raw.get("port_id", leg.id) and
                         any(a.subnet_id == raw.get("subnet_id", a.subnet_id)
                             for a in leg.fixed_ips)), None)
            if port is None:
                what = raw.get("port_id") or raw.get("subnet_id")
                raise NotFound(f"Router {router_id} does not have an interface with id "
                               f"{what}")
            subnet_id = port.fixed_ips[0].subnet_id
            if self.floating_ips_via(s, router_id, subnet_id):
                raise Conflict(f"Router interface for subnet {subnet_id} on router "
                               f"{router_id} cannot be deleted, as it is required by one or "
                               "more floating IPs.")
            result = {"id": router_id, "port_id": port.id, "subnet_id": subnet_id,
                      "subnet_ids": [subnet_id], "network_id": port.network_id,
                      "project_id": port.project_id, "tenant_id": port.project_id}
            s.delete(port)
        self.agent.network_changed(result["network_id"])
        self.agent.router_changed(router_id)
        return result

    def floating_ips_via(self, s: Session, router_id: str, subnet_id: str) -> list[str]:
        return list(s.scalars(
            select(FloatingIP.id).join(IPAllocation, IPAllocation.port_id == FloatingIP.port_id)
            .where(FloatingIP.router_id == router_id, IPAllocation.subnet_id == subnet_id)))

    # -- floating IPs -----------------------------------------------------------------

    def create_floating_ip(self, auth: AuthContext, raw: object) -> FloatingIP:
        body = Body(raw, "floatingip", {"floating_network_id", "floating_ip_address", "port_id",
                                        "fixed_ip_address", "description", "subnet_id"})
        network_id = body.uuid("floating_network_id")
        address = body.get("floating_ip_address", None)
        if address is not None and not auth.is_admin:
            raise Forbidden("(rule:create_floatingip:floating_ip_address) is disallowed by "
                            "policy")

        def work() -> FloatingIP:
            with session_scope(self.sessions) as s:
                network: Network = NETWORKS.one(s, auth, network_id)
                if not network.external:
                    raise BadRequest(f"Bad floatingip request: Network {network_id} is not a "
                                     "valid external network.")
                project = body.project(auth)
                check_quota(s, FloatingIP, project, self.nets.quotas.floatingips, "floatingip")
                wanted = None
                if address is not None:
                    wanted = [{"ip_address": address}]
                elif "subnet_id" in body:
                    wanted = [{"subnet_id": body.uuid("subnet_id")}]
                holder = Port(id=new_id(), project_id=project, network_id=network.id,
                              mac_address=random_mac(), device_owner=OWNER_FLOATINGIP,
                              port_security_enabled=False)
                holder.fixed_ips = self.nets.allocate(s, network, wanted)
                if not holder.fixed_ips:
                    raise BadRequest(f"Bad floatingip request: network {network_id} has no "
                                     "subnet.")
                s.add(holder)
                s.flush()
                fip = FloatingIP(id=new_id(), project_id=project, floating_network_id=network.id,
                                 floating_port_id=holder.id,
                                 floating_ip_address=holder.fixed_ips[0].ip_address,
                                 description=body.text("description"))
                holder.device_id = fip.id
                s.add(fip)
                if body.get("port_id", None) is not None:
                    self.associate(s, auth, fip, body.uuid("port_id"),
                                   body.get("fixed_ip_address", None))
                return fip

        fip = committing(work, "The floating IP")
        if fip.router_id:
            self.agent.floating_changed(fip.router_id)
        return fip

    def update_floating_ip(self, auth: AuthContext, fip_id: str, raw: object) -> FloatingIP:
        body = Body(raw, "floatingip", {"port_id", "fixed_ip_address", "description"})

        def work() -> tuple[FloatingIP, str | None]:
            with session_scope(self.sessions) as s:
                fip = FLOATING_IPS.one(s, auth, fip_id)
                before = fip.router_id
                if "description" in body:
                    fip.description = body.text("description")
                if "port_id" in body:
                    port_id = body.uuid("port_id", required=False)
                    if port_id is None:
                        fip.port_id = fip.fixed_ip_address = fip.router_id = None
                    else:
                        self.associate(s, auth, fip, port_id, body.get("fixed_ip_address", None))
                return fip, before

        fip, before = committing(work, "The floating IP")
        for router_id in {before, fip.router_id} - {None}:
            self.agent.floating_changed(router_id)
        return fip

    def associate(self, s: Session, auth: AuthContext, fip: FloatingIP, port_id: str,
                  fixed_ip: object) -> None:
        port = PORTS.one(s, auth, port_id)
        choices = [a for a in port.fixed_ips if fixed_ip in (None, a.ip_address)]
        if not choices:
            raise BadRequest(f"Bad floatingip request: Port {port_id} does not have fixed ip "
                             f"{fixed_ip}." if fixed_ip else f"Bad floatingip request: Port "
                             f"{port_id} has no fixed IP.")
        allocation = choices[0]
        router_id = s.scalar(
            select(Router.id).join(Port, Port.id == Router.gw_port_id)
            .where(Port.network_id == fip.floating_network_id,
                   Router.id.in_(select(Port.device_id).join(IPAllocation).where(
                       Port.device_owner == OWNER_ROUTER_INTERFACE,
                       IPAllocation.subnet_id == allocation.subnet_id))))
        if router_id is None:
            raise NotFound(f"External network {fip.floating_network_id} is not reachable from "
                           f"subnet {allocation.subnet_id}.  Therefore, cannot associate Port "
                           f"{port_id} with a Floating IP.")
        clash = s.scalar(select(FloatingIP.id).where(
            FloatingIP.port_id == port_id, FloatingIP.fixed_ip_address == allocation.ip_address,
            FloatingIP.floating_network_id == fip.floating_network_id, FloatingIP.id != fip.id))
        if clash:
            raise Conflict(f"Cannot associate floating IP {fip.floating_ip_address} ({fip.id}) "
                           f"with port {port_id} using fixed IP {allocation.ip_address}, as that "
                           f"fixed IP already has a floating IP on external network "
                           f"{fip.floating_network_id}.")
        fip.port_id, fip.fixed_ip_address, fip.router_id = (port_id, allocation.ip_address,
                                                            router_id)

    def delete_floating_ip(self, auth: AuthContext, fip_id: str) -> None:
        with session_scope(self.sessions) as s:
            fip = FLOATING_IPS.one(s, auth, fip_id)
            router_id = fip.router_id
            holder = s.get(Port, fip.floating_port_id)
            s.delete(fip)
            s.flush()
            s.delete(holder)
        if router_id:
            self.agent.floating_changed(router_id)

    def release_port(self, s: Session, port: Port) -> list[str]:
        """Before a port goes: its floating IPs are disassociated (kept for the project,
        as Neutron does); returns the routers that changed."""
        changed = set()
        for fip in s.scalars(select(FloatingIP).where(FloatingIP.port_id == port.id)):
            changed.add(fip.router_id)
            fip.port_id = fip.fixed_ip_address = fip.router_id = None
        if port.device_owner == OWNER_ROUTER_INTERFACE:
            changed.add(port.device_id)
        return sorted(changed - {None})


