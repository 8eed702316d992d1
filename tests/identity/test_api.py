"""The Keystone v3 subset in-process: tokens, catalog, projects, users, role assignments."""

from __future__ import annotations

from soko.identity.catalog import build_catalog, register_catalog_entry
from tests.identity.conftest import auth_headers, login, password_auth


def test_version_documents(client):
    root = client.simulate_get("/")
    assert root.status_code == 300
    assert root.json["versions"]["values"][0]["id"].startswith("v3")
    for path in ("/v3", "/v3/"):
        assert client.simulate_get(path).json["version"]["status"] == "stable"


def test_password_login_returns_a_keystone_shaped_token(client, manager):
    resp = client.simulate_post("/v3/auth/tokens", json=password_auth("alice", project="alpha"))
    assert resp.status_code == 201
    token = resp.json["token"]
    assert resp.headers["X-Subject-Token"]
    assert token["user"]["name"] == "alice" and token["project"]["name"] == "alpha"
    assert [r["name"] for r in token["roles"]] == ["member", "reader"]
    assert token["expires_at"].endswith("Z") and token["methods"] == ["password"]
    types = {entry["type"] for entry in token["catalog"]}
    assert types == {"identity", "volumev3"}  # the sections this config registers
    block = next(e for e in token["catalog"] if e["type"] == "volumev3")
    urls = {ep["interface"]: ep["url"] for ep in block["endpoints"]}
    assert urls["public"] == f"http://127.0.0.1:8776/v3/{token['project']['id']}"
    assert set(urls) == {"public", "internal", "admin"}


def test_login_by_ids_and_default_project(client, manager):
    alice = manager.get_user("alice")
    alpha = manager.get_project("alpha")
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "id": alice["id"], "password": "alice-password"}}},
        "scope": {"project": {"id": alpha["id"]}}}}
    resp = client.simulate_post("/v3/auth/tokens", json=body)
    assert resp.status_code == 201 and resp.json["token"]["project"]["id"] == alpha["id"]
    unscoped = client.simulate_post("/v3/auth/tokens", json=password_auth("alice"),
                                    params={"nocatalog": ""})
    assert unscoped.json["token"]["project"]["name"] == "alpha"
    assert "catalog" not in unscoped.json["token"]


def test_token_method_rescopes_without_outliving_the_original(client, manager, clock):
    manager.create_project("gamma")
    manager.grant_role("gamma", "alice", "reader")
    original = client.simulate_post("/v3/auth/tokens", json=password_auth("alice"))
    clock.advance(600)
    body = {"auth": {"identity": {"methods": ["token"],
                                  "token": {"id": original.headers["X-Subject-Token"]}},
                     "scope": {"project": {"name": "gamma"}}}}
    resp = client.simulate_post("/v3/auth/tokens", json=body)
    assert resp.status_code == 201
    token = resp.json["token"]
    assert token["project"]["name"] == "gamma" and [r["name"] for r in token["roles"]] == ["reader"]
    assert token["expires_at"] == original.json["token"]["expires_at"]
    assert token["methods"] == ["token", "password"]


def test_validate_and_revoke_own_token(client):
    token = login(client, "alice")
    headers = auth_headers(token, **{"X-Subject-Token": token})
    got = client.simulate_get("/v3/auth/tokens", headers=headers)
    assert got.status_code == 200 and got.json["token"]["user"]["name"] == "alice"
    assert got.headers["X-Subject-Token"] == token
    assert client.simulate_head("/v3/auth/tokens", headers=headers).status_code == 200
    assert client.simulate_delete("/v3/auth/tokens", headers=headers).status_code == 204
    again = client.simulate_get("/v3/auth/tokens", headers=headers)
    assert again.status_code == 401 and "revoked" in again.json["error"]["message"]


