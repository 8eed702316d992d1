"""``soko server`` and ``soko flavor``: openstack-client's verbs over the compute API.

Connecting works as for ``soko volume``: ``--os-url``/``$SOKO_COMPUTE_URL`` with a token, or
a password login whose catalog names the ``compute`` endpoint. Volumes, images, flavors and
servers are named by id or by name. Commands that start a change return at once unless
``--wait`` (a spinner until the server settles, as ``openstack server create --wait``).
"""

from __future__ import annotations

import base64
import os
import re
import time

import click

from soko.block.cli import BlockClient
from soko.common.cli.login import login_options
from soko.common.cli.output import emit_record, emit_rows, format_option
from soko.net.cli import pairs

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SETTLED = ("ACTIVE", "SHUTOFF", "ERROR")
LIST_COLUMNS = ["id", "name", "status", "task_state", "power_state", "flavor", "networks",
                "volumes"]
FLAVOR_COLUMNS = ["id", "name", "vcpus", "ram", "disk"]
POWER_NAMES = {0: "NOSTATE", 1: "Running", 3: "Paused", 4: "Shutdown", 6: "Crashed",
               7: "Suspended"}


class ComputeClient(BlockClient):
    catalog_type = "compute"
    url_option = "--os-url (or $SOKO_COMPUTE_URL)"

    def peer(self, client_class: type[BlockClient], url_env: str = "") -> BlockClient:
        """A client for another service with this one's credentials: at ``$url_env`` with
        this token when that is set, else found in the catalog."""
        url = os.environ.get(url_env) if url_env else None
        return client_class(url, self.token if url else None, self.data_dir,
                            self.identity_options)

    def find(self, ref: str) -> dict:
        """A server by id, or by name when exactly one of the project's servers has it."""
        found = self.call("GET", f"/servers/{ref}", ok_missing=True)
        if found is not None:
            return found["server"]
        named = [s for s in self.call("GET", "/servers/detail")["servers"] if s["name"] == ref]
        if len(named) == 1:
            return named[0]
        if not named:
            raise click.ClickException(f"no server with id or name {ref!r}")
        raise click.ClickException(f"{len(named)} servers are named {ref!r}; use the id")

    def flavor(self, ref: str) -> dict:
        found = self.call("GET", f"/flavors/{ref}", ok_missing=True)
        if found is not None:
            return found["flavor"]
        named = [f for f in self.call("GET", "/flavors")["flavors"] if f["name"] == ref]
        if not named:
            raise click.ClickException(f"no flavor with id or name {ref!r} "
                                       "(see `soko flavor list`)")
        return named[0]

    def wait(self, server_id: str, *, gone: bool = False, timeout: float = 600) -> dict | None:
        """Polls until the server settles (no task, a steady status) or, ``gone``, vanishes."""
        from rich.console import Console

        deadline = time.monotonic() + timeout
        with Console(stderr=True).status(f"waiting for server {server_id}...") as status:
            while True:
                found = self.call("GET", f"/servers/{server_id}", ok_missing=True)
                server = found["server"] if found else None
                if server is None:
                    return None
                task = server["OS-EXT-STS:task_state"]
                if not gone and task is None and server["status"] in SETTLED:
                    return server
                status.update(f"server {server_id}: {server['status']}"
                              f"{f' ({task})' if task else ''}...")
                if time.monotonic() > deadline:
                    raise click.ClickException(f"server {server_id} is still "
                                               f"{server['status']} after {timeout:.0f} s")
                time.sleep(0.5)


