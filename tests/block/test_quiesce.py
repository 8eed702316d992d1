"""Quiesce plans with real processes: order, thaw on every path (failing step, hanging
step, hanging snapshot, crashed service), the freeze record, plan selection, and the API's
answers. fsfreeze on a real filesystem is in test_freeze_safe.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from soko.block.quiesce import Outcome, QuiesceError, Quiescer, Target, build_step, check_plans
from soko.block.service import BlockConfig
from soko.common.config import ConfigError, build_section
from tests.block.conftest import block_config, memory_manager
from tests.block.fakes import FixedTokens, MemoryPool
from tests.support import wait_for


def logging_step(log: Path, name: str, pre_extra: str = "") -> dict:
    """An exec step that appends "freeze NAME" / "thaw NAME" to ``log``."""
    return {"kind": "exec",
            "pre": ["sh", "-c", f"echo freeze {name} >> {log}; {pre_extra}"],
            "post": ["sh", "-c", f"echo thaw {name} >> {log}"]}


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def quiescer(tmp_path: Path, plans: dict, **kw) -> Quiescer:
    return Quiescer(tmp_path / "state", plans, **kw)


def run_plan(q: Quiescer, name: str, body=lambda: None) -> Outcome:
    with q.frozen(q.steps(name, Target("vol")), "snap") as outcome:
        body()
    return outcome


def test_steps_freeze_in_order_and_thaw_in_reverse(tmp_path):
    log = tmp_path / "log"
    q = quiescer(tmp_path, {"p": [logging_step(log, "a"), logging_step(log, "b")]})
    seen = []
    outcome = run_plan(q, "p", lambda: seen.append(list(lines(log))))
    assert seen == [["freeze a", "freeze b"]]  # the body runs with both frozen
    assert lines(log) == ["freeze a", "freeze b", "thaw b", "thaw a"]
    assert 0 < outcome.window_ms < 5000 and not outcome.expired
    assert list((tmp_path / "state" / "frozen").iterdir()) == []  # the record is gone


def test_a_failing_later_step_thaws_the_earlier_ones(tmp_path):
    log = tmp_path / "log"
    q = quiescer(tmp_path, {"p": [logging_step(log, "a"),
                                  logging_step(log, "b", "echo table locked by x >&2; exit 3"),
                                  logging_step(log, "c")]})
    body = []
    with pytest.raises(QuiesceError) as failed:
        run_plan(q, "p", lambda: body.append(1))
    assert "step 2/3" in str(failed.value) and "status 3" in str(failed.value)
    assert "table locked by x" in str(failed.value)
    # b's post runs too (a failed pre may have half-frozen), then a's; c never started.
    assert lines(log) == ["freeze a", "freeze b", "thaw b", "thaw a"] and body == []


def test_a_hanging_step_is_killed_with_its_children_and_everything_thaws(tmp_path):
    log = tmp_path / "log"
    hang = logging_step(log, "b", "sleep 60 & wait")
    hang["timeout"] = 0.5
    q = quiescer(tmp_path, {"p": [logging_step(log, "a"), hang]})
    started = time.monotonic()
    with pytest.raises(QuiesceError, match="timed out after 0.5 s"):
        run_plan(q, "p")
    assert time.monotonic() - started < 5  # the grandchild sleep did not hold the pipes
    assert lines(log) == ["freeze a", "freeze b", "thaw b", "thaw a"]


def test_the_watchdog_thaws_while_the_snapshot_step_hangs(tmp_path):
    log = tmp_path / "log"
    q = quiescer(tmp_path, {"p": [logging_step(log, "a")]}, max_freeze_seconds=0.5)
    seen_during = []

    def hanging_snapshot():
        wait_for(lambda: "thaw a" in lines(log), timeout=5)
        seen_during.append(lines(log))  # thawed while the "snapshot" still runs

    outcome = run_plan(q, "p", hanging_snapshot)
    assert seen_during == [["freeze a", "thaw a"]] and outcome.expired
    assert lines(log) == ["freeze a", "thaw a"]  # thawed once, not twice


CRASHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from soko.block.quiesce import Quiescer, Target
    q = Quiescer(Path(sys.argv[1]), {"p": [
        {"kind": "exec", "pre": ["sh", "-c", "echo freeze >> " + sys.argv[2]],
         "post": ["sh", "-c", "echo thaw >> " + sys.argv[2]]}]}, max_freeze_seconds=3600)
    with q.frozen(q.steps("p", Target("vol")), "snap-1"):
        time.sleep(3600)
""")


