"""An in-process cloud for input tests: identity, block, image, compute and net built by
their own ``make_app`` factories, with block, image and compute served over loopback HTTP so
they call each other for real (compute asks block and image, block asks image).

Block runs on the in-memory pool and target (tests/block/fakes.py), image on an object
store that does not answer, compute without a hypervisor: every request these tests send
must be refused before any of those would be needed, so reaching one shows up as a 5xx or
a state change. Net's host side is the recording agent of its API tests (tests/net): what
the host was told is state too. Each piece of state (every DB row, pool, target and host
notification) is read by ``state()``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
import sqlalchemy

from soko.common.config import Config
from soko.compute.drivers.base import HypervisorError
from tests.support import free_port, served

PROJECT = "proj-a"
TOKENS = {"member": "tok-a", "admin": "tok-admin"}


class NoHypervisor:
    """Every call fails: these tests never get far enough to need a hypervisor."""

    def __getattr__(self, name: str):
        def refuse(*args, **kwargs):
            raise HypervisorError(f"{name}: there is no hypervisor in this test")
        return refuse


@dataclasses.dataclass
class Cloud:
    clients: dict[str, falcon.testing.TestClient]  # identity, block, image, compute, net
    engines: dict[str, sqlalchemy.Engine]
    block: object  # the block VolumeManager (in-memory pool and target)
    net_agent: object  # what net told the host (tests/net/conftest.py's RecordingAgent)
    ids: dict[str, str]  # what exists: volume, snapshot, image (queued qcow2), server...
    identity_token: str  # an identity admin's

    def state(self) -> dict:
        """Every row of every table of every service, plus the pool and the target."""
        rows = {}
        for service, engine in self.engines.items():
            with engine.connect() as conn:
                for table in sqlalchemy.inspect(engine).get_table_names():
                    result = conn.execute(sqlalchemy.text(f'SELECT * FROM "{table}"'))
                    rows[f"{service}.{table}"] = sorted(map(repr, result))
        rows["pool"] = sorted(self.block.pool.sizes.items())
        rows["pool.snapshots"] = sorted(self.block.pool.snapshot_sizes.items())
        rows["target"] = sorted(self.block.target.exported().items())
        rows["net.host"] = list(self.net_agent.calls)
        return rows


def identity_part(data_dir: Path):
    from soko.identity.api import make_app
    from soko.identity.manager import IdentityManager
    from tests.identity.conftest import identity_config, login, seed

    config = identity_config(data_dir)
    manager = IdentityManager.from_config(config)
    seed(manager)
    client = falcon.testing.TestClient(make_app(config, manager=manager))
    return client, manager.sessions.kw["bind"], login(client, "ops")


def image_part(data_dir: Path):
    from soko.common.db import make_engine, make_sessionmaker
    from soko.image.api import make_app
    from soko.image.manager import ImageManager
    from soko.image.models import Base
    from soko.image.store import SwiftStore
    from tests.block.fakes import FixedTokens

    engine = make_engine(f"sqlite:///{data_dir / 'image.db'}")
    Base.metadata.create_all(engine)
    manager = ImageManager(sessions=make_sessionmaker(engine),
                           store=SwiftStore(f"http://127.0.0.1:{free_port()}", timeout=2),
                           segment_size=1 << 20, container="images",
                           public_container="images-public")
    return make_app(Config(data_dir=data_dir, sections={}), validator=FixedTokens(),
                    manager=manager), engine


def block_part(data_dir: Path, image_port: int):
    from soko.block.api import make_app
    from soko.block.service import BlockConfig
    from soko.image.service import ImageConfig
    from tests.block.conftest import memory_manager
    from tests.block.fakes import FixedTokens

    manager = memory_manager(data_dir)
    config = Config(data_dir=data_dir, sections={"block": BlockConfig(),
                                                 "image": ImageConfig(port=image_port)})
    return make_app(config, validator=FixedTokens(), manager=manager), manager


def compute_part(data_dir: Path, block_url: str, image_url: str):
    from soko.common.db import make_engine, make_sessionmaker
    from soko.compute.api import make_app
    from soko.compute.manager import ComputeManager, Settings
    from soko.compute.models import Base
    from soko.compute.service import ComputeConfig
    from tests.block.fakes import FixedTokens

    engine = make_engine(f"sqlite:///{data_dir / 'compute.db'}")
    Base.metadata.create_all(engine)
    manager = ComputeManager(sessions=make_sessionmaker(engine), driver=NoHypervisor(),
                             settings=Settings(block_url=block_url, image_url=image_url,
                                               initiator="iqn.2026-11.org.test:compute"))
    return make_app(Config(data_dir=data_dir, sections={"compute": ComputeConfig()}),
                    validator=FixedTokens(), manager=manager), engine


def net_part(data_dir: Path):
    from soko.net.api import make_app
    from soko.net.service import NetConfig
    from tests.block.fakes import FixedTokens
    from tests.net.conftest import RecordingAgent, memory_manager

    agent = RecordingAgent()
    manager = memory_manager(data_dir, agent)
    config = Config(data_dir=data_dir, sections={"net": NetConfig()})
    return (make_app(config, validator=FixedTokens(), manager=manager),
            manager.sessions.kw["bind"], agent)


def seed_net(cloud: Cloud) -> None:
    """A network of each kind with a subnet, a port, a router joining them with a floating
    IP, a security group and a rule; ids by the path's plural (``ids["net:ports"]``)."""
    net = cloud.clients["net"]
    ids = cloud.ids

    def make(plural: str, body: dict, token: str = TOKENS["member"]) -> str:
        singular = plural.replace("-", "_")[:-1]
        resp = net.simulate_post(f"/v2.0/{plural}", headers={"X-Auth-Token": token},
                                 json={singular: body})
        assert resp.status_code == 201, resp.text
        return resp.json[singular]["id"]

    for token in TOKENS.values():  # each project's default group, made on first listing
        net.simulate_get("/v2.0/security-groups", headers={"X-Auth-Token": token})
    public = make("networks", {"name": "public", "router:external": True}, TOKENS["admin"])
    ids["net:public_subnet"] = make("subnets", {"network_id": public, "cidr": "172.24.4.0/24",
                                                "enable_dhcp": False}, TOKENS["admin"])
    ids["net:public"] = public
    ids["net:networks"] = make("networks", {"name": "seed"})
    ids["net:subnets"] = make("subnets", {"network_id": ids["net:networks"],
                                          "cidr": "10.0.0.0/24"})
    ids["net:spare_subnet"] = make("subnets", {"network_id": ids["net:networks"],
                                               "cidr": "10.0.1.0/24"})
    ids["net:ports"] = make("ports", {"network_id": ids["net:networks"],
                                      "fixed_ips": [{"subnet_id": ids["net:subnets"]}]})
    ids["net:routers"] = make("routers", {"name": "seed",
                                          "external_gateway_info": {"network_id": public}})
    resp = net.simulate_put(f"/v2.0/routers/{ids['net:routers']}/add_router_interface",
                            headers={"X-Auth-Token": TOKENS["member"]},
                            json={"subnet_id": ids["net:subnets"]})
    assert resp.status_code == 200, resp.text
    ids["net:floatingips"] = make("floatingips", {"floating_network_id": public,
                                                  "port_id": ids["net:ports"]})
    ids["net:security-groups"] = make("security-groups", {"name": "seed"})
    ids["net:security-group-rules"] = make("security-group-rules", {
        "security_group_id": ids["net:security-groups"], "direction": "ingress",
        "protocol": "tcp", "port_range_min": 22, "port_range_max": 22})