def row(server: dict) -> dict:
    volumes = server.get("os-extended-volumes:volumes_attached", [])
    flavor = server.get("flavor", {})
    return {
        "id": server["id"], "name": server["name"], "status": server.get("status"),
        "task_state": server.get("OS-EXT-STS:task_state"),
        "power_state": POWER_NAMES.get(server.get("OS-EXT-STS:power_state"), "NOSTATE"),
        "flavor": f"{flavor.get('vcpus')} vCPU, {flavor.get('ram')} MiB",
        "networks": "; ".join(f"{name}={', '.join(a['addr'] for a in found)}"
                              for name, found in (server.get("addresses") or {}).items()),
        "key_name": server.get("key_name"),
        "volumes": ", ".join(f"{v['id']}{' on ' + v['device'] if v.get('device') else ''}"
                             for v in volumes),
    }


def record(server: dict) -> dict:
    shown = {**row(server), "vm_state": server.get("OS-EXT-STS:vm_state"),
             "project_id": server.get("tenant_id"), "user_id": server.get("user_id"),
             "image": (server.get("image") or {}).get("id") if server.get("image") else None,
             "created": server.get("created"), "updated": server.get("updated")}
    if server.get("fault"):
        shown["fault"] = server["fault"].get("message")
    return shown


pass_client = click.make_pass_decorator(ComputeClient)
wait_option = click.option("--wait", is_flag=True, help="Wait until the server settles.")
COMPUTE_URL_HELP = "Compute endpoint, e.g. http://127.0.0.1:8774/v2.1"


@click.group()
@login_options(ComputeClient, "SOKO_COMPUTE_URL", COMPUTE_URL_HELP)
def server() -> None:
    """Instances: boot from volumes, power, attach volumes, console, quiesce."""


@click.group()
@login_options(ComputeClient, "SOKO_COMPUTE_URL", COMPUTE_URL_HELP)
def flavor() -> None:
    """Instance sizes (vCPUs, RAM); creating and deleting them is for admins."""


def volume_id(client: ComputeClient, ref: str) -> str:
    return ref if UUID_RE.match(ref) else client.peer(BlockClient).find(ref)["id"]


def net_client(client: ComputeClient):
    from soko.net.cli import LOGIN, NetClient

    return client.peer(NetClient, LOGIN[0])


class NicsInOrder(click.Command):
    """Remembers the order of --nic, --network and --port as given: they become the guest's
    eth0, eth1, ... (click groups an option's values together)."""

    NIC_OPTIONS = ("nics", "networks", "ports")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _, _, order = self.make_parser(ctx).parse_args(args=list(args))
        ctx.meta["nic_order"] = [p.name for p in order if p.name in self.NIC_OPTIONS]
        return super().parse_args(ctx, args)


def requested_networks(client: ComputeClient, given: dict[str, tuple]) -> list | str | None:
    """Nova's ``networks`` from ``--nic``, ``--network`` and ``--port``, in their order."""
    if not any(given.values()):
        return None
    nics = given["nics"]
    if any(n in ("auto", "none") for n in nics):
        if len(nics) != 1 or given["networks"] or given["ports"]:
            raise click.UsageError("--nic auto and --nic none stand alone")
        return nics[0]
    net = net_client(client)
    pending = {name: iter(values) for name, values in given.items()}
    entries = []
    for name in click.get_current_context().meta["nic_order"]:
        value = next(pending[name])
        if name == "networks":
            entries.append({"uuid": net.find("networks", value)["id"]})
        elif name == "ports":
            entries.append({"port": net.find("ports", value)["id"]})
        else:
            entries.append(nic_entry(net, value))
    return entries


def nic_entry(net, spec: str) -> dict:
    given = pairs(spec, "--nic")
    if set(given) - {"net-id", "v4-fixed-ip", "port-id"} or \
            ("net-id" in given) == ("port-id" in given):
        raise click.BadParameter("expected net-id=NET[,v4-fixed-ip=IP] or port-id=PORT",
                                 param_hint="--nic")
    if "port-id" in given:
        return {"port": net.find("ports", given["port-id"])["id"]}
    entry = {"uuid": net.find("networks", given["net-id"])["id"]}
    if "v4-fixed-ip" in given:
        entry["fixed_ip"] = given["v4-fixed-ip"]
    return entry


