"""The per-device expiry index: written with every expiring object, read only when due."""

from __future__ import annotations

import time

from soko.object.node import expiring
from soko.object.node.diskfile import DiskFile
from soko.object.shared.timestamps import Timestamp


def put(device, name: str, delete_at: int | None) -> DiskFile:
    df = DiskFile(device, "7", "AUTH_a", "c", name)
    metadata = {"name": df.name, "X-Timestamp": "1", "Content-Length": "0", "ETag": "e"}
    if delete_at is not None:
        metadata["X-Delete-At"] = str(delete_at)
    with df.writer() as writer:
        writer.commit(Timestamp.parse(1), "data", metadata)
    return df


def test_only_objects_with_a_delete_at_are_indexed_and_only_due_ones_listed(tmp_path):
    now = int(time.time())
    soon, later = put(tmp_path, "soon", now - 5), put(tmp_path, "later", now + 7200)
    put(tmp_path, "forever", None)
    due = list(expiring.due(tmp_path, now))
    assert [(e.delete_at, e.partition, e.digest) for e in due] == [
        (now - 5, "7", soon.hash_dir.name)]
    assert [e.digest for e in expiring.due(tmp_path, now + 7200)] == [
        soon.hash_dir.name, later.hash_dir.name]
    due[0].remove()
    assert [e.digest for e in expiring.due(tmp_path, now + 7200)] == [later.hash_dir.name]


def test_a_past_hour_directory_goes_once_empty(tmp_path):
    past = int(time.time()) - 3 * expiring.HOUR
    put(tmp_path, "old", past)
    (entry,) = expiring.due(tmp_path, time.time())
    entry.remove()
    assert list(expiring.due(tmp_path, time.time())) == []
    assert list((tmp_path / "expiring").iterdir()) == []
