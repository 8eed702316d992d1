"""Builds the network service's parts from config (DB, driver, agent, manager) and the
start, bootstrap and teardown steps the API factory and ``soko up`` share."""

from __future__ import annotations

import logging
from pathlib import Path

from soko.common.config import Config, ConfigError
from soko.common.db import create_tables, database_url, make_engine, make_sessionmaker
from soko.common.durable import atomic_write
from soko.common.periodic import Periodic
from soko.common.shared_secret import METADATA_SECRET_FILE, shared_secret
from soko.net.agent import HostAgent
from soko.net.drivers.linux import LinuxDriver
from soko.net.drivers.metadata import MetadataProxy
from soko.net.manager import NetManager, Quotas
from soko.net.models import Base
from soko.net.service import NetConfig, cloud_id

log = logging.getLogger("soko.net")


def net_dir(config: Config) -> Path:
    return config.data_dir / "net"


def make_manager(config: Config) -> NetManager:
    section: NetConfig = config.section("net")
    state_dir = net_dir(config)
    engine = make_engine(database_url(section.database_url, state_dir, "net"))
    create_tables(Base.metadata, engine, state_dir)
    sessions = make_sessionmaker(engine)
    driver = LinuxDriver(cloud_id(config), state_dir, section.dhcp_lease_seconds,
                         metadata=metadata_proxy(config, state_dir),
                         metadata_port=section.metadata_port)
    agent = HostAgent(sessions=sessions, driver=driver, lock_path=state_dir / "host.lock",
                      default_dns=section.default_dns, host_gateway_cidr=section.public_cidr)
    return NetManager(sessions=sessions, agent=agent, mtu=section.mtu,
                      quotas=Quotas(networks=section.quota_networks, ports=section.quota_ports,
                                    routers=section.quota_routers,
                                    floatingips=section.quota_floatingips))


def metadata_proxy(config: Config, state_dir: Path) -> MetadataProxy:
    """The host's metadata proxy, forwarding to compute; disabled without a compute."""
    section: NetConfig = config.section("net")
    upstream = section.metadata_url
    if not upstream:
        from soko.identity.service import advertised_endpoint

        try:
            upstream = advertised_endpoint(config.section("compute"))
        except ConfigError:
            upstream = ""
    secret_file = config.data_dir / METADATA_SECRET_FILE
    if section.metadata_secret:
        secret_file = state_dir / "metadata" / "secret"
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(secret_file, section.metadata_secret.encode(), mode=0o600)
    elif upstream:
        shared_secret(config.data_dir, METADATA_SECRET_FILE)
    return MetadataProxy(state_dir / "metadata", upstream, secret_file)


def start(config: Config, manager: NetManager) -> None:
    """Every worker's start: the host rebuilt from the DB (by whichever worker gets there
    first), and the periodic reconcile if one is configured."""
    manager.agent.reconcile(wait=False)
    interval = config.section("net").reconcile_interval
    if interval > 0:
        Periodic("net-reconcile", interval, lambda: manager.agent.reconcile(wait=False))


def bootstrap(config: Config) -> list[str]:
    from soko.net.defaults import ensure_default_networks

    manager = make_manager(config)
    made = ensure_default_networks(config, manager)
    manager.agent.reconcile()
    return made + [f"net: cloud id {cloud_id(config)} (bridges brq{cloud_id(config)}*, namespaces "
            f"qdhcp-{cloud_id(config)}-*, qrouter-{cloud_id(config)}-*)"]


def teardown(config: Config) -> None:
    """Removes every bridge, namespace, veth, dnsmasq, NAT rule and security-group chain of
    this cloud from the host (``soko down``); the DB stays, and the next start rebuilds them."""
    manager = make_manager(config)
    with manager.agent.locked():
        try:
            manager.agent.driver.remove_orphans(set(), set())
        finally:  # the host's filter table outlives everything: its chains go whatever failed
            manager.agent.driver.apply_firewall((), recheck=True)
