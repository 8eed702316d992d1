"""The one-host driver: Linux bridges, veth pairs and namespaces (pyroute2), dnsmasq and
iptables, laid out as Neutron's Linux-bridge agent does so operators find their way:

- a bridge ``brq<cloud><net8>`` per network;
- ``qdhcp-<cloud>-<network-id>``: a veth ``ns-<port11>`` into the bridge, dnsmasq on it;
- ``qrouter-<cloud>-<router-id>``: ``qr-<port11>`` legs on tenant bridges, a ``qg-<port11>``
  leg on the external bridge holding the gateway and floating addresses, forwarding on,
  one NAT table restored atomically.

The host end of every veth is ``tap<cloud><port8>``. Every name carries the cloud id, so
``remove_orphans`` removes only this cloud's leftovers on a host others share.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from soko.net.drivers.base import (
    Leg,
    MetadataEntry,
    NetworkSpec,
    PortFirewall,
    RouterSpec,
)
from soko.net.drivers.dnsmasq import METADATA_IP, DhcpServer
from soko.net.drivers.firewall import Firewall
from soko.net.drivers.iptables import metadata_rules, nat_rules, restore_table
from soko.net.drivers.metadata import MetadataProxy

log = logging.getLogger("soko.net.driver")

class Names:
    """Every host object's name, from the cloud id and the DB id it stands for."""

    def __init__(self, cloud: str):
        self.cloud = cloud
        self.bridge_prefix = f"brq{cloud}"
        self.dhcp_prefix = f"qdhcp-{cloud}-"
        self.router_prefix = f"qrouter-{cloud}-"

    def bridge(self, network_id: str) -> str:
        return f"{self.bridge_prefix}{network_id[:8]}"

    def tap(self, port_id: str) -> str:
        return f"tap{self.cloud}{port_id[:8]}"

    def dhcp_namespace(self, network_id: str) -> str:
        return self.dhcp_prefix + network_id

    def router_namespace(self, router_id: str) -> str:
        return self.router_prefix + router_id


@contextlib.contextmanager
def netlink_in(namespace: str, forwarding: bool = False) -> Iterator[IPRoute]:
    """A netlink socket inside ``namespace``. pyroute2's NetNS forks a helper per use
    (~85 ms); a socket opened while this thread visits the namespace stays bound to it
    (~2 ms). ``forwarding`` also sets ``net.ipv4.ip_forward=1`` there: /proc/sys/net
    answers for the namespace of the thread that opens it."""
    netns.pushns(namespace)
    try:
        ipr = IPRoute()
        if forwarding:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")
    finally:
        netns.popns()
    with ipr:
        yield ipr


def inner_name(kind: str, port_id: str) -> str:
    return f"{kind}-{port_id[:11]}"