def test_a_freeze_left_by_a_killed_process_is_thawed_by_recover(tmp_path):
    state, log = tmp_path / "state", tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(state), str(log)])
    try:
        wait_for(lambda: lines(log) == ["freeze"], timeout=30)
        record = json.loads((state / "frozen" / "snap-1.json").read_text())
        assert record["steps"][0]["post"][-1].startswith("echo thaw")
        q = Quiescer(state)
        assert q.recover() == []  # its owner still lives (and its watchdog would act)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert Quiescer(state).recover() == ["snap-1"]
    assert lines(log) == ["freeze", "thaw"]
    assert not (state / "frozen" / "snap-1.json").exists()


HOLDER = textwrap.dedent("""
    import sys
    assert sys.stdin.readline() == "LOCK\\n"
    print("locked", flush=True)
    print("READY", flush=True)
    rest = sys.stdin.read()  # until soko closes stdin: the session, and its lock, end
    open(sys.argv[1], "w").write("released after " + rest)
""")


def test_a_hold_step_keeps_its_session_until_thaw(tmp_path):
    out = tmp_path / "out"
    q = quiescer(tmp_path, {"p": [{"kind": "hold", "argv": [sys.executable, "-c", HOLDER,
                                                              str(out)],
                                   "input": "LOCK\n", "ready": "READY",
                                   "release": "UNLOCK\n"}]})
    during = []
    run_plan(q, "p", lambda: during.append(out.exists()))
    assert during == [False] and out.read_text() == "released after UNLOCK\n"


def test_a_hold_step_that_never_gets_ready_fails_cleanly(tmp_path):
    q = quiescer(tmp_path, {"p": [{"kind": "hold", "argv": ["sleep", "60"], "timeout": 0.3}]})
    with pytest.raises(QuiesceError, match="did not print 'READY'"):
        run_plan(q, "p")
    q = quiescer(tmp_path, {"p": [{"kind": "hold", "argv": ["sh", "-c", "echo no >&2"]}]})
    with pytest.raises(QuiesceError, match="exited with status 0: no"):
        run_plan(q, "p")


def test_plan_selection(tmp_path):
    q = quiescer(tmp_path, {"db": [{"kind": "fsfreeze", "mountpoint": "/srv"}],
                            "other": [{"kind": "fsfreeze", "mountpoint": "/x"}]},
                 volume_plans={"v1": "other"})
    assert q.plan_name("db", "v2", {}) == "db"
    assert q.plan_name(True, "v2", {"quiesce_plan": "db"}) == "db"
    assert q.plan_name(True, "v1", {"quiesce_plan": "db"}) == "other"  # config wins
    with pytest.raises(QuiesceError, match="no default quiesce plan"):
        q.plan_name(True, "v2", {})
    with pytest.raises(QuiesceError, match="known: db, other"):
        q.plan_name("nope", "v2", {})
    with pytest.raises(QuiesceError, match="has none"):
        build_step({"kind": "fsfreeze"}, Target("v2"))


@pytest.mark.parametrize("plans, message", [
    ({"p": []}, "non-empty list"),
    ({"p": [{"kind": "rm"}]}, "unknown step kind 'rm'"),
    ({"p": ["fsfreeze -f /"]}, "must be a table"),
])
def test_bad_plans_stop_the_service_at_start(plans, message):
    with pytest.raises(QuiesceError, match=message):
        check_plans(plans)
    with pytest.raises(ConfigError, match=message):
        build_section("block", BlockConfig, {"quiesce_plans": plans}, {})


def test_bad_steps_are_refused_when_used(tmp_path):
    for table, message in [({"kind": "exec", "pre": "fsfreeze -f /", "post": ["true"]}, "argv"),
                           ({"kind": "exec", "pre": ["true"], "post": ["true"], "timeout": -1},
                            "timeout"),
                           ({"kind": "fsfreeze", "mountpoint": "relative"}, "absolute")]:
        with pytest.raises(QuiesceError, match=message):
            build_step(table, Target("v"))


# -- through the API --------------------------------------------------------------------

