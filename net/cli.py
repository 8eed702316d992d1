"""``soko network|subnet|port|router|floating ip|security group ...``: openstack-client's
verbs over the network API, ``--format json`` for scripts.

Resources are named by id or by name (a floating IP also by its address), as the openstack
client does. Connecting works as for ``soko volume``: ``--os-url``/``$SOKO_NET_URL`` with a
token, or a password login whose catalog names the ``network`` endpoint.
"""

from __future__ import annotations

import os

import click

from soko.block.cli import BlockClient
from soko.common.cli.login import login_options
from soko.common.cli.output import emit_record, emit_rows, format_option

LOGIN = ("SOKO_NET_URL", "Network endpoint, e.g. http://127.0.0.1:9696")


class NetClient(BlockClient):
    catalog_type = "network"
    url_option = "--os-url (or $SOKO_NET_URL)"

    def find(self, plural: str, ref: str, key: str = "name") -> dict:
        """A resource by id, or by ``key`` (its name) when exactly one has it."""
        singular = plural.replace("-", "_")[:-1]
        found = self.call("GET", f"/v2.0/{plural}/{ref}", ok_missing=True)
        if found is not None:
            return found[singular]
        named = self.call("GET", f"/v2.0/{plural}", params={key: ref})[singular + "s"]
        if len(named) == 1:
            return named[0]
        what = singular.replace("_", " ")
        if not named:
            raise click.ClickException(f"no {what} with id or {key} {ref!r}")
        raise click.ClickException(f"{len(named)} {what}s have {key} {ref!r}; use the id")

    def create(self, plural: str, body: dict) -> dict:
        singular = plural.replace("-", "_")[:-1]
        return self.call("POST", f"/v2.0/{plural}", json={singular: body})[singular]

    def update(self, plural: str, item_id: str, body: dict) -> dict:
        singular = plural.replace("-", "_")[:-1]
        return self.call("PUT", f"/v2.0/{plural}/{item_id}", json={singular: body})[singular]


pass_client = click.make_pass_decorator(NetClient)


def api_group(name: str, help_text: str, parent: click.Group | None = None) -> click.Group:
    """A command group that logs in (top level) or reuses its parent's login."""
    def body() -> None:
        pass

    body.__doc__ = help_text
    if parent is not None:
        return parent.group(name)(body)
    return click.group(name)(login_options(NetClient, *LOGIN)(body))


def add_reads(group: click.Group, plural: str, columns: list[str], key: str = "name") -> None:
    """``list``, ``show`` and ``delete``, the same for every resource."""
    what = {"floatingips": "floating IP"}.get(plural, plural.replace("-", " ")[:-1])

    @group.command("list", help=f"List {what}s.")
    @format_option
    @pass_client
    def list_items(client, fmt):
        singular = plural.replace("-", "_")[:-1]
        emit_rows(client.call("GET", f"/v2.0/{plural}")[singular + "s"], columns, fmt)

    @group.command("show", help=f"Show one {what} (by id or {key}).")
    @click.argument("ref")
    @format_option
    @pass_client
    def show(client, ref, fmt):
        emit_record(client.find(plural, ref, key), fmt)

    @group.command("delete", help=f"Delete {what}s.")
    @click.argument("refs", nargs=-1, required=True)
    @pass_client
    def delete(client, refs):
        for ref in refs:
            found = client.find(plural, ref, key)
            client.call("DELETE", f"/v2.0/{plural}/{found['id']}")
            click.echo(f"deleted {what} {found['id']}")


def pairs(value: str, option: str) -> dict:
    """``key=value,key=value`` (as ``--fixed-ip subnet=...,ip-address=...``)."""
    try:
        return dict(part.split("=", 1) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected key=value[,key=value], got {value!r}",
                                 param_hint=option) from None


# -- networks and subnets -------------------------------------------------------------

network = api_group("network", "Tenant networks: one Linux bridge each.")
add_reads(network, "networks", ["id", "name", "subnets", "router:external", "status"])


@network.command("create")
@click.argument("name")
@click.option("--external", is_flag=True, help="Routers may use it as their gateway "
              "(admins only).")
@click.option("--share", is_flag=True, help="Every project may use it (admins only).")
@format_option
@pass_client
def network_create(client, name, external, share, fmt):
    """Create a network."""
    emit_record(client.create("networks", {"name": name, "router:external": external,
                                           "shared": share}), fmt)


