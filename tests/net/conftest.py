"""Network fixtures: the API in-process over a real SQLite DB with an agent that records
what the host was told, and (privileged) the real Linux driver in namespaces."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from types import SimpleNamespace

import falcon.testing
import pytest

from soko.common.config import Config
from soko.common.db import make_engine, make_sessionmaker
from soko.net import wiring
from soko.net.api import make_app
from soko.net.manager import NetManager, Quotas
from soko.net.models import Base
from soko.net.service import NetConfig, cloud_id
from tests.block.fakes import FixedTokens
from tests.net.plumbing import Plugs, assert_cloud_gone, dnsmasq_pids
from tests.support import require_tools, served


class RecordingAgent:
    """Stands in for the host side in API tests: remembers each notification."""

    def __init__(self):
        self.calls: list[tuple[str, str]] = []

    def network_changed(self, network_id: str) -> None:
        self.calls.append(("network_changed", network_id))

    def ports_changed(self, network_id: str) -> None:
        self.calls.append(("ports_changed", network_id))

    def network_removed(self, network_id: str) -> None:
        self.calls.append(("network_removed", network_id))

    def router_changed(self, router_id: str) -> None:
        self.calls.append(("router_changed", router_id))

    def floating_changed(self, router_id: str) -> None:
        self.calls.append(("floating_changed", router_id))

    def router_removed(self, router_id: str) -> None:
        self.calls.append(("router_removed", router_id))

    def firewall_changed(self) -> None:
        self.calls.append(("firewall_changed", ""))


def memory_manager(state_dir: Path, agent, **quotas) -> NetManager:
    engine = make_engine(f"sqlite:///{state_dir / 'net.db'}")
    Base.metadata.create_all(engine)
    return NetManager(sessions=make_sessionmaker(engine), agent=agent, quotas=Quotas(**quotas))


@pytest.fixture
def agent() -> RecordingAgent:
    return RecordingAgent()


@pytest.fixture
def manager(tmp_path: Path, agent: RecordingAgent) -> NetManager:
    return memory_manager(tmp_path, agent, ports=20)


@pytest.fixture
def client(tmp_path: Path, manager: NetManager) -> falcon.testing.TestClient:
    config = Config(data_dir=tmp_path, sections={"net": NetConfig()})
    return falcon.testing.TestClient(make_app(config, validator=FixedTokens(), manager=manager))


@pytest.fixture
def real_net(tmp_path: Path):
    """The real Linux driver under a fresh cloud id; at the end every bridge, namespace,
    veth, dnsmasq, NAT table and security-group chain of that cloud is gone (asserted)."""
    require_tools("ip", "dnsmasq", "iptables-restore", "sysctl")
    config = Config(data_dir=tmp_path, sections={"net": NetConfig(
        cloud_id=uuid.uuid4().hex[:4], public_cidr="")})  # tests plug their own outside at the gateway
    manager = wiring.make_manager(config)
    client = falcon.testing.TestClient(make_app(config, validator=FixedTokens(),
                                                manager=manager))
    try:
        yield SimpleNamespace(config=config, manager=manager, client=client,
                              driver=manager.agent.driver)
    finally:
        wiring.teardown(config)
    assert_cloud_gone(cloud_id(config))
    assert not dnsmasq_pids(tmp_path), "a dnsmasq of this test still runs"


@contextlib.contextmanager
def metadata_cloud(data_dir: Path):
    """soko-net with the real driver, and compute's metadata and key pair API served
    in-process over loopback HTTP; one data dir, so one shared secret. Afterwards no
    namespace, bridge or metadata proxy of it is left (``soko down``'s teardown)."""
    require_tools("ip", "dnsmasq", "iptables-restore", "udhcpc", "curl")
    from tests.compute.conftest import compute_without_hypervisor

    compute_app, compute = compute_without_hypervisor(data_dir)
    with served(compute_app) as compute_url:
        config = Config(data_dir=data_dir, sections={"net": NetConfig(
            cloud_id=uuid.uuid4().hex[:4], metadata_url=compute_url)})
        manager = wiring.make_manager(config)
        client = falcon.testing.TestClient(make_app(config, validator=FixedTokens(),
                                                    manager=manager))
        try:
            yield SimpleNamespace(config=config, manager=manager, client=client,
                                  driver=manager.agent.driver, compute=compute,
                                  compute_url=compute_url)
        finally:
            wiring.teardown(config)


@pytest.fixture
def plugs():
    made = Plugs()
    yield made
    made.close()
