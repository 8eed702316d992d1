"""The volume API in-process (falcon TestClient) over the in-memory pool and target:
Cinder's shapes, the state machine, validation, quotas and project isolation."""

from __future__ import annotations

import falcon.testing
import pytest

from soko.block.models import LocalAttachment

A = {"X-Auth-Token": "tok-a"}
B = {"X-Auth-Token": "tok-b"}
ADMIN = {"X-Auth-Token": "tok-admin"}
READER = {"X-Auth-Token": "tok-reader"}
IQN = "iqn.2026-11.org.test:host1"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def create(client, size=1, headers=A, project="proj-a", **extra):
    return client.simulate_post(f"/v3/{project}/volumes", headers=headers,
                                json={"volume": {"size": size, **extra}})


def action(client, volume_id, body, headers=A, project="proj-a"):
    return client.simulate_post(f"/v3/{project}/volumes/{volume_id}/action", headers=headers,
                                json=body)


def attach(client, volume_id, initiator=IQN, **kw):
    return action(client, volume_id, {"os-initialize_connection":
                                      {"connector": {"initiator": initiator}}}, **kw)


def status_of(client, volume_id):
    return client.simulate_get(f"/v3/proj-a/volumes/{volume_id}", headers=A).json["volume"]["status"]


def test_create_show_list_in_cinder_shapes(client):
    resp = create(client, 2, name="db", description="data", metadata={"tier": "gold"})
    assert resp.status_code == 202
    volume = resp.json["volume"]
    assert volume["status"] == "available" and volume["size"] == 2 and volume["name"] == "db"
    assert volume["metadata"] == {"tier": "gold"} and volume["attachments"] == []
    assert volume["os-vol-tenant-attr:tenant_id"] == "proj-a"
    listed = client.simulate_get("/v3/proj-a/volumes", headers=A).json["volumes"]
    assert listed == [{"id": volume["id"], "name": "db", "links": volume["links"]}]
    detail = client.simulate_get("/v3/proj-a/volumes/detail", headers=A).json["volumes"]
    assert detail[0]["size"] == 2


def test_list_filters_and_paginates_newest_first(client):
    ids = [create(client, name=f"v{i}").json["volume"]["id"] for i in range(5)]
    page = client.simulate_get("/v3/proj-a/volumes", headers=A, params={"limit": 2}).json
    assert [v["id"] for v in page["volumes"]] == ids[::-1][:2]
    assert "marker=" in page["volumes_links"][0]["href"]
    rest = client.simulate_get("/v3/proj-a/volumes", headers=A,
                               params={"limit": 10, "marker": ids[3]}).json["volumes"]
    assert [v["id"] for v in rest] == ids[::-1][2:]
    named = client.simulate_get("/v3/proj-a/volumes", headers=A, params={"name": "v1"})
    assert [v["id"] for v in named.json["volumes"]] == [ids[1]]


def test_attach_detach_cycle_and_connection_info(client, manager):
    volume_id = create(client).json["volume"]["id"]
    resp = attach(client, volume_id)
    assert resp.status_code == 200
    data = resp.json["connection_info"]["data"]
    assert data["target_iqn"] == f"iqn.2026-11.org.soko:volume-{volume_id}"
    assert data["target_lun"] == 1 and data["auth_method"] == "CHAP"
    assert data["url"].startswith(f"iscsi://{data['auth_username']}%{data['auth_password']}@")
    assert manager.target.exported() == {volume_id: IQN}
    shown = client.simulate_get(f"/v3/proj-a/volumes/{volume_id}", headers=A).json["volume"]
    assert shown["status"] == "in-use" and shown["attachments"][0]["initiator"] == IQN
    assert action(client, volume_id, {"os-detach": {}}).status_code == 202
    assert status_of(client, volume_id) == "available"
    assert manager.target.exported() == {}
    again = attach(client, volume_id).json["connection_info"]["data"]
    assert again["auth_password"] != data["auth_password"]  # fresh credentials per attach


@pytest.mark.parametrize("body", [
    {"os-detach": {}},  # not attached
    {"os-terminate_connection": {}},
])
def test_illegal_transitions_from_available_are_409(client, body):
    volume_id = create(client).json["volume"]["id"]
    resp = action(client, volume_id, body)
    assert resp.status_code == 409 and "available" in resp.json["error"]["message"]