def image_id(client: ComputeClient, ref: str) -> str:
    from soko.image.cli import ImageClient

    return ref if UUID_RE.match(ref) else client.peer(ImageClient).find(ref)["id"]


@server.command("create", cls=NicsInOrder)
@click.argument("name")
@click.option("--flavor", "flavor_ref", required=True, help="Flavor id or name.")
@click.option("--volume", "volume_ref", help="Boot from this existing bootable volume.")
@click.option("--image", "image_ref", help="Boot from a new volume made from this image.")
@click.option("--boot-volume-size", type=click.IntRange(min=1), metavar="GIB",
              help="Size of the new boot volume (with --image).")
@click.option("--delete-on-termination", is_flag=True,
              help="Delete the boot volume when the server is deleted.")
@click.option("--nic", "nics", multiple=True, metavar="SPEC",
              help="A NIC: net-id=NET[,v4-fixed-ip=IP], port-id=PORT, or auto|none alone.")
@click.option("--network", "networks", multiple=True,
              help="A NIC on this network (id or name); same as --nic net-id=NET.")
@click.option("--port", "ports", multiple=True,
              help="A NIC on this existing port (id or name); kept when the server goes.")
@click.option("--security-group", "groups", multiple=True,
              help="Security group (id or name) of the ports made for the server.")
@click.option("--key-name", help="Key pair whose public key the guest gets (metadata).")
@click.option("--user-data", type=click.File("rb"), metavar="FILE",
              help="User data for the guest (a script starting with #! runs at first boot).")
@wait_option
@format_option
@pass_client
def create(client, name, flavor_ref, volume_ref, image_ref, boot_volume_size,
           delete_on_termination, nics, networks, ports, groups, key_name, user_data, wait,
           fmt):
    """Boot server NAME from a volume (--volume) or from an image (--image), with a NIC
    for each --nic, --network and --port, in the order given."""
    if bool(volume_ref) == bool(image_ref):
        raise click.UsageError("give exactly one of --volume and --image")
    if image_ref and not boot_volume_size:
        raise click.UsageError("--image needs --boot-volume-size (instances boot from volumes)")
    if image_ref:
        mapping = {"source_type": "image", "uuid": image_id(client, image_ref),
                   "volume_size": boot_volume_size}
    else:
        mapping = {"source_type": "volume", "uuid": volume_id(client, volume_ref)}
    body = {"server": {"name": name, "flavorRef": client.flavor(flavor_ref)["id"],
                       "block_device_mapping_v2": [{
                           **mapping, "boot_index": 0, "destination_type": "volume",
                           "delete_on_termination": delete_on_termination}]}}
    requested = requested_networks(client, {"nics": nics, "networks": networks,
                                            "ports": ports})
    if requested is not None:
        body["server"]["networks"] = requested
    if groups:
        body["server"]["security_groups"] = [{"name": g} for g in groups]
    if key_name:
        body["server"]["key_name"] = key_name
    if user_data:
        body["server"]["user_data"] = base64.b64encode(user_data.read()).decode()
    created = client.call("POST", "/servers", json=body)["server"]
    if wait:
        created = client.wait(created["id"])
        if created["status"] == "ERROR":
            emit_record(record(created), fmt)
            raise click.ClickException(f"server {created['id']} failed to build: "
                                       f"{(created.get('fault') or {}).get('message')}")
    emit_record(record(created), fmt)


@server.command("list")
@click.option("--all-projects", is_flag=True, help="Every project's servers (admin).")
@format_option
@pass_client
def list_servers(client, all_projects, fmt):
    """List servers, newest first."""
    params = {"all_tenants": 1} if all_projects else {}
    servers = client.call("GET", "/servers/detail", params=params)["servers"]
    emit_rows([row(s) for s in servers], LIST_COLUMNS, fmt)


@server.command("show")
@click.argument("server_ref", metavar="SERVER")
@format_option
@pass_client
def show(client, server_ref, fmt):
    """Show one server (by id or name)."""
    emit_record(record(client.find(server_ref)), fmt)


