"""``soko bench s3`` runs its three paths (S3 through boto3, the Swift API, moto) on the
session cluster, reports every phase for each, and leaves no bucket behind."""

from __future__ import annotations

import json

from click.testing import CliRunner

from soko.tools.bench.s3 import bench_s3
from tests.object.cluster import USERS


def test_bench_s3_reports_every_path_and_cleans_up(cluster, s3, tester_keys, tmp_path):
    before = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    out = tmp_path / "s3.json"
    result = CliRunner().invoke(bench_s3, [
        "--access-key", tester_keys[0], "--secret-key", tester_keys[1],
        "--auth", f"{cluster.proxy_url}/auth/v1.0", "--user", "test:tester",
        "--key", USERS["test:tester"], "--count", "20", "--large-count", "1",
        "--proxy-match", f"serve proxy --config {cluster.config_path}", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    phases = ["PUT 4KiB", "GET 4KiB", "PUT 64MiB", "GET 64MiB"]
    for path in ("s3", "swift", "moto"):
        assert list(report[path]) == phases
        for figures in report[path].values():
            assert figures.get("ops_per_s", figures.get("mb_per_s")) > 0
    assert report["s3"]["PUT 4KiB"]["proxy_cpu_ms_per_op"] > 0
    assert report["moto"]["PUT 4KiB"]["proxy_cpu_ms_per_op"] > 0  # moto's own server
    assert all(figures["client_cpu_ms_per_op"] > 0 for path in ("s3", "swift", "moto")
               for figures in report[path].values())
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == before
