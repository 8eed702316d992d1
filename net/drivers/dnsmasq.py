"""dnsmasq as one network's DHCP server, inside its ``qdhcp-`` namespace.

It answers only the static entries written to its hosts file (one per port: MAC ->
address), with the options of the port's subnet (router, DNS servers, routes, MTU). A
change of ports or options rewrites the files and sends SIGHUP, which makes dnsmasq
re-read them without dropping a lease; only a change of its command line (a subnet added
or removed) restarts it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
from pathlib import Path

from soko.common.procs import pid_alive, stop_pid
from soko.net.drivers.base import NetworkSpec
from soko.net.drivers.namespaces import run_in

METADATA_IP = "169.254.169.254"


class DnsmasqError(RuntimeError):
    pass


def replace_file(path: Path, text: str) -> bool:
    """Writes ``text`` to ``path`` by rename (dnsmasq never reads half a file); False if it
    already held it. No fsync: these files are derived from the DB and rebuilt at start."""
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def host_lines(spec: NetworkSpec) -> str:
    return "".join(f"{h.mac},{h.hostname},{h.ip}\n" for h in spec.hosts)


def dhcp_address_in(spec: NetworkSpec, cidr: str) -> str | None:
    """The DHCP port's address on a subnet: where an isolated network's metadata is."""
    for address in spec.dhcp.addresses if spec.dhcp else ():
        iface = ipaddress.ip_interface(address)
        if iface.ip in ipaddress.ip_network(cidr):
            return str(iface.ip)
    return None


def option_lines(spec: NetworkSpec) -> str:
    lines = []
    for index, subnet in enumerate(s for s in spec.subnets if s.enable_dhcp):
        tag = f"tag:subnet{index}"
        lines.append(f"{tag},option:router" + (f",{subnet.gateway_ip}"
                                                if subnet.gateway_ip else ""))
        if subnet.dns_nameservers:
            lines.append(f"{tag},option:dns-server," + ",".join(subnet.dns_nameservers))
        routes = list(subnet.host_routes)
        metadata_via = dhcp_address_in(spec, subnet.cidr) if spec.metadata is not None else None
        if metadata_via:
            routes.append((f"{METADATA_IP}/32", metadata_via))
        if routes:
            if subnet.gateway_ip:  # option 121 replaces option 3: keep the default route
                routes.append(("0.0.0.0/0", subnet.gateway_ip))
            lines.append(f"{tag},option:classless-static-route,"
                         + ",".join(f"{dest},{hop}" for dest, hop in routes))
        lines.append(f"{tag},option:mtu,{spec.mtu}")
    return "".join(line + "\n" for line in lines)


class DhcpServer:
    def __init__(self, state_dir: Path, network_id: str, namespace: str, lease_seconds: int):
        self.dir = state_dir / network_id
        self.namespace = namespace
        self.lease_seconds = lease_seconds
        self.hosts = self.dir / "hosts"
        self.opts = self.dir / "opts"
        self.pid_file = self.dir / "pid"
        self.argv_file = self.dir / "argv.json"

    def argv(self, spec: NetworkSpec, device: str) -> list[str]:
        argv = ["dnsmasq", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=0",
                "--bind-interfaces", f"--interface={device}", "--except-interface=lo",
                "--leasefile-ro", "--dhcp-authoritative", f"--pid-file={self.pid_file}",
                f"--dhcp-hostsfile={self.hosts}", f"--dhcp-optsfile={self.opts}",
                f"--log-facility={self.dir / 'dnsmasq.log'}", "--log-dhcp",
                # The files live in the data dir, which only root may read; dnsmasq re-reads
                # them on SIGHUP after it dropped privileges.
                "--user=root", "--group=root"]
        for index, subnet in enumerate(s for s in spec.subnets if s.enable_dhcp):
            net = ipaddress.ip_network(subnet.cidr)
            argv.append(f"--dhcp-range=set:subnet{index},{net.network_address},static,"
                        f"{net.netmask},{self.lease_seconds}s")
        return argv

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            return None
        return pid if comm == "dnsmasq" and pid_alive(pid) else None

    def apply(self, spec: NetworkSpec, device: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        changed = replace_file(self.hosts, host_lines(spec))
        changed |= replace_file(self.opts, option_lines(spec))
        argv = self.argv(spec, device)
        pid = self.running_pid()
        if pid is not None and self.saved_argv() == argv:
            if changed:
                os.kill(pid, signal.SIGHUP)
            return
        self.stop()
        replace_file(self.argv_file, json.dumps(argv))
        proc = run_in(self.namespace, argv)
        if proc.returncode != 0:  # dnsmasq daemonizes: its exit status is its start-up's
            raise DnsmasqError(f"dnsmasq for network {spec.id} did not start "
                               f"({proc.returncode}): {proc.stderr.strip()}")

    def saved_argv(self) -> list[str] | None:
        try:
            return json.loads(self.argv_file.read_text())
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        pid = self.running_pid()
        if pid is not None:
            stop_pid(pid)
        self.pid_file.unlink(missing_ok=True)
