"""Security cases, seen both by the identity API and by a service that uses the validator
the way every soko API does: each is a 401/403 with a clear message and changes nothing."""

from __future__ import annotations

import io
import logging
import time

import falcon.testing
import pytest

from soko.common.app import make_base_app
from soko.common.auth import AuthMiddleware
from soko.identity.models import LoginFailure
from soko.identity.tempauth import TempAuth
from soko.identity.tokens import FernetTokenValidator
from tests.identity.conftest import auth_headers, login, password_auth


class Things:
    """A project-scoped resource as any soko service declares one."""

    def __init__(self):
        self.store: dict[str, list[str]] = {}

    def on_get(self, req, resp, project_id):
        resp.media = {"things": self.store.get(project_id, [])}

    def on_post(self, req, resp, project_id):
        self.store.setdefault(project_id, []).append(req.get_media()["name"])
        resp.status = falcon.HTTP_201


@pytest.fixture
def things():
    return Things()


@pytest.fixture
def service(config, manager, clock, things):
    """Another service's app: its own validator built from the shared config."""
    validator = FernetTokenValidator.from_config(config, clock=clock)
    app = make_base_app(middleware=[AuthMiddleware(validator)])
    app.add_route("/v1/{project_id}/things", things)
    return falcon.testing.TestClient(app)


def post_thing(service, project_id, token, name="x"):
    return service.simulate_post(f"/v1/{project_id}/things", json={"name": name},
                                 headers=auth_headers(token))


def message(resp) -> str:
    return resp.json["error"]["message"]


def test_wrong_password_and_unknown_user_look_the_same(client):
    wrong = client.simulate_post("/v3/auth/tokens", json=password_auth("alice", "not-it-at-all"))
    unknown = client.simulate_post("/v3/auth/tokens", json=password_auth("mallory", "whatever1"))
    assert wrong.status_code == unknown.status_code == 401
    assert message(wrong) == message(unknown) == \
        "The user name or password is wrong (or the user is disabled)."
    assert "X-Subject-Token" not in wrong.headers


def test_missing_fields_are_clear(client):
    no_password = password_auth("alice")
    del no_password["auth"]["identity"]["password"]["user"]["password"]
    resp = client.simulate_post("/v3/auth/tokens", json=no_password)
    assert resp.status_code == 401 and "password is needed" in message(resp)
    other_domain = password_auth("alice")
    other_domain["auth"]["identity"]["password"]["user"]["domain"] = {"name": "Evil"}
    resp = client.simulate_post("/v3/auth/tokens", json=other_domain)
    assert resp.status_code == 401 and "one domain" in message(resp)
    no_role = client.simulate_post("/v3/auth/tokens", json=password_auth("alice", project="beta"))
    assert no_role.status_code == 401 and "no role on project" in message(no_role)


