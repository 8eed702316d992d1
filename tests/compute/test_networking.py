"""Servers on tenant networks: compute over real block storage and libvirt, soko-net with the
real Linux driver (its own cloud id) over HTTP, both behind the test tokens. One server for
the module, made through the CLI with three NICs in the order of its options: its ports, its taps on the bridges, its
security-group chains, its addresses and floating IP, and what its delete releases. Bad
requests are checked without a boot: each leaves no port, server, domain or attachment.
The tests run in order."""

from __future__ import annotations

import json
import subprocess
import uuid
import xml.etree.ElementTree as ET

import pytest
import requests
from click.testing import CliRunner

from soko.common.config import Config
from soko.image.guest_files import READY_MARKER
from soko.tools.cli import cli
from tests.compute.conftest import wait_console
from tests.net.plumbing import assert_cloud_gone
from tests.support import free_port, require_tools, served, wait_for

pytestmark = pytest.mark.privileged

A, ADMIN = "tok-a", "tok-admin"
GONE = "4b0c5e0e-0000-4000-8000-00000000dead"
BINDING = {"binding:host_id", "binding:profile", "binding:vif_type", "binding:vif_details"}


class ServiceToken:
    """Compute's service user as the test tokens know it (``tok-service``, role service):
    identity is not part of this module, soko-net checks the token as it would any."""

    def token(self, *, renew: bool = False) -> str:
        return "tok-service"


class Wired:
    def __init__(self, stack, compute, compute_url: str, net_url: str, net_driver):
        self.stack, self.compute = stack, compute
        self.compute_url, self.net_url, self.net_driver = compute_url, net_url, net_driver
        self.ids: dict[str, str] = {}

    def net(self, method: str, path: str, token: str = A, expect: int | None = None, **kw):
        resp = requests.request(method, f"{self.net_url}/v2.0{path}", timeout=60,
                                headers={"X-Auth-Token": token}, **kw)
        if expect is not None:
            assert resp.status_code == expect, resp.text
        return resp.json() if resp.content else None

    def make(self, plural: str, body: dict, token: str = A) -> dict:
        singular = plural.replace("-", "_")[:-1]
        return self.net("POST", f"/{plural}", token, 201, json={singular: body})[singular]

    def servers(self, method: str, path: str = "", **kw) -> requests.Response:
        return requests.request(method, f"{self.compute_url}/v2.1/servers{path}", timeout=120,
                                headers={"X-Auth-Token": A}, **kw)

    def soko(self, *args: str, ok: bool = True):
        env = {"SOKO_COMPUTE_URL": f"{self.compute_url}/v2.1", "SOKO_NET_URL": self.net_url,
               "OS_TOKEN": A}
        result = CliRunner().invoke(cli, list(args), env=env)
        assert (result.exit_code == 0) == ok, result.output
        return json.loads(result.output) if ok and "--format" in args else result.output

    def project_ports(self) -> list[dict]:
        return sorted(self.net("GET", "/ports", expect=200)["ports"], key=lambda p: p["id"])


@pytest.fixture(scope="module")
def wired(stack, tmp_path_factory):
    require_tools("ip", "dnsmasq", "iptables-restore")
    from soko.compute import api as compute_api
    from soko.compute import wiring as compute_wiring
    from soko.compute.service import ComputeConfig
    from soko.net import api as net_api
    from soko.net import wiring as net_wiring
    from soko.net.service import NetConfig
    from tests.block.fakes import FixedTokens

    net_config = Config(data_dir=tmp_path_factory.mktemp("net"), sections={"net": NetConfig(
        cloud_id=uuid.uuid4().hex[:4], public_cidr="")})
    net_manager = net_wiring.make_manager(net_config)
    try:
        with served(net_api.make_app(net_config, validator=FixedTokens(),
                                     manager=net_manager)) as net_url:
            section = ComputeConfig(port=free_port(), domain_prefix=stack.driver.prefix,
                                    block_url=stack.block_url, net_url=net_url,
                                    reconcile_interval=0, stop_timeout=30,
                                    host=f"wired-{uuid.uuid4().hex[:8]}")
            config = Config(data_dir=tmp_path_factory.mktemp("compute-net"),
                            sections={"compute": section})
            manager = compute_wiring.make_manager(config, driver=stack.driver,
                                                  service=ServiceToken())
            app = compute_api.make_app(config, validator=FixedTokens(), manager=manager)
            with served(app, section.port) as compute_url:
                yield Wired(stack, manager, compute_url, net_url, net_manager.agent.driver)
                for server in manager.list(manager_caller()):
                    manager.tear_down(manager_caller(), server.id)
    finally:
        net_wiring.teardown(net_config)
    assert_cloud_gone(net_config.section("net").cloud_id)


