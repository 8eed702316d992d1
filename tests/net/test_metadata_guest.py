"""The test guest on a soko-net network, for real: one TCG boot (shared by every test
here) gets its address by DHCP, reads its metadata through the router's proxy (hostname,
root's key, a user-data script), and lets the key pair's owner in over ssh.

The guest stands in for a server that compute booted on the network: its port is made
through the network API with the instance as device, its instance row (with the key pair
and user data, as ``server create --key-name --user-data`` stores them) is written to
compute's DB, and its domain is defined with a NIC on the network's bridge with the
port's MAC. The host reaches it from a namespace plugged into the same network."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from types import SimpleNamespace

import pytest

from soko.common.db import session_scope
from soko.compute.models import Instance
from soko.image.guest_files import METADATA_MARKER, READY_MARKER
from tests.compute.conftest import wait_console
from tests.net.conftest import metadata_cloud
from tests.net.plumbing import in_ns
from tests.support import require_tools, wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

A = {"X-Auth-Token": "tok-a"}
USER_DATA = "#!/bin/sh\necho ran-from-user-data > /root/user-data-proof\n"


def call(client, method, path, body=None):
    resp = client.simulate_request(method, path, headers=A, json=body)
    assert resp.status_code in (200, 201), resp.text
    return resp.json


@pytest.fixture(scope="module")
def guest(tmp_path_factory, driver, guest_image):
    require_tools("ssh", "curl")
    data_dir = tmp_path_factory.mktemp("netm-guest")
    with metadata_cloud(data_dir) as cloud:
        client = cloud.client
        net = call(client, "POST", "/v2.0/networks", {"network": {"name": "private"}})
        net_id = net["network"]["id"]
        subnet = call(client, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net_id, "cidr": "10.0.0.0/24"}})["subnet"]
        router = call(client, "POST", "/v2.0/routers", {"router": {"name": "r"}})["router"]
        call(client, "PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
             {"subnet_id": subnet["id"]})

        import requests

        made = requests.post(f"{cloud.compute_url}/v2.1/os-keypairs", headers=A, timeout=30,
                             json={"keypair": {"name": "netm-key"}}).json()["keypair"]
        key_file = data_dir / "id_rsa"
        key_file.write_text(made["private_key"])
        key_file.chmod(0o600)
        instance_id = str(uuid.uuid4())
        with session_scope(cloud.compute.sessions) as s:
            s.add(Instance(id=instance_id, project_id="proj-a", user_id="user-proj-a",
                           name="netm guest", flavor_id="1", vcpus=1, ram=256,
                           vm_state="active", key_name="netm-key", key_data=made["public_key"],
                           user_data=base64.b64encode(USER_DATA.encode()).decode()))
        port = call(client, "POST", "/v2.0/ports", {"port": {
            "network_id": net_id, "device_id": instance_id,
            "device_owner": "compute:nova"}})["port"]

        from soko.compute.drivers.base import FileDisk, InstanceSpec, Nic

        disk = data_dir / "boot.img"
        shutil.copyfile(guest_image, disk)
        driver.spawn(InstanceSpec(name=instance_id, uuid=instance_id, vcpus=1, memory_mib=256,
                                  disks=(FileDisk(disk),),
                                  nics=(Nic(driver_bridge := cloud.driver.bridge_name(net_id),
                                            port["mac_address"]),)))
        outside = f"soko-netm-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", outside], check=True)
        host_end = f"vt{uuid.uuid4().hex[:8]}"
        try:
            subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name",
                            "eth0", "netns", outside], check=True)
            subprocess.run(["ip", "link", "set", host_end, "master", driver_bridge, "up"],
                           check=True)
            in_ns(outside, "ip", "link", "set", "eth0", "up")
            in_ns(outside, "ip", "addr", "add", "10.0.0.250/24", "dev", "eth0")
            console = wait_console(driver, instance_id, READY_MARKER, timeout=240)
            yield SimpleNamespace(id=instance_id, port=port, console=console, key=key_file,
                                  ip=port["fixed_ips"][0]["ip_address"], outside=outside)
        finally:
            driver.delete(instance_id)
            subprocess.run(["ip", "link", "del", host_end], capture_output=True)
            subprocess.run(["ip", "netns", "del", outside], capture_output=True)


def ssh(guest, command: str) -> subprocess.CompletedProcess:
    return in_ns(guest.outside, "ssh", "-i", str(guest.key), "-o", "BatchMode=yes",
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", f"root@{guest.ip}", command,
                 timeout=90, check=False)


def test_the_guest_takes_its_address_by_dhcp(guest):
    ready = re.search(rf"{READY_MARKER} ip=(\S+) mac=(\S+)", guest.console)
    assert ready, guest.console[-2000:]
    assert ready.groups() == (guest.ip, guest.port["mac_address"])


def test_the_guest_reads_its_metadata_and_runs_its_user_data_once(guest):
    found = re.search(rf"{METADATA_MARKER} (.*)", guest.console)
    assert found, guest.console[-2000:]
    assert found.group(1).strip() == (f"id={guest.id} hostname=netm-guest keys=1 "
                                      "userdata=ran:0")


def test_the_key_pair_logs_in_over_ssh(guest):
    done = wait_for(lambda: (r := ssh(guest, "hostname; cat /root/user-data-proof"))
                    .returncode == 0 and r, timeout=120, interval=2, what="ssh into the guest")
    assert done.stdout.split() == ["netm-guest", "ran-from-user-data"]
    # Any other key is refused.
    other = guest.key.with_name("other")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    refused = in_ns(guest.outside, "ssh", "-i", str(other), "-o", "BatchMode=yes",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "ConnectTimeout=20", f"root@{guest.ip}", "true", timeout=60,
                    check=False)
    assert refused.returncode == 255 and "Permission denied" in refused.stderr
