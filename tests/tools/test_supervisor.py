from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from soko.common.config import load_config
from soko.tools.up import Supervisor, SupervisorError, read_state, state_path
from tests.support import free_port, healthy, stalled_clients, stalled_requests, wait_for
from tests.tools.sample_service import SERVICE


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid`` (gunicorn master and workers)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def make_supervisor(data_dir):
    made = []

    def make(**env):
        environ = {"SOKO_SAMPLE_PORT": str(free_port()), **env}
        config = load_config(None, {"sample": SERVICE.section}, data_dir=data_dir, environ=environ)
        sup = Supervisor(config, [SERVICE], health_timeout=30)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.stop()


def test_starts_real_service_and_stops_leaving_nothing(make_supervisor, data_dir):
    sup = make_supervisor()
    sup.bootstrap()
    sup.start()
    state = read_state(data_dir)
    (unit,) = state["units"]
    assert healthy(unit["health_url"])
    assert state["summary"] == ["sample password: s3cret"]
    assert os.stat(state_path(data_dir)).st_mode & 0o777 == 0o600
    members = group_members(unit["pid"])
    assert len(members) >= 3  # gunicorn master and its two workers
    port = int(unit["endpoint"].rsplit(":", 1)[1])

    sup.stop()
    assert group_members(unit["pid"]) == []
    assert not port_open(port)
    assert read_state(data_dir) is None
    assert (data_dir / "torn-down").read_text() == "yes"


def test_unit_that_dies_at_start_is_reported_and_nothing_is_left(make_supervisor, data_dir):
    sup = make_supervisor(SOKO_SAMPLE_CRASH="true")
    with pytest.raises(SupervisorError, match="cannot bind: boom"):
        sup.start()
    assert sup.running == [] and read_state(data_dir) is None


def test_dead_unit_is_restarted(make_supervisor, data_dir):
    sup = make_supervisor()
    sup.start()
    first = read_state(data_dir)["units"][0]
    watcher = threading.Thread(target=sup.watch, kwargs={"poll": 0.1})
    watcher.start()
    try:
        os.killpg(first["pid"], signal.SIGKILL)
        wait_for(lambda: read_state(data_dir)["units"][0]["pid"] != first["pid"], what="restart")
        wait_for(lambda: healthy(first["health_url"]), timeout=30, what="restarted unit healthy")
    finally:
        sup.stopping = True
        watcher.join()
    sup.stop()
    assert group_members(first["pid"]) == []


def test_unit_whose_master_was_killed_is_back_at_once(make_supervisor, data_dir):
    """Only the gunicorn master dies (SIGKILL) while its workers hold client connections:
    they used to keep the port for the 10 s graceful timeout, and the new master failed to
    bind it ("Connection in use") for 11 s."""
    sup = make_supervisor()
    sup.start()
    first = read_state(data_dir)["units"][0]
    port = int(first["endpoint"].rsplit(":", 1)[1])
    wait_for(lambda: len(group_members(first["pid"])) == 3, what="master and two workers")
    watcher = threading.Thread(target=sup.watch, kwargs={"poll": 0.1})
    watcher.start()
    try:
        with stalled_clients(("127.0.0.1", port), 8, stalled_requests("/healthcheck")):
            time.sleep(0.3)
            os.kill(first["pid"], signal.SIGKILL)
            started = time.monotonic()
            wait_for(lambda: read_state(data_dir)["units"][0]["pid"] != first["pid"]
                     and healthy(first["health_url"]), timeout=30, what="unit back")
            back_after = time.monotonic() - started
        assert group_members(first["pid"]) == []
        assert back_after < 5.0
        assert "Connection in use" not in sup.running[0].log_path.read_text()
    finally:
        sup.stopping = True
        watcher.join()


def test_second_supervisor_for_the_same_data_dir_is_refused(make_supervisor, data_dir):
    sup = make_supervisor()
    sup.start()
    with pytest.raises(SupervisorError, match="already running.*soko down"):
        make_supervisor().check_not_running()
    assert json.loads(state_path(data_dir).read_text())["status"] == "running"


def test_the_generated_config_documents_every_setting_without_pinning_it(tmp_path):
    """``soko up``'s soko.toml lists each setting at its default, commented out: it loads
    as all defaults, and uncommenting a line is how an operator changes one. A default a
    later soko changes then reaches clusters whose operators never chose (#19 raised the
    auditor's interval; a pinned 60 s would have kept every old cluster auditing flat out)."""
    from soko.common.services import all_specs, section_types
    from soko.tools.up import write_default_config

    path = write_default_config(tmp_path, all_specs())
    text = path.read_text()
    assert "# auditor_interval = 86400.0" in text
    assert all(not line or line.startswith(("#", "[")) for line in text.splitlines())
    def daemons():
        return load_config(path, section_types(), data_dir=tmp_path,
                           environ={}).section("object-daemons")

    assert daemons() == type(daemons())()
    path.write_text(text.replace("# auditor_interval = 86400.0", "auditor_interval = 3600.0"))
    assert daemons().auditor_interval == 3600.0