def index_of(ipr, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


class LinuxDriver:
    def __init__(self, cloud: str, state_dir: Path, lease_seconds: int = 86400,
                 metadata: MetadataProxy | None = None, metadata_port: int = 9697):
        self.names = Names(cloud)
        self.firewall = Firewall(cloud, self.names.tap)
        self.dhcp_dir = state_dir / "dhcp"
        self.lease_seconds = lease_seconds
        self.metadata = metadata or MetadataProxy(state_dir / "metadata", "", None)
        self.metadata_port = metadata_port

    def bridge_name(self, network_id: str) -> str:
        return self.names.bridge(network_id)

    def tap_name(self, port_id: str) -> str:
        return self.names.tap(port_id)

    def apply_firewall(self, ports: tuple[PortFirewall, ...]) -> None:
        self.firewall.apply(ports)

    # -- building blocks ----------------------------------------------------------------

    def ensure_bridge(self, ipr: IPRoute, network_id: str, mtu: int) -> int:
        name = self.names.bridge(network_id)
        index = index_of(ipr, name)
        if index is None:
            with contextlib.suppress(NetlinkError):  # a racing apply made it first
                ipr.link("add", ifname=name, kind="bridge", br_stp_state=0,
                         br_forward_delay=0)
            index = index_of(ipr, name)
        ipr.link("set", index=index, mtu=mtu, state="up")
        return index

    @contextlib.contextmanager
    def sockets(self, namespace: str, forwarding: bool = False) -> Iterator[tuple]:
        """Netlink sockets on the host and inside ``namespace`` (made if missing)."""
        fresh = namespace not in netns.listnetns()
        if fresh:
            netns.create(namespace)
        with IPRoute() as ipr, netlink_in(namespace, forwarding) as ns:
            if fresh:
                ns.link("set", index=index_of(ns, "lo"), state="up")
            yield ipr, ns

    def plug(self, ipr: IPRoute, ns: IPRoute, namespace: str, leg: Leg, inner: str,
             bridge: int, extra_addresses: tuple[str, ...] = ()) -> None:
        """A veth pair: host end in the bridge, inner end in ``namespace`` with the port's
        MAC and exactly the leg's addresses."""
        tap = self.names.tap(leg.port_id)
        if index_of(ns, inner) is None:
            stale = index_of(ipr, tap)
            if stale is not None:  # half a pair from an interrupted plug
                ipr.link("del", index=stale)
            ipr.link("add", ifname=tap, kind="veth",
                     peer={"ifname": inner, "net_ns_fd": namespace})
        ipr.link("set", index=index_of(ipr, tap), master=bridge, mtu=leg.mtu, state="up")
        index = index_of(ns, inner)
        ns.link("set", index=index, address=leg.mac, mtu=leg.mtu, state="up")
        sync_addresses(ns, index, (*leg.addresses, *extra_addresses))

    def remove_namespace(self, name: str) -> None:
        if name not in netns.listnetns():
            return
        for pid in netns.ns_pids().get(name, []):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with netlink_in(name) as ns:
            unplug_others(ns, keep=set())
        netns.remove(name)

    # -- networks -----------------------------------------------------------------------

    def apply_network(self, spec: NetworkSpec) -> None:
        namespace = self.names.dhcp_namespace(spec.id)
        server = DhcpServer(self.dhcp_dir, spec.id, namespace, self.lease_seconds)
        if spec.dhcp is None:
            with IPRoute() as ipr:
                bridge = self.ensure_bridge(ipr, spec.id, spec.mtu)
                sync_addresses(ipr, bridge, (spec.host_address,) if spec.host_address else ())
            self.metadata.stop_serving(namespace)
            server.stop()
            self.remove_namespace(namespace)
            return
        device = inner_name("ns", spec.dhcp.port_id)
        serves_metadata = self.metadata.enabled and spec.metadata is not None
        with self.sockets(namespace) as (ipr, ns):
            bridge = self.ensure_bridge(ipr, spec.id, spec.mtu)
            sync_addresses(ipr, bridge, (spec.host_address,) if spec.host_address else ())
            self.plug(ipr, ns, namespace, spec.dhcp, device, bridge,
                      (f"{METADATA_IP}/32",) if serves_metadata else ())
            unplug_others(ns, keep={device})
        server.apply(spec if serves_metadata else replace(spec, metadata=None), device)
        if serves_metadata:  # a network without a router: its guests ask the DHCP namespace
            self.metadata.serve(namespace, (METADATA_IP, 80), spec.metadata)
        else:
            self.metadata.stop_serving(namespace)

    def remove_network(self, network_id: str) -> None:
        self.metadata.stop_serving(self.names.dhcp_namespace(network_id))
        DhcpServer(self.dhcp_dir, network_id, "", self.lease_seconds).stop()
        self.remove_namespace(self.names.dhcp_namespace(network_id))
        shutil.rmtree(self.dhcp_dir / network_id, ignore_errors=True)
        with IPRoute() as ipr:
            index = index_of(ipr, self.names.bridge(network_id))
            if index is not None:
                ipr.link("del", index=index)

    # -- routers ------------------------------------------------------------------------

    def apply_router(self, spec: RouterSpec) -> None:
        namespace = self.names.router_namespace(spec.id)
        gateway_dev = gateway_ip = None
        with self.sockets(namespace, forwarding=True) as (ipr, ns):
            keep = set()
            for leg in spec.interfaces:
                inner = inner_name("qr", leg.port_id)
                bridge = self.ensure_bridge(ipr, leg.network_id, leg.mtu)
                self.plug(ipr, ns, namespace, leg, inner, bridge)
                keep.add(inner)
            if spec.gateway is not None:
                gateway_dev = inner_name("qg", spec.gateway.port_id)
                floating = tuple(f"{p.floating_ip}/32" for p in spec.floating)
                bridge = self.ensure_bridge(ipr, spec.gateway.network_id, spec.gateway.mtu)
                self.plug(ipr, ns, namespace, spec.gateway, gateway_dev, bridge, floating)
                keep.add(gateway_dev)
                gateway_ip = spec.gateway.addresses[0].split("/")[0]
            unplug_others(ns, keep)
            default_route(ns, gateway_dev, spec.gateway_nexthop)
        rules = [] if gateway_dev is None else nat_rules(gateway_dev, gateway_ip,
                                                         spec.snat_cidrs, spec.floating)
        serves_metadata = self.metadata.enabled and bool(spec.interfaces)
        if serves_metadata:
            rules = metadata_rules(self.metadata_port) + rules
        restore_table(namespace, "nat", rules)
        if serves_metadata:
            self.apply_metadata(spec.id, spec.metadata)
        else:
            self.metadata.stop_serving(namespace)

    def apply_metadata(self, router_id: str, entries: tuple[MetadataEntry, ...]) -> None:
        """The proxy listens on ``metadata_port`` in the router's namespace, where the NAT
        table sends guests' 169.254.169.254:80."""
        namespace = self.names.router_namespace(router_id)
        if namespace in netns.listnetns():
            self.metadata.serve(namespace, ("0.0.0.0", self.metadata_port), entries)

    def remove_router(self, router_id: str) -> None:
        self.metadata.stop_serving(self.names.router_namespace(router_id))
        self.remove_namespace(self.names.router_namespace(router_id))

    # -- reconcile ----------------------------------------------------------------------

    def remove_orphans(self, network_ids: set[str], router_ids: set[str]) -> None:
        names = self.names
        for name in netns.listnetns():
            if name.startswith(names.router_prefix) and \
                    name[len(names.router_prefix):] not in router_ids:
                log.info("removing router namespace %s (not in the DB)", name)
                self.remove_router(name[len(names.router_prefix):])
            elif name.startswith(names.dhcp_prefix) and \
                    name[len(names.dhcp_prefix):] not in network_ids:
                log.info("removing DHCP namespace %s (not in the DB)", name)
                self.remove_network(name[len(names.dhcp_prefix):])
        if self.dhcp_dir.exists():
            for entry in self.dhcp_dir.iterdir():
                if entry.name not in network_ids:
                    DhcpServer(self.dhcp_dir, entry.name, "", self.lease_seconds).stop()
                    shutil.rmtree(entry, ignore_errors=True)
        self.metadata.keep_only({names.router_namespace(r) for r in router_ids}
                                | {names.dhcp_namespace(n) for n in network_ids})
        wanted = {names.bridge(n) for n in network_ids}
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get("ifname")
                if name.startswith(names.bridge_prefix) and name not in wanted:
                    log.info("removing bridge %s (not in the DB)", name)
                    with contextlib.suppress(NetlinkError):
                        ipr.link("del", index=link["index"])


def unplug_others(ns: IPRoute, keep: set[str]) -> None:
    """Deletes the links in a namespace not in ``keep`` (a veth's pair goes with it)."""
    for link in ns.get_links():
        name = link.get("ifname")
        if name != "lo" and name not in keep:
            ns.link("del", index=link["index"])


def sync_addresses(ns, index: int, wanted: tuple[str, ...]) -> None:
    have = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in ns.get_addr(index=index)
            if a["family"] == 2}
    for address in have - set(wanted):
        ip, prefix = address.split("/")
        ns.addr("del", index=index, address=ip, prefixlen=int(prefix))
    for address in wanted:
        if address not in have:
            iface = ipaddress.ip_interface(address)
            ns.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def default_route(ns, device: str | None, nexthop: str | None) -> None:
    if device is None or nexthop is None:
        with contextlib.suppress(NetlinkError):
            ns.route("del", dst="0.0.0.0/0")
        return
    ns.route("replace", dst="0.0.0.0/0", gateway=nexthop, oif=index_of(ns, device))