class HangingPool(MemoryPool):
    """A pool whose snapshot call blocks (a stuck copy cannot be caused in memory; the real
    pool's hang, a frozen pool filesystem, is in test_freeze_safe.py)."""

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        time.sleep(1.0)
        super().snapshot(volume_id, snapshot_id)


@pytest.fixture
def api(tmp_path):
    import falcon.testing

    from soko.block.api import make_app

    log = tmp_path / "log"
    manager = memory_manager(tmp_path)
    manager.snapshots.quiescer = Quiescer(tmp_path, {
        "ok": [logging_step(log, "a")],
        "broken": [logging_step(log, "a"), logging_step(log, "b", "echo lock wait >&2; false")],
    }, max_freeze_seconds=0.5)
    client = falcon.testing.TestClient(make_app(block_config(tmp_path, BlockConfig()),
                                                validator=FixedTokens(), manager=manager))
    return client, manager, log


def test_api_quiesced_snapshot_records_the_freeze_window(api):
    client, manager, log = api
    from tests.block.test_api import A, create
    from tests.block.test_snapshots import snap

    volume_id = create(client, metadata={"quiesce_plan": "ok"}).json["volume"]["id"]
    snapshot = snap(client, volume_id, quiesce=True).json["snapshot"]
    assert snapshot["status"] == "available"
    assert snapshot["metadata"]["quiesce_plan"] == "ok"
    assert float(snapshot["metadata"]["freeze_window_ms"]) > 0
    assert lines(log) == ["freeze a", "thaw a"]
    resp = snap(client, volume_id, quiesce="broken")
    assert resp.status_code == 409
    message = resp.json["error"]["message"]
    assert "lock wait" in message and "no snapshot was taken" in message
    assert lines(log)[2:] == ["freeze a", "freeze b", "thaw b", "thaw a"]
    listed = client.simulate_get("/v3/proj-a/snapshots", headers=A).json["snapshots"]
    assert [s["id"] for s in listed] == [snapshot["id"]]
    assert manager.pool.snapshots() == {snapshot["id"]}


def test_api_snapshot_outliving_the_watchdog_is_error(api):
    client, manager, log = api
    from tests.block.test_api import create
    from tests.block.test_snapshots import snap

    manager.pool.__class__ = HangingPool
    volume_id = create(client).json["volume"]["id"]
    snapshot = snap(client, volume_id, quiesce="ok").json["snapshot"]
    assert snapshot["status"] == "error" and "watchdog" in snapshot["metadata"]["error"]
    assert lines(log) == ["freeze a", "thaw a"]


def test_quiesced_snapshots_of_one_volume_take_turns(api, tmp_path):
    client, manager, log = api
    from tests.block.test_api import create

    manager.snapshots.quiescer = Quiescer(tmp_path, {"slow": [
        logging_step(log, "a", "sleep 0.3")]})
    volume_id = create(client).json["volume"]["id"]

    def take():
        manager.snapshots.create(project_id="proj-a", user_id="u", volume_id=volume_id,
                                 quiesce="slow")

    threads = [threading.Thread(target=take) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lines(log) == ["freeze a", "thaw a", "freeze a", "thaw a"]
    assert len(manager.pool.snapshots()) == 2
    for snapshot in manager.snapshots.list("proj-a"):
        manager.snapshots.delete("proj-a", snapshot.id)
    manager.delete("proj-a", volume_id)
    assert not (tmp_path / "frozen" / f"volume-{volume_id}.lock").exists()  # no trace left


def test_api_a_failing_copy_still_thaws(api, monkeypatch):
    client, manager, log = api
    from soko.block.drivers.base import PoolError
    from tests.block.test_api import A, create
    from tests.block.test_snapshots import snap

    def broken(volume_id, snapshot_id):  # a full pool cannot be caused in memory
        raise PoolError("No space left on device")

    monkeypatch.setattr(manager.pool, "snapshot", broken)
    volume_id = create(client).json["volume"]["id"]
    resp = snap(client, volume_id, quiesce="ok")
    assert resp.status_code == 503 and "No space left" in resp.json["error"]["message"]
    assert lines(log) == ["freeze a", "thaw a"]
    assert client.simulate_get("/v3/proj-a/snapshots", headers=A).json["snapshots"] == []