@pytest.mark.parametrize("body", [
    b'{"auth": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    b'{"auth": {"identity": {"methods": ["password"], "password": {"user": ' * 200 + b"1"
    + b"}}}}" * 200,
])
def test_deeply_nested_login_bodies_are_400_not_500(client, body):
    """Issue 13: JSON ~1,000 deep raised RecursionError (a 500) on the unauthenticated login."""
    resp = client.simulate_post("/v3/auth/tokens", body=body,
                                headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert "nests deeper" in message(resp)


def test_names_that_cannot_exist_are_refused_without_counting(client, manager):
    """A login name with NUL can name no user; it is not stored as a lockout counter (which
    PostgreSQL would refuse with a 500)."""
    for _ in range(4):
        resp = client.simulate_post("/v3/auth/tokens", json=password_auth("ali\x00ce"))
        assert resp.status_code == 401
    with manager.session() as s:
        assert s.query(LoginFailure).count() == 0


def test_service_refuses_missing_expired_revoked_and_tampered_tokens(
        client, service, manager, clock, things):
    alpha = manager.get_project("alpha")["id"]
    token = login(client, "alice")
    assert post_thing(service, alpha, token, "first").status_code == 201

    resp = service.simulate_post(f"/v1/{alpha}/things", json={"name": "anon"})
    assert resp.status_code == 401 and "X-Auth-Token" in message(resp)

    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    resp = post_thing(service, alpha, tampered)
    assert resp.status_code == 401 and "tampered" in message(resp)

    clock.advance(3601)
    resp = post_thing(service, alpha, token)
    assert resp.status_code == 401 and "expired" in message(resp)
    clock.advance(-3601)

    revoked = login(client, "alice")
    client.simulate_delete("/v3/auth/tokens",
                           headers=auth_headers(revoked, **{"X-Subject-Token": revoked}))
    deadline = time.monotonic() + 0.2 + 1.0  # its refresh bound (0.2 s here) plus slack
    while (resp := post_thing(service, alpha, revoked)).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token still works after the bound"
        things.store[alpha].remove("x")
        time.sleep(0.02)
    assert "revoked" in message(resp)

    assert things.store == {alpha: ["first"]}


def test_project_a_token_on_project_b_url_is_403_and_changes_nothing(
        client, service, manager, things, tokens):
    beta = manager.get_project("beta")["id"]
    assert post_thing(service, beta, tokens["bob"], "bobs").status_code == 201
    resp = post_thing(service, beta, tokens["alice"], "intruder")
    assert resp.status_code == 403 and "another project" in message(resp)
    read = service.simulate_get(f"/v1/{beta}/things", headers=auth_headers(tokens["alice"]))
    assert read.status_code == 403 and "things" not in read.json
    assert things.store == {beta: ["bobs"]}
    # and an admin (cloud-wide) may
    assert service.simulate_get(f"/v1/{beta}/things",
                                headers=auth_headers(tokens["ops"])).json == {"things": ["bobs"]}


def test_reader_cannot_write(client, service, manager, things, tokens):
    alpha = manager.get_project("alpha")["id"]
    assert service.simulate_get(f"/v1/{alpha}/things",
                                headers=auth_headers(tokens["rita"])).status_code == 200
    resp = post_thing(service, alpha, tokens["rita"])
    assert resp.status_code == 403 and "'member'" in message(resp)
    assert things.store == {}
    # in identity too: a reader (or member) changes nothing there
    for who in ("rita", "alice"):
        patch = client.simulate_patch(f"/v3/projects/{alpha}", headers=auth_headers(tokens[who]),
                                      json={"project": {"name": "renamed"}})
        assert patch.status_code == 403 and "'admin'" in message(patch)
        create = client.simulate_post("/v3/users", headers=auth_headers(tokens[who]),
                                      json={"user": {"name": "sneaky", "password": "sneaky-pass"}})
        assert create.status_code == 403
    assert manager.get_project(alpha)["name"] == "alpha"
    assert manager.list_users(name="sneaky") == []


def test_repeated_failures_lock_the_name_out_for_a_while(client, clock):
    for _ in range(3):  # lockout_failures = 3 in these tests
        resp = client.simulate_post("/v3/auth/tokens", json=password_auth("alice", "wrong-guess"))
        assert resp.status_code == 401 and "wrong" in message(resp)
    locked = client.simulate_post("/v3/auth/tokens", json=password_auth("alice"))  # right one
    assert locked.status_code == 401
    assert "Too many failed logins" in message(locked)
    assert locked.headers["Retry-After"] == "60"
    other = client.simulate_post("/v3/auth/tokens", json=password_auth("bob"))
    assert other.status_code == 201  # only that name is locked
    clock.advance(61)
    assert client.simulate_post("/v3/auth/tokens", json=password_auth("alice")).status_code == 201


def test_success_resets_the_failure_count(client):
    for _ in range(2):
        client.simulate_post("/v3/auth/tokens", json=password_auth("alice", "wrong-guess"))
    assert client.simulate_post("/v3/auth/tokens", json=password_auth("alice")).status_code == 201
    for _ in range(2):
        client.simulate_post("/v3/auth/tokens", json=password_auth("alice", "wrong-guess"))
    assert client.simulate_post("/v3/auth/tokens", json=password_auth("alice")).status_code == 201


def test_unknown_names_lock_out_the_same_way(client):
    """Otherwise the lockout message would tell which user names exist."""
    for _ in range(3):
        client.simulate_post("/v3/auth/tokens", json=password_auth("ghost", "wrong-guess"))
    resp = client.simulate_post("/v3/auth/tokens", json=password_auth("ghost", "wrong-guess"))
    assert "Too many failed logins" in message(resp)


def test_disabled_user_cannot_log_in_and_old_tokens_die(client, manager, tokens):
    alice = manager.get_user("alice")["id"]
    manager.update_user(alice, enabled=False)
    resp = client.simulate_post("/v3/auth/tokens", json=password_auth("alice"))
    assert resp.status_code == 401
    old = client.simulate_get("/v3/auth/projects", headers=auth_headers(tokens["alice"]))
    assert old.status_code == 401 and "revoked" in message(old)


def test_passwords_never_reach_the_logs(config, client, manager, tokens):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("soko")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    secrets = ["alice-password", "wrong-guess-123", "brand-new-secret", "ghost-pass-456",
               "carol-password-789"]
    try:
        admin = auth_headers(tokens["ops"])
        client.simulate_post("/v3/auth/tokens", json=password_auth("alice"))
        client.simulate_post("/v3/auth/tokens", json=password_auth("alice", "wrong-guess-123"))
        client.simulate_post("/v3/auth/tokens", json=password_auth("ghost", "ghost-pass-456"))
        client.simulate_post("/v3/users", headers=admin, json={"user": {
            "name": "carol", "password": "carol-password-789"}})
        client.simulate_post("/v3/users", headers=admin, json={"user": {
            "name": "carol", "password": "carol-password-789"}})  # 409 path
        alice = manager.get_user("alice")["id"]
        client.simulate_patch(f"/v3/users/{alice}", headers=admin,
                              json={"user": {"password": "brand-new-secret"}})
        app = make_base_app()
        app.add_route("/auth/v1.0", TempAuth(manager))
        tempauth = falcon.testing.TestClient(app)
        tempauth.simulate_get("/auth/v1.0", headers={"X-Auth-User": "alpha:alice",
                                                     "X-Auth-Key": "brand-new-secret"})
        tempauth.simulate_get("/auth/v1.0", headers={"X-Auth-User": "alpha:alice",
                                                     "X-Auth-Key": "wrong-guess-123"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    captured = stream.getvalue()
    assert "failed login for 'alice'" in captured  # the log did see these requests
    assert "created user" in captured
    for secret in secrets:
        assert secret not in captured


def test_logging_in_by_id_shares_the_lockout_counter(client, manager):
    alice = manager.get_user("alice")["id"]
    by_id = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": alice, "password": "wrong-guess"}}}}}
    client.simulate_post("/v3/auth/tokens", json=by_id)
    for _ in range(2):
        client.simulate_post("/v3/auth/tokens", json=password_auth("alice", "wrong-guess"))
    by_id["auth"]["identity"]["password"]["user"]["password"] = "alice-password"
    resp = client.simulate_post("/v3/auth/tokens", json=by_id)
    assert resp.status_code == 401 and "Too many failed logins" in message(resp)
