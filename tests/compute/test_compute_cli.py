"""``soko server`` and ``soko flavor`` against the compute API served over real HTTP (the
session's stack), where nothing has to boot: tables and JSON, names, and errors that say
what to do."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from soko.tools.cli import cli

pytestmark = pytest.mark.privileged


@pytest.fixture
def run(stack, tmp_path):
    def invoke(group: str, *args: str, token: str = "tok-a", ok: bool = True):
        result = CliRunner().invoke(cli, [group, "--os-url", f"{stack.compute_url}/v2.1",
                                          "--os-token", token, "--data-dir", str(tmp_path),
                                          *args])
        assert (result.exit_code == 0) == ok, result.output
        return result
    return invoke


def test_flavor_commands(run):
    listed = json.loads(run("flavor", "list", "--format", "json").output)
    assert {"m1.tiny", "m1.small"} <= {f["name"] for f in listed}
    assert "m1.small" in run("flavor", "list").output  # a table
    assert json.loads(run("flavor", "show", "m1.tiny", "--format", "json").output)["ram"] == 512
    assert "403" in run("flavor", "create", "x.cli", "--vcpus", "1", "--ram", "128",
                        ok=False).output
    created = json.loads(run("flavor", "create", "x.cli", "--vcpus", "2", "--ram", "128",
                             "--format", "json", token="tok-admin").output)
    assert created["vcpus"] == 2
    run("flavor", "delete", "x.cli", token="tok-admin")
    assert "no flavor with id or name 'x.cli'" in run("flavor", "show", "x.cli", ok=False).output


def test_server_commands_explain_bad_input(run, stack):
    assert json.loads(run("server", "list", "--format", "json").output) == []
    result = run("server", "create", "x", "--flavor", "m1.tiny", ok=False)
    assert "exactly one of --volume and --image" in result.output
    missing = "4b0c5e0e-0000-4000-8000-00000000dead"
    result = run("server", "create", "x", "--flavor", "m1.tiny", "--volume", missing, ok=False)
    assert "400" in result.output and "could not be found" in result.output
    result = run("server", "create", "x", "--flavor", "m9.huge", "--volume", missing, ok=False)
    assert "no flavor with id or name 'm9.huge'" in result.output
    result = run("server", "create", "x", "--flavor", "1", "--image", missing, ok=False)
    assert "--boot-volume-size" in result.output
    assert "no server with id or name 'ghost'" in run("server", "show", "ghost", ok=False).output
    assert stack.servers("GET").json()["servers"] == []
