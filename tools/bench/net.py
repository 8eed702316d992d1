"""``soko bench net``: how fast a change made through soko-net is in force on the host,
how long a reconcile from scratch takes, and what a router costs in TCP throughput.

- port wired: a port created (on a network with 10 secured ports already) until its
  security-group chain and its DHCP host entry are in place;
- security-group change: a rule added to the ports' group until it is in their chains;
- floating IP: associated until its DNAT rule is in the router's namespace;
- reconcile: 100 networks, each with a subnet and a router (interface and gateway), all
  in the DB and nothing on the host, until the host matches the DB;
- throughput: TCP (iperf3, one stream) from a namespace on a tenant network through its
  router (SNAT) to a namespace on the external network, and the same from a namespace on
  a secured port (its tap and MAC as compute sets them, the default group: its frames go
  through ``br_netfilter``, conntrack and the port's chains), against a plain veth pair
  between two namespaces: the physical limit on this host. The three alternate over ``--rounds``
  (each round in the other order) and the medians are compared: one pair of runs swings
  by a third on a shared host. With two CPUs or more, iperf3's client and server are each
  pinned to a CPU of their own, as the scheduler otherwise sometimes stacks both on one.
  The secured port has a network and router of its own, so the first path's bridges have
  no secured port and soko leaves their frames out of iptables; the host-wide
  ``net.bridge.bridge-nf-call-iptables`` (1 by the kernel's default, 0 by libvirt's
  advice) puts every bridge's frames back in, so the rows say which they ran with.

Each change is timed from the request to the moment it is observed in force (soko-net
answers once the host has converged, so "after the answer" is the same instant). Runs
the real service's managers and Linux driver under a cloud id of its own in a scratch
data directory, and removes everything it made. Needs root, dnsmasq, iptables, iperf3.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import click

from soko.common.cli.output import emit_rows

GOALS = {"port": "< 100 ms", "rule": "< 100 ms", "fip": "< 100 ms", "reconcile": "< 10 s",
         "throughput": ">= 80 %"}


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50": f"{statistics.median(ordered):.1f} ms", "p99": f"{p99:.1f} ms"}


def in_force(started: float, answered: float, check, timeout: float = 30.0) -> float:
    """Milliseconds from the request to the change seen in force: the answer's time when
    it already is at the first look (the look itself, an iptables-save, is not charged)."""
    if check():
        return (answered - started) * 1000
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise click.ClickException("a change was not in force after 30 s")
        time.sleep(0.002)
    return (time.perf_counter() - started) * 1000


def iptables_text(namespace: str | None = None, table: str = "filter") -> str:
    argv = ["iptables-save", "-t", table]
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


class Bench:
    def __init__(self, workdir: Path):
        from soko.common.auth import AuthContext
        from soko.common.config import Config
        from soko.net import wiring
        from soko.net.routers import RouterManager
        from soko.net.security_groups import SecurityGroupManager
        from soko.net.service import NetConfig

        self.config = Config(data_dir=workdir, sections={"net": NetConfig(
            cloud_id=uuid.uuid4().hex[:4], reconcile_interval=0, quota_networks=1000,
            quota_ports=5000, quota_routers=1000, quota_floatingips=1000)})
        self.nets = wiring.make_manager(self.config)
        self.routers = RouterManager(self.nets)
        self.groups = SecurityGroupManager(sessions=self.nets.sessions, agent=self.nets.agent)
        self.driver = self.nets.agent.driver
        self.auth = AuthContext(user_id="bench", user_name="bench", project_id="bench",
                                project_name="bench", roles=frozenset({"admin"}),
                                expires_at=time.time() + 86400)

    def teardown(self) -> None:
        from soko.net import wiring

        wiring.teardown(self.config)

    def network(self, cidr: str, **extra) -> tuple[str, str]:
        net = self.nets.create_network(self.auth, {"network": {"name": "bench", **extra}})
        sub = self.nets.create_subnet(self.auth, {"subnet": {"network_id": net.id,
                                                             "cidr": cidr}})
        return net.id, sub.id

    def port(self, network_id: str):
        return self.nets.create_port(self.auth, {"port": {
            "network_id": network_id, "device_id": str(uuid.uuid4()),
            "device_owner": "compute:nova"}})

    def wiring_times(self, count: int) -> tuple[list[float], list, str, str]:
        net_id, sub_id = self.network("10.20.0.0/16")
        ports = [self.port(net_id) for _ in range(10)]
        hosts = self.driver.dhcp_dir / net_id / "hosts"
        times = []
        for _ in range(count):
            started = time.perf_counter()
            port = self.port(net_id)
            answered = time.perf_counter()
            chain = self.driver.firewall.chain("i", port.id)
            times.append(in_force(started, answered, lambda chain=chain, mac=port.mac_address:
                                  f":{chain} " in iptables_text() and mac in hosts.read_text()))
            ports.append(port)
        return times, ports, net_id, sub_id

    def rule_times(self, count: int, ports) -> list[float]:
        group_id = ports[0].security_groups[0]
        chain = self.driver.firewall.chain("r", group_id)  # the group's ingress rules
        times = []
        for n in range(count):
            port = 10000 + n
            started = time.perf_counter()
            self.groups.create_rule(self.auth, {"security_group_rule": {
                "security_group_id": group_id, "direction": "ingress", "protocol": "tcp",
                "port_range_min": port, "port_range_max": port}})
            answered = time.perf_counter()
            wanted = re.compile(rf"-A {chain} .*--dport {port}(:{port})? ")
            times.append(in_force(started, answered, lambda wanted=wanted:
                                  wanted.search(iptables_text()) is not None))
        return times

    def floating_times(self, count: int, ports, sub_id: str) -> list[float]:
        ext_id, _ = self.network("172.30.0.0/16", **{"router:external": True})
        router = self.routers.create_router(self.auth, {"router": {
            "name": "bench", "external_gateway_info": {"network_id": ext_id}}})
        self.routers.add_interface(self.auth, router.id, {"subnet_id": sub_id})
        namespace = self.driver.names.router_namespace(router.id)
        fips = [self.routers.create_floating_ip(self.auth, {"floatingip": {
            "floating_network_id": ext_id}}) for _ in range(count)]
        times = []
        for fip, port in zip(fips, ports, strict=False):
            started = time.perf_counter()
            self.routers.update_floating_ip(self.auth, fip.id, {"floatingip": {
                "port_id": port.id}})
            answered = time.perf_counter()
            address = fip.floating_ip_address
            times.append(in_force(started, answered, lambda address=address:
                                  f"-d {address}/32" in iptables_text(namespace, "nat")))
        return times

    def reconcile_seconds(self, count: int) -> float:
        """``count`` networks with routers made in the DB only, the host then rebuilt."""
        from soko.net.manager import NetManager
        from soko.net.routers import RouterManager

        class Silent:  # the host is not told: the reconcile below does it all at once
            def __getattr__(self, name):
                return lambda *args: None

        quiet = NetManager(sessions=self.nets.sessions, agent=Silent(),
                           quotas=self.nets.quotas)
        routers = RouterManager(quiet)
        ext = quiet.create_network(self.auth, {"network": {"name": "ext",
                                                           "router:external": True}})
        quiet.create_subnet(self.auth, {"subnet": {"network_id": ext.id,
                                                   "cidr": "172.31.0.0/16"}})
        for n in range(count):
            net = quiet.create_network(self.auth, {"network": {"name": f"r{n}"}})
            sub = quiet.create_subnet(self.auth, {"subnet": {
                "network_id": net.id, "cidr": f"10.{100 + n // 250}.{n % 250}.0/24"}})
            router = routers.create_router(self.auth, {"router": {
                "name": f"r{n}", "external_gateway_info": {"network_id": ext.id}}})
            routers.add_interface(self.auth, router.id, {"subnet_id": sub.id})
        self.driver.remove_orphans(set(), set())  # from scratch: nothing on the host
        self.driver.apply_firewall(())
        started = time.perf_counter()
        self.nets.agent.reconcile()
        return time.perf_counter() - started

    def routed_network(self, cidr: str, external_id: str) -> str:
        """A network behind a router of its own with its gateway on ``external_id``."""
        net_id, sub_id = self.network(cidr)
        router = self.routers.create_router(self.auth, {"router": {
            "name": "tp", "external_gateway_info": {"network_id": external_id}}})
        self.routers.add_interface(self.auth, router.id, {"subnet_id": sub_id})
        return net_id

    def throughput(self, seconds: int, rounds: int) -> dict[str, float]:
        """Median Gbit/s over ``rounds`` alternated runs each: through the router from a
        plain namespace ("routed") and from one on a secured port ("secured", plugged as
        compute plugs a tap: its name and MAC, the default group), and over a plain veth
        pair ("plain")."""
        ext_id, _ = self.network("172.29.0.0/24", **{"router:external": True})
        plain_net, secured_net = (self.routed_network(cidr, ext_id)
                                  for cidr in ("10.40.0.0/24", "10.41.0.0/24"))
        port = self.port(secured_net)  # on a network of its own, whose bridge alone it filters
        with Namespaces() as spaces:
            guest = spaces.plug(self.driver.bridge_name(plain_net), "10.40.0.50/24",
                                "10.40.0.1")
            secured = spaces.plug(self.driver.bridge_name(secured_net),
                                  f"{port.fixed_ips[0].ip_address}/24", "10.41.0.1",
                                  host_end=self.driver.tap_name(port.id), mac=port.mac_address)
            outside = spaces.plug(self.driver.bridge_name(ext_id), "172.29.0.200/24")
            left, right = spaces.pair("192.168.250.1/30", "192.168.250.2/30")
            runs = {"routed": (guest, outside, "172.29.0.200"),
                    "secured": (secured, outside, "172.29.0.200"),
                    "plain": (left, right, "192.168.250.2")}
            rates: dict[str, list[float]] = {kind: [] for kind in runs}
            for n in range(rounds):
                for kind in sorted(runs, reverse=n % 2 == 1):
                    rates[kind].append(iperf(*runs[kind], seconds))
        return {kind: statistics.median(values) for kind, values in rates.items()}


class Namespaces:
    """Scratch namespaces plugged into bridges (or into each other); all go on exit."""

    def __init__(self):
        self.names: list[str] = []
        self.links: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def new(self) -> str:
        name = f"soko-bench-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.names.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    def plug(self, bridge: str, address: str, gateway: str | None = None,
             host_end: str | None = None, mac: str | None = None) -> str:
        name, host_end = self.new(), host_end or f"vb{uuid.uuid4().hex[:8]}"
        peer = ["name", "eth0", *(["address", mac] if mac else []), "netns", name]
        subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", *peer],
                       check=True)
        self.links.append(host_end)
        subprocess.run(["ip", "link", "set", host_end, "master", bridge, "up"], check=True)
        self.configure(name, "eth0", address, gateway)
        return name

    def pair(self, left_address: str, right_address: str) -> tuple[str, str]:
        left, right = self.new(), self.new()
        subprocess.run(["ip", "link", "add", "eth0", "netns", left, "type", "veth", "peer",
                        "name", "eth0", "netns", right], check=True)
        self.configure(left, "eth0", left_address)
        self.configure(right, "eth0", right_address)
        return left, right

    @staticmethod
    def configure(name: str, device: str, address: str, gateway: str | None = None) -> None:
        subprocess.run(["ip", "-n", name, "addr", "add", address, "dev", device], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", device, "up"], check=True)
        if gateway:
            subprocess.run(["ip", "-n", name, "route", "add", "default", "via", gateway],
                           check=True)


def host_bridge_netfilter() -> str:
    """The host-wide switch that hands every bridge's frames to iptables."""
    try:
        return Path("/proc/sys/net/bridge/bridge-nf-call-iptables").read_text().strip()
    except OSError:
        return "absent"


