from __future__ import annotations

import shutil

import pytest

from soko.common.procs import DaemonError, ensure_daemon, find_pids, pid_alive, stop_pid


@pytest.fixture
def sleeper(tmp_path):
    """A real executable with a unique process name, standing in for a system daemon."""
    exe = tmp_path / "sokotestdaemon"
    shutil.copy("/bin/sleep", exe)
    yield exe
    for pid in find_pids(exe.name):
        stop_pid(pid)


def test_starts_once_then_reuses_the_running_daemon(sleeper, tmp_path):
    def ready():
        return bool(find_pids(sleeper.name))

    first = ensure_daemon(sleeper.name, [str(sleeper), "300"], log_path=tmp_path / "d.log", ready=ready)
    assert first.started_by_us and pid_alive(first.pid)
    again = ensure_daemon(sleeper.name, [str(sleeper), "300"], log_path=tmp_path / "d.log", ready=ready)
    assert not again.started_by_us and again.pid == first.pid
    stop_pid(first.pid)
    assert not pid_alive(first.pid) and find_pids(sleeper.name) == []


def test_daemon_that_exits_at_start_is_a_clear_error(sleeper, tmp_path):
    with pytest.raises(DaemonError, match="exited with status"):
        ensure_daemon(sleeper.name, [str(sleeper), "--bogus"], log_path=tmp_path / "d.log",
                      ready=lambda: False)


def test_missing_executable_says_how_to_install(tmp_path):
    with pytest.raises(DaemonError, match="install-system-deps"):
        ensure_daemon("nosuchdaemon", ["/nonexistent/nosuchdaemon"], log_path=tmp_path / "d.log",
                      ready=lambda: False)