def manager_caller():
    from soko.compute.manager import Caller

    return Caller("proj-a", "user-proj-a", A)


@pytest.fixture(scope="module")
def topology(wired):
    """public (external), private 10.0.0.0/24 with a router to it, a group ``web``, and a
    port the user made for the server."""
    public = wired.make("networks", {"name": "public", "router:external": True}, ADMIN)
    wired.make("subnets", {"network_id": public["id"], "cidr": "172.24.4.0/24",
                           "enable_dhcp": False}, ADMIN)
    private = wired.make("networks", {"name": "private"})
    subnet = wired.make("subnets", {"network_id": private["id"], "cidr": "10.0.0.0/24"})
    router = wired.make("routers", {"name": "router1", "external_gateway_info": {
        "network_id": public["id"]}})
    wired.net("PUT", f"/routers/{router['id']}/add_router_interface", expect=200,
              json={"subnet_id": subnet["id"]})
    web = wired.make("security-groups", {"name": "web"})
    mine = wired.make("ports", {"network_id": private["id"], "name": "mine"})
    wired.ids.update(public=public["id"], private=private["id"], subnet=subnet["id"],
                     router=router["id"], web=web["id"], mine=mine["id"])
    return wired.ids


def test_bad_network_requests_are_refused_and_leave_nothing(wired, topology):
    stack = wired.stack
    volume = stack.create_volume(1)
    private, mine = topology["private"], topology["mine"]
    taken = wired.net("GET", f"/ports/{mine}", expect=200)["port"]["fixed_ips"][0]["ip_address"]
    bound = wired.make("ports", {"network_id": private, "device_id": str(uuid.uuid4()),
                                 "device_owner": "compute:nova"})
    other = wired.make("networks", {"name": "other"})
    before, domains = wired.project_ports(), set(stack.driver.reconcile())
    cases = [  # (networks, security_groups) -> status, words of the message
        ([{"uuid": GONE}], None, 400, f"Network {GONE} could not be found"),
        ([{"uuid": private}, {"uuid": GONE}], None, 400, "could not be found"),  # 1st undone
        ([{"uuid": private, "fixed_ip": taken}], None, 409, f"{taken} already allocated"),
        ([{"uuid": private, "fixed_ip": "192.168.7.7"}], None, 400, "192.168.7.7"),
        ([{"uuid": private, "fixed_ip": "10.0.0.300"}], None, 400, "not an IPv4 address"),
        ([{"uuid": private}, {"port": bound["id"]}], None, 409, "still in use"),
        ([{"port": GONE}], None, 400, f"Port {GONE} could not be found"),
        ([{"uuid": topology["public"]}], None, 400, "use a floating IP"),
        ([{"uuid": private}], [{"name": "nope"}], 400, "Security group nope not found"),
        ([{"uuid": private, "port": mine}], None, 400, "exactly one of uuid"),
        ("everything", None, 400, '"auto", "none" or a non-empty list'),
        ("auto", None, 400, "exactly one tenant network"),  # private and other
        (None, [{"name": "web"}], 400, "give networks too"),
    ]
    try:
        for networks, groups, status, words in cases:
            server = {"name": "bad", "flavorRef": "m1.tiny", "block_device_mapping_v2": [{
                "boot_index": 0, "uuid": volume, "source_type": "volume",
                "destination_type": "volume"}]}
            if networks is not None:
                server["networks"] = networks
            if groups is not None:
                server["security_groups"] = groups
            resp = wired.servers("POST", json={"server": server})
            assert resp.status_code == status, (networks, resp.text)
            assert words in resp.json()["error"]["message"], (networks, resp.text)
            assert wired.project_ports() == before, networks
        assert wired.servers("GET").json()["servers"] == []
        assert set(stack.driver.reconcile()) == domains
        assert stack.volume(volume)["status"] == "available"
    finally:
        stack.volumes("DELETE", f"/volumes/{volume}")
        wired.net("PUT", f"/ports/{bound['id']}", expect=200,
                  json={"port": {"device_id": "", "device_owner": ""}})
        wired.net("DELETE", f"/ports/{bound['id']}", expect=204)
        wired.net("DELETE", f"/networks/{other['id']}", expect=204)


@pytest.fixture(scope="module")
def server(wired, topology, guest_image) -> dict:
    """Booted through the CLI: --nic with a fixed IP, --port, --network, and a group."""
    stack = wired.stack
    volume = stack.create_volume(1)
    subprocess.run(["qemu-img", "convert", "-n", "-O", "raw", str(guest_image),
                    stack.block.pool.path(volume)], check=True)
    created = wired.soko("server", "create", "wired", "--flavor", "m1.tiny", "--volume",
                         volume, "--delete-on-termination", "--nic",
                         "net-id=private,v4-fixed-ip=10.0.0.10", "--port", "mine",
                         "--network", "private", "--security-group", "web", "--wait",
                         "--format", "json")
    assert created["status"] == "ACTIVE", created
    return created


