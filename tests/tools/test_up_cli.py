"""`soko up` as a user runs it: every registered service comes up healthy, `soko status`
shows them, and Ctrl-C (or `soko down` after `--detach`) leaves no process behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from soko.common import services
from soko.tools.up import read_state
from tests.support import port_env, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def soko(*args, env, check=True, timeout=120):
    done = subprocess.run([sys.executable, "-m", "soko.tools.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"soko {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n"
                    f"{done.stderr}")
    return done


@pytest.fixture
def up_env(data_dir):
    return port_env(data_dir)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mounts_under(path) -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(str(path))]


def loops_under(path) -> list[str]:
    """Loop devices whose backing file is under ``path`` (they detach once unmounted)."""
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            if backing.read_text().startswith(str(path)):
                found.append(backing.parts[3])
    return found


def net_left(data_dir) -> list[str]:
    """What of the cloud's tenant networks is still on the host: namespaces, bridges, taps
    and veths, security-group chains, dnsmasq."""
    from soko.net.service import cloud_id
    from tests.net.plumbing import dnsmasq_pids

    cloud = cloud_id(services.load(None, data_dir))
    left = [n for n in os.listdir("/run/netns") if f"-{cloud}-" in n] \
        if os.path.isdir("/run/netns") else []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left += [word.rstrip(":").split("@")[0] for word in links.split()
             if word.startswith((f"brq{cloud}", f"tap{cloud}"))]
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    left += [line for line in rules.splitlines() if f"sk{cloud}" in line]
    return left + [f"dnsmasq {pid}" for pid in dnsmasq_pids(data_dir)]


def left_on_host(data_dir) -> list[str]:
    return mounts_under(data_dir) + loops_under(data_dir) + net_left(data_dir)


def nothing_left(data_dir) -> bool:
    return not left_on_host(data_dir)


def wait_nothing_left(data_dir, timeout: float = 60) -> None:
    """Until the stopped cloud left nothing on the host (a loop device detaches a moment
    after its unmount, tens of seconds on a busy machine); a failure names what is still
    there."""
    try:
        wait_for(lambda: nothing_left(data_dir), timeout=timeout, what="soko's leftovers")
    except pytest.fail.Exception:
        pytest.fail(f"left on the host after {timeout:.0f} s: {left_on_host(data_dir)}")


def test_up_status_ctrl_c(up_env, data_dir):
    assert services.all_specs(), "no service is registered in common/services.py"
    proc = subprocess.Popen([sys.executable, "-m", "soko.tools.cli", "up"], env=up_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (read_state(data_dir) or {}).get("status") == "running" or
                 proc.poll() is not None, timeout=180, what="soko up")
        assert proc.poll() is None, proc.stdout.read()
        rows = json.loads(soko("status", "--format", "json", env=up_env).stdout)
        running = {r["service"] for r in rows}
        for spec in services.all_specs():  # a service may run several units (storage-1...)
            assert any(n == spec.name or n.startswith(spec.name + "-") for n in running), spec
        assert all(r["healthy"] for r in rows), rows
        pids = [r["pid"] for r in rows]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "soko stopped." in out
    assert not any(alive(pid) for pid in pids)
    assert read_state(data_dir) is None
    wait_nothing_left(data_dir)


def test_detach_status_down(up_env, data_dir):
    """``soko down`` of a supervisor killed with SIGKILL, which ran no teardown: down stops
    its units and runs the teardowns itself. (Down of a live supervisor: the e2e tests.)"""
    out = soko("up", "--detach", env=up_env, timeout=240).stdout
    assert "soko down" in out
    state = read_state(data_dir)
    pids = [state["supervisor_pid"]] + [u["pid"] for u in state["units"]]
    assert all(alive(pid) for pid in pids)
    os.kill(state["supervisor_pid"], signal.SIGKILL)
    wait_for(lambda: not alive(state["supervisor_pid"]), what="the supervisor to die")
    assert not nothing_left(data_dir)
    soko("down", env=up_env)
    assert not any(alive(pid) for pid in pids)
    wait_nothing_left(data_dir)
    status = soko("status", env=up_env, check=False)
    assert status.returncode != 0 and "nothing is running" in status.stderr



def test_failed_start_undoes_what_it_set_up(up_env, data_dir):
    """A ``soko up`` that fails while making the object devices (here: an image that is not
    XFS for the fourth device, after three are mounted) says why and unmounts and detaches
    what it had made, and the loop device an earlier start that crashed between attaching
    and mounting left: a fresh-clone CI once saw a failed start leave 3 mounts behind."""
    images = data_dir / "object" / "images"
    images.mkdir(parents=True)
    with open(images / "d3.img", "wb") as f:
        f.truncate(64 << 20)  # all zeros: no filesystem mount knows
    subprocess.run(["losetup", "--find", images / "d3.img"], check=True)
    done = soko("up", env=up_env, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "setting up storage failed" in done.stderr and "d3.img" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert read_state(data_dir) is None
    wait_nothing_left(data_dir)
