"""Durability on separate "hosts": each storage node in its own network namespace.

Faults are real: SIGKILL of a node's processes, its veth taken down, bytes flipped in a
``.data`` file, a device's filesystem unmounted under the node, a crash while a PUT streams.
Clients only see the Swift API through the proxy; what is on each node is checked with
direct HEADs to the primaries the rings name (``soko.object.dispersion``) and on disk.
Daemon passes are driven one at a time (``soko object pass``), so healing is deterministic
and its time is measured.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import random
import threading
import time
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner

from soko.object.dispersion import count_copies
from soko.object.shared.nodeclient import ConnectionPool, backend_path
from soko.object.shared.rings import load_rings
from tests.object.netns_cluster import NODE_TIMEOUTS, PROXY_TIMEOUTS
from tests.support import wait_for

pytestmark = pytest.mark.privileged

REPLICATOR = "object-replicator"
AUDITOR = "auditor"
DB_REPLICATOR = "db-replicator"
MAX_HEAL_ROUNDS = 6


class Client:
    """A test user talking to the proxy: one session per thread."""

    def __init__(self, cluster, container: str):
        self.url, token = cluster.auth()
        self.account = self.url.rsplit("/", 1)[1]
        self.container = container
        self.headers = {"X-Auth-Token": token}
        self.local = threading.local()
        assert self.session.put(f"{self.url}/{container}", headers=self.headers,
                                timeout=30).status_code in (201, 202)

    @property
    def session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def object_url(self, name: str) -> str:
        return f"{self.url}/{self.container}/{name}"

    def put(self, name: str, body: bytes) -> requests.Response:
        return self.session.put(self.object_url(name), data=body, headers=self.headers,
                                timeout=60)

    def get(self, name: str) -> requests.Response:
        return self.session.get(self.object_url(name), headers=self.headers, timeout=60)

    def delete(self, name: str) -> requests.Response:
        return self.session.delete(self.object_url(name), headers=self.headers, timeout=60)

    def names(self, objects) -> list[tuple[str, str, str]]:
        return [(self.account, self.container, name) for name in objects]


def body_of(name: str, size: int = 2048) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def mixed_load(client: Client, ops: int, events: dict[int, callable], threads: int = 4):
    """``ops`` requests over ``threads`` threads, alternating PUT of a new object and GET of
    one already stored (body checked); ``events[i]`` runs in the background when op ``i``
    starts. Returns (failures, latencies, stored names)."""
    lock = threading.Lock()
    counter = iter(range(ops))
    stored: list[str] = []
    failures: list[str] = []
    latencies: list[float] = []
    background: list[threading.Thread] = []

    def worker() -> None:
        while True:
            with lock:
                op = next(counter, None)
                if op is None:
                    return
                if op in events:
                    background.append(threading.Thread(target=events[op]))
                    background[-1].start()
                name = None if op % 2 == 0 or not stored else random.choice(stored)
            started = time.monotonic()
            try:
                if name is None:
                    name = f"obj-{op:05d}"
                    resp = client.put(name, body_of(name))
                    ok = resp.status_code == 201
                    if ok:
                        with lock:
                            stored.append(name)
                else:
                    resp = client.get(name)
                    ok = resp.status_code == 200 and resp.content == body_of(name)
                problem = None if ok else f"{resp.request.method} {name}: {resp.status_code}"
            except requests.RequestException as exc:
                problem = f"{name}: {exc!r}"
            with lock:
                latencies.append(time.monotonic() - started)
                if problem:
                    failures.append(problem)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for t in background:
        t.join()
    return failures, latencies, stored


def dispersion(cluster, names) -> dict:
    ring = load_rings(cluster.config)["object"]
    return count_copies(ring, "object", ConnectionPool(1.0, 5.0), names)


def heal(cluster, names, settled=lambda: True) -> tuple[float, int]:
    """Replicator passes on every node until every name has all replicas on its primaries
    (and ``settled()``, e.g. handoff copies gone): (seconds, passes)."""
    started = time.monotonic()
    for rounds in range(1, MAX_HEAL_ROUNDS + 1):
        cluster.run_passes(REPLICATOR)
        if dispersion(cluster, names)["all_replicas_pct"] == 100.0 and settled():
            return time.monotonic() - started, rounds
    extra = {name[2]: [str(f.relative_to(cluster.data_dir)) for f in
                       cluster.object_files(*name)] for name in names
             if len(cluster.object_files(*name)) != 3}
    pytest.fail(f"dispersion {dispersion(cluster, names)} (settled: {settled()}) after "
                f"{MAX_HEAL_ROUNDS} passes; not exactly 3 copies: {extra}")


def three_copies_each(cluster, names) -> bool:
    """Exactly the replica count of files: no handoff copy left behind."""
    return all(len(cluster.object_files(*name)) == 3 for name in names)


def node_files(cluster, node: int, pattern: str) -> list:
    return sorted(cluster.node_devices(node).glob(pattern))


def direct_head(cluster, node: dict, part: int, name: tuple) -> int:
    status, _, _ = ConnectionPool(1.0, 5.0).request(
        node, "HEAD", backend_path("object", node, part, *name), {})
    return status


def test_node_killed_under_load_zero_failures_then_heals(netns_cluster):
    cluster = netns_cluster
    client = Client(cluster, "killed-node")
    events = {500: lambda: cluster.kill_node(1), 1300: lambda: cluster.start_node(1)}
    failures, latencies, stored = mixed_load(client, 2000, events)
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}"
    names = client.names(stored)
    before = dispersion(cluster, names)
    assert before["all_replicas_pct"] < 100.0, "node 1 missed no writes: the test proved nothing"
    seconds, rounds = heal(cluster, names)
    print(f"\nkill under load: {len(latencies)} requests, 0 failed, max latency "
          f"{max(latencies):.2f} s; dispersion {before['all_replicas_pct']} % -> 100 % in "
          f"{seconds:.1f} s ({rounds} replicator passes)")


def test_link_down_under_load_zero_failures_bounded_latency(netns_cluster):
    cluster = netns_cluster
    client = Client(cluster, "link-down")
    events = {200: lambda: cluster.set_link(2, False), 900: lambda: cluster.set_link(2, True)}
    try:
        failures, latencies, stored = mixed_load(client, 1200, events)
    finally:
        cluster.set_link(2, True)
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:5]}"
    # A request may wait out the proxy's node timeout on the cut-off node; a PUT's handoff
    # then may wait out its own listing-update timeout to the same node (then error-limited).
    bound = PROXY_TIMEOUTS["node_timeout"] + NODE_TIMEOUTS["node_timeout"] + 1.0
    assert max(latencies) < bound, f"a request took {max(latencies):.2f} s (bound {bound} s)"
    names = client.names(stored)
    assert dispersion(cluster, names)["all_replicas_pct"] < 100.0
    seconds, rounds = heal(cluster, names)
    print(f"\nlink down under load: {len(latencies)} requests, 0 failed, max latency "
          f"{max(latencies):.2f} s (node timeout {PROXY_TIMEOUTS['node_timeout']} s); healed "
          f"in {seconds:.1f} s ({rounds} passes)")


def flip_bytes(path) -> None:
    with open(path, "r+b") as f:
        f.seek(1000)
        data = f.read(16)
        f.seek(1000)
        f.write(bytes(b ^ 0xFF for b in data))
        f.flush()
        os.fsync(f.fileno())


def test_bit_rot_never_served_quarantined_and_repaired(netns_cluster):
    cluster = netns_cluster
    client = Client(cluster, "bit-rot")
    payload = {name: os.urandom(64 << 10) for name in ("served", "audited")}
    for name, body in payload.items():
        assert client.put(name, body).status_code == 201
    served = [p for p in cluster.object_files(client.account, client.container, "served")
              if "/node0/" in str(p)]
    audited = [p for p in cluster.object_files(client.account, client.container, "audited")
               if "/node1/" in str(p)]
    flip_bytes(served[0])
    flip_bytes(audited[0])
    for _ in range(30):  # reads land on every replica, the corrupt one included
        resp = client.get("served")
        assert resp.status_code == 200 and resp.content == payload["served"]

    stats = cluster.run_passes(AUDITOR, nodes=[1])[0]
    assert not audited[0].exists(), f"the auditor left the corrupt file in place: {stats}"
    assert node_files(cluster, 1, "d*/quarantined/objects/*"), "nothing was quarantined"
    recon = requests.get(f"{cluster.node_url(1)}/recon", timeout=5).json()
    assert recon["quarantined"]["objects"] >= 1 and AUDITOR in recon["daemons"]

    names = client.names(payload)
    heal(cluster, names, lambda: three_copies_each(cluster, names))
    for name, body in payload.items():
        files = cluster.object_files(client.account, client.container, name)
        assert all(f.read_bytes() == body for f in files), f"{name}: a bad copy remains"


def test_body_failing_after_bytes_were_sent_cuts_the_client_off(netns_cluster):
    """Bit rot near the end of a multi-chunk object on every replica: the client has bytes
    already when the MD5 fails, so its connection must break, never end as if complete."""
    cluster = netns_cluster
    client = Client(cluster, "rot-everywhere")
    body = os.urandom(6 << 20)  # nodes check bodies up to 4 MiB before sending a byte
    assert client.put("big", body).status_code == 201
    for path in cluster.object_files(client.account, client.container, "big"):
        with open(path, "r+b") as f:
            f.seek(len(body) - 100)
            f.write(b"\0" * 16)
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError), client.session.get(
            client.object_url("big"), headers=client.headers, stream=True, timeout=60) as resp:
        assert resp.status_code == 200
        for chunk in resp.iter_content(1 << 16):
            received += chunk
    assert len(received) < len(body)


def test_failed_device_answers_507_writes_go_to_handoffs_and_refill(netns_cluster):
    cluster = netns_cluster
    client = Client(cluster, "disk-failure")
    rings = load_rings(cluster.config)
    early = [f"early-{i}" for i in range(30)]
    for name in early:
        assert client.put(name, body_of(name)).status_code == 201
    cluster.unmount_device(0, "d0", lazy=True)  # the disk dies under the running node
    try:
        d0 = next(d for d in rings["object"].devices if d["device"] == "d0")
        assert direct_head(cluster, d0, 0, (client.account, client.container, "x")) == 507
        late = [f"late-{i}" for i in range(30)]
        for name in late:
            assert client.put(name, body_of(name)).status_code == 201
        for name in early + late:
            assert client.get(name).content == body_of(name)
    finally:
        cluster.replace_device(0, "d0")  # a new, empty disk
    on_d0 = [n for n in late if any(
        d["device"] == "d0" for d in rings["object"].get_nodes(client.account,
                                                                client.container, n)[1])]
    assert on_d0, "no sample object has d0 as a primary"
    for name in on_d0:  # while d0 was gone its copy went to a handoff
        files = cluster.object_files(client.account, client.container, name)
        assert len(files) == 3 and not any("/d0/" in str(f) for f in files)
    names = client.names(early + late)
    assert dispersion(cluster, names)["all_replicas_pct"] < 100.0
    heal(cluster, names, lambda: three_copies_each(cluster, names))  # and handoffs reverted


def test_crash_mid_put_leaves_no_partial_object(netns_cluster):
    cluster = netns_cluster
    client = Client(cluster, "crash-mid-put")
    earlier = set(node_files(cluster, 1, "d*/tmp/*") + node_files(cluster, 2, "d*/tmp/*"))
    parts = urlsplit(client.object_url("half"))
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PUT", parts.path)
    conn.putheader("X-Auth-Token", client.headers["X-Auth-Token"])
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = os.urandom(64 << 10)
    for _ in range(4):
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    temps = wait_for(lambda: node_files(cluster, 0, "d*/tmp/*"), what="node 0's temp file")
    assert client.get("half").status_code == 404  # streaming: nothing visible yet
    cluster.kill_node(0)  # SIGKILL between temp write and rename
    conn.close()  # and the client gives up
    assert client.get("half").status_code == 404
    assert all(t.exists() for t in temps), "the crash should have left the temp file"
    old = time.time() - 2 * 3600  # stale: older than any upload in progress
    for t in temps:
        os.utime(t, (old, old))
    cluster.start_node(0)
    assert not any(t.exists() for t in temps), "the stale temp file was not cleaned up"
    assert not cluster.object_files(client.account, client.container, "half")
    wait_for(lambda: not set(node_files(cluster, 1, "d*/tmp/*") + node_files(
        cluster, 2, "d*/tmp/*")) - earlier, what="the other nodes to drop their temp files")
    assert client.get("half").status_code == 404


def test_delete_while_node_down_stays_deleted(netns_cluster):
    cluster = netns_cluster
    client = Client(cluster, "delete-while-down")
    name = (client.account, client.container, "doomed")

    def node2_data():
        return [f for f in cluster.object_files(*name) if f.is_relative_to(
            cluster.node_devices(2))]

    assert client.put("doomed", b"x" * 1000).status_code == 201
    if not node2_data():  # the proxy may still error-limit node 2 after an earlier test's
        cluster.run_passes(REPLICATOR)  # fault: its copy went to a handoff; bring it home
    assert node2_data()
    with cluster.node_stopped(2):
        assert client.delete("doomed").status_code == 204
        assert node2_data(), "node 2 should still hold the old copy while it is down"
    # Node 2's daemons start a replication pass as soon as it is back; more passes settle it.
    part, nodes = load_rings(cluster.config)["object"].get_nodes(*name)
    for _ in range(MAX_HEAL_ROUNDS):
        cluster.run_passes(REPLICATOR)
        if all(direct_head(cluster, n, part, name) == 404 for n in nodes):
            break
    assert [direct_head(cluster, n, part, name) for n in nodes] == [404, 404, 404]
    assert not cluster.object_files(*name), "a .data file survived the tombstone"
    for _ in range(10):
        assert client.get("doomed").status_code == 404


def test_recon_and_dispersion_commands(netns_cluster):
    from soko.tools.cli import cli

    cluster = netns_cluster
    cli_args = ["--config", str(cluster.config_path), "--data-dir", str(cluster.data_dir)]

    def recon(*extra: str):
        return CliRunner().invoke(cli, ["object", "recon", *cli_args, *extra])

    def daemons_reported():  # every node's daemons finished their first pass
        result = recon("--format", "json")
        return result.exit_code == 0 and all(REPLICATOR in n["daemons"] and AUDITOR in n["daemons"]
                                             for n in json.loads(result.stdout)) and result

    result = wait_for(daemons_reported, timeout=30, what="recon to show the daemons' passes")
    assert sorted(n["endpoint"] for n in json.loads(result.stdout)) == [
        f"{ip}:{6200 + n}" for n, ip in enumerate(cluster.node_ips)]
    dispersion_args = ["object", "dispersion", *cli_args, "--user", "test:tester", "--key",
                       "testing123", "--format", "json"]
    result = CliRunner().invoke(cli, [*dispersion_args, "--populate", "--coverage", "10"])
    assert result.exit_code == 0, result.output
    # Earlier tests' faults may still have a node error-limited at the proxy, which then
    # writes some samples to handoffs: one pass of each replicator puts them in place.
    cluster.run_passes(REPLICATOR)
    cluster.run_passes(DB_REPLICATOR)
    result = CliRunner().invoke(cli, dispersion_args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["objects"]["sampled"] >= 26  # 10 % of 256 partitions, one object each
    assert report["objects"]["all_replicas_pct"] == 100.0
    assert report["containers"]["all_replicas_pct"] == 100.0
    with cluster.link_down(1):
        result = recon("--timeout", "1")
        assert result.exit_code == 1 and "unreachable" in result.output
        result = CliRunner().invoke(cli, dispersion_args)
        assert json.loads(result.stdout)["objects"]["missing"]["1"] > 0
