"""Fixtures of the middleware tests: the session's cluster (tests/object/conftest.py), one
Swift API session per module and a fresh container per test."""

from __future__ import annotations

import uuid

import pytest

from tests.object.test_cluster import Api


@pytest.fixture(scope="module")
def api(cluster) -> Api:
    return Api(*cluster.auth())


@pytest.fixture
def c(api) -> str:
    """A fresh container's URL."""
    name = f"c-{uuid.uuid4().hex[:8]}"
    assert api.put(f"{api.base}/{name}").status_code == 201
    return f"{api.base}/{name}"