def test_in_use_volume_cannot_be_deleted_extended_or_attached_twice(client, manager):
    volume_id = create(client).json["volume"]["id"]
    attach(client, volume_id)
    assert client.simulate_delete(f"/v3/proj-a/volumes/{volume_id}", headers=A).status_code == 409
    assert action(client, volume_id, {"os-extend": {"new_size": 2}}).status_code == 409
    assert attach(client, volume_id, "iqn.2026-11.org.test:other").status_code == 409
    assert manager.target.exported() == {volume_id: IQN}
    assert status_of(client, volume_id) == "in-use"


def test_extend_and_update(client, manager):
    volume_id = create(client).json["volume"]["id"]
    assert action(client, volume_id, {"os-extend": {"new_size": 3}}).status_code == 202
    assert manager.pool.size(volume_id) == 3 << 30
    assert action(client, volume_id, {"os-extend": {"new_size": 3}}).status_code == 400
    resp = client.simulate_put(f"/v3/proj-a/volumes/{volume_id}", headers=A,
                               json={"volume": {"name": "renamed", "metadata": {"k": "v"}}})
    assert resp.json["volume"]["name"] == "renamed" and resp.json["volume"]["size"] == 3


def test_clone_from_source_volume(client, manager):
    source = create(client, 2).json["volume"]["id"]
    resp = create(client, 2, source_volid=source)
    assert resp.status_code == 202 and resp.json["volume"]["source_volid"] == source
    assert manager.pool.size(resp.json["volume"]["id"]) == 2 << 30
    assert create(client, 1, source_volid=source).status_code == 400  # smaller than source


def no_trace_left(client, manager):
    assert manager.pool.volumes() == set()
    assert manager.target.exported() == {}
    assert client.simulate_get("/v3/proj-a/volumes", headers=A).json["volumes"] == []


@pytest.mark.parametrize("volume, status", [
    ({"size": 0}, 400),
    ({"size": -1}, 400),
    ({"size": "big"}, 400),
    ({"size": 1.5}, 400),
    ({}, 400),
    ({"size": 1, "name": "x" * 256}, 400),
    ({"size": 1, "metadata": {"k": 1}}, 400),
    ({"size": 1, "metadata": "k=v"}, 400),
    ({"size": 101}, 400),  # beyond the 100 GiB in-memory pool
    ({"size": 1, "source_volid": "nope"}, 400),  # not an id at all: Cinder's schema 400
    ({"size": 1, "snapshot_id": "../x"}, 400),
    ({"size": 1, "source_volid": UNKNOWN}, 404),
    ({"size": 1, "snapshot_id": UNKNOWN}, 404),
    # Beyond the database's integer range (issue 13: these were 500s).
    ({"size": 2**63}, 400),
    ({"size": 2**31}, 400),
    ({"size": "9" * 30}, 400),
    ({"size": 1, "name": "a\x00b"}, 400),
    ({"size": 1, "description": "\x00"}, 400),
    ({"size": 1, "metadata": {"k": "v\x00"}}, 400),
])
def test_bad_create_is_4xx_and_leaves_nothing(client, manager, volume, status):
    resp = client.simulate_post("/v3/proj-a/volumes", headers=A, json={"volume": volume})
    assert resp.status_code == status, resp.text
    assert resp.json["error"]["message"]
    no_trace_left(client, manager)


@pytest.mark.parametrize("body", [None, b"not json", {"size": 1}, {"volume": []}])
def test_malformed_bodies_are_400(client, body):
    kwargs = {"body": body} if isinstance(body, bytes) else {"json": body}
    resp = client.simulate_post("/v3/proj-a/volumes", headers=A, **kwargs)
    assert resp.status_code == 400


