"""Compute helpers: talking to a guest, the compute stack's client (the session's driver and
stack themselves are in ``tests/session.py``), and the boot times every test records,
summarised at the end of the run."""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import statistics
import time
import uuid
from pathlib import Path

import pytest
import requests

from soko.common.procs import pid_alive
from soko.image.guest_files import READY_MARKER
from tests.support import require_tools, skip_or_fail, wait_for

BOOT_TIMES: list[float] = []
BOOT_TIMEOUT = 120.0


def pytest_terminal_summary(terminalreporter) -> None:
    if BOOT_TIMES:
        terminalreporter.write_line(
            f"compute: {len(BOOT_TIMES)} test-guest boots (start -> {READY_MARKER}), "
            f"p50 {statistics.median(BOOT_TIMES):.1f} s, max {max(BOOT_TIMES):.1f} s "
            f"(1 vCPU, TCG unless KVM works)")


def require_libvirt() -> None:
    require_tools("qemu-system-x86_64", "libvirtd", "virtlogd")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        skip_or_fail("libvirt-python is not installed (pip install -e '.[compute]')")


def sweep_dead_runs(state_dir: Path) -> None:
    """Deletes what killed test runs left: a leaked TCG guest would eat a shared CPU for good.
    A run's prefix carries its pid, so live concurrent runs are left alone."""
    from soko.compute.drivers.libvirt import LibvirtDriver

    lister = LibvirtDriver(state_dir, prefix="soko-test-")
    dead = {m.group(0) for name in lister.reconcile()
            if (m := re.match(r"(\d+)-", name)) and not pid_alive(int(m.group(1)))}
    lister.close()
    for prefix in dead:
        leftover = LibvirtDriver(state_dir, prefix=f"soko-test-{prefix}")
        for name in leftover.reconcile():
            leftover.delete(name)
        leftover.close()


def boot_disk(guest_image: Path, directory: Path) -> Path:
    """A private copy of the guest image: a guest writes to its boot disk."""
    copy = directory / f"boot-{uuid.uuid4().hex[:6]}.img"
    shutil.copyfile(guest_image, copy)
    return copy


def wait_console(driver, name: str, needle: str, *, count: int = 1,
                 timeout: float = BOOT_TIMEOUT) -> str:
    """Waits until ``needle`` appears ``count`` times in the console log; returns the log."""
    deadline = time.monotonic() + timeout
    while True:
        text = driver.console_log(name, max_bytes=1 << 20)
        if text.count(needle) >= count:
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"{needle!r} (x{count}) not on {name}'s console after {timeout:.0f} s:\n"
                        f"{text[-3000:]}")
        time.sleep(0.1)


def timed_boot(driver, name: str, start, *, count: int = 1) -> float:
    """Runs ``start()`` and waits for the ready marker; records and returns the boot time."""
    began = time.monotonic()
    start()
    wait_console(driver, name, READY_MARKER, count=count)
    elapsed = time.monotonic() - began
    BOOT_TIMES.append(elapsed)
    # qemu-ga runs by the marker, but libvirt may connect to it a moment later.
    wait_for(lambda: driver.ping_agent(name, timeout=2), timeout=60, what=f"{name}'s guest agent")
    return elapsed


def guest_exec(driver, name: str, *argv: str, timeout: float = 30.0) -> tuple[int, str]:
    """Runs a command in the guest through qemu-ga's guest-exec; returns (exit code, stdout)."""
    pid = driver.agent_command(name, "guest-exec", {"path": argv[0], "arg": list(argv[1:]),
                                                    "capture-output": True})["pid"]
    deadline = time.monotonic() + timeout
    while True:
        status = driver.agent_command(name, "guest-exec-status", {"pid": pid})
        if status["exited"]:
            return status.get("exitcode", -1), base64.b64decode(status.get("out-data", "")).decode()
        if time.monotonic() > deadline:
            pytest.fail(f"guest command {argv} still running after {timeout:.0f} s")
        time.sleep(0.1)


@dataclasses.dataclass
class Stack:
    """Block (real reflink pool and tgtd) and compute (real libvirt) served over HTTP, with
    the test tokens of tests/block/fakes.py (tok-a: project proj-a, tok-b: proj-b)."""

    block_url: str
    compute_url: str
    block: object  # the block VolumeManager
    compute: object  # the ComputeManager
    driver: object

    def call(self, method: str, url: str, token: str = "tok-a", **kwargs):
        return requests.request(method, url, headers={"X-Auth-Token": token}, timeout=120,
                                **kwargs)

    def volumes(self, method: str, path: str, token: str = "tok-a", project: str = "proj-a",
                **kwargs):
        return self.call(method, f"{self.block_url}/v3/{project}{path}", token, **kwargs)

    def servers(self, method: str, path: str = "", token: str = "tok-a", **kwargs):
        return self.call(method, f"{self.compute_url}/v2.1/servers{path}", token, **kwargs)

    def create_volume(self, size: int = 1, token: str = "tok-a", project: str = "proj-a",
                      **extra) -> str:
        resp = self.volumes("POST", "/volumes", token, project,
                            json={"volume": {"size": size, **extra}})
        assert resp.status_code == 202, resp.text
        return resp.json()["volume"]["id"]

    def volume(self, volume_id: str, token: str = "tok-a", project: str = "proj-a") -> dict | None:
        resp = self.volumes("GET", f"/volumes/{volume_id}", token, project)
        return resp.json()["volume"] if resp.status_code == 200 else None

    def server(self, server_id: str, token: str = "tok-a") -> dict | None:
        resp = self.servers("GET", f"/{server_id}", token)
        return resp.json()["server"] if resp.status_code == 200 else None

    def wait_server(self, server_id: str, *statuses: str, timeout: float = 180) -> dict | None:
        """Until the server has one of ``statuses`` and no task (None: until it is gone)."""
        def settled():
            server = self.server(server_id)
            if not statuses:
                return server is None or None
            if server and server["status"] in statuses and not server["OS-EXT-STS:task_state"]:
                return server
            return None
        found = wait_for(settled, timeout=timeout, interval=0.2,
                         what=f"server {server_id} to become {statuses or 'gone'}")
        return found if statuses else None

    def action(self, server_id: str, body: dict, expect: int = 202):
        resp = self.servers("POST", f"/{server_id}/action", json=body)
        assert resp.status_code == expect, resp.text
        return resp.json() if resp.content else None

    def exported(self) -> dict[str, str]:
        return self.block.target.exported()


def compute_without_hypervisor(data_dir: Path):
    """Compute's API (key pairs, metadata) over a real DB with no hypervisor, block or image
    behind it: what needs none of them. Returns (app, manager)."""
    from soko.common.config import Config
    from soko.common.db import make_engine, make_sessionmaker
    from soko.compute import api as compute_api
    from soko.compute.manager import ComputeManager, Settings
    from soko.compute.models import Base
    from soko.compute.service import ComputeConfig
    from tests.block.fakes import FixedTokens

    engine = make_engine(f"sqlite:///{data_dir / 'compute.db'}")
    Base.metadata.create_all(engine)
    manager = ComputeManager(sessions=make_sessionmaker(engine), driver=None,
                             settings=Settings(block_url="", image_url="", initiator="iqn.x"),
                             background=lambda work: None)
    config = Config(data_dir=data_dir, sections={"compute": ComputeConfig()})
    return compute_api.make_app(config, validator=FixedTokens(), manager=manager), manager
