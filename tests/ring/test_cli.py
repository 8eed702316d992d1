"""``soko ring`` in process (click's CliRunner): the verbs work, and a rejected command
exits non-zero with a clear message and leaves the builder file byte for byte unchanged."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from soko.ring.builder import RingBuilder
from soko.ring.cli import ring
from soko.ring.ring import Ring


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(ring, [str(a) for a in args], env={"COLUMNS": "160"})
    assert (result.exit_code == 0) == ok, result.output
    return result


@pytest.fixture
def builder(tmp_path):
    path = tmp_path / "object.builder"
    run("create", path, 8, 3, 1)
    run("add", path, "r1z1-127.0.0.1:6210/sdb1", 100, "r1z2-127.0.0.2:6220/sdb2", 100)
    run(
        "add",
        path,
        "--zone",
        3,
        "--ip",
        "127.0.0.3",
        "--port",
        6230,
        "--device",
        "sdb3",
        "--weight",
        100,
    )
    return path


def test_build_a_ring(builder):
    out = run("rebalance", builder, "--seed", 1).output
    assert "balance is 0.00 %" in out and "dispersion is 0.00 %" in out
    ring_file = builder.with_suffix(".ring")
    assert Ring(ring_file).partition_count == 256
    table = run("show", builder).output
    assert "127.0.0.2:6220" in table and "256" in table
    devices = json.loads(run("show", builder, "--format", "json").output)["devices"]
    assert [d["partitions"] for d in devices] == [256, 256, 256]
    levels = json.loads(run("dispersion", builder, "--format", "json").output)
    assert {row["level"] for row in levels} == {"region", "zone", "ip", "device"}
    run("write_ring", builder, builder.parent / "copy.ring")
    assert Ring(builder.parent / "copy.ring").data.rows == Ring(ring_file).data.rows


def test_reweight_remove_and_set_info(builder):
    run("add", builder, "r1z3-127.0.0.4:6240/sdb4", 100)
    run("rebalance", builder, "--seed", 1)
    run("set_weight", builder, "d0", 50)
    run("set_info", builder, "d1", "--meta", "fast")
    run("remove", builder, "127.0.0.4")
    run("pretend_min_part_hours_passed", builder)
    run("rebalance", builder, "--seed", 2)
    loaded = RingBuilder.load(builder)
    assert sorted(loaded.devices) == [0, 1, 2]
    assert loaded.devices[0].weight == 50 and loaded.devices[1].meta == "fast"


@pytest.mark.parametrize(
    "args, message",
    [
        (("add", "{b}", "r1z1-127.0.0.1:6210/sdb1", 100), "already device 0"),
        (("add", "{b}", "nonsense", 100), "cannot parse device"),
        (("add", "{b}", "--zone", 1), "missing"),
        (("remove", "{b}", "d42"), "no device matches"),
        (("remove", "{b}", "r1"), "matches 3 devices"),
        (("set_weight", "{b}", "--", "d0", -5), "weight must be"),
        (
            ("set_info", "{b}", "d0", "--ip", "127.0.0.2", "--port", 6220, "--device", "sdb2"),
            "already device 1",
        ),
        (("set_info", "{b}", "d0"), "nothing to change"),
        (("write_ring", "{b}"), "run rebalance first"),
        (("create", "{b}", 8, 3, 1), "already exists"),
    ],
)
def test_errors_leave_the_builder_unchanged(builder, args, message):
    before = builder.read_bytes()
    result = run(*(str(a).format(b=builder) for a in args), ok=False)
    assert message in result.output
    assert builder.read_bytes() == before


def test_rebalance_error_leaves_builder_unchanged(tmp_path):
    path = tmp_path / "account.builder"
    run("create", path, 6, 3, 1)
    run("add", path, "r1z1-127.0.0.1:6210/sdb1", 100)
    before = path.read_bytes()
    assert "need at least 3 devices" in run("rebalance", path, ok=False).output
    assert path.read_bytes() == before
    assert not path.with_suffix(".ring").exists()


def test_bad_create_and_corrupt_builder(tmp_path):
    assert "part power" in run("create", tmp_path / "x.builder", 40, 3, 1, ok=False).output
    assert not (tmp_path / "x.builder").exists()
    bad = tmp_path / "bad.builder"
    bad.write_bytes(b"SOKOBLDR garbage")
    assert "not a soko builder file" in run("show", bad, ok=False).output