@network.command("topology")
@format_option
@pass_client
def network_topology(client, fmt):
    """Networks, routers, ports and instances as a tree."""
    import json

    from soko.net.topology import render, topology

    lists = {plural: client.call("GET", f"/v2.0/{plural}")[plural]
             for plural in ("networks", "subnets", "ports", "routers", "floatingips")}
    tree = topology(lists["networks"], lists["subnets"], lists["ports"], lists["routers"],
                    lists["floatingips"], server_names(client))
    if fmt == "json":
        click.echo(json.dumps(tree, indent=2))
    else:
        click.echo(render(tree))


def server_names(client: NetClient) -> dict[str, str]:
    """Instances by id, from compute when it answers (else the tree shows ids only)."""
    from soko.compute.cli import ComputeClient

    compute = ComputeClient(os.environ.get("SOKO_COMPUTE_URL"), client.token, client.data_dir,
                            client.identity_options)
    try:
        return {s["id"]: s["name"] for s in compute.call("GET", "/servers/detail")["servers"]}
    except click.ClickException:
        return {}


subnet = api_group("subnet", "Address ranges on networks, with DHCP and a gateway.")
add_reads(subnet, "subnets", ["id", "name", "network_id", "cidr", "gateway_ip"])


@subnet.command("create")
@click.argument("name")
@click.option("--network", required=True, help="Network (id or name).")
@click.option("--subnet-range", required=True, help="CIDR, e.g. 10.0.0.0/24.")
@click.option("--gateway", help="Gateway address, or 'none' (default: the first address).")
@click.option("--dns-nameserver", multiple=True, help="Handed out by DHCP (default: the "
              "host's resolvers).")
@click.option("--allocation-pool", multiple=True, help="start=IP,end=IP")
@click.option("--no-dhcp", is_flag=True)
@format_option
@pass_client
def subnet_create(client, name, network, subnet_range, gateway, dns_nameserver,
                  allocation_pool, no_dhcp, fmt):
    """Create a subnet."""
    body = {"name": name, "network_id": client.find("networks", network)["id"],
            "cidr": subnet_range, "enable_dhcp": not no_dhcp, "ip_version": 4}
    if gateway is not None:
        body["gateway_ip"] = None if gateway == "none" else gateway
    if dns_nameserver:
        body["dns_nameservers"] = list(dns_nameserver)
    if allocation_pool:
        body["allocation_pools"] = [pairs(p, "--allocation-pool") for p in allocation_pool]
    emit_record(client.create("subnets", body), fmt)


# -- ports ----------------------------------------------------------------------------

port = api_group("port", "Ports: a MAC and addresses on a network, for an instance or router.")
add_reads(port, "ports", ["id", "name", "mac_address", "fixed_ips", "device_owner"])


@port.command("create")
@click.argument("name")
@click.option("--network", required=True, help="Network (id or name).")
@click.option("--fixed-ip", multiple=True, help="subnet=SUBNET,ip-address=IP (either part).")
@click.option("--security-group", multiple=True, help="Security group (id or name).")
@click.option("--disable-port-security", is_flag=True)
@format_option
@pass_client
def port_create(client, name, network, fixed_ip, security_group, disable_port_security, fmt):
    """Create a port."""
    body = {"name": name, "network_id": client.find("networks", network)["id"]}
    if fixed_ip:
        body["fixed_ips"] = []
        for item in fixed_ip:
            given = pairs(item, "--fixed-ip")
            entry = {}
            if "subnet" in given:
                entry["subnet_id"] = client.find("subnets", given["subnet"])["id"]
            if "ip-address" in given:
                entry["ip_address"] = given["ip-address"]
            body["fixed_ips"].append(entry)
    if security_group:
        body["security_groups"] = [client.find("security-groups", g)["id"]
                                   for g in security_group]
    if disable_port_security:
        body.update(port_security_enabled=False, security_groups=[])
    emit_record(client.create("ports", body), fmt)


# -- routers --------------------------------------------------------------------------

router = api_group("router", "Routers: a qrouter namespace joining subnets to an external "
                   "network.")
add_reads(router, "routers", ["id", "name", "status", "external_gateway_info"])


@router.command("create")
@click.argument("name")
@click.option("--external-gateway", help="External network (id or name).")
@format_option
@pass_client
def router_create(client, name, external_gateway, fmt):
    """Create a router."""
    body = {"name": name}
    if external_gateway:
        body["external_gateway_info"] = {
            "network_id": client.find("networks", external_gateway)["id"]}
    emit_record(client.create("routers", body), fmt)


@router.command("set")
@click.argument("ref")
@click.option("--external-gateway", required=True, help="External network (id or name).")
@click.option("--disable-snat", is_flag=True)
@pass_client
def router_set(client, ref, external_gateway, disable_snat):
    """Set a router's external gateway."""
    client.update("routers", client.find("routers", ref)["id"], {"external_gateway_info": {
        "network_id": client.find("networks", external_gateway)["id"],
        "enable_snat": not disable_snat}})


