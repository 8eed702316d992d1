"""EC2-style credentials (Keystone's ``/v3/credentials`` type ``ec2`` and the OS-EC2 routes):
who may make and see them, their secrets encrypted at rest, and how the proxy resolves them."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy

from soko.common.db import make_engine
from soko.identity.ec2 import CredentialCipher, Ec2Resolver, credential_id
from soko.identity.service import db_url
from tests.identity.conftest import auth_headers


def test_os_ec2_create_list_get_delete(client, manager, tokens):
    alice = manager.get_user("alice")
    alpha = manager.get_project("alpha")
    path = f"/v3/users/{alice['id']}/credentials/OS-EC2"
    made = client.simulate_post(path, json={"tenant_id": alpha["id"]},
                                headers=auth_headers(tokens["alice"]))
    assert made.status_code == 201, made.text
    cred = made.json["credential"]
    assert cred["tenant_id"] == alpha["id"] and cred["user_id"] == alice["id"]
    assert len(cred["access"]) == 32 and len(cred["secret"]) == 40
    listed = client.simulate_get(path, headers=auth_headers(tokens["alice"])).json
    assert [c["access"] for c in listed["credentials"]] == [cred["access"]]
    one = client.simulate_get(f"{path}/{cred['access']}", headers=auth_headers(tokens["alice"]))
    assert one.json["credential"]["secret"] == cred["secret"]
    keystone = client.simulate_get("/v3/credentials", headers=auth_headers(tokens["alice"]))
    record = keystone.json["credentials"][0]
    assert record["type"] == "ec2" and record["id"] == credential_id(cred["access"])
    assert json.loads(record["blob"]) == {"access": cred["access"], "secret": cred["secret"]}
    gone = client.simulate_delete(f"{path}/{cred['access']}",
                                  headers=auth_headers(tokens["alice"]))
    assert gone.status_code == 204
    assert client.simulate_get(path, headers=auth_headers(tokens["alice"])).json[
        "credentials"] == []


def test_keystone_credentials_route_and_who_may_use_it(client, manager, tokens):
    alice, bob = manager.get_user("alice"), manager.get_user("bob")
    alpha, beta = manager.get_project("alpha"), manager.get_project("beta")
    blob = json.dumps({"access": "A" * 20, "secret": "s" * 20})
    made = client.simulate_post("/v3/credentials", headers=auth_headers(tokens["alice"]),
                                json={"credential": {"type": "ec2", "project_id": alpha["id"],
                                                     "blob": blob}})
    assert made.status_code == 201, made.text
    cred_id = made.json["credential"]["id"]
    # bob may not see it, make one for alice, or make one on a project he has no role on
    assert client.simulate_get(f"/v3/credentials/{cred_id}",
                               headers=auth_headers(tokens["bob"])).status_code == 404
    assert client.simulate_delete(f"/v3/credentials/{cred_id}",
                                  headers=auth_headers(tokens["bob"])).status_code == 404
    assert client.simulate_post(
        f"/v3/users/{alice['id']}/credentials/OS-EC2", json={"tenant_id": alpha["id"]},
        headers=auth_headers(tokens["bob"])).status_code == 403
    assert client.simulate_post(
        f"/v3/users/{bob['id']}/credentials/OS-EC2", json={"tenant_id": alpha["id"]},
        headers=auth_headers(tokens["bob"])).status_code == 403
    assert client.simulate_post(
        f"/v3/users/{bob['id']}/credentials/OS-EC2", json={"tenant_id": beta["id"]},
        headers=auth_headers(tokens["bob"])).status_code == 201
    # bad input: another type, a bad blob, the same access key twice
    for body in ({"type": "totp", "project_id": alpha["id"]},
                 {"type": "ec2", "project_id": alpha["id"], "blob": "{not json"},
                 {"type": "ec2", "project_id": alpha["id"],
                  "blob": json.dumps({"access": "short", "secret": "s" * 20})},
                 {"type": "ec2", "project_id": alpha["id"], "blob": blob}):
        resp = client.simulate_post("/v3/credentials", json={"credential": body},
                                    headers=auth_headers(tokens["alice"]))
        assert resp.status_code == 400, body
    admin = client.simulate_get("/v3/credentials", headers=auth_headers(tokens["ops"]))
    assert len(admin.json["credentials"]) == 2


def test_secret_is_encrypted_at_rest_and_resolved_with_roles(client, config, manager, tokens):
    alice, alpha = manager.get_user("alice"), manager.get_project("alpha")
    cred = client.simulate_post(f"/v3/users/{alice['id']}/credentials/OS-EC2",
                                json={"tenant_id": alpha["id"]},
                                headers=auth_headers(tokens["alice"])).json["credential"]
    engine = make_engine(db_url(config))
    try:
        with engine.connect() as conn:
            stored = conn.execute(sqlalchemy.text("SELECT encrypted_blob FROM credentials")
                                  ).scalar_one()
        assert cred["secret"] not in stored and cred["access"] not in stored
        resolver = Ec2Resolver(engine, CredentialCipher.from_config(config), ttl=0.0)
        secret, who = resolver.resolve(cred["access"])
        assert secret == cred["secret"] and who.project_id == alpha["id"]
        assert who.user_name == "alice" and who.roles == {"member", "reader"}
        manager.revoke_role("alpha", "alice", "member")  # no role left: the key stops working
        try:
            resolver.resolve(cred["access"])
        except LookupError:
            pass
        else:
            raise AssertionError("a credential without a role on its project still resolved")
    finally:
        engine.dispose()


class CountingResolver(Ec2Resolver):
    """Counts the resolver's database reads (each slowed, so concurrent misses overlap)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads = []

    def _read(self, access: str):
        self.reads.append(access)
        time.sleep(0.05)
        return super()._read(access)


def test_a_resolution_is_read_once_for_all_threads_and_a_deleted_key_stops_after_the_ttl(
        client, config, manager, tokens):
    alice, alpha = manager.get_user("alice"), manager.get_project("alpha")
    path = f"/v3/users/{alice['id']}/credentials/OS-EC2"
    cred = client.simulate_post(path, json={"tenant_id": alpha["id"]},
                                headers=auth_headers(tokens["alice"])).json["credential"]
    engine, now = make_engine(db_url(config)), [100.0]
    try:
        resolver = CountingResolver(engine, CredentialCipher.from_config(config), ttl=2.0,
                                    clock=lambda: now[0])
        with ThreadPoolExecutor(16) as pool:  # a worker's threads, all missing at once
            found = list(pool.map(resolver.resolve, [cred["access"]] * 16))
        assert {secret for secret, _ in found} == {cred["secret"]}
        assert len(resolver.reads) == 1
        assert client.simulate_delete(f"{path}/{cred['access']}", headers=auth_headers(
            tokens["alice"])).status_code == 204
        now[0] = 101.9  # still within the TTL of the read: trusted
        assert resolver.resolve(cred["access"])[0] == cred["secret"]
        now[0] = 102.0  # the TTL (revocation_refresh) after the read began: gone
        with pytest.raises(LookupError):
            resolver.resolve(cred["access"])
        assert len(resolver.reads) == 2
    finally:
        engine.dispose()
