"""Swift tempauth v1: in-process, and python-swiftclient against a real socket."""

from __future__ import annotations

import falcon.testing
import pytest
import swiftclient.client
from swiftclient.exceptions import ClientException

from soko.common.app import make_base_app
from soko.common.auth import AuthMiddleware
from soko.identity.tempauth import TempAuth
from tests.support import served


def tempauth_app(manager, storage_url_base=None):
    """What the object-store proxy does: mount TempAuth next to its token-checked routes."""
    app = make_base_app(middleware=[AuthMiddleware(manager.validator)])
    app.add_route("/auth/v1.0", TempAuth(manager, storage_url_base))
    return app


@pytest.fixture
def tempauth(manager):
    return falcon.testing.TestClient(tempauth_app(manager, "http://proxy.example:8080"))


def test_tempauth_returns_token_and_storage_url(tempauth, manager):
    resp = tempauth.simulate_get("/auth/v1.0", headers={"X-Auth-User": "alpha:alice",
                                                       "X-Auth-Key": "alice-password"})
    assert resp.status_code == 200
    alpha = manager.get_project("alpha")["id"]
    assert resp.headers["X-Storage-Url"] == f"http://proxy.example:8080/v1/AUTH_{alpha}"
    token = resp.headers["X-Auth-Token"]
    assert resp.headers["X-Storage-Token"] == token
    assert resp.headers["X-Auth-Token-Expires"] == "3600"
    assert resp.content == b""  # Swift's tempauth: the headers alone
    ctx = manager.validator.validate(token)  # the same token every soko API accepts
    assert (ctx.project_id, ctx.user_name) == (alpha, "alice")


def test_tempauth_accepts_the_storage_header_spelling(tempauth):
    resp = tempauth.simulate_get("/auth/v1.0", headers={"X-Storage-User": "beta:bob",
                                                       "X-Storage-Pass": "bob-password"})
    assert resp.status_code == 200


@pytest.mark.parametrize("headers, expected", [
    ({}, "X-Auth-User"),
    ({"X-Auth-User": "alice", "X-Auth-Key": "alice-password"}, "<project>:<user>"),
    ({"X-Auth-User": "alpha:alice", "X-Auth-Key": "wrong-one"}, "password is wrong"),
    ({"X-Auth-User": "beta:alice", "X-Auth-Key": "alice-password"}, "no role on project"),
    ({"X-Auth-User": "nope:alice", "X-Auth-Key": "alice-password"}, "does not exist"),
])
def test_tempauth_refusals(tempauth, headers, expected):
    resp = tempauth.simulate_get("/auth/v1.0", headers=headers)
    assert resp.status_code == 401
    assert expected in resp.json["error"]["message"]
    assert "X-Auth-Token" not in resp.headers


def test_storage_url_follows_the_request_host_by_default(manager):
    client = falcon.testing.TestClient(tempauth_app(manager))
    resp = client.simulate_get("/auth/v1.0", headers={
        "Host": "swift.example:8443", "X-Auth-User": "alpha:alice",
        "X-Auth-Key": "alice-password"})
    assert resp.headers["X-Storage-Url"].startswith("http://swift.example:8443/v1/AUTH_")


def test_python_swiftclient_v1_auth(manager):
    with served(tempauth_app(manager)) as url:
        storage_url, token = swiftclient.client.get_auth(f"{url}/auth/v1.0", "alpha:alice",
                                                         "alice-password")
        alpha = manager.get_project("alpha")["id"]
        assert storage_url == f"{url}/v1/AUTH_{alpha}"
        assert manager.validator.validate(token).project_id == alpha
        with pytest.raises(ClientException) as excinfo:
            swiftclient.client.get_auth(f"{url}/auth/v1.0", "alpha:alice", "not-the-key")
        assert excinfo.value.http_status == 401
