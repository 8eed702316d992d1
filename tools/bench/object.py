"""``soko bench object``: Swift-API load, so the same numbers come from soko and any Swift.

Phases: PUT, GET, HEAD, DELETE of small objects (4 KiB, concurrency 16: ops/s, p50/p99) and
PUT, GET of large ones (64 MiB, concurrency 4: MB/s, decimal). Each thread owns one
keep-alive connection. With ``--peer-auth`` the same run goes against a second cluster
(a Swift all-in-one, say) right after, and the table shows the ratio soko/peer.

Throughput on a shared machine moves with everyone else's load; the CPU the cluster's own
processes spend per request does not. With ``--cpu-match`` (and ``--peer-cpu-match``) each
phase also reports the server CPU milliseconds per request (per object for the large
phases), summed over the processes whose command line contains any of the given strings.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from urllib.parse import urlsplit

import click

from soko.common.cli.output import emit_rows
from soko.common.procs import cpu_seconds, cpu_used


def authenticate(auth_url: str, user: str, key: str) -> tuple[str, str]:
    parts = urlsplit(auth_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=30)
    conn.request("GET", parts.path, headers={"X-Auth-User": user, "X-Auth-Key": key})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    if resp.status // 100 != 2:
        raise click.ClickException(f"auth at {auth_url} failed: {resp.status} {resp.reason}")
    return resp.getheader("X-Storage-Url"), resp.getheader("X-Auth-Token")


class Client:
    """One thread's keep-alive connection to the storage URL."""

    def __init__(self, storage_url: str, token: str):
        parts = urlsplit(storage_url)
        self.host, self.port, self.base = parts.hostname, parts.port or 80, parts.path
        self.token = token
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None) -> int:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            try:
                self.conn.request(method, self.base + path, body=body,
                                  headers={"X-Auth-Token": self.token})
                resp = self.conn.getresponse()
                while resp.read(1 << 20):
                    pass
                return resp.status
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    return 0
        return 0


def run_phase(clients: list[Client], method: str, names: list[str], body: bytes | None):
    """Runs one request per name over the clients' threads; returns (seconds, latencies)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    queue = list(reversed(names))

    def worker(client: Client) -> None:
        while True:
            with lock:
                if not queue:
                    return
                name = queue.pop()
            started = time.perf_counter()
            status = client.request(method, name, body)
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status // 100 != 2:
                    errors.append(f"{method} {name}: {status}")

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise click.ClickException(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return seconds, latencies


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def metered_phase(clients: list[Client], method: str, names: list[str], body: bytes | None,
                  cpu_match: tuple[str, ...]) -> tuple[float, list[float], dict]:
    """``run_phase`` plus, with ``cpu_match``, the servers' CPU ms per request it took."""
    before = cpu_seconds(*cpu_match) if cpu_match else {}
    seconds, lat = run_phase(clients, method, names, body)
    cpu = {}
    if cpu_match:
        used = cpu_used(before, cpu_seconds(*cpu_match))
        cpu = {"cpu_ms_per_op": round(1000 * used / len(names), 3)}
    return seconds, lat, cpu


def bench_cluster(auth: str, user: str, key: str, count: int, size: int, concurrency: int,
                  large_count: int, large_size: int, large_concurrency: int,
                  cpu_match: tuple[str, ...] = ()) -> dict:
    url, token = authenticate(auth, user, key)
    container = f"/bench-{uuid.uuid4().hex[:8]}"
    setup = Client(url, token)
    if setup.request("PUT", container) // 100 != 2:
        raise click.ClickException(f"cannot create {container} at {url}")
    results: dict[str, dict] = {}
    small = [f"{container}/small-{i}" for i in range(count)]
    payload = os.urandom(size)
    clients = [Client(url, token) for _ in range(concurrency)]
    for phase, method, body in (("PUT 4KiB", "PUT", payload), ("GET 4KiB", "GET", None),
                                ("HEAD 4KiB", "HEAD", None), ("DELETE 4KiB", "DELETE", None)):
        seconds, lat, cpu = metered_phase(clients, method, small, body, cpu_match)
        results[phase] = {"ops_per_s": len(small) / seconds,
                          "p50_ms": 1000 * percentile(lat, 50),
                          "p99_ms": 1000 * percentile(lat, 99), **cpu}
    large = [f"{container}/large-{i}" for i in range(large_count)]
    big = os.urandom(large_size)
    clients = [Client(url, token) for _ in range(large_concurrency)]
    for phase, method, body in (("PUT 64MiB", "PUT", big), ("GET 64MiB", "GET", None)):
        if not large:  # --large-count 0: the small phases only
            break
        seconds, lat, cpu = metered_phase(clients, method, large, body, cpu_match)
        results[phase] = {"mb_per_s": large_count * large_size / seconds / 1e6,
                          "p50_ms": 1000 * percentile(lat, 50),
                          "p99_ms": 1000 * percentile(lat, 99), **cpu}
    run_phase(clients, "DELETE", large, None)
    setup.request("DELETE", container)
    return results