@router.command("unset")
@click.argument("ref")
@click.option("--external-gateway", is_flag=True, required=True)
@pass_client
def router_unset(client, ref, external_gateway):
    """Remove a router's external gateway."""
    client.update("routers", client.find("routers", ref)["id"], {"external_gateway_info": None})


def interface_command(verb: str):
    sub = api_group(verb, f"{verb.title()} a router interface.", parent=router)

    @sub.command("subnet")
    @click.argument("router_ref", metavar="ROUTER")
    @click.argument("subnet_ref", metavar="SUBNET")
    @pass_client
    def on_subnet(client, router_ref, subnet_ref):
        router_id = client.find("routers", router_ref)["id"]
        client.call("PUT", f"/v2.0/routers/{router_id}/{verb}_router_interface",
                    json={"subnet_id": client.find("subnets", subnet_ref)["id"]})


interface_command("add")
interface_command("remove")


# -- floating IPs ---------------------------------------------------------------------

floating = api_group("floating", "Floating IPs (`soko floating ip ...`).")
floating_ip = api_group("ip", "Addresses on an external network, forwarded to a port.",
                        parent=floating)
add_reads(floating_ip, "floatingips", ["id", "floating_ip_address", "fixed_ip_address",
                                       "port_id", "router_id"], key="floating_ip_address")


@floating_ip.command("create")
@click.argument("network_ref", metavar="NETWORK")
@click.option("--port", help="Port to forward to (id or name).")
@format_option
@pass_client
def floating_ip_create(client, network_ref, port, fmt):
    """Allocate a floating IP on an external network."""
    body = {"floating_network_id": client.find("networks", network_ref)["id"]}
    if port:
        body["port_id"] = client.find("ports", port)["id"]
    emit_record(client.create("floatingips", body), fmt)


@floating_ip.command("set")
@click.argument("ref")
@click.option("--port", required=True, help="Port (id or name).")
@pass_client
def floating_ip_set(client, ref, port):
    """Forward a floating IP to a port."""
    client.update("floatingips", client.find("floatingips", ref, "floating_ip_address")["id"],
                  {"port_id": client.find("ports", port)["id"]})


@floating_ip.command("unset")
@click.argument("ref")
@click.option("--port", is_flag=True, required=True)
@pass_client
def floating_ip_unset(client, ref, port):
    """Stop forwarding a floating IP (it stays allocated)."""
    client.update("floatingips", client.find("floatingips", ref, "floating_ip_address")["id"],
                  {"port_id": None})


# -- security groups ------------------------------------------------------------------

security = api_group("security", "Security groups (`soko security group ...`).")
group = api_group("group", "Security groups: iptables rules on every member port's tap.",
                  parent=security)
add_reads(group, "security-groups", ["id", "name", "description"])


@group.command("create")
@click.argument("name")
@click.option("--description", default="")
@format_option
@pass_client
def group_create(client, name, description, fmt):
    """Create a security group (egress open, ingress closed)."""
    emit_record(client.create("security-groups", {"name": name, "description": description}),
                fmt)


rule = api_group("rule", "Security group rules.", parent=group)
add_reads(rule, "security-group-rules", ["id", "security_group_id", "direction", "protocol",
                                         "port_range_min", "port_range_max",
                                         "remote_ip_prefix", "remote_group_id"])


@rule.command("create")
@click.argument("group_ref", metavar="GROUP")
@click.option("--ingress/--egress", default=True, show_default=True)
@click.option("--protocol", type=click.Choice(["tcp", "udp", "icmp"]))
@click.option("--dst-port", help="PORT or FIRST:LAST (tcp/udp).")
@click.option("--remote-ip", help="CIDR the traffic comes from (ingress) or goes to.")
@click.option("--remote-group", help="Security group whose members it comes from.")
@format_option
@pass_client
def rule_create(client, group_ref, ingress, protocol, dst_port, remote_ip, remote_group, fmt):
    """Allow a flow to or from a security group's ports."""
    body = {"security_group_id": client.find("security-groups", group_ref)["id"],
            "direction": "ingress" if ingress else "egress", "protocol": protocol,
            "remote_ip_prefix": remote_ip}
    if dst_port:
        low, _, high = dst_port.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            raise click.BadParameter(f"expected PORT or FIRST:LAST, got {dst_port!r}",
                                     param_hint="--dst-port")
        body.update(port_range_min=int(low), port_range_max=int(high or low))
    if remote_group:
        body["remote_group_id"] = client.find("security-groups", remote_group)["id"]
    emit_record(client.create("security-group-rules", body), fmt)
