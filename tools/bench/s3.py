"""``soko bench s3``: the same load through boto3 against soko's S3 API, through soko's Swift
API, and through boto3 against moto's server mode (a popular S3 stand-in), in one run.

Phases: PUT and GET of small objects (4 KiB, concurrency 16: ops/s, p50/p99) and of large
ones (64 MiB, concurrency 4: MB/s, decimal). The S3 and Swift paths hit the same proxy, so
their ratio is what the S3 layer costs (SigV4 over the headers and, on plain HTTP, the
SHA-256 of every body, which boto3 signs and the proxy checks). boto3 itself spends client
CPU on every request, and client and servers share this machine's cores; with
``--proxy-match`` the proxy's own CPU per request is shown too, the figure that is the
layer's alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit

import click

from soko.common.procs import cpu_seconds, cpu_used
from soko.tools.bench.object import (
    Client,
    authenticate,
    emit_report,
    figure,
    percentile,
    run_phase,
)

SMALL, LARGE = 4096, 64 << 20


class S3Client:
    """``Client``'s interface over one shared boto3 client: ``request`` returns a status."""

    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket

    def request(self, method: str, path: str, body: bytes | None = None) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        key = path.rsplit("/", 1)[-1]
        try:
            if method == "PUT":
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
            elif method == "GET":
                stream = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
                while stream.read(1 << 20):
                    pass
            else:
                self.s3.delete_object(Bucket=self.bucket, Key=key)
            return 200
        except ClientError as exc:
            return exc.response["ResponseMetadata"]["HTTPStatusCode"]
        except BotoCoreError:
            return 0


def s3_client(endpoint: str, access: str, secret: str, concurrency: int):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=access, aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(max_pool_connections=concurrency, retries={"max_attempts": 1},
                      s3={"addressing_style": "path"}))


def run_load(clients_for, count: int, large_count: int, match: str | None) -> dict:
    """PUT/GET small at c=16 and large at c=4 over ``clients_for(concurrency)``'s clients."""
    results = {}
    for size, n, concurrency in ((SMALL, count, 16), (LARGE, large_count, 4)):
        clients = clients_for(concurrency)
        names = [f"/o-{i}" for i in range(n)]
        body = os.urandom(size)
        label = "4KiB" if size == SMALL else "64MiB"
        for method in ("PUT", "GET"):
            before = cpu_seconds(match) if match else {}
            client_before = time.process_time()
            seconds, lat = run_phase(clients, method, names, body if method == "PUT" else None)
            result = {"p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
                      "client_cpu_ms_per_op": 1000 * (time.process_time() - client_before) / n}
            if size == SMALL:
                result["ops_per_s"] = n / seconds
            else:
                result["mb_per_s"] = n * size / seconds / 1e6
            if match:
                after = cpu_seconds(match)
                result["proxy_cpu_ms_per_op"] = 1000 * cpu_used(before, after) / n
            results[f"{method} {label}"] = result
        run_phase(clients, "DELETE", names, None)
    return results


def bench_s3_api(endpoint, access, secret, count, large_count, match) -> dict:
    s3 = s3_client(endpoint, access, secret, 16)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    try:
        return run_load(lambda c: [S3Client(s3, bucket)] * c, count, large_count, match)
    finally:
        s3.delete_bucket(Bucket=bucket)


def bench_swift_api(auth, user, key, count, large_count, match) -> dict:
    url, token = authenticate(auth, user, key)
    container = f"bench-{uuid.uuid4().hex[:8]}"
    setup = Client(url, token)
    if setup.request("PUT", f"/{container}") // 100 != 2:
        raise click.ClickException(f"cannot create {container} at {url}")
    try:
        return run_load(lambda c: [_Prefixed(Client(url, token), container) for _ in range(c)],
                        count, large_count, match)
    finally:
        setup.request("DELETE", f"/{container}")


class _Prefixed:
    """A Swift ``Client`` whose object paths live in one container."""

    def __init__(self, client: Client, container: str):
        self.client, self.container = client, container

    def request(self, method: str, path: str, body: bytes | None = None) -> int:
        return self.client.request(method, f"/{self.container}{path}", body)


def moto_command(url: str) -> str:
    """moto's command line after the program's path (what its CPU is found by)."""
    return f"moto_server -H 127.0.0.1 -p {urlsplit(url).port}"


