"""``soko bench slo``: a large object up and down in segments (an SLO) against the same size
as one object, on soko and (``--peer-auth``) on a Swift all-in-one with the same segments.

Phases: PUT/GET of ``--size`` as one object, then the segments PUT (``--concurrency`` at a
time) with their manifest, and the SLO GET; MB/s in decimal megabytes. With
``--proxy-match`` the RSS of the proxy processes (their command lines contain that text) is
sampled through each phase, to show the proxy's memory stays flat while it streams.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import click

from soko.common.procs import pids_matching
from soko.tools.bench.object import authenticate, cluster_options, emit_report

CHUNK = 1 << 20


class RssSampler:
    """The summed RSS of the processes whose command line contains ``match``, sampled in a
    thread; ``peak`` since the last ``reset``."""

    def __init__(self, match: str | None):
        self.match, self.peak, self.stopped = match, 0, threading.Event()
        if match:
            threading.Thread(target=self.run, daemon=True).start()

    def rss(self) -> int:
        total = 0
        for pid in pids_matching(self.match):
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                continue  # gone meanwhile
        return total

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            self.peak = max(self.peak, self.rss())

    def reset(self) -> None:
        self.peak = self.rss() if self.match else 0


def request(url: str, token: str, method: str, path: str, *, body: Iterator[bytes] | bytes
            = b"", length: int | None = None, query: str = "") -> tuple[int, bytes, int]:
    """One request on a fresh connection: (status, first KiB of the answer, bytes read)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=600)
    headers = {"X-Auth-Token": token}
    if length is not None:
        headers["Content-Length"] = str(length)
    target = parts.path + path + (f"?{query}" if query else "")
    try:
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        head, read = b"", 0
        while chunk := resp.read(CHUNK):
            head = head or chunk[:1024]
            read += len(chunk)
        return resp.status, head, read
    finally:
        conn.close()


def repeated(block: bytes, size: int) -> Iterator[bytes]:
    for offset in range(0, size, CHUNK):
        yield block[:min(CHUNK, size - offset)]


def timed(results: dict, phase: str, size: int, rss: RssSampler, work) -> None:
    rss.reset()
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    results[phase] = {"mb_per_s": size / seconds / 1e6, "seconds": seconds,
                      "proxy_rss_mib": rss.peak / 2**20}


def check(status: int, what: str, head: bytes = b"") -> None:
    if status // 100 != 2:
        raise click.ClickException(f"{what}: {status} {head[:200]!r}")


def bench_cluster(auth: str, user: str, key: str, size: int, segment: int, concurrency: int,
                  rss: RssSampler) -> dict:
    url, token = authenticate(auth, user, key)
    container = f"/bench-slo-{uuid.uuid4().hex[:8]}"
    check(request(url, token, "PUT", container)[0], f"PUT {container}")
    block = os.urandom(CHUNK)
    results: dict[str, dict] = {}

    def put_single():
        check(request(url, token, "PUT", f"{container}/single", body=repeated(block, size),
                      length=size)[0], "PUT single")

    def get_single():
        status, _, read = request(url, token, "GET", f"{container}/single")
        check(status, "GET single")
        assert read == size, read

    sizes = [min(segment, size - offset) for offset in range(0, size, segment)]
    digest = hashlib.md5()
    for chunk in repeated(block, segment):
        digest.update(chunk)
    etag = digest.hexdigest()

    def put_slo():
        queue, errors, lock = list(range(len(sizes))), [], threading.Lock()

        def worker():
            while True:
                with lock:
                    if not queue:
                        return
                    index = queue.pop()
                status, head, _ = request(url, token, "PUT", f"{container}/seg/{index:05d}",
                                          body=repeated(block, sizes[index]),
                                          length=sizes[index])
                if status // 100 != 2:
                    errors.append(f"segment {index}: {status} {head[:200]!r}")

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise click.ClickException(errors[0])
        manifest = json.dumps([{"path": f"{container}/seg/{i:05d}", "size_bytes": s,
                                "etag": etag if s == segment else None}
                               for i, s in enumerate(sizes)]).encode()
        status, head, _ = request(url, token, "PUT", f"{container}/slo", body=manifest,
                                  length=len(manifest), query="multipart-manifest=put")
        check(status, "PUT manifest", head)

    def get_slo():
        status, _, read = request(url, token, "GET", f"{container}/slo")
        check(status, "GET SLO")
        assert read == size, read

    for phase, work in (("PUT single", put_single), ("GET single", get_single),
                        ("PUT SLO", put_slo), ("GET SLO", get_slo)):
        timed(results, phase, size, rss, work)
    request(url, token, "DELETE", f"{container}/slo", query="multipart-manifest=delete")
    request(url, token, "DELETE", f"{container}/single")
    request(url, token, "DELETE", container)
    return results


@click.command("slo")
@cluster_options
@click.option("--size-mib", default=1024, show_default=True)
@click.option("--segment-mib", default=100, show_default=True)
@click.option("--concurrency", default=2, show_default=True, help="Segment PUTs at a time.")
@click.option("--proxy-match", help="Sample soko's proxy RSS: text in its command line.")
@click.option("--peer-proxy-match", help="The same for the peer's proxy.")
def bench_slo(auth, user, key, peer_auth, peer_user, peer_key, size_mib, segment_mib,
              concurrency, proxy_match, peer_proxy_match, json_path) -> None:
    """An SLO of --size-mib in --segment-mib segments up and down, vs one object."""
    shape = dict(size=size_mib << 20, segment=segment_mib << 20, concurrency=concurrency)
    report = {"soko": bench_cluster(auth, user, key, **shape, rss=RssSampler(proxy_match)),
              "shape": shape}
    if peer_auth:
        report["peer"] = bench_cluster(peer_auth, peer_user, peer_key, **shape,
                                       rss=RssSampler(peer_proxy_match))
    rows = []
    for phase, mine in report["soko"].items():
        row = {"phase": phase, "soko MB/s": f"{mine['mb_per_s']:.1f}",
               "soko proxy RSS MiB": f"{mine['proxy_rss_mib']:.0f}"}
        if "peer" in report:
            theirs = report["peer"][phase]
            row["peer MB/s"] = f"{theirs['mb_per_s']:.1f}"
            row["peer proxy RSS MiB"] = f"{theirs['proxy_rss_mib']:.0f}"
            row["ratio"] = f"{mine['mb_per_s'] / theirs['mb_per_s']:.2f}x"
        rows.append(row)
    emit_report(rows, report, json_path)
