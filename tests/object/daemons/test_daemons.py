"""The daemon runner: a real `soko serve object-daemons` process per node, its recon cache
served by the storage node at GET /recon, and a clean exit when stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import requests

from soko.object.daemons.runner import Runner
from tests.object.inprocess_daemons import node_context
from tests.support import wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def recon(cluster, node: int) -> dict:
    r = requests.get(f"http://127.0.0.1:{cluster.storage_port + node}/recon", timeout=5)
    assert r.status_code == 200
    return r.json()


def test_recon_reports_devices_and_no_problems(cluster):
    doc = recon(cluster, 1)
    assert doc["node"] == 1 and doc["endpoint"] == f"127.0.0.1:{cluster.storage_port + 1}"
    assert set(doc["devices"]) == {"d2", "d3"}
    assert all(d["mounted"] and d["size"] > d["used"] > 0 for d in doc["devices"].values())
    assert doc["quarantined"] == {"objects": 0, "containers": 0, "accounts": 0}


def test_a_pass_lands_in_recon(cluster):
    runner = Runner(node_context(cluster, 2), ["updater"])
    record = runner.run_pass("updater")
    assert record["last_pass_seconds"] >= 0 and "successes" in record
    assert recon(cluster, 2)["daemons"]["updater"] == record


def test_daemon_process_runs_passes_and_stops_cleanly(cluster):
    cache = cluster.config.section("object-daemons").recon_path(cluster.data_dir, 0)
    cache.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "soko.tools.cli", "serve", "object-daemons", "--node", "0",
            "--config", str(cluster.config_path), "--data-dir", str(cluster.data_dir)]
    log_path = cluster.data_dir / "object-daemons-0.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: cache.exists() or proc.poll() is not None, timeout=30,
                 what="the first pass")
        assert proc.poll() is None, log_path.read_text()
        daemons = json.loads(cache.read_text())["daemons"]
        assert set(daemons) <= set(cluster.config.section("object-daemons").daemons)
        assert "pass:" in log_path.read_text()
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log_path.read_text()
        assert time.monotonic() - started < 12, log_path.read_text()
    except BaseException:
        print(log_path.read_text())  # pytest shows it with the failure
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
