"""A running guest across ``soko down`` and ``soko up``, as an operator sees it: stopping
the all-in-one (Ctrl-C of a foreground ``soko up``, or ``soko down``) shuts the guest down
cleanly before its iSCSI target goes and leaves no QEMU, libvirt domain or secret, tgt
target, mount or loop device; the next ``soko up`` boots it again, ACTIVE, with what it had
written to its volume.

The guest has a NIC on ``soko up``'s default ``private`` network, plugged again after the
restart. One cloud of its own (its data dir goes up and down) and one guest for the
module: two boots in all. The tests run in order.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soko.block.targets.base import volume_iqn
from soko.block.targets.tgt import Tgtadm
from soko.common.procs import find_pids
from soko.image.guest_files import READY_MARKER
from soko.tools.up import read_state
from tests.compute.conftest import guest_exec, require_libvirt, wait_console
from tests.support import port_env, require_tools, wait_for
from tests.tools.test_up_cli import left_on_host, wait_nothing_left

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

STOP_TIMEOUT = 30  # compute's stop_timeout here: the test guest shuts down within seconds
SURVIVOR = "/soko-survivor"  # written by the guest, never synced by the test


class Cloud:
    """One all-in-one data dir, driven through the CLI."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.env = {**port_env(data_dir), "SOKO_COMPUTE_STOP_TIMEOUT": str(STOP_TIMEOUT)}
        self.foreground: subprocess.Popen | None = None
        self._driver = None

    def soko(self, *args: str, timeout: float = 240) -> str:
        done = subprocess.run([sys.executable, "-m", "soko.tools.cli", *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def json(self, *args: str):
        return json.loads(self.soko(*args, "--format", "json"))

    def up_foreground(self) -> None:
        self.foreground = subprocess.Popen(
            [sys.executable, "-m", "soko.tools.cli", "up"], env=self.env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: (read_state(self.data_dir) or {}).get("status") == "running"
                 or self.foreground.poll() is not None, timeout=180, what="soko up")
        assert self.foreground.poll() is None, self.foreground.stdout.read()

    @property
    def driver(self):
        """A libvirt driver on the cloud's compute dir: its console logs, its guest agents."""
        if self._driver is None:
            from soko.compute.drivers.libvirt import LibvirtDriver

            self._driver = LibvirtDriver(self.data_dir / "compute", prefix="soko-")
        return self._driver


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    require_tools("mkfs.xfs", "losetup", "tgtd", "tgtadm", "qemu-img")
    require_libvirt()
    cloud = Cloud(tmp_path_factory.mktemp("soko-guests"))
    yield cloud
    if cloud.foreground is not None and cloud.foreground.poll() is None:
        cloud.foreground.send_signal(signal.SIGINT)
        cloud.foreground.communicate(timeout=180)
    if read_state(cloud.data_dir) is not None:
        cloud.soko("down")
    if cloud._driver is not None:
        cloud._driver.close()


@pytest.fixture(scope="module")
def server(cloud, guest_image) -> dict:
    """The guest, booted from a volume under a foreground ``soko up``; it wrote SURVIVOR."""
    cloud.up_foreground()
    volume = cloud.json("volume", "create", "--name", "survivor", "1")
    pool_file = cloud.data_dir / "block" / "pool" / "volumes" / f"volume-{volume['id']}"
    subprocess.run(["qemu-img", "convert", "-n", "-O", "raw", str(guest_image),
                    str(pool_file)], check=True)
    created = cloud.json("server", "create", "--flavor", "m1.tiny", "--volume", volume["id"],
                         "--network", "private", "--wait", "survivor")
    assert created["status"] == "ACTIVE", created
    wait_console(cloud.driver, created["id"], READY_MARKER)
    wait_for(lambda: cloud.driver.ping_agent(created["id"], timeout=2), timeout=60,
             what="the guest agent")
    code, _ = guest_exec(cloud.driver, created["id"], "/bin/sh", "-c",
                         f"echo {created['id']} > {SURVIVOR}")
    assert code == 0
    return {**created, "volume_id": volume["id"]}


def qemu_of(domain: str) -> list[int]:
    """QEMU processes running ``domain`` (their command line names it: ``-name guest=...``)."""
    found = []
    for pid in find_pids("qemu-system-x86_64"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.startswith(f"guest={domain},".encode()) for arg in argv):
            found.append(pid)
    return found


def left_behind(cloud: Cloud, server: dict) -> list[str]:
    """Everything of the guest and its volume that a stopped cloud must not leave."""
    import libvirt

    domain = cloud.driver.domain_name(server["id"])
    left = [f"qemu pid {pid}" for pid in qemu_of(domain)]
    conn = cloud.driver.conn
    if domain in {d.name() for d in conn.listAllDomains(0)}:
        left.append(f"domain {domain}")
    left += [f"secret {s.usageID()}" for s in conn.listAllSecrets(0)
             if s.usageType() == libvirt.VIR_SECRET_USAGE_TYPE_ISCSI
             and s.usageID().startswith(domain + ":")]
    if Tgtadm(0).is_serving():
        iqn = volume_iqn(server["volume_id"])
        left += [f"target {t.iqn}" for t in Tgtadm(0).targets() if t.iqn == iqn]
    left += left_on_host(cloud.data_dir)
    return left


def stopped_cleanly(cloud: Cloud, server: dict) -> None:
    wait_nothing_left(cloud.data_dir)
    assert left_behind(cloud, server) == []
    assert read_state(cloud.data_dir) is None
    # The guest powered itself off (agent or ACPI): it was not forced off.
    console = cloud.driver.console_log(server["id"], max_bytes=1 << 20)
    assert "reboot: Power down" in console, console[-2000:]


def test_ctrl_c_of_soko_up_shuts_the_guest_down_and_leaves_nothing(cloud, server):
    began = time.monotonic()
    cloud.foreground.send_signal(signal.SIGINT)
    out, _ = cloud.foreground.communicate(timeout=STOP_TIMEOUT + 120)
    print(f"Ctrl-C -> soko stopped, one guest running: {time.monotonic() - began:.1f} s")
    assert cloud.foreground.returncode == 0, out
    assert "soko stopped." in out and "failed" not in out, out
    stopped_cleanly(cloud, server)


def test_soko_up_boots_the_guest_again_with_its_data(cloud, server):
    began = time.monotonic()
    cloud.soko("up", "--detach")
    up = time.monotonic() - began
    domain = cloud.driver.domain_name(server["id"])
    # The console log starts afresh when QEMU starts: the marker after that is this boot's.
    wait_for(lambda: qemu_of(domain), timeout=60, what="QEMU to start")
    wait_console(cloud.driver, server["id"], READY_MARKER)
    print(f"soko up --detach: {up:.1f} s; -> the guest ready again: "
          f"{time.monotonic() - began:.1f} s")
    shown = cloud.json("server", "show", server["id"])
    assert shown["status"] == "ACTIVE" and shown["power_state"] == "Running", shown
    volume = cloud.json("volume", "show", server["volume_id"])
    assert volume["status"] == "in-use", volume
    wait_for(lambda: cloud.driver.ping_agent(server["id"], timeout=2), timeout=60,
             what="the guest agent")
    code, out = guest_exec(cloud.driver, server["id"], "/bin/cat", SURVIVOR)
    assert (code, out.strip()) == (0, server["id"])
    # Its NIC on soko up's default `private` is back: the port's tap on the port's bridge.
    assert shown["networks"].startswith("private=10.0.0."), shown
    port = next(p for p in cloud.json("port", "list") if p["device_owner"] == "compute:nova")
    binding = cloud.json("port", "show", port["id"])["binding:vif_details"]
    link = subprocess.run(["ip", "-o", "link", "show", binding["tap_name"]],
                          capture_output=True, text=True, check=True).stdout
    assert f"master {binding['bridge_name']}" in link


def test_soko_down_shuts_the_guest_down_and_leaves_nothing(cloud, server):
    began = time.monotonic()
    cloud.soko("down")
    print(f"soko down, one guest running: {time.monotonic() - began:.1f} s")
    stopped_cleanly(cloud, server)
