"""soko-net as a real gunicorn service (2 workers) behind real identity tokens: found in the
catalog by an OpenStack client, driven by the CLI with a password login, building real
namespaces; stopping it and tearing down leaves nothing of the cloud on the host."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from pyroute2.netns import listnetns

from soko.common import services
from soko.identity.bootstrap import bootstrap, credentials_path, read_credentials
from soko.net import wiring
from soko.net.service import cloud_id
from soko.tools.cli import cli
from tests.net.plumbing import dnsmasq_pids, proxy_pids
from tests.support import free_port, require_tools, running_service, wait_for

pytestmark = pytest.mark.privileged


@pytest.fixture
def live(tmp_path):
    require_tools("ip", "dnsmasq", "iptables-restore")
    data_dir = tmp_path / "soko"
    data_dir.mkdir()
    (data_dir / "soko.toml").write_text(
        f"[identity]\nport = {free_port()}\nscrypt_log2_n = 10\n"
        f"[net]\nport = {free_port()}\nworkers = 2\npublic_cidr = \"\"\n")
    config = services.load(None, data_dir)
    bootstrap(config)
    try:
        with running_service("identity", config):
            yield config
    finally:
        wiring.teardown(config)
    cloud = cloud_id(config)
    assert not [n for n in listnetns() if f"-{cloud}-" in n]
    assert not proxy_pids(data_dir)
    assert f"brq{cloud}" not in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                               text=True).stdout


def test_cli_and_catalog_against_the_running_service(live):
    with running_service("net", live):
        check_cli_and_catalog(live)


def check_cli_and_catalog(live):
    creds = read_credentials(credentials_path(live))
    runner = CliRunner()

    def soko(*args):
        env = {**creds, "SOKO_DATA_DIR": str(live.data_dir)}
        result = runner.invoke(cli, list(args), env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.output) if "--format" in args else result.output

    soko("network", "create", "public", "--external")
    soko("subnet", "create", "public-v4", "--network", "public", "--subnet-range",
         "172.24.4.0/24", "--no-dhcp")
    soko("network", "create", "private")
    soko("subnet", "create", "private-v4", "--network", "private", "--subnet-range",
         "10.0.0.0/24")
    router = soko("router", "create", "r1", "--external-gateway", "public", "--format", "json")
    soko("router", "add", "subnet", "r1", "private-v4")
    assert f"qrouter-{cloud_id(live)}-{router['id']}" in listnetns()

    auth = v3.Password(auth_url=creds["OS_AUTH_URL"], username=creds["OS_USERNAME"],
                       password=creds["OS_PASSWORD"], project_name=creds["OS_PROJECT_NAME"],
                       user_domain_name="Default", project_domain_name="Default")
    sess = ks_session.Session(auth=auth)
    networks = sess.get("/v2.0/networks", endpoint_filter={"service_type": "network"}).json()
    assert sorted(n["name"] for n in networks["networks"]) == ["private", "public"]


def service_pids(config, name: str) -> list[int]:
    """The processes of ``soko serve NAME`` for this data dir (started by this test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"serve" in argv and name.encode() in argv and \
                        str(config.data_dir).encode() in argv:
                    found.append(int(entry.name))
    return found


def test_kill_9_mid_change_then_restart_rebuilds_exactly_the_db(live):
    """The service dies (SIGKILL, every worker) while routers and networks are being made;
    the next start rebuilds what the DB holds, with nothing doubled and no orphan."""
    creds = read_credentials(credentials_path(live))
    auth = v3.Password(auth_url=creds["OS_AUTH_URL"], username=creds["OS_USERNAME"],
                       password=creds["OS_PASSWORD"], project_name=creds["OS_PROJECT_NAME"],
                       user_domain_name="Default", project_domain_name="Default")
    sess = ks_session.Session(auth=auth)
    net_api = {"service_type": "network"}
    stop = threading.Event()
    made = []  # routers with their interface, as the churn goes

    def churn():
        for i in range(40):
            if stop.is_set():
                return
            with contextlib.suppress(Exception):
                net = sess.post("/v2.0/networks", endpoint_filter=net_api, json={
                    "network": {"name": f"n{i}"}}).json()["network"]
                sub = sess.post("/v2.0/subnets", endpoint_filter=net_api, json={"subnet": {
                    "network_id": net["id"], "cidr": "10.0.0.0/24"}}).json()["subnet"]
                router = sess.post("/v2.0/routers", endpoint_filter=net_api, json={
                    "router": {"name": f"r{i}"}}).json()["router"]
                sess.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                         endpoint_filter=net_api, json={"subnet_id": sub["id"]})
                made.append(router["id"])

    with running_service("net", live):
        worker = threading.Thread(target=churn)
        worker.start()
        wait_for(lambda: len(made) >= 2, timeout=120, what="two routers")
        time.sleep(0.3)  # into the next round of changes
        for pid in service_pids(live, "net"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop.set()
        worker.join()
    with running_service("net", live):
        networks = sess.get("/v2.0/networks", endpoint_filter=net_api).json()["networks"]
        routers = sess.get("/v2.0/routers", endpoint_filter=net_api).json()["routers"]
        ports = sess.get("/v2.0/ports", endpoint_filter=net_api).json()["ports"]
        cloud = cloud_id(live)
        wanted = {f"qrouter-{cloud}-{r['id']}" for r in routers} | {
            f"qdhcp-{cloud}-{n['id']}" for n in networks if n["subnets"]}
        wait_for(lambda: {n for n in listnetns() if f"-{cloud}-" in n} == wanted,
                 timeout=60, what="the namespaces to match the DB")

        def legs_plugged() -> bool:  # the rebuild plugs a router's legs after its namespace
            for router in routers:
                legs = [p for p in ports if p["device_id"] == router["id"]]
                inside = subprocess.run(["ip", "-n", f"qrouter-{cloud}-{router['id']}", "-o",
                                         "link"], capture_output=True, text=True).stdout
                if inside.count(" qr-") != len(legs):
                    return False
            return True

        wait_for(legs_plugged, timeout=60, what="every router leg in the DB plugged")
        # The rebuild starts a DHCP server a network lacks after making its namespace.
        wait_for(lambda: len(dnsmasq_pids(live.data_dir)) == len(
            [n for n in networks if n["subnets"]]), timeout=60, what="one dnsmasq a network")
        wait_for(lambda: len(proxy_pids(live.data_dir)) == 1, timeout=60,
                 what="one metadata proxy (the killed service's, or a new one)")
