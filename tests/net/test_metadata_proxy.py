"""The metadata proxy for real: namespaces standing in for instances (plugged as their
ports' taps, addressed by DHCP) ask 169.254.169.254 through their router, and compute's
metadata API (in-process, over loopback HTTP) answers for the instance the proxy found."""

from __future__ import annotations

import json
import os
import signal
import uuid
from types import SimpleNamespace

import pytest

from soko.common.db import session_scope
from soko.compute.models import Instance
from tests.net.conftest import metadata_cloud
from tests.net.plumbing import dhcp, in_ns, proxy_pids
from tests.support import wait_for

pytestmark = pytest.mark.privileged

A = {"X-Auth-Token": "tok-a"}


def fetch(namespace: str, path: str, headers: dict | None = None) -> tuple[int, str]:
    """A guest's GET to the metadata address (curl: a Python client's start-up alone
    costs a second on a loaded host)."""
    argv = ["curl", "-s", "-m", "10", "-w", "\n%{http_code}"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    out = in_ns(namespace, *argv, f"http://169.254.169.254{path}", timeout=20).stdout
    body, _, status = out.rpartition("\n")
    return int(status), body.rstrip("\n")


@pytest.fixture
def cloud(tmp_path):
    with metadata_cloud(tmp_path) as made:
        yield made
    assert not proxy_pids(tmp_path), "the metadata proxy outlived soko down"


def call(client, method, path, body=None, status=None):
    resp = client.simulate_request(method, path, headers=A, json=body)
    assert resp.status_code == (status or {"POST": 201}.get(method, 200)), resp.text
    return resp.json


def add_instance(cloud, name: str) -> str:
    instance_id = str(uuid.uuid4())
    with session_scope(cloud.compute.sessions) as s:
        s.add(Instance(id=instance_id, project_id="proj-a", user_id="user-proj-a", name=name,
                       flavor_id="1", vcpus=1, ram=512, vm_state="active",
                       key_name="k", key_data=f"ssh-ed25519 AAAA {name}"))
    return instance_id


def test_guests_get_their_own_metadata_and_nothing_else(cloud, netns, plugs, tmp_path):
    client = cloud.client
    net = call(client, "POST", "/v2.0/networks", {"network": {"name": "private"}})["network"]
    subnet = call(client, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net["id"], "cidr": "10.0.0.0/24"}})["subnet"]
    router = call(client, "POST", "/v2.0/routers", {"router": {"name": "r"}})["router"]
    call(client, "PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
         {"subnet_id": subnet["id"]})
    guests = {}
    for name in ("vm-a", "vm-b"):
        instance_id = add_instance(cloud, name)
        port = call(client, "POST", "/v2.0/ports", {"port": {
            "network_id": net["id"], "device_id": instance_id,
            "device_owner": "compute:nova"}})["port"]
        namespace = netns("soko-inst")
        plugs.plug(namespace, cloud.driver.bridge_name(net["id"]), mac=port["mac_address"],
                   host_end=cloud.driver.tap_name(port["id"]))
        dhcp(namespace, tmp_path / f"{name}.lease")
        guests[name] = SimpleNamespace(id=instance_id, ns=namespace, port=port)
    a, b = guests["vm-a"], guests["vm-b"]

    status, body = fetch(a.ns, "/openstack/latest/meta_data.json")
    assert status == 200, body
    meta = json.loads(body)
    assert (meta["uuid"], meta["hostname"]) == (a.id, "vm-a")
    assert meta["public_keys"] == {"k": "ssh-ed25519 AAAA vm-a"}
    assert fetch(b.ns, "/latest/meta-data/instance-id") == (200, b.id)
    assert fetch(a.ns, "/latest/meta-data/local-ipv4") == (
        200, a.port["fixed_ips"][0]["ip_address"])
    network_data = json.loads(fetch(a.ns, "/openstack/latest/network_data.json")[1])
    assert network_data["links"][0]["ethernet_mac_address"] == a.port["mac_address"]

    # Whatever a guest claims in headers, it gets its own instance.
    forged = {"X-Instance-ID": b.id, "X-Tenant-ID": "proj-a", "X-Forwarded-For":
              b.port["fixed_ips"][0]["ip_address"], "X-Instance-ID-Signature": "0" * 64}
    assert fetch(a.ns, "/latest/meta-data/instance-id", forged) == (200, a.id)
    # Only the metadata trees: nothing else of compute's API is reachable this way.
    assert fetch(a.ns, "/healthcheck")[0] == 404
    assert fetch(a.ns, "/v2.1/os-keypairs", {"X-Auth-Token": "tok-a"})[0] == 404
    # An address no instance's port holds (plugged without a port) gets nothing.
    stranger = netns("soko-stranger")
    plugs.plug(stranger, cloud.driver.bridge_name(net["id"]), address="10.0.0.200/24")
    in_ns(stranger, "ip", "route", "add", "default", "via", "10.0.0.1")
    assert fetch(stranger, "/openstack/latest/meta_data.json")[0] == 404

    # A port given to another device moves the answer with it (the map follows the DB).
    call(client, "PUT", f"/v2.0/ports/{b.port['id']}", {"port": {"device_id": ""}})
    assert fetch(b.ns, "/latest/meta-data/instance-id")[0] == 404

    # Killed hard, the proxy is back after the next reconcile, and only once.
    [pid] = proxy_pids(tmp_path)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not proxy_pids(tmp_path), what="the killed proxy to go")
    cloud.manager.agent.reconcile()
    cloud.manager.agent.reconcile()
    assert len(proxy_pids(tmp_path)) == 1
    assert fetch(a.ns, "/latest/meta-data/instance-id") == (200, a.id)

    # The router gone, the network's DHCP namespace serves its metadata instead.
    call(client, "PUT", f"/v2.0/routers/{router['id']}/remove_router_interface",
         {"subnet_id": subnet["id"]})
    assert cloud.driver.metadata.serving() == {cloud.driver.names.dhcp_namespace(net["id"])}
    assert len(proxy_pids(tmp_path)) == 1


