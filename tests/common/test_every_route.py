"""Malformed input to every route of identity, block, image, compute and net: never a 5xx,
never a traceback, and no state change (issue 13).

Routes come from the falcon apps themselves, so a new route is covered as soon as it
exists; one that reads a body must be given an example body here (the test says so), from
which every field is replaced in turn by values no field accepts. Every route also gets
bodies that are not what any API reads (nested too deep, not JSON, not finite, the wrong
type or content type), ids that are not ids in each path parameter, and (GETs) malformed
query parameters. Bodies are sent as an admin, whose requests pass every policy and reach
the deepest checks; ids and queries also as a project member.
"""

from __future__ import annotations

import json
import struct

import falcon.inspect

from tests.cloud import PROJECT, TOKENS, cloud  # noqa: F401 (the in-process cloud)

IQN = "iqn.2026-11.org.test:fuzz"


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


# Values no field of any soko API accepts ([] only where a scalar is expected).
POISON = [2**70, -(2**63), "a\x00b", nested(40)]
SCALAR_POISON = [[]]

# Raw bodies that no route reads as a valid request: (bytes, content type).
DEEP = (b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000)
JSON = "application/json"
BAD_BODIES = [
    *((body, JSON) for body in DEEP),
    (b"[" * 100000, JSON),
    (b"{not json", JSON),
    (b"\x00\xff\xfe\x00", JSON),
    (b"NaN", JSON),
    (b'{"x": 1e400}', JSON),
    (b"1" * 5000, JSON),
    *((json.dumps(v).encode(), JSON) for v in ([], "x", 7, None, True, {})),
    (b'{"a": "' + b"x" * (1 << 20) + b'"}', JSON),
    (b"a=b&c=d", "application/x-www-form-urlencoded"),
    (b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--\r\n",
     "multipart/form-data; boundary=x"),
    (b"<xml/>", "application/xml"),
]
# Not an id, a name or a project of any kind (each route's own unknown ids are 404s).
BAD_IDS = ["..%2F..%2Fv2%2Fimages", "a%00b", "a%0Ab", "x" * 2000, "%FF%00"]
BAD_QUERIES = [{"limit": "9" * 30}, {"limit": "-1"}, {"limit": "x"}, {"marker": "../x"},
               {"marker": "a\x00b"}, {"name": "a\x00b"}, {"all_tenants": "maybe"},
               {"usage": "\x00"}, {"visibility": "../x"}, {"nocatalog": "\x00"}]
QCOW2_V99 = b"QFI\xfb" + struct.pack(">I", 99) + bytes(504)
BAD_IMAGE_DATA = [b"", QCOW2_V99, b"\xff" * (1 << 20)]


def server_boot(**source) -> dict:
    return {"server": {"name": "s", "flavorRef": "1", "user_data": "IyEvYmluL3NoCg==",
                       "block_device_mapping_v2": [{
        "boot_index": 0, "destination_type": "volume", "delete_on_termination": False,
        **source}]}}