def power_command(name: str, action: dict, help_text: str):
    @server.command(name, help=help_text)
    @click.argument("server_ref", metavar="SERVER")
    @wait_option
    @pass_client
    def command(client, server_ref, wait):
        found = client.find(server_ref)
        client.call("POST", f"/servers/{found['id']}/action", json=action)
        if wait:
            settled = client.wait(found["id"])
            click.echo(f"server {found['id']} is {settled['status']}")
    return command


power_command("start", {"os-start": None}, "Start a stopped server.")
power_command("stop", {"os-stop": None}, "Shut a server down (forced off after a timeout).")


@server.command("reboot")
@click.argument("server_ref", metavar="SERVER")
@click.option("--hard", is_flag=True, help="Power-cycle (also revives a stopped or failed one).")
@wait_option
@pass_client
def reboot(client, server_ref, hard, wait):
    """Reboot a server: the guest reboots itself, or --hard power-cycles it."""
    found = client.find(server_ref)
    client.call("POST", f"/servers/{found['id']}/action",
                json={"reboot": {"type": "HARD" if hard else "SOFT"}})
    if wait:
        click.echo(f"server {found['id']} is {client.wait(found['id'])['status']}")


@server.command("delete")
@click.argument("server_refs", metavar="SERVER...", nargs=-1, required=True)
@wait_option
@pass_client
def delete(client, server_refs, wait):
    """Delete servers: their volumes are detached (and deleted if so asked at create)."""
    for ref in server_refs:
        found = client.find(ref)
        client.call("DELETE", f"/servers/{found['id']}")
        if wait:
            client.wait(found["id"], gone=True)
        click.echo(f"deleted server {found['id']}")


@server.command("console-log")
@click.argument("server_ref", metavar="SERVER")
@click.option("--lines", type=click.IntRange(min=1), help="Only the last N lines.")
@pass_client
def console_log(client, server_ref, lines):
    """Print the server's serial console log."""
    found = client.find(server_ref)
    output = client.call("POST", f"/servers/{found['id']}/action",
                         json={"os-getConsoleOutput": {"length": lines}})["output"]
    click.echo(output, nl=not output.endswith("\n"))


@server.command("attach-volume")
@click.argument("server_ref", metavar="SERVER")
@click.argument("volume_ref", metavar="VOLUME")
@format_option
@pass_client
def attach_volume(client, server_ref, volume_ref, fmt):
    """Attach a volume (live if the server runs); prints the guest device."""
    found = client.find(server_ref)
    attached = client.call("POST", f"/servers/{found['id']}/os-volume_attachments", json={
        "volumeAttachment": {"volumeId": volume_id(client, volume_ref)}})["volumeAttachment"]
    emit_record(attached, fmt)


@server.command("detach-volume")
@click.argument("server_ref", metavar="SERVER")
@click.argument("volume_ref", metavar="VOLUME")
@pass_client
def detach_volume(client, server_ref, volume_ref):
    """Detach a data volume (the guest releases it first if the server runs)."""
    found = client.find(server_ref)
    vid = volume_id(client, volume_ref)
    client.call("DELETE", f"/servers/{found['id']}/os-volume_attachments/{vid}")
    click.echo(f"detached volume {vid} from server {found['id']}")


@flavor.command("list")
@format_option
@pass_client
def list_flavors(client, fmt):
    """List flavors."""
    emit_rows(client.call("GET", "/flavors/detail")["flavors"], FLAVOR_COLUMNS, fmt)


@flavor.command("show")
@click.argument("flavor_ref", metavar="FLAVOR")
@format_option
@pass_client
def show_flavor(client, flavor_ref, fmt):
    """Show one flavor (by id or name)."""
    shown = client.flavor(flavor_ref)
    emit_record({k: shown[k] for k in FLAVOR_COLUMNS}, fmt)


