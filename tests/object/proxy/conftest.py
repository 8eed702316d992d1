"""Access-control fixtures shared by the proxy's ACL, account-ACL, service-token and CORS
tests: all on the session's cluster, with users made on first use."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.object.test_cluster import Api

# Users beyond the cluster's members: "<project>:<user>" -> (key, role).
ROLE_USERS = {
    "test:reader": ("readerpass1", "reader"),  # a non-owner of test:tester's own project
    "acct:owner": ("ownerpass1", "member"),  # an account the account-ACL tests may change
    "svc:glance": ("glancepass1", "service"),  # a service's user (X-Service-Token)
    "ops:reseller": ("resellerpass1", "ResellerAdmin"),
}


@pytest.fixture(scope="module")
def api(cluster) -> Api:
    return Api(*cluster.auth())


@pytest.fixture(scope="module")
def other(cluster, api) -> Api:
    """other:otheruser on test:tester's account."""
    return Api(api.base, cluster.auth("other:otheruser")[1])


@pytest.fixture(scope="module")
def login(cluster) -> Callable[[str], Api]:
    """``login("test:reader")``: that user on its own account (made if missing)."""
    def login(user: str) -> Api:
        if user in ROLE_USERS:
            cluster.add_user(user, *ROLE_USERS[user])
        return Api(*cluster.auth(user))
    return login


@pytest.fixture
def c(api) -> str:
    """A fresh container of test:tester holding ``obj`` (``secret``)."""
    url = f"{api.base}/acl-{uuid.uuid4().hex[:8]}"
    assert api.put(url).status_code == 201
    assert api.put(f"{url}/obj", data=b"secret").status_code == 201
    return url
