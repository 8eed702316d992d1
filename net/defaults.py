"""The networks ``soko up`` makes on first start, as devstack does: an external ``public``
(admin's, its gateway held by the host so floating IPs answer from the host) and, for the
demo project, ``private`` with ``router1`` gatewayed to ``public``.

Made through the managers with the owning project's identity, so every check the API makes
applies. Each piece is looked up by name first, so a second ``soko up`` adds nothing (and
one the operator deleted comes back; ``public_cidr = ""`` turns the defaults off).
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import select

from soko.common.auth import AuthContext
from soko.common.config import Config
from soko.common.db import session_scope
from soko.net.manager import NetManager
from soko.net.models import Network, Router
from soko.net.routers import RouterManager, interfaces
from soko.net.service import NetConfig

PUBLIC, PRIVATE, ROUTER = "public", "private", "router1"


def project_ids(config: Config) -> dict[str, str]:
    """The ids of identity's ``admin`` and ``demo`` projects (made by its bootstrap)."""
    from soko.identity.bootstrap import ADMIN, DEMO
    from soko.identity.manager import IdentityManager

    identity = IdentityManager.from_config(config)
    return {name: found[0]["id"] for name in (ADMIN, DEMO)
            if (found := identity.list_projects(name=name))}


def acting_for(project_id: str, admin: bool) -> AuthContext:
    return AuthContext(user_id="soko-up", user_name="soko-up", project_id=project_id,
                       project_name="", roles=frozenset({"admin" if admin else "member"}),
                       expires_at=float("inf"))


def named(nets: NetManager, model: type, project_id: str, name: str):
    with session_scope(nets.sessions) as s:
        return s.scalars(select(model).where(model.project_id == project_id,
                                             model.name == name)).first()


def ensure_default_networks(config: Config, nets: NetManager) -> list[str]:
    """Makes what is missing; returns lines for ``soko up`` to print."""
    section: NetConfig = config.section("net")
    projects = project_ids(config)
    if not section.public_cidr or "admin" not in projects:
        return []
    admin = acting_for(projects["admin"], admin=True)
    public = named(nets, Network, admin.project_id, PUBLIC)
    if public is None:
        public = nets.create_network(admin, {"network": {"name": PUBLIC,
                                                         "router:external": True}})
        nets.create_subnet(admin, {"subnet": {"name": f"{PUBLIC}-subnet",
                                              "network_id": public.id,
                                              "cidr": section.public_cidr,
                                              "enable_dhcp": False}})
    gateway = next(ipaddress.ip_network(section.public_cidr).hosts())
    lines = [f"net: external network {PUBLIC} {section.public_cidr} (this host is {gateway})"]
    if not section.private_cidr or "demo" not in projects:
        return lines
    demo = acting_for(projects["demo"], admin=False)
    routers = RouterManager(nets)
    private = named(nets, Network, demo.project_id, PRIVATE)
    if private is None:
        private = nets.create_network(demo, {"network": {"name": PRIVATE}})
        nets.create_subnet(demo, {"subnet": {"name": f"{PRIVATE}-subnet",
                                             "network_id": private.id,
                                             "cidr": section.private_cidr}})
    router = named(nets, Router, demo.project_id, ROUTER)
    if router is None:
        router = routers.create_router(demo, {"router": {
            "name": ROUTER, "external_gateway_info": {"network_id": public.id}}})
    with session_scope(nets.sessions) as s:
        joined = {a.subnet_id for port in interfaces(s, router.id) for a in port.fixed_ips}
        subnets = [sub.id for sub in s.get(Network, private.id).subnets]
    for subnet_id in subnets[:1]:
        if subnet_id not in joined:
            routers.add_interface(demo, router.id, {"subnet_id": subnet_id})
    return lines + [f"net: demo project: network {PRIVATE} {section.private_cidr}, "
                    f"router {ROUTER} to {PUBLIC}"]
