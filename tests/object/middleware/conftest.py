"""The middleware tests run on the session's cluster (tests/object/conftest.py): ``api`` is
its Swift API session and ``c`` a fresh container's URL."""

from __future__ import annotations

import pytest


@pytest.fixture
def api(cluster_api):
    return cluster_api


@pytest.fixture
def c(cluster_api, cluster_container) -> str:
    return f"{cluster_api.base}/{cluster_container}"
