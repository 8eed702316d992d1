"""The default networks of ``soko up`` (devstack's): made by the bootstrap after identity's,
once however often it runs, with the host holding the public gateway so it reaches the
router (and so floating IPs) there; ``soko down``'s teardown takes all of it off the host."""

from __future__ import annotations

import random
import subprocess

import pytest
from sqlalchemy import select

from soko.common import services
from soko.common.db import session_scope
from soko.identity.bootstrap import bootstrap as identity_bootstrap
from soko.net import wiring
from soko.net.models import Network, Port, Router, Subnet
from soko.net.routers import interfaces
from soko.net.service import NetConfig
from tests.support import free_port, require_tools
from tests.tools.test_up_cli import net_left

pytestmark = pytest.mark.privileged


def test_defaults_are_devstacks():
    assert (NetConfig().public_cidr, NetConfig().private_cidr) == ("172.24.4.0/24",
                                                                   "10.0.0.0/24")


def test_soko_up_makes_public_private_and_router1_once_and_down_removes_them(data_dir):
    require_tools("ip", "dnsmasq", "iptables-restore", "ping")
    public_cidr = f"172.24.{random.randrange(16, 250)}.0/24"  # not another cloud's
    (data_dir / "soko.toml").write_text(
        f"[identity]\nport = {free_port()}\nscrypt_log2_n = 10\n"
        f'[net]\nport = {free_port()}\npublic_cidr = "{public_cidr}"\n')
    config = services.load(None, data_dir)
    identity_bootstrap(config)
    try:
        printed = wiring.bootstrap(config)
        assert any(f"external network public {public_cidr}" in line for line in printed)
        wiring.bootstrap(config)  # a second `soko up`
        manager = wiring.make_manager(config)
        with session_scope(manager.sessions) as s:
            networks = {n.name: n for n in s.scalars(select(Network))}
            routers = list(s.scalars(select(Router)))
            assert sorted(networks) == ["private", "public"] and len(routers) == 1
            public, private, router = networks["public"], networks["private"], routers[0]
            assert public.external and not private.external
            assert public.project_id != private.project_id == router.project_id
            assert [sub.cidr for sub in s.scalars(select(Subnet))] == [public_cidr,
                                                                        "10.0.0.0/24"]
            assert router.name == "router1" and router.gw_port.network_id == public.id
            assert [p.network_id for p in interfaces(s, router.id)] == [private.id]
            gateway_ip = router.gw_port.fixed_ips[0].ip_address
            assert s.scalar(select(Port.id).where(Port.device_owner == "network:dhcp",
                                                  Port.network_id == private.id))
        host = public_cidr.replace(".0/24", ".1/24")
        bridge = manager.agent.driver.bridge_name(public.id)
        shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", bridge],
                               capture_output=True, text=True, check=True).stdout
        assert shown.count(f"inet {host} ") == 1, shown
        # The host reaches the router's gateway leg over the public bridge.
        assert subprocess.run(["ping", "-n", "-c", "1", "-W", "2", gateway_ip],
                              capture_output=True).returncode == 0
        assert manager.agent.reconcile()  # a restart: the host address is not doubled
        shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", bridge],
                               capture_output=True, text=True, check=True).stdout
        assert shown.count(f"inet {host} ") == 1, shown
    finally:
        wiring.teardown(config)
    assert net_left(data_dir) == []
    addresses = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    assert public_cidr.replace(".0/24", ".1/") not in addresses