def test_only_admin_inspects_or_revokes_others_tokens(client, tokens):
    subject = {"X-Subject-Token": tokens["bob"]}
    denied = client.simulate_delete("/v3/auth/tokens", headers=auth_headers(tokens["alice"], **subject))
    assert denied.status_code == 403
    assert client.simulate_get("/v3/auth/tokens", headers=auth_headers(tokens["bob"], **subject)).status_code == 200
    assert client.simulate_delete("/v3/auth/tokens", headers=auth_headers(tokens["ops"], **subject)).status_code == 204
    revoked = client.simulate_get("/v3/auth/tokens", headers=auth_headers(tokens["ops"], **subject))
    assert revoked.status_code == 404 and "revoked" in revoked.json["error"]["message"]
    assert client.simulate_get("/v3/projects/x", headers=auth_headers(tokens["bob"])).status_code == 401


def test_project_crud(client, tokens):
    admin = auth_headers(tokens["ops"])
    created = client.simulate_post("/v3/projects", headers=admin,
                                   json={"project": {"name": "delta", "description": "d"}})
    assert created.status_code == 201
    project = created.json["project"]
    assert project["name"] == "delta" and project["enabled"] is True
    dup = client.simulate_post("/v3/projects", headers=admin, json={"project": {"name": "delta"}})
    assert dup.status_code == 409
    names = [p["name"] for p in client.simulate_get("/v3/projects", headers=admin).json["projects"]]
    assert names == ["alpha", "beta", "delta", "ops"]
    only = client.simulate_get("/v3/projects", headers=admin, params={"name": "beta"})
    assert [p["name"] for p in only.json["projects"]] == ["beta"]
    patched = client.simulate_patch(f"/v3/projects/{project['id']}", headers=admin,
                                    json={"project": {"description": "new"}})
    assert patched.json["project"]["description"] == "new"
    assert client.simulate_delete(f"/v3/projects/{project['id']}", headers=admin).status_code == 204
    gone = client.simulate_get(f"/v3/projects/{project['id']}", headers=admin)
    assert gone.status_code == 404


def test_members_read_their_own_project_only(client, tokens, manager):
    alpha, beta = manager.get_project("alpha")["id"], manager.get_project("beta")["id"]
    own = client.simulate_get(f"/v3/projects/{alpha}", headers=auth_headers(tokens["alice"]))
    assert own.status_code == 200 and own.json["project"]["name"] == "alpha"
    other = client.simulate_get(f"/v3/projects/{beta}", headers=auth_headers(tokens["alice"]))
    assert other.status_code == 403 and "project" not in other.json
    assert client.simulate_get("/v3/projects", headers=auth_headers(tokens["alice"])).status_code == 403


def test_user_crud_and_role_assignments(client, tokens, manager):
    admin = auth_headers(tokens["ops"])
    alpha = manager.get_project("alpha")["id"]
    resp = client.simulate_post("/v3/users", headers=admin, json={"user": {
        "name": "carol", "password": "carol-password", "default_project_id": alpha}})
    assert resp.status_code == 201
    carol = resp.json["user"]
    assert "password" not in carol and carol["default_project_id"] == alpha
    grant = f"/v3/projects/{alpha}/users/{carol['id']}/roles/member"
    assert client.simulate_head(grant, headers=admin).status_code == 404
    # no role yet: no token
    assert client.simulate_post("/v3/auth/tokens", json=password_auth("carol")).status_code == 401
    assert client.simulate_put(grant, headers=admin).status_code == 204
    assert client.simulate_head(grant, headers=admin).status_code == 204
    roles = client.simulate_get(f"/v3/projects/{alpha}/users/{carol['id']}/roles", headers=admin)
    assert [r["name"] for r in roles.json["roles"]] == ["member"]
    carol_token = login(client, "carol")
    me = client.simulate_get(f"/v3/users/{carol['id']}", headers=auth_headers(carol_token))
    assert me.status_code == 200 and me.json["user"]["name"] == "carol"
    projects = client.simulate_get(f"/v3/users/{carol['id']}/projects", headers=auth_headers(carol_token))
    assert [p["name"] for p in projects.json["projects"]] == ["alpha"]
    assert client.simulate_delete(grant, headers=admin).status_code == 204
    assert client.simulate_delete(grant, headers=admin).status_code == 404
    listed = client.simulate_get("/v3/users", headers=admin).json["users"]
    assert "carol" in [u["name"] for u in listed]
    assert client.simulate_delete(f"/v3/users/{carol['id']}", headers=admin).status_code == 204
    assert client.simulate_get(f"/v3/users/{carol['id']}", headers=admin).status_code == 404


