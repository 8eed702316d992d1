"""Instances on tenant networks: the ports compute makes (or binds, when the user brings
one) on the network service, as Nova calls Neutron; the NICs libvirt plugs for them; the
addresses a server shows; and the ports a crash left behind.

Two credentials, as Nova's: a port is made (or the user's port read) with the caller's
token, so the network service decides whether the user may use that network or port; it
is bound with compute's service user (``[compute] service_user``), since only an admin or a
service may set ``binding:host_id`` and read ``binding:*`` (Neutron's port policy). Binding
sets ``device_id`` to the server and ``device_owner`` to ``compute:nova``: the network
service then refuses to delete the port (409) or bind it to another server. Where its tap
goes (bridge and tap name) is the binding's answer (``binding:vif_details``, Neutron's
linuxbridge binding): the security-group chains match on that tap name. Everything is
checked and made before the server exists; a refusal undoes what was made, so a bad
request leaves no port behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import logging
import time

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict
from soko.common.validation import check_id
from soko.compute.clients import RemoteError, ServiceClient, ServiceCredential, remote_answer
from soko.compute.drivers.base import Nic
from soko.compute.models import Vif

log = logging.getLogger("soko.compute.networking")

OWNER = "compute:nova"  # Nova's device_owner for an instance's port
NIC_KEYS = {"uuid", "fixed_ip", "port", "tag"}


@dataclasses.dataclass(frozen=True)
class NicRequest:
    """One entry of Nova's ``networks``: a new port on ``network_id`` (at ``fixed_ip``),
    or the user's existing ``port_id`` (which keeps its own security groups)."""

    network_id: str | None = None
    fixed_ip: str | None = None
    port_id: str | None = None


@dataclasses.dataclass(frozen=True)
class NetworkRequest:
    """Nova's ``networks`` (a list, or "auto"/"none" since microversion 2.37) and
    ``security_groups`` of a server create. "auto" here: a NIC on the one tenant network
    the project can use (its own or a shared one); soko allocates no topology, since
    ``soko up`` makes ``private`` for the demo project."""

    nics: tuple[NicRequest, ...] = ()
    auto: bool = False
    security_groups: tuple[str, ...] = ()


def network_request(networks: object, groups: object) -> NetworkRequest | None:
    """The request's networks, checked for shape; None: no NIC asked for (or "none")."""
    names = security_group_names(groups)
    if networks is None or networks == "none":
        if names:
            raise BadRequest("security_groups apply to the server's ports: give networks too")
        return None
    if networks == "auto":
        return NetworkRequest(auto=True, security_groups=names)
    if not isinstance(networks, list) or not networks:
        raise BadRequest('networks must be "auto", "none" or a non-empty list of '
                         '{"uuid": NETWORK, "fixed_ip": IP} or {"port": PORT}')
    nics = []
    for entry in networks:
        if not isinstance(entry, dict) or set(entry) - NIC_KEYS:
            raise BadRequest(f"each networks entry is an object with keys among "
                             f"{sorted(NIC_KEYS)}, got {entry!r}")
        if ("uuid" in entry) == ("port" in entry):
            raise BadRequest("each networks entry names exactly one of uuid (a network) and "
                             "port (an existing port)")
        if "port" in entry:
            if "fixed_ip" in entry:
                raise BadRequest("fixed_ip cannot be given with port: the port has its "
                                 "addresses")
            nics.append(NicRequest(port_id=check_id(entry["port"], "networks port")))
            continue
        fixed = entry.get("fixed_ip")
        if fixed is not None:
            try:
                fixed = str(ipaddress.IPv4Address(fixed))
            except (ValueError, TypeError):
                raise BadRequest(f"fixed_ip {fixed!r} is not an IPv4 address") from None
        nics.append(NicRequest(network_id=check_id(entry["uuid"], "networks uuid"),
                               fixed_ip=fixed))
    return NetworkRequest(nics=tuple(nics), security_groups=names)


def security_group_names(groups: object) -> tuple[str, ...]:
    if groups is None:
        return ()
    if not isinstance(groups, list) or not all(
            isinstance(g, dict) and set(g) == {"name"} and isinstance(g["name"], str)
            and 0 < len(g["name"]) <= 255 for g in groups):
        raise BadRequest('security_groups must be a list of {"name": NAME_OR_ID}')
    return tuple(dict.fromkeys(g["name"] for g in groups))


class NetworkClient(ServiceClient):
    """The network API (Neutron v2.0 shape) at ``<net_url>/v2.0``."""

    def listing(self, plural: str, **filters) -> list[dict]:
        return self.call("GET", f"/v2.0/{plural}", params=filters)[plural.replace("-", "_")]

    def port(self, port_id: str) -> dict:
        return self.call("GET", f"/v2.0/ports/{check_id(port_id, 'port id')}")["port"]

    def create_port(self, body: dict) -> dict:
        return self.call("POST", "/v2.0/ports", json={"port": body})["port"]

    def update_port(self, port_id: str, body: dict) -> dict:
        return self.call("PUT", f"/v2.0/ports/{check_id(port_id, 'port id')}",
                         json={"port": body})["port"]

    def delete_port(self, port_id: str) -> None:
        self.call("DELETE", f"/v2.0/ports/{check_id(port_id, 'port id')}")


