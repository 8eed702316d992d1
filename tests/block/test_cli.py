"""``soko volume`` against the block API served over real HTTP (a wsgiref thread), with
the in-memory pool and target behind it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from soko.block.api import make_app
from soko.block.cli import volume
from soko.block.service import BlockConfig
from tests.block.conftest import block_config
from tests.block.fakes import FixedTokens
from tests.support import served


@pytest.fixture
def endpoint(tmp_path, manager):
    app = make_app(block_config(tmp_path, BlockConfig()), validator=FixedTokens(),
                   manager=manager)
    with served(app) as url:
        yield f"{url}/v3/proj-a"


@pytest.fixture
def run(endpoint, tmp_path):
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(volume, ["--os-url", endpoint, "--os-token", "tok-a",
                                        "--data-dir", str(tmp_path), *args])
        assert (result.exit_code == 0) == ok, result.output
        return result

    return invoke


def test_volume_lifecycle_through_the_cli(run, manager):
    created = json.loads(run("create", "--name", "data", "--metadata", "tier=gold", "2",
                             "--format", "json").output)
    assert created["status"] == "available" and created["size"] == 2
    assert "data" in run("list").output
    clone = json.loads(run("create", "--source-volid", created["id"], "2",
                           "--format", "json").output)
    assert clone["source_volid"] == created["id"]
    run("extend", "data", "4")
    assert json.loads(run("show", "data", "--format", "json").output)["size"] == 4
    info = json.loads(run("attach", "data", "--initiator", "iqn.2026-11.org.test:h",
                          "--format", "json").output)
    assert info["target_iqn"].endswith(created["id"]) and info["auth_method"] == "CHAP"
    assert "iqn.2026-11.org.test:h" in run("list").output
    assert "409" in run("delete", "data", ok=False).output
    run("detach", "data")
    run("rename", "data", "renamed")
    run("update", "renamed", "--description", "desc")
    quota = json.loads(run("quota-show", "--format", "json").output)
    assert {q["resource"]: q["in_use"] for q in quota} == {"volumes": 2, "gigabytes": 6,
                                                           "snapshots": 0}
    run("delete", "renamed", clone["id"])
    assert manager.pool.volumes() == set()
    assert "no volume with id or name" in run("show", "renamed", ok=False).output


def test_cli_reports_api_errors(run):
    assert "not in the range" in run("create", "0", ok=False).output  # checked by click
    result = run("create", "--name", "x" * 256, "1", ok=False)
    assert "400" in result.output and "limit is 255" in result.output
