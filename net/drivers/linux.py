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
import errno
import ipaddress
import logging
import os
import shutil
import signal
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from soko.net.drivers import bridge_netfilter
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
from soko.net.drivers.namespaces import create_namespace, run_in
from soko.net.drivers.zones import ConntrackZones

log = logging.getLogger("soko.net.driver")

IFF_UP = 0x1
LOOPBACK = 1  # lo's index in every namespace


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


def link_of(ipr, ifname: str):
    """The link named ``ifname`` (None: there is none): one netlink call that also tells
    whether it needs setting, so a converged link costs no more."""
    try:
        return ipr.link("get", ifname=ifname)[0]
    except NetlinkError:
        return None


def up_as(link, mtu: int, master: int | None = None, address: str | None = None) -> bool:
    """Whether ``link`` is up with this MTU (and master and MAC, when given)."""
    return link is not None and bool(link["flags"] & IFF_UP) and link.get("mtu") == mtu \
        and (master is None or link.get("master") == master) \
        and (address is None or link.get("address") == address)


class Batch:
    """What applies in a row share (see ``LinuxDriver.batch``)."""

    def __init__(self, ipr: IPRoute, pool: ThreadPoolExecutor):
        self.ipr = ipr
        self.pool = pool
        self.bridges: dict[tuple[str, int], int] = {}  # (name, MTU): index
        self.runs: list[Future] = []


