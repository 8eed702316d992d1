"""Identity fixtures: a config with cheap password hashing, a settable clock, seeded accounts.

Accounts: ``ops`` (admin on project ``ops``), ``alice`` (member of ``alpha``), ``rita``
(reader on ``alpha``), ``bob`` (member of ``beta``); every password is ``<name>-password``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import falcon.testing
import pytest

from soko.common.config import Config, ServerSection
from soko.identity.api import make_app
from soko.identity.manager import IdentityManager
from soko.identity.service import IdentityConfig


@dataclasses.dataclass
class FakeBlockSection(ServerSection):
    port: int = 8776


class Clock:
    """Unix time that tests move by hand."""

    def __init__(self, now: float | None = None):
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def identity_config(data_dir: Path, **overrides) -> Config:
    settings = {"scrypt_log2_n": 10, "lockout_failures": 3, "lockout_seconds": 60,
                "revocation_refresh": 0.2, **overrides}
    section = IdentityConfig(**settings)
    section.validate()
    return Config(data_dir=data_dir, sections={"identity": section, "block": FakeBlockSection()})


ACCOUNTS = [  # user, project, role
    ("ops", "ops", "admin"),
    ("alice", "alpha", "member"),
    ("rita", "alpha", "reader"),
    ("bob", "beta", "member"),
]


def password_of(user: str) -> str:
    return f"{user}-password"


def seed(manager: IdentityManager) -> None:
    for user, project, role in ACCOUNTS:
        if not manager.list_projects(name=project):
            manager.create_project(project)
        manager.create_user(user, password_of(user), default_project=project)
        manager.grant_role(project, user, role)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def config(data_dir: Path) -> Config:
    return identity_config(data_dir)


@pytest.fixture
def manager(config: Config, clock: Clock) -> IdentityManager:
    manager = IdentityManager.from_config(config, clock=clock)
    seed(manager)
    return manager


@pytest.fixture
def client(config: Config, manager: IdentityManager) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(make_app(config, manager=manager))


def password_auth(user: str, password: str | None = None, project: str | None = None,
                  **project_ref) -> dict:
    auth = {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"},
        "password": password_of(user) if password is None else password}}}}
    if project is not None:
        auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
    elif project_ref:
        auth["scope"] = {"project": project_ref}
    return {"auth": auth}


def login(client, user: str, password: str | None = None, project: str | None = None) -> str:
    resp = client.simulate_post("/v3/auth/tokens", json=password_auth(user, password, project))
    assert resp.status_code == 201, resp.text
    return resp.headers["X-Subject-Token"]


@pytest.fixture
def tokens(client) -> dict[str, str]:
    """A token per seeded user, scoped to their project."""
    return {user: login(client, user) for user, _, _ in ACCOUNTS}


def auth_headers(token: str, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": token, **extra}
