"""The network API in-process over a real SQLite DB, the host side recorded: Neutron's
shapes and status codes, IPAM, project scoping, and bad input answered with a 4xx that
leaves no row behind and tells the host nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from soko.common.db import session_scope
from soko.net import models

A = {"X-Auth-Token": "tok-a"}
B = {"X-Auth-Token": "tok-b"}
READER = {"X-Auth-Token": "tok-reader"}
ADMIN = {"X-Auth-Token": "tok-admin"}


def post(client, plural, singular, body, headers=A, status=201):
    resp = client.simulate_post(f"/v2.0/{plural}", headers=headers, json={singular: body})
    assert resp.status_code == status, resp.text
    return resp.json.get(singular) if status == 201 else resp.json


def network(client, headers=A, cidr="10.0.0.0/24", **subnet):
    net = post(client, "networks", "network", {"name": "private"}, headers)
    sub = post(client, "subnets", "subnet", {"network_id": net["id"], "cidr": cidr, **subnet},
               headers)
    return net, sub


def public(client):
    net = post(client, "networks", "network", {"name": "public", "router:external": True},
               ADMIN)
    post(client, "subnets", "subnet", {"network_id": net["id"], "cidr": "172.24.4.0/24",
                                       "enable_dhcp": False}, ADMIN)
    return net


def counts(manager) -> dict[str, int]:
    tables = (models.Network, models.Subnet, models.Port, models.IPAllocation, models.Router,
              models.FloatingIP, models.SecurityGroupRule)
    with session_scope(manager.sessions) as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in tables}


def test_subnet_defaults_and_the_dhcp_port(client):
    net, sub = network(client)
    assert sub["gateway_ip"] == "10.0.0.1"
    assert sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.0.0.254"}]
    assert client.simulate_get(f"/v2.0/networks/{net['id']}", headers=A).json[
        "network"]["subnets"] == [sub["id"]]
    dhcp = client.simulate_get("/v2.0/ports", headers=A,
                               params={"device_owner": "network:dhcp"}).json["ports"]
    assert [p["fixed_ips"][0]["ip_address"] for p in dhcp] == ["10.0.0.2"]
    port = post(client, "ports", "port", {"network_id": net["id"]})
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": "10.0.0.3"}]
    assert port["mac_address"].startswith("fa:16:3e:")


def test_overlapping_cidrs_across_projects_and_isolation(client):
    net_a, _ = network(client, A)
    net_b, _ = network(client, B)
    assert client.simulate_get(f"/v2.0/networks/{net_b['id']}", headers=A).status_code == 404
    listed = client.simulate_get("/v2.0/networks", headers=A).json["networks"]
    assert [n["id"] for n in listed] == [net_a["id"]]
    # Another project's network can't be used for a port either.
    post(client, "ports", "port", {"network_id": net_b["id"]}, A, status=404)


def test_default_security_group(client):
    groups = client.simulate_get("/v2.0/security-groups", headers=A).json["security_groups"]
    assert [g["name"] for g in groups] == ["default"]
    rules = {(r["direction"], r["remote_group_id"]) for r in groups[0]["security_group_rules"]}
    assert rules == {("egress", None), ("ingress", groups[0]["id"])}
    net, _ = network(client)
    port = post(client, "ports", "port", {"network_id": net["id"]})
    assert port["security_groups"] == [groups[0]["id"]]
    resp = client.simulate_delete(f"/v2.0/security-groups/{groups[0]['id']}", headers=A)
    assert resp.status_code == 409


def test_router_interface_floating_ip_and_in_use_conflicts(client, agent):
    ext = public(client)
    net, sub = network(client)
    router = post(client, "routers", "router", {
        "name": "r", "external_gateway_info": {"network_id": ext["id"]}})
    gw = router["external_gateway_info"]["external_fixed_ips"][0]["ip_address"]
    assert gw == "172.24.4.2"
    resp = client.simulate_put(f"/v2.0/routers/{router['id']}/add_router_interface",
                               headers=A, json={"subnet_id": sub["id"]})
    assert resp.status_code == 200 and resp.json["subnet_id"] == sub["id"]
    port = post(client, "ports", "port", {"network_id": net["id"]})
    fip = post(client, "floatingips", "floatingip", {"floating_network_id": ext["id"],
                                                     "port_id": port["id"]})
    assert fip["router_id"] == router["id"] and fip["fixed_ip_address"] == "10.0.0.3"
    assert ("router_changed", router["id"]) in agent.calls

    assert client.simulate_delete(f"/v2.0/routers/{router['id']}",
                                  headers=A).status_code == 409
    assert client.simulate_delete(f"/v2.0/networks/{net['id']}", headers=A).status_code == 409
    remove = client.simulate_put(f"/v2.0/routers/{router['id']}/remove_router_interface",
                                 headers=A, json={"subnet_id": sub["id"]})
    assert remove.status_code == 409  # a floating IP still needs the path
    assert client.simulate_delete(f"/v2.0/ports/{port['id']}", headers=A).status_code == 204
    fip = client.simulate_get(f"/v2.0/floatingips/{fip['id']}", headers=A).json["floatingip"]
    assert fip["port_id"] is None and fip["status"] == "DOWN"
    remove = client.simulate_put(f"/v2.0/routers/{router['id']}/remove_router_interface",
                                 headers=A, json={"subnet_id": sub["id"]})
    assert remove.status_code == 200
    assert client.simulate_delete(f"/v2.0/routers/{router['id']}",
                                  headers=A).status_code == 204
    assert client.simulate_delete(f"/v2.0/networks/{net['id']}", headers=A).status_code == 204


@pytest.mark.parametrize("case", [
    "overlapping subnet", "gateway outside cidr", "bad cidr", "pool holds gateway",
    "fixed ip in use", "fixed ip outside subnet", "unknown attribute",
    "floating ip without router", "floating ip on internal network",
    "non-admin external network", "reader creates", "gateway to internal network",
])
def test_bad_input_is_a_4xx_and_leaves_nothing(client, manager, agent, case):
    ext = public(client)
    net, sub = network(client)
    port = post(client, "ports", "port", {"network_id": net["id"]})
    before, told = counts(manager), len(agent.calls)
    status, plural, singular, body, headers = {
        "overlapping subnet": (400, "subnets", "subnet",
                               {"network_id": net["id"], "cidr": "10.0.0.128/25"}, A),
        "gateway outside cidr": (400, "subnets", "subnet",
                                 {"network_id": net["id"], "cidr": "10.1.0.0/24",
                                  "gateway_ip": "10.2.0.1"}, A),
        "bad cidr": (400, "subnets", "subnet", {"network_id": net["id"], "cidr": "10.1.0.1/24"},
                     A),
        "pool holds gateway": (400, "subnets", "subnet", {
            "network_id": net["id"], "cidr": "10.1.0.0/24",
            "allocation_pools": [{"start": "10.1.0.1", "end": "10.1.0.9"}]}, A),
        "fixed ip in use": (409, "ports", "port", {
            "network_id": net["id"], "fixed_ips": [{"ip_address": "10.0.0.3"}]}, A),
        "fixed ip outside subnet": (400, "ports", "port", {
            "network_id": net["id"], "fixed_ips": [{"ip_address": "10.9.0.3"}]}, A),
        "unknown attribute": (400, "networks", "network", {"name": "x", "colour": "red"}, A),
        "floating ip without router": (404, "floatingips", "floatingip", {
            "floating_network_id": ext["id"], "port_id": port["id"]}, A),
        "floating ip on internal network": (400, "floatingips", "floatingip", {
            "floating_network_id": net["id"]}, A),
        "non-admin external network": (403, "networks", "network", {
            "name": "mine", "router:external": True}, A),
        "reader creates": (403, "networks", "network", {"name": "r"}, READER),
        "gateway to internal network": (400, "routers", "router", {
            "name": "r", "external_gateway_info": {"network_id": net["id"]}}, A),
    }[case]
    answer = post(client, plural, singular, body, headers, status=status)
    assert answer["NeutronError"]["message"]
    assert counts(manager) == before
    assert len(agent.calls) == told


def test_update_and_delete_keep_addresses_consistent(client, manager):
    net, sub = network(client, allocation_pools=[{"start": "10.0.0.10", "end": "10.0.0.11"}])
    # Two addresses in the pool: the DHCP port holds .10, this port .11, the next gets none.
    assert post(client, "ports", "port", {"network_id": net["id"]})["fixed_ips"][0][
        "ip_address"] == "10.0.0.11"
    post(client, "ports", "port", {"network_id": net["id"]}, status=409)
    resp = client.simulate_put(f"/v2.0/subnets/{sub['id']}", headers=A,
                               json={"subnet": {"dns_nameservers": ["192.0.2.1"]}})
    assert resp.json["subnet"]["dns_nameservers"] == ["192.0.2.1"]
    assert client.simulate_delete(f"/v2.0/subnets/{sub['id']}", headers=A).status_code == 409


def test_host_routes_are_checked_and_kept(client):
    net = post(client, "networks", "network", {"name": "n"})
    bad = post(client, "subnets", "subnet", {
        "network_id": net["id"], "cidr": "10.0.0.0/24",
        "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.9.9.9"}]},
        status=400)
    assert "host_routes" in bad["NeutronError"]["message"]
    sub = post(client, "subnets", "subnet", {
        "network_id": net["id"], "cidr": "10.0.0.0/24",
        "host_routes": [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]})
    assert sub["host_routes"] == [{"destination": "192.168.0.0/16", "nexthop": "10.0.0.254"}]


def test_deleting_subnets_releases_the_dhcp_address(client, manager):
    net, first = network(client)
    second = post(client, "subnets", "subnet", {"network_id": net["id"],
                                                "cidr": "10.1.0.0/24"})
    dhcp = client.simulate_get("/v2.0/ports", headers=A,
                               params={"device_owner": "network:dhcp"}).json["ports"]
    assert sorted(a["ip_address"] for a in dhcp[0]["fixed_ips"]) == ["10.0.0.2", "10.1.0.2"]
    assert client.simulate_delete(f"/v2.0/subnets/{first['id']}", headers=A).status_code == 204
    dhcp = client.simulate_get("/v2.0/ports", headers=A,
                               params={"device_owner": "network:dhcp"}).json["ports"]
    assert [a["subnet_id"] for a in dhcp[0]["fixed_ips"]] == [second["id"]]
    assert client.simulate_delete(f"/v2.0/subnets/{second['id']}",
                                  headers=A).status_code == 204
    assert counts(manager)["ports"] == 0 and counts(manager)["ipallocations"] == 0


def test_a_port_bound_to_a_server_cannot_be_deleted_or_taken_by_another(client, manager):
    net, _ = network(client)
    port = post(client, "ports", "port", {"network_id": net["id"], "device_id": "server-1",
                                          "device_owner": "compute:nova"})
    before = counts(manager)
    for headers in (A, ADMIN):  # the server holds it, whoever asks
        resp = client.simulate_delete(f"/v2.0/ports/{port['id']}", headers=headers)
        assert resp.status_code == 409 and "in use by server server-1" in resp.text
    resp = client.simulate_put(f"/v2.0/ports/{port['id']}", headers=A,
                               json={"port": {"device_id": "server-2"}})
    assert resp.status_code == 409 and "already has an attached device server-1" in resp.text
    assert counts(manager) == before
    # Unbound (what compute does when the server goes), it is the user's again.
    resp = client.simulate_put(f"/v2.0/ports/{port['id']}", headers=A,
                               json={"port": {"device_id": "", "device_owner": ""}})
    assert resp.status_code == 200 and resp.json["port"]["device_id"] == ""
    assert client.simulate_delete(f"/v2.0/ports/{port['id']}", headers=A).status_code == 204


def test_an_external_network_takes_no_tenant_port(client, manager):
    external = public(client)
    before = counts(manager)
    resp = client.simulate_post("/v2.0/ports", headers=A,
                                json={"port": {"network_id": external["id"]}})
    assert resp.status_code == 403 and "use a floating IP" in resp.text
    assert counts(manager) == before
    assert client.simulate_post("/v2.0/ports", headers=ADMIN, json={
        "port": {"network_id": external["id"]}}).status_code == 201


BINDING = {"binding:host_id", "binding:profile", "binding:vif_type", "binding:vif_details"}


def test_binding_is_read_and_set_only_by_admin_or_a_service(client, manager):
    """Neutron's port policy: a tenant neither sees where its port is bound nor binds it
    (403, nothing changed); compute's service user binds any project's port, and it and an
    admin read the binding back, in show and in a filtered list."""
    net, _ = network(client)
    port = post(client, "ports", "port", {"network_id": net["id"], "name": "p"})
    assert not BINDING & set(port)
    before = counts(manager)
    for body in ({"binding:host_id": "elsewhere"}, {"binding:profile": {"a": 1}}):
        resp = client.simulate_post("/v2.0/ports", headers=A,
                                    json={"port": {"network_id": net["id"], **body}})
        assert resp.status_code == 403 and "disallowed by policy" in resp.text, resp.text
        resp = client.simulate_put(f"/v2.0/ports/{port['id']}", headers=A,
                                   json={"port": {"name": "q", **body}})
        assert resp.status_code == 403, resp.text
    assert counts(manager) == before
    shown = client.simulate_get(f"/v2.0/ports/{port['id']}", headers=A).json["port"]
    assert shown["name"] == "p" and not BINDING & set(shown)

    service = {"X-Auth-Token": "tok-service"}
    resp = client.simulate_put(f"/v2.0/ports/{port['id']}", headers=service, json={"port": {
        "binding:host_id": "host-1", "device_id": "server-1", "device_owner": "compute:nova"}})
    assert resp.status_code == 200, resp.text
    assert resp.json["port"]["binding:host_id"] == "host-1"
    for headers in (service, ADMIN):
        listed = client.simulate_get("/v2.0/ports", headers=headers,
                                     params={"binding:host_id": "host-1"}).json["ports"]
        assert [(p["id"], p["binding:host_id"], p["binding:profile"]) for p in listed] == [
            (port["id"], "host-1", {})]
    for got in (client.simulate_get(f"/v2.0/ports/{port['id']}", headers=A).json["port"],
                *client.simulate_get("/v2.0/ports", headers=A).json["ports"]):
        assert not BINDING & set(got)
    assert client.simulate_get("/v2.0/ports", headers=A, params={
        "binding:host_id": "nowhere"}).json["ports"]  # a tenant cannot filter on it either
    # The service role is for ports only: networks still need a project role.
    assert client.simulate_get(f"/v2.0/networks/{net['id']}",
                               headers=service).status_code == 403
    resp = client.simulate_post("/v2.0/ports", headers=B, json={"port": {
        "network_id": net["id"]}})
    assert resp.status_code == 404