def examples(ids: dict) -> dict[tuple[str, str, str], list]:
    """A valid-looking body per (service, method, route) that reads one."""
    volume = {"volume": {"size": 1, "name": "n", "description": "d", "metadata": {"k": "v"}}}
    backup = {"backup": {"volume_id": ids["volume"], "name": "n", "description": "d",
                         "incremental": False, "force": False}}
    server = [server_boot(uuid=ids["volume"], source_type="volume"),
              server_boot(uuid=ids["raw_image"], source_type="image", volume_size=1)]
    flavor = {"flavor": {"name": "fz", "vcpus": 1, "ram": 64, "disk": 0, "id": "fz1"}}
    p = "/v3/{project_id}"
    return {**net_examples(ids),
        ("identity", "POST", "/v3/auth/tokens"): [{"auth": {"identity": {
            "methods": ["password"], "password": {"user": {
                "name": "alice", "domain": {"name": "Default"}, "password": "alice-password"}}},
            "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}}}],
        ("identity", "POST", "/v3/projects"): [
            {"project": {"name": "fz", "description": "d", "enabled": True}}],
        ("identity", "PATCH", "/v3/projects/{project_id}"): [
            {"project": {"description": "d", "enabled": True}}],
        ("identity", "POST", "/v3/users"): [{"user": {
            "name": "fz", "password": "fuzz-password-1", "email": "e@example.com",
            "enabled": True, "default_project_id": ids["project"]}}],
        ("identity", "PATCH", "/v3/users/{user_id}"): [{"user": {"email": "e@example.com"}}],
        ("identity", "POST", "/v3/users/{user_id}/password"): [{"user": {
            "original_password": "ops-password", "password": "fuzz-password-2"}}],
        ("identity", "POST", "/v3/credentials"): [{"credential": {
            "type": "ec2", "user_id": ids["user"], "project_id": ids["project"],
            "blob": json.dumps({"access": "A" * 20, "secret": "s" * 20})}}],
        ("identity", "POST", "/v3/users/{user_id}/credentials/OS-EC2"): [
            {"tenant_id": ids["project"]}],
        ("block", "POST", f"{p}/volumes"): [volume, {"volume": {
            "size": 1, "imageRef": ids["raw_image"]}}, {"volume": {
                "size": 1, "snapshot_id": ids["snapshot"]}}],
        ("block", "POST", f"{p}/volumes/detail"): [volume],
        ("block", "PUT", f"{p}/volumes/{{volume_id}}"): [{"volume": {
            "name": "n", "description": "d", "metadata": {"k": "v"}}}],
        ("block", "POST", f"{p}/volumes/{{volume_id}}/action"): [
            {"os-extend": {"new_size": 2}},
            {"os-initialize_connection": {"connector": {"initiator": IQN}}},
            {"os-attach": {"connector": {"initiator": IQN}, "instance_uuid": ids["server"]}},
            {"os-local_attach": None},
            {"os-volume_upload_image": {"image_name": "n", "disk_format": "raw",
                                        "force": False}}],
        ("block", "POST", f"{p}/snapshots"): [{"snapshot": {
            "volume_id": ids["volume"], "name": "n", "description": "d", "force": False,
            "metadata": {"k": "v"}, "quiesce": False}}],
        ("block", "POST", f"{p}/snapshots/detail"): [{"snapshot": {"volume_id": ids["volume"]}}],
        ("block", "PUT", f"{p}/snapshots/{{snapshot_id}}"): [{"snapshot": {"name": "n"}}],
        ("block", "POST", f"{p}/snapshots/{{snapshot_id}}/action"): [{"os-local_attach": None}],
        ("block", "PUT", f"{p}/os-quota-sets/{{target_id}}"): [{"quota_set": {
            "volumes": 5, "gigabytes": 5, "snapshots": 5}}],
        ("block", "POST", f"{p}/backups"): [backup],
        ("block", "POST", f"{p}/backups/detail"): [backup],
        ("block", "POST", f"{p}/backups/{{backup_id}}/restore"): [{"restore": {
            "volume_id": ids["volume"], "name": "n"}}],
        ("image", "POST", "/v2/images"): [{"name": "n", "disk_format": "raw",
                                           "container_format": "bare",
                                           "visibility": "private"}],
        ("compute", "POST", "/v2.1/flavors"): [flavor],
        ("compute", "POST", "/v2.1/flavors/detail"): [flavor],
        ("compute", "POST", "/v2.1/servers"): server,
        ("compute", "POST", "/v2.1/servers/detail"): server,
        ("compute", "POST", "/v2.1/servers/{server_id}/action"): [
            {"os-stop": None}, {"reboot": {"type": "HARD"}},
            {"os-getConsoleOutput": {"length": 10}},
            {"soko-quiesce": {"volume_id": ids["volume"], "mountpoints": ["/"],
                              "max_seconds": 5}}],
        ("compute", "POST", "/v2.1/servers/{server_id}/os-volume_attachments"): [
            {"volumeAttachment": {"volumeId": ids["volume"]}}],
        ("compute", "POST", "/v2.1/os-keypairs"): [{"keypair": {
            "name": "fuzz", "type": "ssh", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"
            "AAAAIDvHnDQ2ZlDyIMWzMmcRwW3VtP7dCJBt8x/pjFAm7Uq+ fuzz"}}],
    }


def net_examples(ids: dict) -> dict[tuple[str, str, str], list]:
    net, subnet, port = ids["net:networks"], ids["net:subnets"], ids["net:ports"]
    group, public = ids["net:security-groups"], ids["net:public"]
    network = {"network": {"name": "n", "description": "d", "admin_state_up": True,
                           "shared": False, "router:external": False,
                           "port_security_enabled": True}}
    subnet_fields = {"name": "n", "description": "d", "dns_nameservers": ["10.0.0.53"],
                     "host_routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.0.5"}],
                     "enable_dhcp": True}
    port_fields = {"name": "n", "description": "d", "device_id": "d",
                   "device_owner": "compute:nova", "admin_state_up": True,
                   "security_groups": [group], "port_security_enabled": True}
    router = {"router": {"name": "n", "description": "d", "admin_state_up": True,
                         "external_gateway_info": {"network_id": public, "enable_snat": True,
                                                   "external_fixed_ips": [
                                                       {"ip_address": "172.24.4.50"}]}}}
    rule = {"security_group_id": group, "direction": "ingress", "ethertype": "IPv4",
            "protocol": "udp", "port_range_min": 53, "port_range_max": 53, "description": "d"}
    v = "/v2.0"
    return {
        ("net", "POST", f"{v}/networks"): [{"network": {**network["network"], "mtu": 1400}}],
        ("net", "PUT", f"{v}/networks/{{item_id}}"): [network],
        ("net", "POST", f"{v}/subnets"): [{"subnet": {
            **subnet_fields, "network_id": net, "cidr": "10.0.2.0/24", "ip_version": 4,
            "gateway_ip": "10.0.2.1",
            "host_routes": [{"destination": "10.9.0.0/16", "nexthop": "10.0.2.5"}],
            "allocation_pools": [{"start": "10.0.2.10", "end": "10.0.2.20"}]}}],
        ("net", "PUT", f"{v}/subnets/{{item_id}}"): [{"subnet": subnet_fields}],
        ("net", "POST", f"{v}/ports"): [{"port": {
            **port_fields, "network_id": net, "mac_address": "fa:16:3e:00:00:01",
            "fixed_ips": [{"subnet_id": subnet, "ip_address": "10.0.0.50"}]}}],
        ("net", "PUT", f"{v}/ports/{{item_id}}"): [{"port": port_fields}],
        ("net", "POST", f"{v}/routers"): [router],
        ("net", "PUT", f"{v}/routers/{{item_id}}"): [router, {"router": {
            "name": "n", "external_gateway_info": {"network_id": public, "enable_snat": True}}}],
        ("net", "PUT", f"{v}/routers/{{item_id}}/add_router_interface"): [
            {"subnet_id": ids["net:spare_subnet"]}, {"port_id": port}],
        ("net", "PUT", f"{v}/routers/{{item_id}}/remove_router_interface"): [
            {"subnet_id": subnet}, {"port_id": port}],
        ("net", "POST", f"{v}/floatingips"): [
            {"floatingip": {"floating_network_id": public, "floating_ip_address": "172.24.4.60",
                            "port_id": port, "fixed_ip_address": "10.0.0.3",
                            "description": "d"}},
            {"floatingip": {"floating_network_id": public,
                            "subnet_id": ids["net:public_subnet"]}}],
        ("net", "PUT", f"{v}/floatingips/{{item_id}}"): [{"floatingip": {
            "port_id": port, "fixed_ip_address": "10.0.0.3", "description": "d"}}],
        ("net", "POST", f"{v}/security-groups"): [
            {"security_group": {"name": "n", "description": "d"}}],
        ("net", "PUT", f"{v}/security-groups/{{item_id}}"): [
            {"security_group": {"name": "n", "description": "d"}}],
        ("net", "POST", f"{v}/security-group-rules"): [
            {"security_group_rule": {**rule, "remote_ip_prefix": "10.0.0.0/8"}},
            {"security_group_rule": {**rule, "remote_group_id": group}}],
    }


# Writes that read no JSON body: only their path parameters are malformed (a rule has no
# update: 405 whatever the body).
BODYLESS = {("identity", "PUT", "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"),
            ("net", "PUT", "/v2.0/security-group-rules/{item_id}")}
BINARY = {("image", "PUT", "/v2/images/{image_id}/file"): BAD_IMAGE_DATA}


def path_values(ids: dict, route: str) -> dict[str, dict[str, str]]:
    """Each service's path parameters; net's one ``{item_id}`` is the seeded item of the
    route's resource (``/v2.0/ports/{item_id}`` a port)."""
    plural = route.split("/{item_id}")[0].rsplit("/", 1)[-1]
    return {
        "identity": {"project_id": ids["project"], "user_id": ids["user"], "role_id": "member",
                     "credential_id": "0" * 64, "access": "A" * 20},
        "block": {"project_id": PROJECT, "target_id": PROJECT, "volume_id": ids["volume"],
                  "snapshot_id": ids["snapshot"], "backup_id": ids["unknown"]},
        "image": {"image_id": ids["image"]},
        "compute": {"flavor_id": "1", "server_id": ids["server"], "volume_id": ids["volume"],
                    "name": "fuzz"},
        "net": {"item_id": ids.get(f"net:{plural}", "")},
    }


def mutations(body):
    """``body`` with one scalar (or one list or object) replaced by each poison value."""
    def walk(value, replace):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, lambda new, key=key: replace({**value, key: new}))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, lambda new, i=i: replace(
                    value[:i] + [new] + value[i + 1:]))
        if value is not body:
            scalar = not isinstance(value, (dict, list))
            for poison in POISON + (SCALAR_POISON if scalar else []):
                yield replace(poison)
    yield from walk(body, lambda new: new)