def test_the_servers_ports_are_bound_to_it_in_order(wired, server):
    ports = wired.net("GET", f"/ports?device_id={server['id']}", expect=200)["ports"]
    by_id = {p["id"]: p for p in ports}
    vifs = wired.compute.networking.vifs([server["id"]])
    assert [v.port_id for v in vifs][1] == wired.ids["mine"] and len(vifs) == 3
    first, mine, second = (by_id[v.port_id] for v in vifs)  # the order of the options
    assert {p["device_owner"] for p in (first, second, mine)} == {"compute:nova"}
    assert first["fixed_ips"][0]["ip_address"] == "10.0.0.10"
    assert first["security_groups"] == second["security_groups"] == [wired.ids["web"]]
    assert mine["name"] == "mine" and mine["security_groups"] != [wired.ids["web"]]
    # Bound here by compute's service user; the tenant does not see where, an admin does.
    assert not [p for p in wired.project_ports() if BINDING & set(p)]
    for port in ports:
        assert not BINDING & set(wired.net("GET", f"/ports/{port['id']}", expect=200)["port"])
        shown = wired.net("GET", f"/ports/{port['id']}", ADMIN, 200)["port"]
        assert shown["binding:host_id"] == wired.compute.settings.host
        assert shown["binding:vif_details"]["tap_name"] == wired.net_driver.tap_name(port["id"])


def test_the_guest_takes_its_fixed_ip_by_dhcp_through_its_tap(wired, server):
    """The test guest runs a DHCP client on its first NIC: dnsmasq's answer crosses the
    bridge and the port's chains (DHCP in, anti-spoofing out) to the tap."""
    first = wired.compute.networking.vifs([server["id"]])[0]
    text = wait_console(wired.stack.driver, server["id"], READY_MARKER, timeout=300)
    ready = next(line for line in text.splitlines() if READY_MARKER in line)
    assert f"ip=10.0.0.10 mac={first.mac}" in ready, ready


def test_each_nic_is_a_tap_named_for_its_port_on_the_networks_bridge(wired, server):
    domain = wired.stack.driver.conn.lookupByName(wired.stack.driver.domain_name(server["id"]))
    interfaces = ET.fromstring(domain.XMLDesc()).findall("devices/interface")
    bridge = wired.net_driver.bridge_name(wired.ids["private"])
    forward = subprocess.run(["iptables", "-S"], capture_output=True, text=True,
                             check=True).stdout
    assert len(interfaces) == 3
    for nic, vif in zip(interfaces, wired.compute.networking.vifs([server["id"]]), strict=True):
        port = wired.net("GET", f"/ports/{vif.port_id}", expect=200)["port"]
        tap = wired.net_driver.tap_name(port["id"])
        assert nic.get("type") == "bridge" and nic.find("source").get("bridge") == bridge
        assert nic.find("mac").get("address") == port["mac_address"]
        assert nic.find("target").get("dev") == tap
        link = subprocess.run(["ip", "-o", "link", "show", tap], capture_output=True,
                              text=True, check=True).stdout
        assert f"master {bridge}" in link and "UP" in link
        assert f"--physdev-in {tap} --physdev-is-bridged" in forward  # its chains apply


