"""The middleware tests run on the session's cluster (tests/object/conftest.py): ``api`` is
its Swift API session and ``c`` a fresh container's URL."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator

import pytest

from soko.common import services
from soko.common.config import dump_toml


@pytest.fixture
def api(cluster_api):
    return cluster_api


@pytest.fixture
def c(cluster_api, cluster_container) -> str:
    return f"{cluster_api.base}/{cluster_container}"


@pytest.fixture(scope="module")
def inprocess_proxy(cluster, tmp_path_factory) -> Iterator[Callable]:
    """``inprocess_proxy(**settings)``: the Swift API app built in this process from the
    session cluster's config with those ``[proxy]`` settings changed, on the cluster's real
    storage nodes and identity (for settings the cluster's proxy process does not have)."""
    from soko.common.db import make_engine
    from soko.identity.manager import IdentityManager
    from soko.identity.service import db_url
    from soko.identity.tempauth import TempAuth
    from soko.identity.tokens import FernetTokenValidator
    from soko.object.proxy.app import make_swift_app

    engines = []

    def build(**settings):
        raw = tomllib.loads(cluster.config_path.read_text())
        raw["proxy"].update(settings)
        path = tmp_path_factory.mktemp("proxy") / "soko.toml"
        path.write_text(dump_toml(raw))
        config = services.load(path, cluster.data_dir)
        engine = make_engine(db_url(config))
        engines.append(engine)
        return make_swift_app(
            config, validator=FernetTokenValidator.from_config(config, engine=engine),
            tempauth=TempAuth(IdentityManager.from_config(config, engine=engine)))

    try:
        yield build
    finally:
        for engine in engines:  # no open file may keep the session's XFS mount busy
            engine.dispose()