@pytest.mark.parametrize("body", [
    {"os-extend": {"new_size": 0}},
    {"os-extend": 5},
    {"os-initialize_connection": {"connector": {"initiator": "not an iqn"}}},
    {"os-initialize_connection": {"connector": {"initiator": "iqn.2026-11.org.x:" + "y" * 220}}},
    {"os-attach": {}},
    {"os-frobnicate": {}},
    {"os-extend": {"new_size": 2}, "os-detach": {}},
    # Issue 13: a new_size beyond the database's range was a 500; an initiator that is not
    # an iSCSI name (RFC 3720/3722: letters, digits, '-', '.', ':') was accepted.
    {"os-extend": {"new_size": 2**64}},
    {"os-extend": {"new_size": 2**31}},
    {"os-initialize_connection": {"connector": {"initiator": "iqn.2026-11.org.x:a;reboot"}}},
    {"os-initialize_connection": {"connector": {"initiator": "iqn.2026-11.org.x:a b"}}},
    {"os-initialize_connection": {"connector": {"initiator": "iqn.2026-13.org.x:a"}}},
    {"os-initialize_connection": {"connector": {"initiator": "eui.0123"}}},
    {"os-initialize_connection": {"connector": {"initiator": "naa.xyz0123456789abc"}}},
    {"os-attach": {"connector": {"initiator": IQN}, "instance_uuid": "../../x"}},
    {"os-detach": 7},
    {"os-local_attach": "now"},
])
def test_bad_actions_are_400_and_change_nothing(client, manager, body):
    volume_id = create(client).json["volume"]["id"]
    assert action(client, volume_id, body).status_code == 400
    assert status_of(client, volume_id) == "available"
    assert manager.target.exported() == {} and manager.pool.size(volume_id) == 1 << 30


def test_unknown_volume_is_404(client):
    for resp in (client.simulate_get("/v3/proj-a/volumes/nope", headers=A),
                 client.simulate_delete("/v3/proj-a/volumes/nope", headers=A),
                 action(client, "nope", {"os-extend": {"new_size": 2}})):
        assert resp.status_code == 404


def test_other_projects_volume_is_invisible(client, manager):
    volume_id = create(client).json["volume"]["id"]
    # B's token on A's URL: refused by the auth middleware.
    assert client.simulate_get(f"/v3/proj-a/volumes/{volume_id}", headers=B).status_code == 403
    # B's token on B's URL naming A's volume: not found, and no change to A's volume.
    assert client.simulate_get(f"/v3/proj-b/volumes/{volume_id}", headers=B).status_code == 404
    assert client.simulate_delete(f"/v3/proj-b/volumes/{volume_id}",
                                  headers=B).status_code == 404
    assert attach(client, volume_id, headers=B, project="proj-b").status_code == 404
    assert client.simulate_get("/v3/proj-b/volumes", headers=B).json["volumes"] == []
    assert status_of(client, volume_id) == "available" and manager.target.exported() == {}
    # An admin may look into any project.
    assert client.simulate_get(f"/v3/proj-a/volumes/{volume_id}", headers=ADMIN).status_code == 200


def test_auth_is_required_and_readers_cannot_write(client):
    assert client.simulate_get("/v3/proj-a/volumes").status_code == 401
    resp = create(client, headers={"X-Auth-Token": "tok-reader"})
    assert resp.status_code == 403
    assert client.simulate_get("/v3/proj-a/volumes",
                               headers={"X-Auth-Token": "tok-reader"}).status_code == 200


def test_quotas_give_413_and_leave_nothing(client, manager):
    assert client.simulate_put("/v3/proj-a/os-quota-sets/proj-a", headers=A,
                               json={"quota_set": {"volumes": 2}}).status_code == 403
    resp = client.simulate_put("/v3/proj-admin/os-quota-sets/proj-a", headers=ADMIN,
                               json={"quota_set": {"volumes": 2, "gigabytes": 5}})
    assert resp.json["quota_set"] == {"id": "proj-a", "volumes": 2, "gigabytes": 5,
                                      "snapshots": 10}
    first = create(client, 3).json["volume"]["id"]
    assert create(client, 3).status_code == 413  # 6 GiB > 5
    create(client, 1)
    resp = create(client, 1)
    assert resp.status_code == 413 and "VolumeLimitExceeded" in resp.json["error"]["message"]
    assert action(client, first, {"os-extend": {"new_size": 5}}).status_code == 413
    assert status_of(client, first) == "available" and manager.pool.size(first) == 3 << 30
    usage = client.simulate_get("/v3/proj-a/os-quota-sets/proj-a", headers=A,
                                params={"usage": "true"}).json["quota_set"]
    assert usage["volumes"] == {"limit": 2, "in_use": 2, "reserved": 0}
    assert usage["gigabytes"]["in_use"] == 4
    assert len(manager.pool.volumes()) == 2
    assert client.simulate_get("/v3/proj-b/os-quota-sets/proj-a", headers=B).status_code == 403


@pytest.mark.parametrize("initiator", [
    "iqn.1993-08.org.debian:01:8d8f4b2a9e1", "iqn.2026-11.org.test:host-1.a:b",
    "eui.02004567A425678D", "naa.52004567BA64678D", "naa.60014054a5b1c6b2d8e4f6a7b9c0d1e2",
])
def test_iscsi_names_of_every_kind_attach(client, initiator):
    volume_id = create(client).json["volume"]["id"]
    assert attach(client, volume_id, initiator).status_code == 200