def pinned(cpu: int) -> list[str]:
    """iperf3's option to stay on ``cpu``, when the host has a CPU for each end."""
    return ["-A", str(cpu)] if (os.cpu_count() or 1) >= 2 else []


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int) -> float:
    """Gbit/s received by iperf3's server over one TCP stream."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1",
                               "-B", server_ip, *pinned(1)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):  # until the server listens
            probe = subprocess.run(["ip", "netns", "exec", client_ns, "iperf3", "-c",
                                    server_ip, "-t", str(seconds), "-J", *pinned(0)],
                                   capture_output=True, text=True)
            report = json.loads(probe.stdout or "{}")
            received = report.get("end", {}).get("sum_received")
            if probe.returncode == 0 and received:
                return received["bits_per_second"] / 1e9
            time.sleep(0.1)
        raise click.ClickException(f"iperf3 did not run: {report.get('error')}")
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=5)
        if server.poll() is None:
            server.kill()
            server.wait()


def run_bench(workdir: Path, count: int, routers: int, seconds: int,
              rounds: int) -> list[dict]:
    bench = Bench(workdir)
    rows = []
    try:
        port_times, ports, _, sub_id = bench.wiring_times(count)
        rows.append({"case": "port wired (SG chains, DHCP entry)", "n": count,
                     **percentiles(port_times), "goal": GOALS["port"]})
        rows.append({"case": "security-group rule in force", "n": count,
                     **percentiles(bench.rule_times(count, ports)), "goal": GOALS["rule"]})
        rows.append({"case": "floating IP associated (DNAT in force)", "n": count,
                     **percentiles(bench.floating_times(count, ports, sub_id)),
                     "goal": GOALS["fip"]})
        rates = bench.throughput(seconds, rounds)
        switch = host_bridge_netfilter()
        for kind, guest in (("routed", "a namespace"), ("secured", "a secured port")):
            rows.append({"case": f"TCP via router (SNAT) from {guest}, iperf3 {seconds} s, "
                                 f"median, host bridge-nf-call-iptables={switch}",
                         "n": rounds, "p50": f"{rates[kind]:.2f} Gbit/s", "p99": "",
                         "goal": f"{GOALS['throughput']}: "
                                 f"{100 * rates[kind] / rates['plain']:.0f} % of "
                                 f"{rates['plain']:.2f} Gbit/s (plain veth pair)"})
        bench.teardown()  # the reconcile starts from an empty host
        seconds_taken = bench.reconcile_seconds(routers)
        rows.append({"case": f"reconcile {routers} networks with routers from scratch",
                     "n": 1, "p50": f"{seconds_taken:.2f} s", "p99": "",
                     "goal": GOALS["reconcile"]})
    finally:
        bench.teardown()
    return rows


@click.command("net")
@click.option("--count", default=100, show_default=True,
              help="Changes timed per kind (ports, rules, floating IPs).")
@click.option("--routers", default=100, show_default=True,
              help="Networks with routers for the reconcile.")
@click.option("--seconds", default=3, show_default=True, help="Length of each iperf3 run.")
@click.option("--rounds", default=7, show_default=True,
              help="Alternated routed and plain iperf3 runs, each compared by its median.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results here.")
def bench_net(count: int, routers: int, seconds: int, rounds: int,
              json_path: Path | None) -> None:
    """Time to wire a port, apply a rule, associate a floating IP; reconcile; routed TCP
    throughput against a plain veth pair (needs root, dnsmasq, iptables, iperf3)."""
    missing = [t for t in ("ip", "dnsmasq", "iptables-restore", "iperf3") if not shutil.which(t)]
    if missing:
        raise click.ClickException(f"missing {', '.join(missing)} "
                                   "(run tools/install-system-deps.sh)")
    with tempfile.TemporaryDirectory(prefix="soko-bench-net-", dir="/var/tmp") as tmp:
        rows = run_bench(Path(tmp), count, routers, seconds, rounds)
    emit_rows(rows, list(rows[0]), "table")
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2))
