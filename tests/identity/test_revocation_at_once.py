"""Identity refuses a revoked token at once on every one of its workers, not after the
revocation refresh bound that other services work with (issue 13, item 11)."""

from __future__ import annotations

import falcon.testing
import pytest

from soko.identity.api import make_app
from soko.identity.manager import IdentityManager
from tests.identity.conftest import auth_headers, identity_config, login, seed


@pytest.fixture
def workers(data_dir):
    """Two identity workers on one database, each with its own revocation list that it
    re-reads only every 30 s: the other worker's revocations reach it only through the
    database."""
    config = identity_config(data_dir, revocation_refresh=30.0,
                             revocation_max_staleness=60.0)
    first = IdentityManager.from_config(config)
    seed(first)
    second = IdentityManager.from_config(config)
    return [falcon.testing.TestClient(make_app(config, manager=m)) for m in (first, second)]


@pytest.mark.parametrize("revoke", ["token", "password", "role"])
def test_a_revoked_token_is_refused_at_once_by_the_other_worker(workers, revoke):
    one, other = workers
    token = login(one, "alice")
    admin = login(one, "ops")
    assert other.simulate_get("/v3/auth/projects", headers=auth_headers(token)).status_code == 200
    if revoke == "token":
        resp = one.simulate_delete("/v3/auth/tokens",
                                   headers=auth_headers(token, **{"X-Subject-Token": token}))
    elif revoke == "password":
        user_id = one.simulate_get("/v3/users", params={"name": "alice"},
                                   headers=auth_headers(admin)).json["users"][0]["id"]
        resp = one.simulate_post(f"/v3/users/{user_id}/password", headers=auth_headers(token),
                                 json={"user": {"original_password": "alice-password",
                                                "password": "alice-new-password"}})
    else:
        resp = one.simulate_delete("/v3/projects/alpha/users/alice/roles/member",
                                   headers=auth_headers(admin))
    assert resp.status_code == 204, resp.text
    # At once, on the worker that did not handle the revocation:
    resp = other.simulate_get("/v3/auth/projects", headers=auth_headers(token))
    assert resp.status_code == 401 and "revoked" in resp.json["error"]["message"]
    resp = other.simulate_get("/v3/auth/tokens",
                              headers=auth_headers(admin, **{"X-Subject-Token": token}))
    assert resp.status_code == 404
    resp = other.simulate_post("/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["token"], "token": {"id": token}}}})
    assert resp.status_code == 401  # nor can it be exchanged for a fresh one
    # Tokens that were not revoked still work there.
    assert other.simulate_get("/v3/auth/projects",
                              headers=auth_headers(admin)).status_code == 200
