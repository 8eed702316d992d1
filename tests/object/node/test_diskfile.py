"""Disk layout, durability steps and newest-timestamp-wins of object files."""

from __future__ import annotations

import hashlib
import os

import pytest

from soko.common.errors import InsufficientStorage
from soko.object.node import writeback
from soko.object.node.diskfile import (
    XATTR_NAME,
    Devices,
    DiskFile,
    DiskFileError,
    read_metadata,
    read_range,
)
from soko.object.shared.timestamps import Timestamp


def put(df: DiskFile, ts: float, body: bytes, **extra) -> None:
    with df.writer() as w:
        w.write(body)
        meta = {"name": df.name, "X-Timestamp": Timestamp.parse(ts).normal,
                "Content-Length": str(len(body)), "ETag": w.etag, **extra}
        w.commit(Timestamp.parse(ts), "data", meta)


@pytest.fixture
def device(tmp_path):
    (tmp_path / "d0").mkdir()
    return Devices(tmp_path, mount_check=False).path("d0")


def test_layout_and_metadata(device):
    df = DiskFile(device, "17", "AUTH_a", "c", "o")
    put(df, 1700000000.5, b"hello")
    parts = df.hash_dir.relative_to(device).parts
    assert parts[:2] == ("objects", "17") and parts[2] == parts[3][-3:]
    state = df.read_state()
    assert state.exists and state.timestamp == Timestamp.parse("1700000000.50000")
    assert state.data_path.name == "1700000000.50000.data"
    assert state.metadata["ETag"] == hashlib.md5(b"hello").hexdigest()
    assert b"".join(read_range(state.data_path, 1, 4)) == b"ell"
    assert not list((device / "tmp").iterdir())


def test_newest_wins_and_cleanup(device):
    df = DiskFile(device, "1", "a", "c", "o")
    put(df, 2, b"new")
    put(df, 1, b"old")  # arrives late: written, then cleaned up as obsolete
    assert df.read_state().metadata["Content-Length"] == "3"
    assert [name for _, _, name in df.files()] == ["0000000002.00000.data"]
    df.write_marker(Timestamp.parse(3), "ts", {"X-Timestamp": "0000000003.00000"})
    assert not df.read_state().exists
    assert [k for _, k, _ in df.files()] == ["ts"]


def test_post_replaces_user_metadata(device):
    df = DiskFile(device, "1", "a", "c", "o")
    put(df, 1, b"x", **{"X-Object-Meta-Color": "red", "Content-Type": "text/plain"})
    df.write_marker(Timestamp.parse(2), "meta",
                    {"X-Timestamp": "0000000002.00000", "X-Object-Meta-Size": "big"})
    meta = df.read_state().metadata
    assert meta["X-Object-Meta-Size"] == "big" and "X-Object-Meta-Color" not in meta
    assert meta["Content-Type"] == "text/plain"


def test_aborted_write_leaves_nothing(device):
    df = DiskFile(device, "1", "a", "c", "o")
    with df.writer() as w:
        w.write(b"partial")
    assert not df.hash_dir.exists()
    assert not list((device / "tmp").iterdir())


def test_corrupt_metadata_is_quarantined(device):
    df = DiskFile(device, "1", "a", "c", "o")
    put(df, 1, b"abc")
    path = df.read_state().data_path
    os.setxattr(path, XATTR_NAME, b"SKM1garbagegarbage")
    assert not df.read_state().exists
    assert list((device / "quarantined" / "objects").iterdir())


def test_bad_body_is_cut_short_and_quarantined(device):
    df = DiskFile(device, "1", "a", "c", "o")
    put(df, 1, b"abc")
    state = df.read_state()
    state.data_path.write_bytes(b"abd")  # same size, other bytes (bit rot)
    os.setxattr(state.data_path, XATTR_NAME, os.getxattr(
        df.hash_dir / state.data_path.name, XATTR_NAME))
    received = []
    with pytest.raises(DiskFileError, match="MD5"):
        for chunk in read_range(state.data_path, 0, 3, state.metadata["ETag"], df.quarantine):
            received.append(chunk)
    assert received == [] and not df.read_state().exists  # the last chunk is held back


def test_missing_device_is_507(tmp_path):
    devices = Devices(tmp_path, mount_check=False)
    with pytest.raises(InsufficientStorage):
        devices.path("sdb1")
    (tmp_path / "sdb1").mkdir()
    with pytest.raises(InsufficientStorage):
        Devices(tmp_path, mount_check=True).path("sdb1")  # a dir, but not a mount


@pytest.mark.privileged
def test_swift_sized_metadata_fits_on_xfs(xfs_dir):
    (xfs_dir / "d0").mkdir()
    df = DiskFile(Devices(xfs_dir, False).path("d0"), "1", "a", "c", "o")
    big = {f"X-Object-Meta-K{i:02d}": "v" * 200 for i in range(20)}  # 4 KiB of user metadata
    put(df, 1, b"x", **big)
    assert read_metadata(df.read_state().data_path)["X-Object-Meta-K19"] == "v" * 200


def test_a_body_of_many_writeback_windows_is_stored_whole(device, monkeypatch):
    """The writer hands each window to the disk as it goes (``writeback.py``): with small
    windows, a body of many of them and a ragged end reads back whole, MD5 and all."""
    monkeypatch.setattr(writeback, "WINDOW", 64 * 1024)
    body = os.urandom(10 * 64 * 1024 + 12345)
    df = DiskFile(device, "3", "a", "c", "big")
    with df.writer(len(body)) as w:
        for offset in range(0, len(body), 50_000):
            w.write(body[offset:offset + 50_000])
        assert w.writeback.waited > 0  # windows were written out before the commit's fsync
        meta = {"name": df.name, "X-Timestamp": Timestamp.parse(1).normal,
                "Content-Length": str(len(body)), "ETag": w.etag}
        w.commit(Timestamp.parse(1), "data", meta)
    state = df.read_state()
    assert b"".join(read_range(state.data_path, 0, len(body), w.etag)) == body
