"""``soko bench net`` runs end to end (a few changes of each kind, small iperf3 runs) and
leaves nothing behind; the numbers themselves are the README's, not asserted here."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from pyroute2 import netns

from soko.tools.bench.net import bench_net
from tests.support import require_tools

pytestmark = pytest.mark.privileged


def test_bench_net_runs_and_cleans_up(tmp_path):
    require_tools("ip", "dnsmasq", "iptables-restore", "iperf3")
    before = set(netns.listnetns())
    result = CliRunner().invoke(bench_net, ["--count", "2", "--routers", "2", "--seconds", "1",
                                            "--rounds", "2",
                                            "--json", str(tmp_path / "net.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "net.json").read_text())
    assert [r["case"].split(" ")[0] for r in rows] == ["port", "security-group", "floating",
                                                       "TCP", "TCP", "reconcile"]
    assert all(r["p50"] for r in rows)
    assert set(netns.listnetns()) <= before