def figure(result: dict) -> float:
    return result.get("ops_per_s", result.get("mb_per_s"))


CLUSTER_OPTIONS = [
    click.option("--auth", required=True,
                 help="Auth v1.0 URL, e.g. http://127.0.0.1:8080/auth/v1.0"),
    click.option("--user", required=True, help="<project>:<user>"),
    click.option("--key", required=True),
    click.option("--peer-auth", help="A second cluster (e.g. a Swift all-in-one) to compare with."),
    click.option("--peer-user"),
    click.option("--peer-key"),
    click.option("--json", "json_path", type=click.Path(dir_okay=False),
                 help="Also write the results as JSON here."),
]


def cluster_options(command):
    """The options of a Swift-API benchmark: the cluster, a peer to compare with, --json."""
    for option in reversed(CLUSTER_OPTIONS):
        command = option(command)
    return command


def emit_report(rows: list[dict], report: dict, json_path: str | None) -> None:
    emit_rows(rows, list(rows[0]), "table")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)


@click.command("object")
@cluster_options
@click.option("--count", default=1000, show_default=True, help="Small objects per phase.")
@click.option("--concurrency", default=16, show_default=True)
@click.option("--large-count", default=8, show_default=True)
@click.option("--large-concurrency", default=4, show_default=True)
@click.option("--cpu-match", multiple=True,
              help="A substring of the command line of this cluster's proxy, storage-node and "
                   "daemon processes (repeatable: any of them); adds server CPU ms per request.")
@click.option("--peer-cpu-match", multiple=True, help="Like --cpu-match, for the peer.")
def bench_object(auth, user, key, peer_auth, peer_user, peer_key, count, concurrency,
                 large_count, large_concurrency, cpu_match, peer_cpu_match, json_path) -> None:
    """PUT/GET/HEAD/DELETE 4 KiB at c=16 and PUT/GET 64 MiB at c=4 over the Swift API."""
    shape = dict(count=count, size=4096, concurrency=concurrency, large_count=large_count,
                 large_size=64 << 20, large_concurrency=large_concurrency)
    report = {"soko": bench_cluster(auth, user, key, **shape, cpu_match=cpu_match),
              "shape": shape}
    if peer_auth:
        report["peer"] = bench_cluster(peer_auth, peer_user, peer_key, **shape,
                                       cpu_match=peer_cpu_match)
    rows = []
    for phase, mine in report["soko"].items():
        unit = "ops/s" if "ops_per_s" in mine else "MB/s"
        row = {"phase": phase, "soko": f"{figure(mine):.1f} {unit}",
               "p50/p99 ms": f"{mine['p50_ms']:.1f} / {mine['p99_ms']:.1f}"}
        if "cpu_ms_per_op" in mine:
            row["CPU ms/req"] = f"{mine['cpu_ms_per_op']:.2f}"
        if "peer" in report:
            theirs = report["peer"][phase]
            row["peer"] = f"{figure(theirs):.1f} {unit}"
            row["peer p50/p99 ms"] = f"{theirs['p50_ms']:.1f} / {theirs['p99_ms']:.1f}"
            row["ratio"] = f"{figure(mine) / figure(theirs):.2f}x"
            if "cpu_ms_per_op" in theirs:
                row["peer CPU ms/req"] = f"{theirs['cpu_ms_per_op']:.2f}"
            if "cpu_ms_per_op" in mine and theirs.get("cpu_ms_per_op"):
                row["CPU ratio"] = f"{mine['cpu_ms_per_op'] / theirs['cpu_ms_per_op']:.2f}x"
        rows.append(row)
    emit_report(rows, report, json_path)
