"""``soko network|subnet|port|router|floating ip|security group`` against the network API
served over real HTTP (a wsgiref thread), the host side recorded."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from soko.common.config import Config
from soko.net.api import make_app
from soko.net.cli import floating, network, port, router, security, subnet
from soko.net.service import NetConfig
from tests.block.fakes import FixedTokens
from tests.support import served


@pytest.fixture
def run(tmp_path, manager):
    app = make_app(Config(data_dir=tmp_path, sections={"net": NetConfig()}),
                   validator=FixedTokens(), manager=manager)
    runner = CliRunner()
    with served(app) as url:
        def invoke(group, *args: str, token: str = "tok-a", ok: bool = True):
            result = runner.invoke(group, ["--os-url", url, "--os-token", token,
                                           "--data-dir", str(tmp_path), *args])
            assert (result.exit_code == 0) == ok, result.output
            return json.loads(result.output) if "--format" in args and ok else result.output

        yield invoke


def test_the_demo_topology_through_the_cli(run):
    run(network, "create", "public", "--external", "--format", "json", token="tok-admin")
    run(subnet, "create", "public-v4", "--network", "public", "--subnet-range",
        "172.24.4.0/24", "--no-dhcp", token="tok-admin")
    run(network, "create", "private")
    made = run(subnet, "create", "private-v4", "--network", "private", "--subnet-range",
               "10.0.0.0/24", "--dns-nameserver", "192.0.2.53", "--format", "json")
    assert made["gateway_ip"] == "10.0.0.1" and made["dns_nameservers"] == ["192.0.2.53"]
    gw = run(router, "create", "r1", "--external-gateway", "public", "--format", "json")
    assert gw["external_gateway_info"]["external_fixed_ips"][0]["ip_address"] == "172.24.4.2"
    run(router, "add", "subnet", "r1", "private-v4")
    vm = run(port, "create", "vm", "--network", "private", "--fixed-ip",
             "ip-address=10.0.0.10", "--format", "json")
    fip = run(floating, "ip", "create", "public", "--port", "vm", "--format", "json")
    assert fip["fixed_ip_address"] == "10.0.0.10" and fip["port_id"] == vm["id"]
    listed = run(floating, "ip", "list", "--format", "json")
    assert [f["floating_ip_address"] for f in listed] == [fip["floating_ip_address"]]
    run(floating, "ip", "unset", "--port", fip["floating_ip_address"])
    assert run(floating, "ip", "show", fip["id"], "--format", "json")["port_id"] is None

    run(security, "group", "create", "web")
    rule = run(security, "group", "rule", "create", "web", "--protocol", "tcp",
               "--dst-port", "80:81", "--remote-ip", "0.0.0.0/0", "--format", "json")
    assert (rule["port_range_min"], rule["port_range_max"], rule["direction"]) == \
        (80, 81, "ingress")

    # In use: a clear refusal, with the API's reason.
    refused = run(router, "delete", "r1", ok=False)
    assert "409" in refused and "still has ports" in refused
    run(router, "remove", "subnet", "r1", "private-v4")  # no floating IP needs it now
    run(floating, "ip", "delete", fip["floating_ip_address"])
    run(port, "delete", "vm")
    assert "deleted router" in run(router, "delete", "r1")
    assert "deleted network" in run(network, "delete", "private")
