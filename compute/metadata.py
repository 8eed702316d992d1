"""The metadata API guests read at 169.254.169.254: the OpenStack paths (``/openstack/...``)
and the EC2 ones (``/latest/meta-data/...``), served by soko-compute as Nova's is.

A guest never reaches this directly: the network service's metadata proxy (in the router
or DHCP namespace, ``net/metadata_proxy.py``) finds the instance from the port that owns
the request's source address and adds its identity, signed with the shared secret as
Neutron does (``X-Instance-ID``, ``X-Tenant-ID``, ``X-Instance-ID-Signature``: the
HMAC-SHA256 of the instance id). The proxy also hands over what the network service knows
of the instance's ports (``X-Soko-Ports``, signed with the instance id), which is what
``network_data.json``, ``local-ipv4`` and ``public-ipv4`` are made of. A request without a
valid signature is refused, whatever else it says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import re

import falcon
from sqlalchemy.orm import Session, sessionmaker

from soko.common.db import session_scope
from soko.common.errors import BadRequest, Forbidden, NotFound
from soko.compute.models import Instance

INSTANCE_HEADER = "X-Instance-ID"
PROJECT_HEADER = "X-Tenant-ID"
SIGNATURE_HEADER = "X-Instance-ID-Signature"
PORTS_HEADER = "X-Soko-Ports"
PORTS_SIGNATURE_HEADER = "X-Soko-Ports-Signature"
# The dated versions whose content equals "latest" here (what cloud-init may ask for).
OPENSTACK_VERSIONS = ("2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
                      "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "latest")
EC2_VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10",
                "2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04", "latest")
AVAILABILITY_ZONE = "nova"  # what Nova calls its default zone; clients expect one


def signature(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def ports_signature(secret: bytes, instance_id: str, ports_header: str) -> str:
    return signature(secret, f"{instance_id}\n{ports_header}")


def hostname_of(name: str) -> str:
    """A DNS label from the server name, as Nova sanitizes it."""
    label = re.sub(r"[^a-z0-9-]", "", re.sub(r"[ _.]", "-", name.lower())).strip("-")
    return label[:63].rstrip("-") or "server"


class Guest:
    """One instance as its metadata shows it."""

    def __init__(self, instance: Instance, ports: list[dict]):
        self.instance = instance
        self.ports = ports
        self.hostname = hostname_of(instance.name)

    def user_data(self) -> bytes | None:
        data = self.instance.user_data
        return base64.b64decode(data) if data else None

    def meta_data(self) -> dict:
        i = self.instance
        keys = {i.key_name: i.key_data} if i.key_name and i.key_data else {}
        return {"uuid": i.id, "name": i.name, "hostname": self.hostname,
                "launch_index": 0, "availability_zone": AVAILABILITY_ZONE,
                "project_id": i.project_id, "meta": i.meta or {},
                "public_keys": keys,
                "keys": [{"name": n, "type": "ssh", "data": k} for n, k in keys.items()],
                "devices": []}

    def network_data(self) -> dict:
        links, networks, dns = [], [], []
        for index, port in enumerate(self.ports):
            link = f"tap{port['id'][:11]}"
            links.append({"id": link, "vif_id": port["id"], "type": "bridge",
                          "mtu": port.get("mtu"), "ethernet_mac_address": port["mac"]})
            network = {"id": f"network{index}", "link": link, "network_id": port["network_id"]}
            if port.get("dhcp"):
                network["type"] = "ipv4_dhcp"
            else:
                cidr = ipaddress.ip_network(port["cidr"])
                network.update(type="ipv4", ip_address=port["ip"], netmask=str(cidr.netmask),
                               routes=[{"network": "0.0.0.0", "netmask": "0.0.0.0",
                                        "gateway": port["gateway"]}] if port.get("gateway")
                               else [])
            networks.append(network)
            dns += [d for d in port.get("dns", []) if d not in dns]
        return {"links": links, "networks": networks,
                "services": [{"type": "dns", "address": d} for d in dns]}

    def ec2_items(self) -> dict[str, str | dict]:
        first = self.ports[0] if self.ports else {}
        key = {"0": {"openssh-key": self.instance.key_data + "\n"}} \
            if self.instance.key_data else {}
        return {"ami-launch-index": "0", "hostname": self.hostname,
                "instance-id": self.instance.id, "instance-type": self.instance.flavor_id,
                "local-hostname": self.hostname, "local-ipv4": first.get("ip", ""),
                "placement": {"availability-zone": AVAILABILITY_ZONE},
                "public-hostname": self.hostname,
                "public-ipv4": first.get("floating_ip") or "", "public-keys": key}


def listing(names) -> str:
    return "\n".join(names)


def ec2_answer(guest: Guest, parts: list[str]) -> str:
    """``meta-data/...``: a directory lists its entries (``name/`` for a directory), a
    leaf is its value; ``public-keys/`` lists ``0=<key name>`` as EC2 does."""
    node: str | dict = guest.ec2_items()
    for depth, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise NotFound("The resource could not be found.")
        node = node[part]
        if depth == 0 and part == "public-keys" and len(parts) == 1:
            return listing(f"0={guest.instance.key_name}" for _ in node)
    if isinstance(node, dict):
        return listing(k + ("/" if isinstance(v, dict) else "") for k, v in node.items())
    return node


class MetadataSink:
    """Every metadata path; ``public`` only as far as tokens go: the signature decides."""

    public = True

    def __init__(self, sessions: sessionmaker[Session], secret: bytes):
        self.sessions = sessions
        self.secret = secret

    def guest(self, req: falcon.Request) -> Guest:
        instance_id = req.get_header(INSTANCE_HEADER)
        if not instance_id:
            raise BadRequest("X-Instance-ID header is missing from request.")
        given = req.get_header(SIGNATURE_HEADER) or ""
        if not hmac.compare_digest(given, signature(self.secret, instance_id)):
            raise Forbidden("Invalid proxy request signature.")
        ports_header = req.get_header(PORTS_HEADER) or ""
        ports = []
        if ports_header:
            if not hmac.compare_digest(req.get_header(PORTS_SIGNATURE_HEADER) or "",
                                       ports_signature(self.secret, instance_id, ports_header)):
                raise Forbidden("Invalid proxy request signature.")
            ports = json.loads(base64.b64decode(ports_header))
        with session_scope(self.sessions) as s:
            instance = s.get(Instance, instance_id)
        if instance is None or instance.project_id != req.get_header(PROJECT_HEADER):
            raise NotFound("Instance not found.")
        return Guest(instance, ports)

    def __call__(self, req: falcon.Request, resp: falcon.Response, **_) -> None:
        if req.method not in ("GET", "HEAD"):
            raise falcon.HTTPMethodNotAllowed(["GET", "HEAD"])
        guest = self.guest(req)
        parts = [p for p in req.path.split("/") if p]
        resp.content_type = falcon.MEDIA_TEXT
        if parts[0] == "openstack":
            body = self.openstack(guest, parts[1:])
        else:
            body = self.ec2(guest, parts)
        if isinstance(body, dict):
            resp.content_type = falcon.MEDIA_JSON
            body = json.dumps(body)
        resp.data = body if isinstance(body, bytes) else body.encode()

    def openstack(self, guest: Guest, parts: list[str]) -> str | bytes | dict:
        if not parts:
            return listing(OPENSTACK_VERSIONS)
        if parts[0] not in OPENSTACK_VERSIONS or len(parts) > 2:
            raise NotFound("The resource could not be found.")
        user_data = guest.user_data()
        if len(parts) == 1:
            return listing(["meta_data.json", "network_data.json", "vendor_data.json",
                            *(["user_data"] if user_data is not None else [])])
        if parts[1] == "meta_data.json":
            return guest.meta_data()
        if parts[1] == "network_data.json":
            return guest.network_data()
        if parts[1] == "vendor_data.json":
            return {}
        if parts[1] == "user_data" and user_data is not None:
            return user_data
        raise NotFound("The resource could not be found.")

    def ec2(self, guest: Guest, parts: list[str]) -> str | bytes:
        if parts[0] not in EC2_VERSIONS:
            raise NotFound("The resource could not be found.")
        user_data = guest.user_data()
        if len(parts) == 1:
            return listing(["meta-data/", *(["user-data"] if user_data is not None else [])])
        if parts[1] == "user-data" and len(parts) == 2 and user_data is not None:
            return user_data
        if parts[1] == "meta-data":
            return ec2_answer(guest, parts[2:])
        raise NotFound("The resource could not be found.")


def add_routes(app: falcon.App, sessions: sessionmaker[Session], secret: bytes) -> None:
    versions = "|".join(re.escape(v) for v in EC2_VERSIONS)
    app.add_sink(MetadataSink(sessions, secret), re.compile(rf"^/(openstack|{versions})(/.*)?$"))
