"""Starting and finding the system daemons soko drives (tgtd, libvirtd, virtlogd, dnsmasq).

A daemon that is already running is used as it is (the operator may run it); one soko
starts is started in its own session, with its output in a log file, and soko waits until
it answers a readiness check before going on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class DaemonError(RuntimeError):
    """A daemon could not be started or did not become ready; the message says which."""


@dataclass(frozen=True)
class Daemon:
    pid: int
    started_by_us: bool


def cpu_seconds(*matches: str) -> dict[int, float]:
    """``{pid: user+system CPU seconds}`` of every process whose command line contains any
    of ``matches``: the cost of a cluster's servers, read from /proc before and after a load."""
    found = {}
    for pid in {pid for match in matches for pid in pids_matching(match)}:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        found[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds taken between two ``cpu_seconds`` readings (new processes count whole)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def pids_matching(text: str) -> list[int]:
    """Pids of processes whose command line contains ``text``, this process excepted (a
    benchmark's own argv names what it looks for)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def find_pids(exe_name: str) -> list[int]:
    """Pids of live processes whose executable's base name is ``exe_name`` (like ``pgrep -x``)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")].decode(errors="replace")
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        if comm == exe_name[:15] and state != b"Z":
            pids.append(int(entry.name))
    return sorted(pids)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def ensure_daemon(
    exe_name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    ready: Callable[[], bool],
    timeout: float = 15.0,
) -> Daemon:
    """Returns the running ``exe_name`` daemon, starting it with ``argv`` if none runs."""
    running = find_pids(exe_name)
    if running and ready():
        return Daemon(pid=running[0], started_by_us=False)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "LC_ALL": "C"},
            )
        except FileNotFoundError:
            raise DaemonError(
                f"{argv[0]} is not installed; run tools/install-system-deps.sh as root"
            ) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return Daemon(pid=proc.pid, started_by_us=True)
        if proc.poll() is not None:
            raise DaemonError(
                f"{exe_name} exited with status {proc.returncode} at start; see {log_path}"
            )
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise DaemonError(f"{exe_name} did not become ready within {timeout:.0f} s; see {log_path}")


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; returns once the process is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while pid_alive(pid):
        time.sleep(0.02)


def stop_process_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stops a child started with ``start_new_session``: SIGTERM to its group, SIGKILL after
    ``timeout``, then SIGKILL for any worker that outlived its leader (it would keep a port)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