def requests_for(service: str, method: str, route: str, ids: dict):
    """(path, query, body bytes, content type, as whom) of each malformed request to one
    route: bodies as an admin, whom no policy stops before they are read; ids and queries
    also as a member, whose project scope is checked too."""
    values = path_values(ids, route)[service]
    params = [name for name in values if "{" + name + "}" in route]
    path = route.format(**{name: values[name] for name in params})
    key = (service, method, route)
    reads_body = method in ("POST", "PUT", "PATCH") and key not in BODYLESS
    valid = examples(ids).get(key, [{}])
    if reads_body and key not in BINARY:
        assert key in examples(ids), (
            f"new route {method} {route} ({service}): give it an example body in "
            "tests/common/test_every_route.py (or list it in BODYLESS)")
        for body, content_type in BAD_BODIES:
            yield path, None, body, content_type, ADMIN
        for example in valid:
            for content_type in ("text/plain", "application/x-www-form-urlencoded"):
                yield path, None, json.dumps(example).encode(), content_type, ADMIN
            for mutated in mutations(example):
                yield path, None, json.dumps(mutated).encode(), JSON, ADMIN
    for data in BINARY.get(key, []):
        yield path, None, data, "application/octet-stream", ADMIN
    if method in ("GET", "HEAD"):
        for query in BAD_QUERIES:
            yield path, query, None, None, ANYONE
    for name in params:
        for bad in BAD_IDS:
            bad_path = route.format(**{**{n: values[n] for n in params}, name: bad})
            body = json.dumps(valid[0]).encode() if reads_body else None
            yield bad_path, None, body, JSON, ANYONE


