"""The auth middleware's policy, with a fixed-token validator standing in for identity."""

from __future__ import annotations

import falcon.testing
import pytest

from soko.common.app import make_base_app
from soko.common.auth import AuthContext, AuthMiddleware
from soko.common.errors import Unauthorized


def ctx(project: str, *roles: str) -> AuthContext:
    return AuthContext("u-" + project, "user", project, "p", frozenset(roles), 2e9)


TOKENS = {
    "tok-a-member": ctx("a", "member"),
    "tok-a-reader": ctx("a", "reader"),
    "tok-b-member": ctx("b", "member"),
    "tok-admin": ctx("ops", "admin"),
}


class FixedTokens:
    def validate(self, token):
        try:
            return TOKENS[token]
        except KeyError:
            raise Unauthorized("token not valid") from None


class Things:
    def on_get(self, req, resp, project_id):
        resp.media = {"project": project_id, "caller": req.context.auth.project_id}

    def on_post(self, req, resp, project_id):
        resp.status = 201


class Networks:
    policy = {"POST": "admin"}

    def on_post(self, req, resp):
        resp.status = 201


class Public:
    allow_anonymous = True

    def on_get(self, req, resp):
        resp.media = {"anonymous": req.context.auth is None}


@pytest.fixture
def client():
    app = make_base_app(middleware=[AuthMiddleware(FixedTokens())])
    app.add_route("/v3/{project_id}/things", Things())
    app.add_route("/networks", Networks())
    app.add_route("/public", Public())
    return falcon.testing.TestClient(app)


def call(client, method, path, token=None):
    headers = {"X-Auth-Token": token} if token else {}
    return client.simulate_request(method, path, headers=headers)


def test_no_token_is_401_with_a_hint(client):
    resp = call(client, "GET", "/v3/a/things")
    assert resp.status_code == 401 and "X-Auth-Token" in resp.json["error"]["message"]


def test_bad_token_is_401(client):
    assert call(client, "GET", "/v3/a/things", "forged").status_code == 401


def test_own_project_reads_and_writes(client):
    assert call(client, "GET", "/v3/a/things", "tok-a-member").json == {"project": "a", "caller": "a"}
    assert call(client, "POST", "/v3/a/things", "tok-a-member").status_code == 201


def test_other_project_is_403_and_sees_nothing(client):
    resp = call(client, "GET", "/v3/a/things", "tok-b-member")
    assert resp.status_code == 403 and "project" not in resp.json


def test_reader_cannot_write(client):
    assert call(client, "GET", "/v3/a/things", "tok-a-reader").status_code == 200
    resp = call(client, "POST", "/v3/a/things", "tok-a-reader")
    assert resp.status_code == 403 and "'member'" in resp.json["error"]["message"]


def test_admin_only_route(client):
    assert call(client, "POST", "/networks", "tok-a-member").status_code == 403
    assert call(client, "POST", "/networks", "tok-admin").status_code == 201


def test_anonymous_allowed_where_declared(client):
    assert call(client, "GET", "/public").json == {"anonymous": True}
    assert call(client, "GET", "/public", "forged").status_code == 401


def test_healthcheck_needs_no_token(client):
    assert call(client, "GET", "/healthcheck").status_code == 200