def test_addresses_and_a_floating_ip_through_the_cli(wired, server):
    fip = wired.make("floatingips", {"floating_network_id": wired.ids["public"]})
    address = fip["floating_ip_address"]
    wired.soko("server", "add", "floating", "ip", "wired", address)
    shown = wired.servers("GET", f"/{server['id']}").json()["server"]
    private = shown["addresses"]["private"]
    fixed = [a["addr"] for a in private if a["OS-EXT-IPS:type"] == "fixed"]
    assert fixed[0] == "10.0.0.10" and len(fixed) == 3
    floating = [a for a in private if a["OS-EXT-IPS:type"] == "floating"]
    assert [a["addr"] for a in floating] == [address]
    assert floating[0]["OS-EXT-IPS-MAC:mac_addr"] == private[0]["OS-EXT-IPS-MAC:mac_addr"]
    assert private[0] == {"version": 4, "addr": "10.0.0.10", "OS-EXT-IPS:type": "fixed",
                          "OS-EXT-IPS-MAC:mac_addr": private[0]["OS-EXT-IPS-MAC:mac_addr"]}
    listed = wired.soko("server", "list", "--format", "json")
    assert "private=10.0.0.10" in listed[0]["networks"] and address in listed[0]["networks"]

    tree = wired.soko("network", "topology", "--format", "json")
    nets = {n["name"]: n for n in tree["networks"]}
    servers = [p for p in nets["private"]["ports"] if p["kind"] == "server"]
    assert {p["name"] for p in servers} == {"wired"} and len(servers) == 3
    assert [p["floating_ips"] for p in servers if "10.0.0.10" in p["fixed_ips"]] == [[address]]
    assert {p["kind"] for p in nets["private"]["ports"]} == {"dhcp", "router", "server"}
    assert [p["name"] for p in nets["public"]["ports"]] == ["router1"]
    drawn = wired.soko("network", "topology")
    assert "server wired" in drawn and f"floating {address}" in drawn
    wired.soko("server", "remove", "floating", "ip", "wired", address)
    assert wired.net("GET", f"/floatingips/{fip['id']}", expect=200)["floatingip"][
        "port_id"] is None
    wired.soko("server", "add", "floating", "ip", "wired", address)
    wired.ids["fip"] = fip["id"]


def test_a_port_in_use_cannot_be_deleted_or_bound_again(wired, server):
    for vif in wired.compute.networking.vifs([server["id"]]):
        answer = wired.net("DELETE", f"/ports/{vif.port_id}", expect=409)
        assert server["id"] in answer["NeutronError"]["message"]
    answer = wired.net("PUT", f"/ports/{wired.ids['mine']}", expect=409,
                       json={"port": {"device_id": str(uuid.uuid4())}})
    assert "already has an attached device" in answer["NeutronError"]["message"]


def test_reconcile_deletes_the_ports_a_crash_left_and_only_those(wired, server, monkeypatch):
    """Ports made as compute makes them (the user's token, then bound here by the service)
    for a server that was never written: the reconcile deletes them once past the grace,
    never while younger, never a live server's, never one bound elsewhere."""
    from soko.compute.reconcile import reconcile

    service = wired.compute.networking.service_client()

    def made_for_a_server_never_written(host: str) -> str:
        port = wired.make("ports", {"network_id": wired.ids["private"], "device_id": str(
            uuid.uuid4()), "device_owner": "compute:nova"})
        service.update_port(port["id"], {"binding:host_id": host})
        return port["id"]

    orphan = made_for_a_server_never_written(wired.compute.settings.host)
    elsewhere = made_for_a_server_never_written("another-host")
    live = [v.port_id for v in wired.compute.networking.vifs([server["id"]])]
    reconcile(wired.compute)  # the default grace: a create might still be in flight
    wired.net("GET", f"/ports/{orphan}", expect=200)
    monkeypatch.setattr(wired.compute.settings, "orphan_port_grace", 0)
    reconcile(wired.compute)
    wired.net("GET", f"/ports/{orphan}", expect=404)
    for port in (elsewhere, *live):
        wired.net("GET", f"/ports/{port}", expect=200)
    service.update_port(elsewhere, {"device_id": "", "binding:host_id": ""})
    wired.net("DELETE", f"/ports/{elsewhere}", expect=204)


def test_delete_releases_the_ports_it_made_and_keeps_the_users(wired, server):
    vifs = wired.compute.networking.vifs([server["id"]])
    taps = [wired.net_driver.tap_name(v.port_id) for v in vifs]
    assert wired.servers("DELETE", f"/{server['id']}").status_code == 204
    wait_for(lambda: wired.servers("GET", f"/{server['id']}").status_code == 404,
             timeout=120, what="the server to go")
    assert [v.created for v in vifs] == [True, False, True]
    for vif in vifs[::2]:
        wired.net("GET", f"/ports/{vif.port_id}", expect=404)
    mine = wired.net("GET", f"/ports/{wired.ids['mine']}", expect=200)["port"]
    assert mine["device_id"] == mine["device_owner"] == ""
    fip = wired.net("GET", f"/floatingips/{wired.ids['fip']}", expect=200)["floatingip"]
    assert fip["port_id"] is None and fip["fixed_ip_address"] is None
    # 10.0.0.10 is free again, and the floating IP can go to another port.
    again = wired.make("ports", {"network_id": wired.ids["private"],
                                 "fixed_ips": [{"ip_address": "10.0.0.10"}]})
    wired.net("PUT", f"/floatingips/{fip['id']}", expect=200,
              json={"floatingip": {"port_id": again["id"]}})
    wired.net("DELETE", f"/ports/{again['id']}", expect=204)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert not [t for t in taps if t in links]
    assert wired.compute.networking.vifs([server["id"]]) == []
