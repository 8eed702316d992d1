"""Listings against a reference model, stats, and newest-wins merges."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soko.object.node.containerdb import (
    AccountDB,
    ContainerDB,
    DeletedDB,
    NotFoundDB,
    db_path,
)
from soko.object.shared.timestamps import Timestamp

T = Timestamp.parse


@pytest.fixture
def container(tmp_path):
    db = ContainerDB(db_path(tmp_path, "container", "3", "a", "c"))
    db.initialize(T(1))
    return db


def reference(names, *, limit, marker="", end_marker="", prefix="", delimiter="", reverse=False):
    """Swift's listing semantics, written the slow obvious way."""
    names = sorted(names, reverse=reverse)
    out = []
    for name in names:
        if not name.startswith(prefix):
            continue
        if reverse:
            if (marker and name >= marker) or (end_marker and name <= end_marker):
                continue
        elif (marker and name <= marker) or (end_marker and name >= end_marker):
            continue
        cut = name.find(delimiter, len(prefix)) if delimiter else -1
        entry = name if cut < 0 else {"subdir": name[: cut + len(delimiter)]}
        if entry == {"subdir": marker}:
            continue  # the page before ended with this subdir (clients page on from it)
        if not out or out[-1] != entry:
            out.append(entry)
    return out[:limit]


alphabet = st.sampled_from("ab/-é")
names_st = st.sets(st.text(alphabet, min_size=1, max_size=5), max_size=25)
query_st = st.fixed_dictionaries({
    "limit": st.integers(1, 30),
    "marker": st.text(alphabet, max_size=3),
    "end_marker": st.text(alphabet, max_size=3),
    "prefix": st.text(alphabet, max_size=2),
    "delimiter": st.sampled_from(["", "/", "b"]),
    "reverse": st.booleans(),
})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=names_st, query=query_st)
def test_listing_matches_reference(tmp_path, names, query):
    db = ContainerDB(db_path(tmp_path, "container", "1", "a", f"c{abs(hash(frozenset(names)))}"))
    if not db.exists():
        db.initialize(T(1))
        for name in names:
            db.merge_object(name, T(2), 1, "t", "e", False)
    got = [r if isinstance(r, dict) else r[0] for r in db.list_objects(**query)]
    assert got == reference(names, **query)


def test_paging_on_from_a_subdir_skips_it(container):
    for name in ("site/a/b", "site/c", "zz"):
        container.merge_object(name, T(2), 1, "t", "e", False)
    page = container.list_objects(limit=10, delimiter="/", marker="site/")
    assert [r if isinstance(r, dict) else r[0] for r in page] == ["zz"]


def test_stats_follow_newest_rows(container):
    container.merge_object("o", T(2), 10, "text/plain", "e1", False)
    container.merge_object("o", T(3), 7, "text/plain", "e2", False)
    container.merge_object("o", T(1), 99, "text/plain", "e0", False)  # older: ignored
    container.merge_object("p", T(2), 5, "text/plain", "e3", False)
    info = container.stat()
    assert (info["object_count"], info["bytes_used"]) == (2, 12)
    container.merge_object("o", T(4), 0, "", "", True)
    info = container.stat()
    assert (info["object_count"], info["bytes_used"]) == (1, 5)
    assert [r[0] for r in container.list_objects(limit=10)] == ["p"]


def test_metadata_merge_and_delete_state(container):
    container.update_metadata({"X-Container-Meta-A": "1"}, T(5))
    container.update_metadata({"X-Container-Meta-A": "0"}, T(4))  # older: loses
    assert container.stat()["metadata"]["X-Container-Meta-A"][0] == "1"
    container.mark_deleted(T(6))
    assert container.is_deleted()
    with pytest.raises(DeletedDB):  # a deleted container's listing takes no object
        container.merge_object("o", T(6.5), 1, "t", "e", False)
    container.initialize(T(7))
    assert not container.is_deleted()
    container.merge_object("o", T(8), 1, "t", "e", False)
    assert container.stat()["object_count"] == 1


def test_account_totals(tmp_path):
    db = AccountDB(db_path(tmp_path, "account", "1", "a"))
    db.initialize(T(1))
    db.merge_container("c1", T(2), T(0), 3, 30, T(10))
    db.merge_container("c2", T(2), T(0), 1, 5, T(11))
    db.merge_container("c1", T(2), T(0), 4, 40, T(12))
    db.merge_container("c2", T(2), T(3), 0, 0, T(13))
    assert db.container_count() == 1
    info = db.stat()
    assert (info["object_count"], info["bytes_used"]) == (4, 40)
    assert db.list_containers(limit=10) == [("c1", 4, 40, T(2).normal)]


