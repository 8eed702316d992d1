"""The test guest image builder: its pure parts in-process, the built disk's layout for real."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from soko.image import guest_builder as builder
from soko.image.guest_files import verify_writer_records


def record(n: int, uptime: str) -> str:
    body = f"{n} {uptime}"
    return f"{body} {hashlib.sha256(body.encode()).hexdigest()[:16]}\n"


def test_writer_records_allow_only_a_torn_last_line():
    good = record(1, "3.10") + record(2, "3.20") + record(3, "3.31")
    assert verify_writer_records(good) == 3
    assert verify_writer_records(good + "4 3.4") == 3
    assert verify_writer_records("") == 0
    with pytest.raises(ValueError, match="record 2"):
        verify_writer_records(record(1, "1.0") + record(2, "1.1").replace("1.1", "1.2", 1) + record(3, "1.3"))
    with pytest.raises(ValueError, match="record 2"):
        verify_writer_records(record(1, "1.0") + record(3, "1.3") + record(4, "1.4"))


def test_partition_table_is_one_bootable_linux_partition_from_1_mib():
    table = builder.mbr_partition_table(64 << 20)
    assert len(table) == 66 and table[-2:] == b"\x55\xaa"
    status, ptype = table[0], table[4]
    first, count = struct.unpack_from("<II", table, 8)
    assert (status, ptype, first, count) == (0x80, 0x83, 2048, (63 << 20) // 512)
    assert table[16:64] == bytes(48)


def test_cpio_newc_entries_are_aligned_and_terminated():
    archive = builder.cpio_newc([("init", 0o100755, b"#!/bin/sh\n", 0), ("dev/console", 0o020600, b"", 0x0501)])
    assert archive.startswith(b"070701") and len(archive) % 4 == 0
    assert b"init\0" in archive and b"#!/bin/sh\n" in archive and archive.rstrip(b"\0").endswith(b"TRAILER!!!")
    console = archive.index(b"dev/console") - 110  # a newc header is 110 bytes
    assert int(archive[console + 14 : console + 22], 16) == 0o020600  # a char device, 0600
    assert int(archive[console + 78 : console + 86], 16) == 5  # rdev major
    assert int(archive[console + 86 : console + 94], 16) == 1  # rdev minor


@pytest.mark.privileged
@pytest.mark.slow
def test_built_image_boots_from_mbr_into_an_ext4_root(guest_image: Path):
    data = guest_image.read_bytes()
    assert len(data) == 64 << 20
    assert data[510:512] == b"\x55\xaa" and data[446] == 0x80
    superblock = data[(1 << 20) + 1024 :][:1024]
    assert struct.unpack_from("<H", superblock, 56)[0] == 0xEF53
    assert superblock[120:136].rstrip(b"\0") == builder.ROOT_LABEL.encode()
    # 64bit would make extlinux 6.04 unable to read the filesystem
    assert not struct.unpack_from("<I", superblock, 0x60)[0] & 0x80
    assert guest_image.stat().st_blocks * 512 < 48 << 20  # sparse: holes stay holes


def test_command_refuses_a_disk_too_small_for_the_kernel(tmp_path: Path):
    result = CliRunner().invoke(builder.build_test_guest, [str(tmp_path / "g.img"), "--size-mib", "16"])
    assert result.exit_code == 1
    assert "at least 48 MiB" in result.output and not (tmp_path / "g.img").exists()
