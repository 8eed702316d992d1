"""The cloud user's first workflow through ``soko up``, as the demo user: boot from a volume
on the default ``private`` network with a key pair, see the DHCP lease and the metadata in
the console, open ssh in the default security group, add a floating IP from ``public`` and
ssh in from the host (which holds the public gateway), close ssh again, and delete the
server: its port goes and the floating IP is free for the next one."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from soko.identity.bootstrap import credentials_path, read_credentials
from soko.image.guest_files import METADATA_MARKER, READY_MARKER
from tests.compute.conftest import require_libvirt, wait_console
from tests.support import require_tools, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def test_boot_on_private_floating_ip_and_ssh_as_the_demo_user(
        allinone, guest_image, tmp_path):
    require_libvirt()
    require_tools("ssh", "qemu-img")
    up = allinone
    from soko.common import services

    config = services.load(None, up.data_dir)
    demo = {**up.env, **read_credentials(credentials_path(config, "demo"))}

    def soko(*args: str, ok: bool = True):
        done = subprocess.run([sys.executable, "-m", "soko.tools.cli", *args], env=demo, capture_output=True, text=True,
                              timeout=300)
        assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return json.loads(done.stdout) if ok and "--format" in args else done

    key = tmp_path / "id_demo"
    soko("keypair", "create", "e2e-key", "--private-key", str(key))
    volume = soko("volume", "create", "--name", "e2e-net", "1", "--format", "json")
    subprocess.run(["qemu-img", "convert", "-n", "-O", "raw", str(guest_image),
                    str(up.data_dir / "block" / "pool" / "volumes" / f"volume-{volume['id']}")],
                   check=True)
    server = soko("server", "create", "e2e-net", "--flavor", "m1.tiny", "--volume",
                  volume["id"], "--delete-on-termination", "--network", "private",
                  "--key-name", "e2e-key", "--wait", "--format", "json")
    assert server["status"] == "ACTIVE", server
    from soko.compute.drivers.libvirt import LibvirtDriver

    driver = LibvirtDriver(up.data_dir / "compute", prefix="soko-")
    try:
        console = wait_console(driver, server["id"], READY_MARKER, timeout=300)
    finally:
        driver.close()
    fixed = re.search(rf"{READY_MARKER} ip=(10\.0\.0\.\d+)", console)
    assert fixed, console[-2000:]
    assert f"private={fixed.group(1)}" in soko("server", "show", server["id"],
                                               "--format", "json")["networks"]
    assert re.search(rf"{METADATA_MARKER} id={server['id']} hostname=e2e-net keys=1", console)

    rule = soko("security", "group", "rule", "create", "default", "--protocol", "tcp",
                "--dst-port", "22", "--remote-ip", "0.0.0.0/0", "--format", "json")
    fip = soko("floating", "ip", "create", "public", "--format", "json")
    address = fip["floating_ip_address"]
    soko("server", "add", "floating", "ip", "e2e-net", address)

    def ssh(command: str, timeout: int = 20) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-i", str(key), "-o", "BatchMode=yes",
                               "-o", "StrictHostKeyChecking=no",
                               "-o", "UserKnownHostsFile=/dev/null",
                               "-o", f"ConnectTimeout={timeout}", "-o", "LogLevel=ERROR",
                               f"root@{address}", command], capture_output=True, text=True,
                              timeout=timeout + 60)

    done = wait_for(lambda: (r := ssh("hostname; grep -c ' / ' /proc/mounts")).returncode
                    == 0 and r, timeout=180, interval=2, what="ssh over the floating IP")
    assert done.stdout.split() == ["e2e-net", "1"]
    soko("security", "group", "rule", "delete", rule["id"])
    assert ssh("true", timeout=3).returncode == 255  # port 22 closed again

    soko("server", "delete", "e2e-net", "--wait")
    ports = soko("port", "list", "--format", "json")
    assert not [p for p in ports if p["device_id"] == server["id"]]
    freed = soko("floating", "ip", "show", address, "--format", "json")
    assert freed["port_id"] is None
    soko("floating", "ip", "delete", address)
    soko("keypair", "delete", "e2e-key")