class LinuxDriver:
    def __init__(self, cloud: str, state_dir: Path, lease_seconds: int = 86400,
                 metadata: MetadataProxy | None = None, metadata_port: int = 9697):
        self.names = Names(cloud)
        self.firewall = Firewall(self.names, state_dir / "firewall.json", self.secured_changed)
        self.zones = ConntrackZones(cloud)
        self.dhcp_dir = state_dir / "dhcp"
        self.lease_seconds = lease_seconds
        self.metadata = metadata or MetadataProxy(state_dir / "metadata", "", None)
        self.metadata_port = metadata_port
        self.shared: Batch | None = None
        self.netfilter_ready = False  # br_netfilter checked (loaded, if need be)

    def bridge_name(self, network_id: str) -> str:
        return self.names.bridge(network_id)

    def tap_name(self, port_id: str) -> str:
        return self.names.tap(port_id)

    def apply_firewall(self, ports: tuple[PortFirewall, ...], recheck: bool = False) -> None:
        if ports and not self.netfilter_ready:  # none (soko down): nothing to load it for
            if bridge_netfilter.ensure_loaded():
                log.info("loaded br_netfilter; its host-wide switches set to 0, as before it")
            self.netfilter_ready = True
        self.firewall.apply(ports, recheck)

    def secured_changed(self, secured: set[str], before: set[str] | None) -> None:
        """The bridges with secured ports, and those of the firewall's last restore (None:
        unknown, so the host is read): their conntrack zones and ``br_netfilter`` flags
        follow, before the restore."""
        if before != secured:
            self.zones.apply(secured)
        self.filter_bridges(secured, before)

    def filter_bridges(self, secured: set[str], before: set[str] | None) -> None:
        """Only the bridges with secured ports hand their frames to iptables, each by its
        own flag: the host-wide ``net.bridge.bridge-nf-call-iptables`` is not soko's to
        set (libvirt advises 0, Docker sets 1), and with it at 0 soko's rules would
        otherwise be skipped. Every other bridge (the external network's, a network of
        routers and DHCP only) then forwards without ``br_netfilter``, its connection
        tracking and a pass through the host's tables: 12 % of a routed TCP stream.
        ``before``: the bridges flagged last, so only the difference is set; None sets
        every bridge of this cloud. Through sysfs: a netlink dump of the host's links to
        find them cost a reconcile ~0.3 s of decoding."""
        if before is None:
            changes = {name: name in secured for _, name in socket.if_nameindex()
                       if name.startswith(self.names.bridge_prefix)}
        else:
            changes = {**dict.fromkeys(before - secured, False),
                       **dict.fromkeys(secured - before, True)}
        for name, on in sorted(changes.items()):
            flag = Path("/sys/class/net") / name / "bridge" / "nf_call_iptables"
            with contextlib.suppress(FileNotFoundError):  # a bridge not made yet
                if flag.read_text().strip() != str(int(on)):
                    flag.write_text(str(int(on)))

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Applies in a row (a reconcile) share one host netlink socket, ensure each
        bridge once, and run their programs (dnsmasq, ``iptables-restore``, each in its
        own namespace) on two threads while the next apply's netlink calls go on: apart,
        that was a socket per apply, a read of both bridges per router (a fifth of a
        100-router reconcile's netlink calls), and a wait per program run. The first
        program that failed raises once all are done."""
        with IPRoute() as ipr, ThreadPoolExecutor(2, thread_name_prefix="soko-net-run") as pool:
            self.shared = Batch(ipr, pool)
            try:
                yield
            finally:
                runs, self.shared = self.shared.runs, None
        for run in runs:
            run.result()

    @contextlib.contextmanager
    def host_netlink(self) -> Iterator[IPRoute]:
        if self.shared is not None:
            yield self.shared.ipr
            return
        with IPRoute() as ipr:
            yield ipr

    def run(self, program: Callable[..., None], *args) -> None:
        """``program(*args)`` now, or in a batch on its threads."""
        if self.shared is None:
            program(*args)
        else:
            self.shared.runs.append(self.shared.pool.submit(program, *args))

    # -- building blocks ----------------------------------------------------------------

    def ensure_bridge(self, ipr: IPRoute, network_id: str, mtu: int) -> tuple[int, bool]:
        """The bridge's index, and whether it was just made (it has no addresses)."""
        name = self.names.bridge(network_id)
        ensured = self.shared.bridges if self.shared is not None else {}
        if (name, mtu) in ensured:
            return ensured[name, mtu], False
        link, made = link_of(ipr, name), False
        if link is None:
            secured = self.firewall.secured_bridges()  # unknown: filtered, to be safe
            with contextlib.suppress(NetlinkError):  # a racing apply made it first
                ipr.link("add", ifname=name, kind="bridge", br_stp_state=0,
                         br_forward_delay=0, mtu=mtu, state="up",
                         br_nf_call_iptables=int(secured is None or name in secured))
                made = True
            link = link_of(ipr, name)
        if not up_as(link, mtu):
            ipr.link("set", index=link["index"], mtu=mtu, state="up")
        ensured[name, mtu] = link["index"]
        return link["index"], made

    @contextlib.contextmanager
    def sockets(self, namespace: str, forwarding: bool = False) -> Iterator[tuple]:
        """Netlink sockets on the host and inside ``namespace`` (made if missing), and
        whether it was: nothing in it to look at or clean up then."""
        fresh = namespace not in netns.listnetns()
        if fresh:
            create_namespace(namespace)
        with self.host_netlink() as ipr, netlink_in(namespace, forwarding) as ns:
            if fresh:
                ns.link("set", index=LOOPBACK, state="up")
            yield ipr, ns, fresh

    def plug(self, ipr: IPRoute, ns: IPRoute, namespace: str, leg: Leg, inner: str,
             bridge: int, extra_addresses: tuple[str, ...] = (), fresh: bool = False) -> int:
        """A veth pair: host end in the bridge, inner end in ``namespace`` with the port's
        MAC and exactly the leg's addresses; returns the inner end's index. ``fresh``: the
        namespace was just made, so the inner end is not looked for."""
        tap = self.names.tap(leg.port_id)
        inside = None if fresh else link_of(ns, inner)
        have = None  # unknown: read them
        if inside is None:
            add_veth(ipr, tap, bridge, leg.mtu, peer={
                "ifname": inner, "net_ns_fd": namespace, "address": leg.mac, "mtu": leg.mtu})
            inside, have = link_of(ns, inner), set()
        elif not up_as(link_of(ipr, tap), leg.mtu, master=bridge):
            ipr.link("set", ifname=tap, master=bridge, mtu=leg.mtu, state="up")
        if not up_as(inside, leg.mtu, address=leg.mac):
            ns.link("set", index=inside["index"], address=leg.mac, mtu=leg.mtu, state="up")
        sync_addresses(ns, inside["index"], (*leg.addresses, *extra_addresses), have)
        return inside["index"]

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
            with self.host_netlink() as ipr:
                self.bridge_with_address(ipr, spec)
            self.metadata.stop_serving(namespace)
            server.stop()
            self.remove_namespace(namespace)
            return
        device = inner_name("ns", spec.dhcp.port_id)
        serves_metadata = self.metadata.enabled and spec.metadata is not None
        with self.sockets(namespace) as (ipr, ns, fresh):
            bridge = self.bridge_with_address(ipr, spec)
            self.plug(ipr, ns, namespace, spec.dhcp, device, bridge,
                      (f"{METADATA_IP}/32",) if serves_metadata else (), fresh)
            if not fresh:
                unplug_others(ns, keep={device})
        self.serve_dhcp(spec, server, device)

    def bridge_with_address(self, ipr: IPRoute, spec: NetworkSpec) -> int:
        """The network's bridge, holding the host's address on it if it has one."""
        bridge, made = self.ensure_bridge(ipr, spec.id, spec.mtu)
        sync_addresses(ipr, bridge, (spec.host_address,) if spec.host_address else (),
                       set() if made else None)
        return bridge

    def serve_dhcp(self, spec: NetworkSpec, server: DhcpServer, device: str) -> None:
        """dnsmasq's entries, and the metadata map of a network without a router (its
        guests ask the DHCP namespace)."""
        namespace = self.names.dhcp_namespace(spec.id)
        serves_metadata = self.metadata.enabled and spec.metadata is not None
        self.run(server.apply, spec if serves_metadata else replace(spec, metadata=None),
                 device)
        if serves_metadata:
            self.metadata.serve(namespace, (METADATA_IP, 80), spec.metadata)
        else:
            self.metadata.stop_serving(namespace)

    def apply_ports(self, spec: NetworkSpec) -> None:
        """A port came, went or changed: DHCP's entries and the metadata map only, when
        the DHCP server runs as ``spec`` has it (its command line names the DHCP port and
        subnets) and serves metadata or not as it should; else all of ``apply_network``.
        Its links are left alone: a netlink converge was most of a port's time."""
        namespace = self.names.dhcp_namespace(spec.id)
        if spec.dhcp is None:  # no DHCP: a port changes nothing, unless DHCP's port went
            if namespace in netns.listnetns():
                self.apply_network(spec)
            return
        server = DhcpServer(self.dhcp_dir, spec.id, namespace, self.lease_seconds)
        device = inner_name("ns", spec.dhcp.port_id)
        serves_metadata = self.metadata.enabled and spec.metadata is not None
        if server.running_pid() is None or server.saved_argv() != server.argv(spec, device) \
                or (namespace in self.metadata.serving()) != serves_metadata:
            self.apply_network(spec)
        else:
            self.serve_dhcp(spec, server, device)

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
        gateway_dev = gateway_index = None
        with self.sockets(namespace, forwarding=True) as (ipr, ns, fresh):
            keep = set()
            for leg in spec.interfaces:
                inner = inner_name("qr", leg.port_id)
                bridge, _ = self.ensure_bridge(ipr, leg.network_id, leg.mtu)
                self.plug(ipr, ns, namespace, leg, inner, bridge, fresh=fresh)
                keep.add(inner)
            if spec.gateway is not None:
                gateway_dev = inner_name("qg", spec.gateway.port_id)
                floating = tuple(f"{p.floating_ip}/32" for p in spec.floating)
                bridge, _ = self.ensure_bridge(ipr, spec.gateway.network_id, spec.gateway.mtu)
                gateway_index = self.plug(ipr, ns, namespace, spec.gateway, gateway_dev,
                                          bridge, floating, fresh)
                keep.add(gateway_dev)
            if not fresh:
                unplug_others(ns, keep)
            default_route(ns, gateway_index, spec.gateway_nexthop)
        self.apply_nat(spec, gateway_dev)

    def apply_nat(self, spec: RouterSpec, gateway_dev: str | None) -> None:
        """The router's NAT table, one atomic restore, and its metadata map."""
        namespace = self.names.router_namespace(spec.id)
        rules = [] if gateway_dev is None else nat_rules(
            gateway_dev, spec.gateway.addresses[0].split("/")[0], spec.snat_cidrs, spec.floating)
        serves_metadata = self.metadata.enabled and bool(spec.interfaces)
        if serves_metadata:
            rules = metadata_rules(self.metadata_port) + rules
        self.run(restore_table, namespace, "nat", rules)
        if serves_metadata:
            self.apply_metadata(spec.id, spec.metadata)
        else:
            self.metadata.stop_serving(namespace)

    def apply_floating(self, spec: RouterSpec) -> None:
        """Floating IPs came or went: the gateway leg's addresses, the NAT table and the
        metadata map, when the router's gateway leg is there; else all of ``apply_router``
        (its other legs, a netlink converge each, are left alone)."""
        namespace = self.names.router_namespace(spec.id)
        index = None
        if spec.gateway is not None and namespace in netns.listnetns():
            gateway_dev = inner_name("qg", spec.gateway.port_id)
            with netlink_in(namespace) as ns:
                index = index_of(ns, gateway_dev)
                if index is not None:
                    sync_addresses(ns, index, (*spec.gateway.addresses,
                                               *(f"{p.floating_ip}/32" for p in spec.floating)),
                                   listed_addresses(namespace, gateway_dev))
        if index is None:
            self.apply_router(spec)
        else:
            self.apply_nat(spec, gateway_dev)

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
        # The host's link names from libc: a netlink dump of every link decoded by
        # pyroute2 was a sixth of a 100-router reconcile's CPU.
        orphans = [(index, name) for index, name in socket.if_nameindex()
                   if name.startswith(names.bridge_prefix) and name not in wanted]
        if orphans:
            with IPRoute() as ipr:
                for index, name in orphans:
                    log.info("removing bridge %s (not in the DB)", name)
                    with contextlib.suppress(NetlinkError):
                        ipr.link("del", index=index)


def add_veth(ipr: IPRoute, tap: str, bridge: int, mtu: int, peer: dict) -> None:
    """A veth pair, its host end ``tap`` up in ``bridge``, in one request. Made first and
    looked at only when it clashes (a host end left by an interrupted plug, deleted
    then): a lookup before every add was a netlink call per leg for a rare case."""
    for attempt in (1, 2):
        try:
            ipr.link("add", ifname=tap, kind="veth", master=bridge, mtu=mtu, state="up",
                     peer=peer)
            return
        except NetlinkError as e:
            stale = link_of(ipr, tap) if e.code == errno.EEXIST and attempt == 1 else None
            if stale is None:
                raise
            ipr.link("del", index=stale["index"])


def unplug_others(ns: IPRoute, keep: set[str]) -> None:
    """Deletes the links in a namespace not in ``keep`` (a veth's pair goes with it)."""
    for link in ns.get_links():
        name = link.get("ifname")
        if name != "lo" and name not in keep:
            ns.link("del", index=link["index"])


def sync_addresses(ns, index: int, wanted: tuple[str, ...], have: set[str] | None = None) -> None:
    """Exactly ``wanted`` on the link; ``have``: its addresses when known (a new link).
    The dump asks the kernel for IPv4 only: it dumps every link's addresses whatever the
    index, and on the host each bridge and tap has an IPv6 link-local one, so a dump of
    both families grew with the cloud (~70 ms of decoding at 600 addresses, per bridge)."""
    if have is None:
        have = {f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in ns.get_addr(index=index, family=socket.AF_INET)}
    for address in have - set(wanted):
        ip, prefix = address.split("/")
        ns.addr("del", index=index, address=ip, prefixlen=int(prefix))
    for address in wanted:
        if address not in have:
            iface = ipaddress.ip_interface(address)
            ns.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def listed_addresses(namespace: str, device: str) -> set[str] | None:
    """The device's IPv4 addresses as ``ip`` lists them (None: it could not). A router's
    gateway leg holds one per floating IP, which pyroute2 decodes at ~0.12 ms each (12 ms
    of every floating IP change with 100 on the router); ``ip`` lists them in 2 ms."""
    listed = run_in(None, ["ip", "-n", namespace, "-4", "-o", "addr", "show", "dev", device])
    if listed.returncode != 0:
        return None
    return {fields[3] for fields in map(str.split, listed.stdout.splitlines())
            if len(fields) > 3 and fields[2] == "inet"}


def default_route(ns, index: int | None, nexthop: str | None) -> None:
    """Via the gateway leg (its index, None: there is none)."""
    if index is None or nexthop is None:
        with contextlib.suppress(NetlinkError):
            ns.route("del", dst="0.0.0.0/0")
        return
    ns.route("replace", dst="0.0.0.0/0", gateway=nexthop, oif=index)