def test_unknown_role_and_bad_bodies_are_4xx(client, tokens, manager):
    admin = auth_headers(tokens["ops"])
    alpha, alice = manager.get_project("alpha")["id"], manager.get_user("alice")["id"]
    bad_role = client.simulate_put(f"/v3/projects/{alpha}/users/{alice}/roles/owner", headers=admin)
    assert bad_role.status_code == 404 and "admin, member, reader" in bad_role.json["error"]["message"]
    for body in (None, [], {"project": "x"}, {"project": {"name": ""}},
                 {"project": {"name": "a:b"}}, {"project": {"name": "x", "enabled": "yes"}}):
        resp = client.simulate_post("/v3/projects", headers=admin, json=body)
        assert resp.status_code == 400, body
    short = client.simulate_post("/v3/users", headers=admin,
                                 json={"user": {"name": "dave", "password": "short"}})
    assert short.status_code == 400 and "at least 8" in short.json["error"]["message"]
    junk = client.simulate_post("/v3/projects", headers=admin, body=b"{not json",
                                content_type="application/json")
    assert junk.status_code == 400
    assert client.simulate_get("/v3/roles", headers=admin).json["roles"][0]["name"] == "admin"


def test_self_service_password_change(client, manager, tokens, clock):
    alice = manager.get_user("alice")["id"]
    path = f"/v3/users/{alice}/password"
    wrong = client.simulate_post(path, headers=auth_headers(tokens["alice"]), json={"user": {
        "original_password": "nope-nope", "password": "brand-new-pass"}})
    assert wrong.status_code == 401
    clock.advance(1)
    ok = client.simulate_post(path, headers=auth_headers(tokens["alice"]), json={"user": {
        "original_password": "alice-password", "password": "brand-new-pass"}})
    assert ok.status_code == 204
    old = client.simulate_get("/v3/auth/projects", headers=auth_headers(tokens["alice"]))
    assert old.status_code == 401  # the change revoked the old token
    clock.advance(1)
    assert login(client, "alice", "brand-new-pass")
    other = client.simulate_post(f"/v3/users/{manager.get_user('bob')['id']}/password",
                                 headers=auth_headers(tokens["bob"]),
                                 json={"user": {"original_password": "bob-password",
                                                "password": "whatever-pass"}})
    assert other.status_code == 204  # bob may change his own


def test_catalog_extension_points(config):
    import dataclasses
    from typing import ClassVar

    from soko.common.config import ServerSection

    @dataclasses.dataclass
    class ArchiveSection(ServerSection):
        port: int = 7000
        catalog_type: ClassVar[str] = "archive"
        catalog_name: ClassVar[str] = "soko-archive"
        catalog_path: ClassVar[str] = "/a/{project_id}"

    @dataclasses.dataclass
    class PlainSection(ServerSection):
        port: int = 7001

    config.sections["archive"] = ArchiveSection()
    config.sections["plain"] = PlainSection()
    catalog = {e["type"]: e for e in build_catalog(config, "p1")}
    assert catalog["archive"]["endpoints"][0]["url"] == "http://127.0.0.1:7000/a/p1"
    assert set(catalog) == {"identity", "volumev3", "archive"}  # "plain" says nothing
    register_catalog_entry("plain", "plainstore", "plain", "/x")
    try:
        catalog = {e["type"]: e for e in build_catalog(config, "p1")}
        assert catalog["plainstore"]["endpoints"][0]["url"] == "http://127.0.0.1:7001/x"
    finally:
        from soko.identity import catalog as module

        module._registered.pop("plain")
