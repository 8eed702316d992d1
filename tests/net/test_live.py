"""soko-net as a real gunicorn service (2 workers) behind real identity tokens: found in the
catalog by an OpenStack client, driven by the CLI with a password login, building real
namespaces; stopping it and tearing down leaves nothing of the cloud on the host."""

from __future__ import annotations

import json
import subprocess

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
from tests.support import free_port, require_tools, running_service

pytestmark = pytest.mark.privileged


@pytest.fixture
def live(tmp_path):
    require_tools("ip", "dnsmasq", "iptables-restore")
    data_dir = tmp_path / "soko"
    data_dir.mkdir()
    (data_dir / "soko.toml").write_text(
        f"[identity]\nport = {free_port()}\nscrypt_log2_n = 10\n"
        f"[net]\nport = {free_port()}\nworkers = 2\n")
    config = services.load(None, data_dir)
    bootstrap(config)
    try:
        with running_service("identity", config), running_service("net", config):
            yield config
    finally:
        wiring.teardown(config)
    cloud = cloud_id(config)
    assert not [n for n in listnetns() if f"-{cloud}-" in n]
    assert f"brq{cloud}" not in subprocess.run(["ip", "-o", "link"], capture_output=True,
                                               text=True).stdout


def test_cli_and_catalog_against_the_running_service(live):
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
