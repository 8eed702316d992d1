"""Compute fixtures: one test guest image per session, one libvirt driver with a prefix of its
own (so nothing here touches anyone else's domains), helpers to talk to the guest, and the
boot times every test records, summarised at the end of the run."""

from __future__ import annotations

import base64
import os
import re
import shutil
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from soko.common.procs import pid_alive
from soko.compute.guest_files import READY_MARKER
from tests.compute.image_stack import image_stack  # noqa: F401 (images: cluster + soko-image)
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


@pytest.fixture(scope="session")
def guest_image(tmp_path_factory) -> Path:
    """The test guest, built once per session (the package cache makes rebuilds quick)."""
    require_tools("apt-get", "dpkg-deb", "mkfs.ext4", "mount", "ldd")
    from soko.tools import guest_image

    out = tmp_path_factory.mktemp("guest") / "guest.img"
    guest_image.build(out, size_mib=64)
    return out


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


@pytest.fixture(scope="session")
def driver(tmp_path_factory) -> Iterator:
    require_libvirt()
    from soko.compute.drivers.libvirt import LibvirtDriver

    state_dir = tmp_path_factory.mktemp("compute-state")
    sweep_dead_runs(state_dir)
    driver = LibvirtDriver(state_dir, prefix=f"soko-test-{os.getpid()}-")
    yield driver
    for name in driver.reconcile():
        driver.delete(name)
    driver.close()


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
