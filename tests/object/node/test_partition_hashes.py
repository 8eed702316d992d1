"""``POST /replicate/object-hashes/<device>``: many partitions' hashes in one call, which
is how a replicator verifies the partitions it believes in sync (``sync_memory``)."""

from __future__ import annotations

import msgpack
import pytest

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
