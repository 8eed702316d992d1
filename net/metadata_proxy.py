"""The metadata proxy: what a guest reaches at 169.254.169.254:80, as Neutron's
namespace proxy and metadata agent together.

One process per host serves every router namespace: it listens *inside* each namespace
(its socket is made while the thread visits the namespace, and stays bound there) but
forwards from the host's own network stack, so it reaches compute on the host's loopback,
which no namespace can route to. Neutron's haproxy in the namespace reaches its metadata
agent through a unix socket for the same reason.

A request is attributed only by what the proxy itself sees: the namespace it arrived in
and the source address of the connection (the port's anti-spoofing rules make that the
sender's own). Every header the guest sent is dropped; the instance's identity is added,
signed with the shared secret, from the map the network agent writes for the namespace
(``<state>/namespaces/<namespace>.json``: source address -> instance). An address no port
of an instance holds gets 404.

Run as ``python -m soko.net.metadata_proxy STATE_DIR``: it daemonizes, writes its pid to
``STATE_DIR/pid``, and re-reads the maps on SIGHUP (``net/drivers/metadata.py``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import selectors
import signal
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path

log = logging.getLogger("soko.net.metadata_proxy")

UPSTREAM_TIMEOUT = 10.0
# The metadata trees (OpenStack's, EC2's dated and "latest" ones); no other path of
# compute's API is reachable through the proxy.
METADATA_PATH = re.compile(r"^/(openstack|latest|1\.0|\d{4}-\d{2}-\d{2})(/|$)")


def sign(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def identity_headers(secret: bytes, source_ip: str, entry: dict) -> dict[str, str]:
    """What compute's metadata API trusts (``compute/metadata.py`` checks the same)."""
    instance_id = entry["instance_id"]
    ports = base64.b64encode(json.dumps(entry["ports"], sort_keys=True).encode()).decode()
    return {"X-Forwarded-For": source_ip, "X-Instance-ID": instance_id,
            "X-Tenant-ID": entry["project_id"],
            "X-Instance-ID-Signature": sign(secret, instance_id),
            "X-Soko-Ports": ports,
            "X-Soko-Ports-Signature": sign(secret, f"{instance_id}\n{ports}")}


class Handler(BaseHTTPRequestHandler):
    server_version = "soko-metadata-proxy"
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        proxy: Proxy = self.server.proxy
        source = self.client_address[0]
        entry = proxy.maps.get(self.server.namespace, {}).get(source)
        if entry is None:
            self.answer(404, b"404 Not Found\n\nNo instance has the address "
                             + source.encode() + b" on this network.\n")
            return
        if not METADATA_PATH.match(self.path):  # nothing else of compute's API
            self.answer(404, b"404 Not Found\n\nNot a metadata path.\n")
            return
        try:
            status, content_type, body = proxy.forward(self.command, self.path,
                                                       identity_headers(proxy.secret, source,
                                                                        entry))
        except OSError as exc:
            log.warning("metadata upstream failed: %s", exc)
            self.answer(502, b"502 Bad Gateway\n\nThe metadata service did not answer.\n")
            return
        self.answer(status, body, content_type)

    do_HEAD = do_GET

    def answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Listener:
    """What ``Handler`` sees as its server: the namespace a connection came in through."""

    def __init__(self, proxy: Proxy, namespace: str, sock: socket.socket):
        self.proxy = proxy
        self.namespace = namespace
        self.socket = sock


def listen_in(namespace: str, host: str, port: int) -> socket.socket:
    """A listening socket inside ``namespace`` (the namespace is left right after)."""
    from pyroute2 import netns

    netns.pushns(namespace)
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    finally:
        netns.popns()
    sock.setblocking(False)
    return sock


class Proxy:
    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        config = json.loads((state_dir / "config.json").read_text())
        self.upstream = urllib.parse.urlsplit(config["upstream"])
        self.secret = Path(config["secret_file"]).read_bytes()
        self.maps: dict[str, dict[str, dict]] = {}
        self.listeners: dict[str, tuple[tuple[str, int], Listener]] = {}
        self.selector = selectors.DefaultSelector()

    def forward(self, method: str, path: str, headers: dict) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port or 80,
                                          timeout=UPSTREAM_TIMEOUT)
        try:
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type", "text/plain"), resp.read()
        finally:
            conn.close()

    def reload(self) -> None:
        """Re-reads every namespace's map; listens in new namespaces, leaves gone ones."""
        wanted = {}
        for path in (self.state_dir / "namespaces").glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                wanted[path.stem] = json.loads(path.read_text())
        self.maps = {ns: spec["instances"] for ns, spec in wanted.items()}
        for namespace in set(self.listeners) - set(wanted):
            self.close(namespace)
        for namespace, spec in wanted.items():
            address = tuple(spec["listen"])
            held = self.listeners.get(namespace)
            if held is not None and held[0] == address:
                continue
            if held is not None:
                self.close(namespace)
            try:
                sock = listen_in(namespace, *address)
            except OSError as exc:  # the namespace is not there (yet): the next reload
                log.warning("cannot listen in %s: %s", namespace, exc)
                continue
            listener = Listener(self, namespace, sock)
            self.listeners[namespace] = (address, listener)
            self.selector.register(sock, selectors.EVENT_READ, listener)

    def close(self, namespace: str) -> None:
        _, listener = self.listeners.pop(namespace)
        self.selector.unregister(listener.socket)
        listener.socket.close()

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        reloads = threading.Event()
        signal.signal(signal.SIGHUP, lambda *_: reloads.set())
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        self.selector.register(wake_r, selectors.EVENT_READ, None)
        while True:
            for key, _ in self.selector.select(timeout=2.0):
                if key.data is None:
                    os.read(wake_r, 512)
                    continue
                with contextlib.suppress(BlockingIOError, OSError):
                    conn, peer = key.fileobj.accept()
                    conn.setblocking(True)
                    conn.settimeout(UPSTREAM_TIMEOUT)
                    threading.Thread(target=self.handle, args=(conn, peer, key.data),
                                     daemon=True).start()
            missing = any(ns not in self.listeners for ns in self.maps)
            if reloads.is_set() or missing:
                reloads.clear()
                self.reload()

    @staticmethod
    def handle(conn: socket.socket, peer, listener: Listener) -> None:
        with contextlib.suppress(OSError), conn:
            Handler(conn, peer, listener)


def daemonize(pid_file: Path) -> None:
    """Forks once: the child serves in its own session, the parent records its pid
    (by rename: a reader never sees half of it) and exits."""
    pid = os.fork()
    if pid:
        tmp = pid_file.with_name(pid_file.name + ".tmp")
        tmp.write_text(str(pid))
        os.replace(tmp, pid_file)
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def main(argv: list[str]) -> None:
    state_dir = Path(argv[0])
    logging.basicConfig(filename=state_dir / "proxy.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    proxy = Proxy(state_dir)
    proxy.reload()  # listening before the pid appears: whoever started it can rely on it
    daemonize(state_dir / "pid")
    proxy.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
