"""``soko network topology``: networks with what is plugged into each (DHCP server, router
legs, instances with their floating IPs), as one tree; routers appear on every network
they join, so the path from an instance to the outside reads top to bottom."""

from __future__ import annotations

from soko.net.models import (
    OWNER_COMPUTE,
    OWNER_DHCP,
    OWNER_FLOATINGIP,
    OWNER_ROUTER_GATEWAY,
    OWNER_ROUTER_INTERFACE,
)

KINDS = {OWNER_DHCP: "dhcp", OWNER_ROUTER_INTERFACE: "router", OWNER_ROUTER_GATEWAY: "router"}


def plugged(port: dict, routers: dict, servers: dict, floating: list[dict]) -> dict:
    owner = port["device_owner"]
    kind = KINDS.get(owner) or ("server" if owner.startswith(OWNER_COMPUTE) else "port")
    names = {"router": routers, "server": servers}.get(kind, {})
    entry = {"kind": kind, "port_id": port["id"], "device_id": port["device_id"],
             "name": names.get(port["device_id"], port["name"]), "mac": port["mac_address"],
             "fixed_ips": [a["ip_address"] for a in port["fixed_ips"]]}
    if owner == OWNER_ROUTER_GATEWAY:
        entry["gateway"] = True
    if kind in ("server", "port"):
        entry["floating_ips"] = [f["floating_ip_address"] for f in floating
                                 if f["port_id"] == port["id"]]
    return entry


def topology(networks: list[dict], subnets: list[dict], ports: list[dict],
             routers: list[dict], floating: list[dict], servers: dict[str, str]) -> dict:
    """The tree as data (``--format json``); ``servers`` names instances by id."""
    router_names = {r["id"]: r["name"] for r in routers}
    cidrs: dict[str, list[str]] = {}
    for sub in subnets:
        cidrs.setdefault(sub["network_id"], []).append(sub["cidr"])
    return {"networks": [
        {"id": n["id"], "name": n["name"], "external": n["router:external"],
         "shared": n["shared"], "cidrs": cidrs.get(n["id"], []),
         "ports": [plugged(p, router_names, servers, floating) for p in ports
                   if p["network_id"] == n["id"] and p["device_owner"] != OWNER_FLOATINGIP]}
        for n in networks]}


def render(tree: dict) -> str:
    """The tree as text, one line per network and per thing plugged into it."""
    lines = []
    for net in tree["networks"]:
        flags = " external" if net["external"] else (" shared" if net["shared"] else "")
        lines.append(f"network {net['name'] or '-'} ({net['id']}){flags} "
                     f"{', '.join(net['cidrs']) or 'no subnet'}")
        for i, port in enumerate(net["ports"]):
            label = f"{port['kind']} {port['name'] or '-'}"
            if port["kind"] in ("router", "server"):
                label += f" ({port['device_id']})"
            label += f": {', '.join(port['fixed_ips']) or 'no address'}"
            if port.get("gateway"):
                label += " (gateway)"
            if port["kind"] in ("server", "port"):
                label += f" {port['mac']}"
            if port.get("floating_ips"):
                label += f", floating {', '.join(port['floating_ips'])}"
            lines.append(("└── " if i == len(net["ports"]) - 1 else "├── ") + label)
    return "\n".join(lines)
