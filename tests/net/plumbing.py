"""Namespaces standing in for instances and for the world outside, plugged into soko's
bridges exactly as a tap would be: one veth end in the network's bridge, the other (with
the port's MAC) inside the namespace. Nothing here touches the host's own addresses."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path

UDHCPC_SCRIPT = Path(__file__).with_name("udhcpc.sh")


def in_ns(namespace: str, *argv: str, timeout: float = 10, check: bool = True,
          env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True,
                          text=True, timeout=timeout, check=check, env=env)


def pings(namespace: str, address: str, count: int = 1, wait: float = 1) -> bool:
    return in_ns(namespace, "ping", "-n", "-c", str(count), "-W", str(wait), address,
                 check=False).returncode == 0


class Plugs:
    """Veth pairs made by a test; ``close()`` deletes every one (and so its peer)."""

    def __init__(self):
        self.host_ends: list[str] = []

    def plug(self, namespace: str, bridge: str, mac: str | None = None,
             address: str | None = None, host_end: str | None = None) -> None:
        """``host_end``: the tap's name (a port's security groups match on it)."""
        host_end = host_end or f"vt{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0",
                        "netns", namespace], check=True)
        self.host_ends.append(host_end)
        subprocess.run(["ip", "link", "set", host_end, "master", bridge, "up"], check=True)
        if mac:
            in_ns(namespace, "ip", "link", "set", "eth0", "address", mac)
        in_ns(namespace, "ip", "link", "set", "eth0", "up")
        if address:
            in_ns(namespace, "ip", "addr", "add", address, "dev", "eth0")

    def close(self) -> None:
        for name in self.host_ends:
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(["ip", "link", "del", name], check=True, capture_output=True)


def dhcp(namespace: str, lease_file: Path) -> dict[str, str]:
    """Runs a DHCP client in ``namespace`` until it has a lease; returns what it got."""
    import os

    in_ns(namespace, "udhcpc", "-i", "eth0", "-O", "staticroutes", "-n", "-q", "-f",
          "-t", "10", "-T", "1", "-s", str(UDHCPC_SCRIPT), timeout=30,
          env={**os.environ, "SOKO_LEASE_FILE": str(lease_file)})
    return dict(line.split("=", 1) for line in lease_file.read_text().splitlines())


TCP_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
conn, peer = s.accept(); print(peer[0], flush=True); conn.close()
"""


@contextlib.contextmanager
def tcp_server(namespace: str, port: int, timeout: float = 10):
    """A one-shot TCP listener in ``namespace``; the context's value returns the address
    the connection came from (what NAT made of it)."""
    proc = subprocess.Popen(["ip", "netns", "exec", namespace, "python3", "-c", TCP_SERVER,
                             str(port), str(timeout)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"

        def peer() -> str:
            line = proc.stdout.readline().strip()
            proc.wait(timeout)
            return line

        yield peer
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def connects(namespace: str, address: str, port: int, timeout: float = 2) -> bool:
    code = ("import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), "
            "timeout=float(sys.argv[3])).close()")
    return in_ns(namespace, "python3", "-c", code, address, str(port), str(timeout),
                 check=False, timeout=timeout + 5).returncode == 0


UDP_SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.sendto(b"x", (sys.argv[2], int(sys.argv[3])))
"""
UDP_RECEIVE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
try:
    s.recvfrom(16); print("received")
except socket.timeout:
    print("nothing")
"""


def udp_reaches(sender: str, source_port: int, receiver: str, address: str, port: int) -> bool:
    """Whether one datagram from ``sender``'s ``source_port`` reaches ``receiver``."""
    listener = subprocess.Popen(["ip", "netns", "exec", receiver, "python3", "-c", UDP_RECEIVE,
                                 str(port), "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        in_ns(sender, "python3", "-c", UDP_SEND, str(source_port), address, str(port))
        return listener.stdout.readline().strip() == "received"
    finally:
        if listener.poll() is None:
            listener.kill()
        listener.wait()


def dnsmasq_pids(data_dir: Path) -> list[int]:
    """The dnsmasq processes serving a cloud whose data dir is ``data_dir``."""
    from soko.common.procs import find_pids

    found = []
    for pid in find_pids("dnsmasq"):
        with contextlib.suppress(OSError):
            if str(data_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def proxy_pids(data_dir: Path) -> list[int]:
    """The metadata proxies of the cloud whose data dir is ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"soko.net.metadata_proxy" in cmdline and str(data_dir).encode() in cmdline:
            found.append(int(entry.name))
    return found


def assert_cloud_gone(cloud: str) -> None:
    """Nothing of cloud ``cloud`` is left on the host: namespaces, bridges, veths, and the
    security-group and conntrack-zone chains with their jumps."""
    from pyroute2 import netns

    left = [n for n in netns.listnetns() if f"-{cloud}-" in n]
    assert not left, f"namespaces left behind: {left}"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"brq{cloud}" not in links and f"tap{cloud}" not in links, links
    rules = "".join(subprocess.run(["iptables", "-t", table, "-S"], capture_output=True,
                                   text=True).stdout for table in ("filter", "raw"))
    left = [rule for rule in rules.splitlines() if f"sk{cloud}" in rule]
    assert not left, f"security-group or conntrack-zone chains or their jumps left: {left}"