class ServiceNetworkClient(NetworkClient):
    """The network API with compute's own token, logged in again once if it was refused
    (expired or revoked: a password change at ``soko up``)."""

    def __init__(self, base: str, credential: ServiceCredential):
        super().__init__(base, credential.token())
        self.credential = credential

    def call(self, method: str, path: str, **kwargs) -> dict:
        try:
            return super().call(method, path, **kwargs)
        except RemoteError as exc:
            if exc.status != 401:
                raise
        self.token = self.credential.token(renew=True)
        return super().call(method, path, **kwargs)


def vif_of(port: dict, server_id: str, position: int, created: bool) -> Vif:
    details = port.get("binding:vif_details") or {}
    if not details.get("bridge_name") or not details.get("tap_name"):
        raise RemoteError(502, f"the network service did not say where port {port['id']} "
                               "is plugged (no binding:vif_details)")
    return Vif(port_id=port["id"], server_id=server_id, position=position,
               network_id=port["network_id"], mac=port["mac_address"],
               bridge=details["bridge_name"], tap=details["tap_name"], created=created)


class Networking:
    def __init__(self, sessions: sessionmaker[Session], net_url: str, *,
                 service: ServiceCredential | None = None, host: str = ""):
        self.sessions = sessions
        self.net_url = net_url
        self.service = service
        self.host = host  # binding:host_id of the ports bound here

    def client(self, token: str) -> NetworkClient:
        if not self.net_url:
            raise BadRequest("this cloud has no network service: boot without networks")
        return NetworkClient(self.net_url, token)

    def service_client(self) -> NetworkClient:
        """The network API as compute's service user (Nova's ``[neutron]`` credential)."""
        if self.service is None:
            raise RemoteError(503, "compute has no service user for the network service "
                                   "([compute] service_user, and identity to log in to)")
        return ServiceNetworkClient(self.client("").base, self.service)

    # -- at create ------------------------------------------------------------------------

    def plug(self, caller, server_id: str, request: NetworkRequest | None) -> list[Vif]:
        """Makes or binds the server's ports, in order; on any refusal, undoes them all and
        answers as compute (an unknown network is a bad request, an address in use a
        conflict)."""
        if request is None:
            return []
        net = self.client(caller.token)
        vifs: list[Vif] = []
        try:
            service = self.service_client()
            nics = request.nics or (self.auto_nic(net, caller.project_id),)
            groups = self.group_ids(net, caller.project_id, request.security_groups)
            for position, nic in enumerate(nics):
                created = nic.port_id is None
                port = (self.new_port(net, nic, server_id, groups) if created
                        else self.usable_port(net, nic.port_id))
                vifs.append(Vif(port_id=port["id"], created=created))  # undone if anything fails
                port = self.bind(service, port["id"], server_id)
                vifs[-1] = vif_of(port, server_id, position, created)
        except BaseException:
            self.unplug(caller.token, vifs)
            raise
        return vifs

    def auto_nic(self, net: NetworkClient, project_id: str) -> NicRequest:
        usable = [n for n in self.remote(lambda: net.listing("networks"), "Networks")
                  if not n["router:external"] and (n["project_id"] == project_id
                                                   or n["shared"])]
        if len(usable) != 1:
            names = ", ".join(n["name"] or n["id"] for n in usable) or "none"
            raise BadRequest(f'networks "auto" needs exactly one tenant network the project '
                             f"can use; it has {len(usable)} ({names}): name one")
        return NicRequest(network_id=usable[0]["id"])

    def group_ids(self, net: NetworkClient, project_id: str, refs: tuple[str, ...]) -> list:
        groups = self.remote(lambda: net.listing("security-groups"), "Security groups")
        ids = []
        for ref in refs:
            found = [g for g in groups if g["id"] == ref] or [
                g for g in groups if g["name"] == ref and g["project_id"] == project_id]
            if len(found) != 1:
                raise BadRequest(f"Security group {ref} not found." if not found else
                                 f"{len(found)} security groups are named {ref}; use the id")
            ids.append(found[0]["id"])
        return ids

    def new_port(self, net: NetworkClient, nic: NicRequest, server_id: str,
                 groups: list[str]) -> dict:
        body = {"network_id": nic.network_id, "device_id": server_id, "device_owner": OWNER}
        if nic.fixed_ip is not None:
            body["fixed_ips"] = [{"ip_address": nic.fixed_ip}]
        if groups:
            body["security_groups"] = groups
        return self.remote(lambda: net.create_port(body), f"Network {nic.network_id}")

    def usable_port(self, net: NetworkClient, port_id: str) -> dict:
        """The user's own port, read with the user's token (so it is one they may use),
        and free."""
        port = self.remote(lambda: net.port(port_id), f"Port {port_id}")
        if port["device_id"] or port["device_owner"]:
            raise Conflict(f"Port {port_id} is still in use (by {port['device_owner'] or 'a'} "
                           f"device {port['device_id']}).")
        return port

    def bind(self, service: NetworkClient, port_id: str, server_id: str) -> dict:
        """The port bound to the server on this host; the answer says where to plug it."""
        return self.remote(lambda: service.update_port(port_id, {
            "device_id": server_id, "device_owner": OWNER, "binding:host_id": self.host}),
            f"Port {port_id}")

    @staticmethod
    def remote(call, what: str):
        try:
            return call()
        except RemoteError as exc:
            raise remote_answer(exc, what) from None

    def unplug(self, token: str, vifs: list[Vif]) -> list[str]:
        """Unbinds each port (as the service) and deletes those compute made (as the user,
        or as the service when no user asks: a crash's leftovers); returns the ports that
        could not be (the network service refused or did not answer)."""
        failed = []
        for vif in vifs:
            try:
                service = self.service_client()
                service.update_port(vif.port_id, {"device_id": "", "device_owner": "",
                                                  "binding:host_id": ""})
                if vif.created:
                    (self.client(token) if token else service).delete_port(vif.port_id)
            except RemoteError as exc:
                if exc.status != 404:
                    log.warning("releasing port %s failed: %s", vif.port_id, exc)
                    failed.append(vif.port_id)
        return failed

    # -- at delete and restore ----------------------------------------------------------------

    def vifs(self, server_ids: list[str]) -> list[Vif]:
        with session_scope(self.sessions) as s:
            return list(s.scalars(select(Vif).where(Vif.server_id.in_(server_ids))
                                  .order_by(Vif.server_id, Vif.position)))

    def nics(self, server_id: str) -> tuple[Nic, ...]:
        return tuple(Nic(bridge=v.bridge, mac=v.mac, tap=v.tap) for v in self.vifs([server_id]))

    def release(self, token: str, server_id: str) -> list[str]:
        """The server's ports after its domain is gone: each one released is forgotten;
        returns those that are not (the delete is retried)."""
        vifs = self.vifs([server_id])
        if not vifs:
            return []
        try:
            failed = self.unplug(token, vifs)
        except BadRequest:
            failed = [v.port_id for v in vifs]
        with session_scope(self.sessions) as s:
            s.execute(delete(Vif).where(Vif.server_id == server_id, Vif.port_id.not_in(failed)))
        return failed

    def remove_orphan_ports(self, instance_ids: set[str], grace: float) -> list[str]:
        """Deletes the ports bound to this host for an instance that does not exist (compute
        died between making them and writing the server row); returns their ids. A port
        younger than ``grace`` seconds may be a create in flight, and is left alone."""
        if not self.net_url or self.service is None or not self.host:
            return []
        ports = self.service_client().listing("ports", **{"binding:host_id": self.host})
        oldest = time.time() - grace
        orphans = [Vif(port_id=p["id"], created=True) for p in ports
                   if p["device_owner"].startswith("compute:") and p["device_id"]
                   and p["device_id"] not in instance_ids
                   and dt.datetime.fromisoformat(p["created_at"]).timestamp() <= oldest]
        failed = self.unplug("", orphans)
        removed = [v.port_id for v in orphans if v.port_id not in failed]
        for port_id in removed:
            log.warning("deleted port %s: bound here to a server that does not exist", port_id)
        return removed

    # -- what a server shows --------------------------------------------------------------------

    def addresses(self, token: str, server_ids: list[str]) -> dict[str, dict]:
        """Nova's ``addresses`` of each server with NICs: by network name, the fixed
        addresses of its ports, then their floating IPs. The network service's answer is
        read live; when it does not answer, the servers show none rather than fail."""
        vifs = self.vifs(server_ids)
        if not vifs:
            return {}
        try:
            net = self.client(token)
            ports = {p["id"]: p for p in net.listing("ports")}
            networks = {n["id"]: n for n in net.listing("networks")}
            floating = net.listing("floatingips")
        except (RemoteError, BadRequest) as exc:
            log.warning("the network service did not list addresses: %s", exc)
            return {}
        shown: dict[str, dict] = {}
        for vif in vifs:
            port = ports.get(vif.port_id)
            if port is None:
                continue
            network = networks.get(vif.network_id, {})
            entries = shown.setdefault(vif.server_id, {}).setdefault(
                network.get("name") or vif.network_id, [])
            mac = port["mac_address"]
            entries += [address(a["ip_address"], "fixed", mac) for a in port["fixed_ips"]]
            entries += [address(f["floating_ip_address"], "floating", mac) for f in floating
                        if f["port_id"] == vif.port_id]
        return shown


def address(addr: str, kind: str, mac: str) -> dict:
    return {"version": ipaddress.ip_address(addr).version, "addr": addr,
            "OS-EXT-IPS:type": kind, "OS-EXT-IPS-MAC:mac_addr": mac}