@pytest.mark.parametrize("quota", [2**70, 2**31, -2, "lots", 1.5, None])
def test_quotas_beyond_the_database_range_are_400(client, quota):
    resp = client.simulate_put("/v3/proj-admin/os-quota-sets/proj-a", headers=ADMIN,
                               json={"quota_set": {"gigabytes": quota}})
    assert resp.status_code == 400, resp.text
    shown = client.simulate_get("/v3/proj-a/os-quota-sets/proj-a", headers=A).json
    assert shown["quota_set"]["gigabytes"] == 1000


def test_a_size_no_pool_holds_is_a_clear_4xx(client, manager):
    """Within the database's range but beyond quota (413) or, unlimited, the pool (400)."""
    resp = create(client, 2**31 - 1)
    assert resp.status_code == 413 and "quota" in resp.json["error"]["message"].lower()
    client.simulate_put("/v3/proj-admin/os-quota-sets/proj-a", headers=ADMIN,
                        json={"quota_set": {"gigabytes": -1}})
    resp = create(client, 2**31 - 1)
    assert resp.status_code == 400 and "pool" in resp.json["error"]["message"]
    no_trace_left(client, manager)


def test_local_attach_is_admin_only_by_default(client, manager):
    """Issue 13: any project member could make loop devices on the storage host."""
    volume_id = create(client).json["volume"]["id"]
    for body in ({"os-local_attach": {}}, {"os-local_detach": {}}):
        resp = action(client, volume_id, body)
        assert resp.status_code == 403 and "admin" in resp.json["error"]["message"]
    snapshot_id = client.simulate_post("/v3/proj-a/snapshots", headers=A, json={
        "snapshot": {"volume_id": volume_id}}).json["snapshot"]["id"]
    resp = client.simulate_post(f"/v3/proj-a/snapshots/{snapshot_id}/action", headers=A,
                                json={"os-local_attach": {}})
    assert resp.status_code == 403
    assert status_of(client, volume_id) == "available"
    with manager.sessions() as s:
        assert s.query(LocalAttachment).count() == 0


def test_local_attach_role_is_configurable(tmp_path):
    from soko.block.api import make_app
    from soko.block.service import BlockConfig
    from soko.common.config import ConfigError
    from tests.block.conftest import block_config, memory_manager
    from tests.block.fakes import FixedTokens

    with pytest.raises(ConfigError, match="local_attach_role"):
        BlockConfig(local_attach_role="root").validate()
    manager = memory_manager(tmp_path)
    app = make_app(block_config(tmp_path, BlockConfig(local_attach_role="member")),
                   validator=FixedTokens(), manager=manager)
    client = falcon.testing.TestClient(app)
    volume_id = create(client).json["volume"]["id"]
    resp = action(client, volume_id, {"os-local_detach": {}})  # past the policy: not attached
    assert resp.status_code != 403
    resp = action(client, volume_id, {"os-local_detach": {}}, headers=READER)
    assert resp.status_code == 403


def test_delete_removes_volume(client, manager):
    volume_id = create(client).json["volume"]["id"]
    assert client.simulate_delete(f"/v3/proj-a/volumes/{volume_id}", headers=A).status_code == 202
    no_trace_left(client, manager)
    assert client.simulate_get(f"/v3/proj-a/volumes/{volume_id}", headers=A).status_code == 404


def test_info_publishes_limits(client):
    assert client.simulate_get("/info").json["block"]["name_max"] == 255


def test_reconcile_removes_only_its_own_stale_exports(manager):
    """Two clouds may share one tgtd: a target for a volume this cloud doesn't know is
    removed only when it serves a file of this cloud's pool."""
    from soko.block.targets.base import ExportSpec

    ours_id = "0" * 8 + "-dead-4bad-8bad-" + "0" * 12
    ours = ExportSpec(ours_id, manager.pool.path(ours_id), IQN, "u", "p")
    theirs = ExportSpec("1" * 8 + "-dead-4bad-8bad-" + "1" * 12, "/elsewhere/pool/vol", IQN, "u", "p")
    manager.target.export(ours)
    manager.target.export(theirs)
    manager.reconcile_exports()
    assert manager.target.exported() == {theirs.volume_id: IQN}