def seed(cloud: Cloud) -> None:
    """One of each thing a route can name, made through the APIs where one can be."""
    from soko.compute.models import Instance

    member = {"X-Auth-Token": TOKENS["member"]}
    block, image = cloud.clients["block"], cloud.clients["image"]
    volume = block.simulate_post(f"/v3/{PROJECT}/volumes", headers=member,
                                 json={"volume": {"size": 1, "name": "seed"}})
    cloud.ids["volume"] = volume.json["volume"]["id"]
    snapshot = block.simulate_post(f"/v3/{PROJECT}/snapshots", headers=member, json={
        "snapshot": {"volume_id": cloud.ids["volume"], "name": "seed"}})
    cloud.ids["snapshot"] = snapshot.json["snapshot"]["id"]
    for name, disk_format in (("image", "qcow2"), ("raw_image", "raw")):
        created = image.simulate_post("/v2/images", headers=member,
                                      json={"name": name, "disk_format": disk_format})
        cloud.ids[name] = created.json["id"]
    with cloud.engines["image"].begin() as conn:  # as if uploaded: active, 1 MiB
        conn.execute(sqlalchemy.text(
            "UPDATE images SET status='active', size=1048576, virtual_size=1048576 "
            "WHERE id=:id"), {"id": cloud.ids["raw_image"]})
    cloud.ids["server"] = str(uuid.uuid4())
    with cloud.engines["compute"].begin() as conn:
        conn.execute(sqlalchemy.insert(Instance.__table__).values(
            id=cloud.ids["server"], project_id=PROJECT, user_id="user-proj-a", name="seed",
            flavor_id="1", vcpus=1, ram=512, vm_state="active", power_state="running",
            metadata={}))
    cloud.ids["unknown"] = str(uuid.uuid4())
    admin = {"X-Auth-Token": cloud.identity_token}
    identity = cloud.clients["identity"]
    cloud.ids["project"] = identity.simulate_get("/v3/projects", params={"name": "alpha"},
                                                 headers=admin).json["projects"][0]["id"]
    cloud.ids["user"] = identity.simulate_get("/v3/users", params={"name": "ops"},
                                              headers=admin).json["users"][0]["id"]
    seed_net(cloud)


@contextlib.contextmanager
def in_process_cloud(data_dir: Path) -> Iterator[Cloud]:
    for part in ("identity", "block", "image", "compute", "net"):
        (data_dir / part).mkdir(parents=True, exist_ok=True)
    identity_client, identity_engine, admin_token = identity_part(data_dir / "identity")
    image_app, image_engine = image_part(data_dir / "image")
    net_app, net_engine, net_agent = net_part(data_dir / "net")
    with served(image_app, free_port()) as image_url:
        image_port = int(image_url.rsplit(":", 1)[1])
        block_app, block_manager = block_part(data_dir / "block", image_port)
        with served(block_app) as block_url:
            compute_app, compute_engine = compute_part(data_dir / "compute", block_url,
                                                       image_url)
            cloud = Cloud(
                clients={name: falcon.testing.TestClient(app) for name, app in (
                    ("block", block_app), ("image", image_app), ("compute", compute_app),
                    ("net", net_app))},
                engines={"identity": identity_engine, "image": image_engine,
                         "block": block_manager.sessions.kw["bind"],
                         "compute": compute_engine, "net": net_engine},
                block=block_manager, net_agent=net_agent, ids={},
                identity_token=admin_token)
            cloud.clients["identity"] = identity_client
            seed(cloud)
            yield cloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory) -> Iterator[Cloud]:
    with in_process_cloud(tmp_path_factory.mktemp("cloud")) as built:
        yield built