def test_a_network_without_a_router_serves_metadata_from_its_dhcp_namespace(cloud, netns,
                                                                             plugs, tmp_path):
    """Neutron's isolated metadata: the DHCP port holds 169.254.169.254 and DHCP option 121
    routes guests to it; a router added later takes over."""
    client = cloud.client
    net = call(client, "POST", "/v2.0/networks", {"network": {"name": "isolated"}})["network"]
    subnet = call(client, "POST", "/v2.0/subnets", {"subnet": {
        "network_id": net["id"], "cidr": "10.9.0.0/24"}})["subnet"]
    instance_id = add_instance(cloud, "lonely")
    port = call(client, "POST", "/v2.0/ports", {"port": {
        "network_id": net["id"], "device_id": instance_id, "device_owner": "compute:nova"}})
    namespace = netns("soko-inst")
    plugs.plug(namespace, cloud.driver.bridge_name(net["id"]),
               mac=port["port"]["mac_address"], host_end=cloud.driver.tap_name(port["port"]["id"]))
    dhcp(namespace, tmp_path / "lonely.lease")
    routes = in_ns(namespace, "ip", "route").stdout
    assert "169.254.169.254 via 10.9.0.2" in routes and "default via 10.9.0.1" in routes, routes
    assert fetch(namespace, "/latest/meta-data/instance-id") == (200, instance_id)
    assert fetch(namespace, "/latest/meta-data/hostname") == (200, "lonely")

    router = call(client, "POST", "/v2.0/routers", {"router": {"name": "r"}})["router"]
    call(client, "PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
         {"subnet_id": subnet["id"]})
    dhcp_ns = cloud.driver.names.dhcp_namespace(net["id"])
    assert "169.254.169.254" not in in_ns(dhcp_ns, "ip", "-4", "addr").stdout
    in_ns(namespace, "ip", "route", "del", "169.254.169.254")  # as a lease renewal would
    assert fetch(namespace, "/latest/meta-data/instance-id") == (200, instance_id)