@flavor.command("create")
@click.argument("name")
@click.option("--vcpus", type=click.IntRange(min=1), required=True)
@click.option("--ram", type=click.IntRange(min=16), required=True, metavar="MIB")
@click.option("--disk", type=click.IntRange(min=0), default=0, metavar="GIB")
@click.option("--id", "flavor_id", help="Flavor id (default: a new UUID).")
@format_option
@pass_client
def create_flavor(client, name, vcpus, ram, disk, flavor_id, fmt):
    """Create a flavor (admin)."""
    spec = {"name": name, "vcpus": vcpus, "ram": ram, "disk": disk}
    if flavor_id:
        spec["id"] = flavor_id
    created = client.call("POST", "/flavors", json={"flavor": spec})["flavor"]
    emit_record({k: created[k] for k in FLAVOR_COLUMNS}, fmt)


@flavor.command("delete")
@click.argument("flavor_refs", metavar="FLAVOR...", nargs=-1, required=True)
@pass_client
def delete_flavor(client, flavor_refs):
    """Delete flavors (admin); servers using them keep running."""
    for ref in flavor_refs:
        found = client.flavor(ref)
        client.call("DELETE", f"/flavors/{found['id']}")
        click.echo(f"deleted flavor {found['id']}")


# -- floating IPs (openstack-client calls the network API for these too) ----------------

@server.group("add")
def server_add() -> None:
    """Add a floating IP to a server."""


@server.group("remove")
def server_remove() -> None:
    """Remove a floating IP from a server."""


def server_ports(client: ComputeClient, server_ref: str) -> tuple[dict, list[dict], object]:
    found = client.find(server_ref)
    net = net_client(client)
    ports = net.call("GET", "/v2.0/ports", params={"device_id": found["id"]})["ports"]
    if not ports:
        raise click.ClickException(f"server {found['id']} has no port (boot it with --network)")
    return found, ports, net


@server_add.group("floating")
def add_floating() -> None:
    """``soko server add floating ip``."""


@add_floating.command("ip")
@click.argument("server_ref", metavar="SERVER")
@click.argument("address", metavar="IP")
@click.option("--fixed-ip-address", help="Which of the server's addresses (default: its "
              "first NIC's).")
@pass_client
def add_floating_ip(client, server_ref, address, fixed_ip_address):
    """Forward floating IP (an allocated address, see `soko floating ip create`) to SERVER."""
    found, ports, net = server_ports(client, server_ref)
    fixed = fixed_ip_address or next((a["addr"] for listed in found["addresses"].values()
                                      for a in listed if a["OS-EXT-IPS:type"] == "fixed"), None)
    port = next((p for p in ports if any(a["ip_address"] == fixed for a in p["fixed_ips"])),
                None)
    if port is None:
        raise click.ClickException(f"server {found['id']} has no address {fixed}")
    fip = net.find("floatingips", address, "floating_ip_address")
    net.update("floatingips", fip["id"], {"port_id": port["id"], "fixed_ip_address": fixed})
    click.echo(f"floating IP {fip['floating_ip_address']} -> server {found['id']} ({fixed})")


@server_remove.group("floating")
def remove_floating() -> None:
    """``soko server remove floating ip``."""


@remove_floating.command("ip")
@click.argument("server_ref", metavar="SERVER")
@click.argument("address", metavar="IP")
@pass_client
def remove_floating_ip(client, server_ref, address):
    """Stop forwarding floating IP to SERVER (the address stays allocated)."""
    found, ports, net = server_ports(client, server_ref)
    fip = net.find("floatingips", address, "floating_ip_address")
    if fip["port_id"] not in {p["id"] for p in ports}:
        raise click.ClickException(f"floating IP {address} is not on server {found['id']}")
    net.update("floatingips", fip["id"], {"port_id": None})
    click.echo(f"floating IP {fip['floating_ip_address']} removed from server {found['id']}")
