"""Rows as Neutron v2.0 shows them: field names and shapes clients (openstacksdk, the
openstack CLI) parse."""

from __future__ import annotations

from soko.common.auth import AuthContext
from soko.net.lookups import privileged
from soko.net.models import FloatingIP, Network, Port, Router, SecurityGroup, SecurityGroupRule
from soko.net.models import Subnet as SubnetRow


def iso(value) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value is not None else None


def common(row) -> dict:
    return {"id": row.id, "project_id": row.project_id, "tenant_id": row.project_id,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
            "description": row.description, "revision_number": 0, "tags": []}


def network_view(n: Network) -> dict:
    return {**common(n), "name": n.name, "admin_state_up": n.admin_state_up,
            "status": "ACTIVE", "subnets": [s.id for s in n.subnets], "shared": n.shared,
            "router:external": n.external, "mtu": n.mtu,
            "port_security_enabled": n.port_security_enabled,
            "availability_zones": ["nova"], "availability_zone_hints": [],
            "is_default": False}


def subnet_view(s: SubnetRow) -> dict:
    return {**common(s), "name": s.name, "network_id": s.network_id,
            "ip_version": s.ip_version, "cidr": s.cidr, "gateway_ip": s.gateway_ip,
            "allocation_pools": s.allocation_pools, "dns_nameservers": s.dns_nameservers,
            "host_routes": s.host_routes, "enable_dhcp": s.enable_dhcp,
            "ipv6_ra_mode": None, "ipv6_address_mode": None, "subnetpool_id": None,
            "service_types": []}


# Where and how a port is bound: read only by an admin or a service (``port_for``).
BINDING = frozenset({"binding:host_id", "binding:profile", "binding:vif_type",
                     "binding:vif_details"})


def port_view(p: Port, plugging=None) -> dict:
    """``plugging`` (the host driver: ``bridge_name``, ``tap_name``) adds Neutron's
    linuxbridge binding: where compute plugs the port's tap so its rules apply."""
    binding = {"binding:host_id": p.host_id, "binding:profile": p.binding_profile or {}}
    if plugging is not None:
        binding |= {"binding:vif_type": "bridge", "binding:vif_details": {
            "bridge_name": plugging.bridge_name(p.network_id),
            "tap_name": plugging.tap_name(p.id), "port_filter": p.port_security_enabled}}
    return {**common(p), **binding, "name": p.name, "network_id": p.network_id,
            "mac_address": p.mac_address, "admin_state_up": p.admin_state_up,
            "status": "ACTIVE" if p.device_owner else "DOWN",
            "fixed_ips": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address}
                          for a in p.fixed_ips],
            "device_id": p.device_id, "device_owner": p.device_owner,
            "security_groups": p.security_groups,
            "port_security_enabled": p.port_security_enabled,
            "allowed_address_pairs": [], "extra_dhcp_opts": [], "binding:vnic_type": "normal"}


def port_for(auth: AuthContext, shown: dict) -> dict:
    """Neutron's ``get_port:binding:*`` policy: a tenant sees its port, not the host it is
    bound to nor the host's plumbing behind it."""
    return shown if privileged(auth) else {k: v for k, v in shown.items() if k not in BINDING}


def router_view(r: Router) -> dict:
    gateway = None
    if r.gw_port is not None:
        gateway = {"network_id": r.gw_port.network_id, "enable_snat": r.enable_snat,
                   "external_fixed_ips": [{"subnet_id": a.subnet_id, "ip_address": a.ip_address}
                                          for a in r.gw_port.fixed_ips]}
    return {**common(r), "name": r.name, "admin_state_up": r.admin_state_up,
            "status": "ACTIVE", "external_gateway_info": gateway, "routes": [],
            "distributed": False, "ha": False, "availability_zones": ["nova"]}


def floating_ip_view(f: FloatingIP) -> dict:
    return {"id": f.id, "project_id": f.project_id, "tenant_id": f.project_id,
            "description": f.description, "floating_network_id": f.floating_network_id,
            "floating_ip_address": f.floating_ip_address, "port_id": f.port_id,
            "fixed_ip_address": f.fixed_ip_address, "router_id": f.router_id,
            "status": "ACTIVE" if f.port_id else "DOWN", "port_details": None,
            "created_at": iso(f.created_at), "updated_at": iso(f.updated_at),
            "revision_number": 0, "tags": []}


def security_group_rule_view(r: SecurityGroupRule) -> dict:
    return {"id": r.id, "project_id": r.project_id, "tenant_id": r.project_id,
            "security_group_id": r.security_group_id, "description": r.description,
            "direction": r.direction, "ethertype": r.ethertype, "protocol": r.protocol,
            "port_range_min": r.port_range_min, "port_range_max": r.port_range_max,
            "remote_ip_prefix": r.remote_ip_prefix, "remote_group_id": r.remote_group_id,
            "created_at": iso(r.created_at), "updated_at": iso(r.updated_at),
            "revision_number": 0}


def security_group_view(g: SecurityGroup) -> dict:
    return {**common(g), "name": g.name, "stateful": True,
            "security_group_rules": [security_group_rule_view(r) for r in g.rules]}