def start_moto() -> tuple[subprocess.Popen, str]:
    """moto's server on a free loopback port, from this interpreter's environment."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or \
        shutil.which("moto_server")
    if not exe:
        raise click.ClickException("moto_server is not installed (pip install 'moto[server]'),"
                                   " or pass --no-moto")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, *moto_command(f"http://127.0.0.1:{port}").split()[1:]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise click.ClickException("moto_server did not start within 30 s")


def table(report: dict) -> list[dict]:
    rows = []
    for phase, s3 in report["s3"].items():
        unit = "ops/s" if "ops_per_s" in s3 else "MB/s"
        swift = report["swift"][phase]
        row = {"phase": phase, "S3 (boto3)": f"{figure(s3):.1f} {unit}",
               "p50/p99 ms": f"{s3['p50_ms']:.1f} / {s3['p99_ms']:.1f}",
               "Swift API": f"{figure(swift):.1f} {unit}",
               "S3/Swift": f"{figure(s3) / figure(swift):.2f}x"}
        if "proxy_cpu_ms_per_op" in s3:
            row["proxy CPU ms/op S3 / Swift"] = (f"{s3['proxy_cpu_ms_per_op']:.2f} / "
                                                 f"{swift['proxy_cpu_ms_per_op']:.2f}")
        if "moto" in report:
            moto = report["moto"][phase]
            row["moto"] = f"{figure(moto):.1f} {unit}"
            row["S3/moto"] = f"{figure(s3) / figure(moto):.2f}x"
            row["CPU ms/op boto3 / moto"] = (f"{moto['client_cpu_ms_per_op']:.2f} / "
                                             f"{moto['proxy_cpu_ms_per_op']:.2f}")
            # boto3's threads share one interpreter: no server gets more small requests a
            # second from this client than one core over its cost (large bodies' hashing
            # runs outside the interpreter's lock, so there is no such ceiling for them)
            ceiling = 1000 / moto["client_cpu_ms_per_op"] / figure(moto)
            row["client's ceiling / moto"] = f"{ceiling:.2f}x" if unit == "ops/s" else ""
        rows.append(row)
    return rows


@click.command("s3")
@click.option("--endpoint", help="soko's S3 endpoint; default: the --auth URL's host and port.")
@click.option("--access-key", envvar="AWS_ACCESS_KEY_ID", required=True,
              help="An EC2 credential (soko identity ec2-credentials create); "
                   "default $AWS_ACCESS_KEY_ID.")
@click.option("--secret-key", envvar="AWS_SECRET_ACCESS_KEY", required=True,
              help="Its secret; default $AWS_SECRET_ACCESS_KEY.")
@click.option("--auth", required=True, help="Auth v1.0 URL for the Swift path, "
              "e.g. http://127.0.0.1:8080/auth/v1.0")
@click.option("--user", required=True, help="<project>:<user> (the credential's project).")
@click.option("--key", required=True)
@click.option("--count", default=1000, show_default=True, help="Small objects per phase.")
@click.option("--large-count", default=8, show_default=True, help="64 MiB objects per phase.")
@click.option("--proxy-match", help="Text in the proxy processes' command lines: show the "
              "proxy's CPU per request on each path.")
@click.option("--moto/--no-moto", default=True, show_default=True,
              help="Run the same load against moto's server mode as a peer.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Also write the results as JSON here.")
def bench_s3(endpoint, access_key, secret_key, auth, user, key, count, large_count,
             proxy_match, moto, json_path) -> None:
    """PUT/GET 4 KiB at c=16 and 64 MiB at c=4: S3 via boto3, the Swift API, and moto."""
    if not endpoint:
        parts = urlsplit(auth)
        endpoint = f"{parts.scheme}://{parts.netloc}"
    report = {"shape": {"count": count, "large_count": large_count}}
    with click.progressbar(length=3 if moto else 2, label="s3, swift, moto") as bar:
        report["s3"] = bench_s3_api(endpoint, access_key, secret_key, count, large_count,
                                    proxy_match)
        bar.update(1)
        report["swift"] = bench_swift_api(auth, user, key, count, large_count, proxy_match)
        bar.update(1)
        if moto:
            proc, moto_url = start_moto()
            try:
                report["moto"] = bench_s3_api(moto_url, "bench", "bench", count, large_count,
                                              moto_command(moto_url))
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            bar.update(1)
    emit_report(table(report), report, json_path)