def test_a_db_replaced_under_an_open_connection_is_reopened(container, tmp_path):
    """Another process quarantines the DB (moves its dir away) and the replicator recreates
    it: this process's cached connection must follow the path, not the orphaned file."""
    container.merge_object("old", T(2), 1, "text/plain", "e", False)
    hash_dir = container.path.parent
    hash_dir.rename(tmp_path / "quarantined")
    with pytest.raises(NotFoundDB):
        container.stat()
    ContainerDB(container.path).initialize(T(3))
    container.merge_object("new", T(4), 1, "text/plain", "e", False)
    assert [r[0] for r in ContainerDB(container.path).list_objects(limit=10)] == ["new"]
    quarantined = ContainerDB(tmp_path / "quarantined" / container.path.name)
    assert [r[0] for r in quarantined.list_objects(limit=10)] == ["old"]


def test_reclaim_forgets_old_deleted_rows_but_numbers_on(container):
    container.merge_object("gone", T(2), 1, "", "", True)
    container.merge_object("kept", T(3), 5, "text/plain", "e", False)
    container.merge_object("recent", T(9), 0, "", "", True)
    container.merge_object("last", T(4), 0, "", "", True)  # the newest row (highest seq)
    top = container.replication_info()["max_seq"]
    assert container.reclaim(T(8)) == 1  # "gone"; "last" is old but holds the top seq
    names = [r[0] for r in container.rows_since(-1, 10)]
    assert names == ["kept", "recent", "last"]
    assert (container.stat()["object_count"], container.stat()["bytes_used"]) == (1, 5)
    container.merge_object("new", T(10), 1, "", "e", False)
    assert container.rows_since(top, 10)[0][0] == "new"  # a peer at the old top gets it


def test_account_reclaim_uses_the_delete_time(tmp_path):
    db = AccountDB(db_path(tmp_path, "account", "1", "a"))
    db.initialize(T(1))
    db.merge_container("old", T(2), T(3), 0, 0, T(10))
    db.merge_container("alive", T(2), T(0), 1, 1, T(11))
    assert db.reclaim(T(5)) == 1
    assert [r[0] for r in db.rows_since(-1, 10)] == ["alive"]


def test_account_replicas_agree_on_the_latest_report(tmp_path):
    """Two container replicas reported different counts to two account replicas; rows
    traded both ways settle on the later report instead of swapping forever."""
    a, b = (AccountDB(db_path(tmp_path / n, "account", "1", "acct")) for n in ("a", "b"))
    for db in (a, b):
        db.initialize(T(1))
    a.merge_container("c", T(2), T(0), 5, 50, T(20))  # the later report
    b.merge_container("c", T(2), T(0), 6, 60, T(10))
    for _ in range(2):  # what the DB replicator does, each way
        b.merge_rows(a.rows_since(-1, 10), "a", 99)
        a.merge_rows(b.rows_since(-1, 10), "b", 99)
    assert a.list_containers(limit=5) == b.list_containers(limit=5) == [("c", 5, 50, T(2).normal)]
    seq = a.replication_info()["max_seq"]
    a.merge_rows(b.rows_since(-1, 10), "b", 99)
    assert a.replication_info()["max_seq"] == seq  # settled: nothing changes any more
    b.merge_container("c", T(2), T(0), 7, 70, T(15))  # a report older than the one kept
    assert b.list_containers(limit=5)[0][1] == 5


def test_an_old_db_is_migrated_when_opened(tmp_path):
    import sqlite3

    from soko.object.node.containerdb import SCHEMA, STAT_SCHEMA

    path = db_path(tmp_path, "account", "1", "acct")
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as conn:  # a DB made before the migrations, as released
        conn.executescript(SCHEMA["account"] + STAT_SCHEMA)
        conn.execute("INSERT INTO stat VALUES (0, ?, ?, 0, 0, ?, 'uid')",
                     (T(1).normal, T(0).normal, b"\x80"))
        conn.execute("INSERT INTO entry VALUES ('c', ?, ?, 3, 30, 0, 1)",
                     (T(2).normal, T(0).normal))
    conn.close()
    db = AccountDB(path)
    assert db.list_containers(limit=5) == [("c", 3, 30, T(2).normal)]
    db.merge_container("c", T(2), T(0), 4, 40, T(5))  # any report beats the old row's
    assert db.list_containers(limit=5) == [("c", 4, 40, T(2).normal)]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
