"""The calls a replicator verifies with (``sync_memory``): ``object-hashes``, many
partitions' hashes in one call, and ``<kind>-sync``, many DBs' sync in one call."""

from __future__ import annotations

import msgpack
import pytest

from soko.object.node.diskfile import name_hash
from soko.object.node.suffixes import get_hashes
from soko.object.shared.timestamps import Timestamp
from tests.object.node_app import node_app

MSGPACK = {"Content-Type": "application/msgpack"}


def ask(node, body):
    return node.simulate_post("/replicate/object-hashes/d0", body=msgpack.packb(body),
                              headers=MSGPACK)


def test_hashes_of_many_partitions_in_one_answer(tmp_path):
    node = node_app(tmp_path)
    for part in ("7", "8"):
        r = node.simulate_put(f"/object/d0/{part}/AUTH_a/c/o{part}", body=b"x",
                              headers={"X-Timestamp": Timestamp.parse(1_700_000_000).normal})
        assert r.status_code == 201
    r = ask(node, {"partitions": [7, 8, 9]})
    assert r.status_code == 200
    answer = msgpack.unpackb(r.content)
    objects = node.device / "objects"
    assert answer == {"7": get_hashes(objects / "7"), "8": get_hashes(objects / "8"), "9": {}}
    assert answer["7"] and answer["7"] != answer["8"]
    assert not (objects / "9").exists()  # asking about a partition makes nothing


@pytest.mark.parametrize("body", [[7], {"partitions": "7"}, {"partitions": [-1]},
                                  {"partitions": ["7"]}, {"partitions": list(range(10_001))}],
                         ids=["list", "string", "negative", "string-item", "too-many"])
def test_bad_bodies_are_400(tmp_path, body):
    r = ask(node_app(tmp_path), body)
    assert r.status_code == 400


HERE = name_hash("AUTH_a", "c")  # the one container DB the node below holds
TS = Timestamp.parse(1_700_000_000).normal


def node_with_a_container(tmp_path):
    node = node_app(tmp_path)
    assert node.simulate_put("/container/d0/3/AUTH_a/c", headers={"X-Timestamp": TS}
                             ).status_code == 201
    return node


def sync_many(node, body):
    return node.simulate_post("/replicate/container-sync/d0", headers=MSGPACK,
                              body=msgpack.packb(body))


def test_db_sync_of_many_says_which_dbs_are_missing(tmp_path):
    info = {"uid": "peer-uid", "put_timestamp": TS, "delete_timestamp": "0", "metadata": {},
            "max_seq": 0}
    absent = name_hash("AUTH_a", "nope")
    r = sync_many(node_with_a_container(tmp_path), {"dbs": [[3, HERE, info], [3, absent, info]]})
    assert r.status_code == 200
    assert msgpack.unpackb(r.content) == {HERE: -1, absent: None}


@pytest.mark.parametrize("body", [{"dbs": "x"}, {"dbs": [[3, "not-a-hash", {}]]},
                                  {"dbs": [[3, HERE]]}, {"dbs": [["x", HERE, {}]]},
                                  {"dbs": [[3, HERE, {"uid": "u"}]]}],
                         ids=["string", "bad-hash", "short", "bad-partition", "bad-info"])
def test_bad_db_sync_bodies_are_400(tmp_path, body):
    assert sync_many(node_with_a_container(tmp_path), body).status_code == 400