def every_route(cloud):  # noqa: F811
    for service, client in cloud.clients.items():
        for route in falcon.inspect.inspect_app(client.app).routes:
            for method in sorted({m.method for m in route.methods if not m.internal}):
                yield service, method, route.path


ANYONE, ADMIN = ("member", "admin"), ("admin",)


def token_of(cloud, service: str, role: str) -> str | None:  # noqa: F811
    if service == "identity":  # the seeded admin, once (logins need no token)
        return cloud.identity_token if role == "admin" else None
    return TOKENS[role]


# A refused login counts towards the lockout by design (a wrong password is a real attempt).
COUNTED = {("identity", "POST", "/v3/auth/tokens"): "identity.login_failures"}


def test_malformed_input_to_every_route_is_a_4xx_and_changes_nothing(cloud):  # noqa: F811
    failures, sent = [], 0
    for service, method, route in every_route(cloud):
        client = cloud.clients[service]
        before = cloud.state()
        for path, query, body, content_type, roles in requests_for(service, method, route,
                                                                   cloud.ids):
            for token in filter(None, (token_of(cloud, service, role) for role in roles)):
                headers = {"X-Auth-Token": token}
                if content_type:
                    headers["Content-Type"] = content_type
                resp = client.simulate_request(method, path, params=query, body=body,
                                               headers=headers)
                sent += 1
                if resp.status_code >= 500 or "Traceback" in resp.text:
                    failures.append(f"{resp.status_code} {method} {path} {query or ''} "
                                    f"{(body or b'')[:120]!r} {content_type}: {resp.text[:300]}")
        after = cloud.state()
        ignored = COUNTED.get((service, method, route))
        changed = [k for k in after if after[k] != before.get(k) and k != ignored]
        if changed:
            failures.append(f"{method} {route} ({service}) changed {changed}")
    assert not failures, f"{len(failures)} of {sent} requests:\n" + "\n".join(failures[:40])
    assert sent > 2000
