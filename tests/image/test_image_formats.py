"""What ``qemu-img info`` says a file is decides what the image service accepts."""

from __future__ import annotations

import subprocess

import pytest

from soko.image.formats import PROBE_BYTES, FormatError, probe_file, probe_head
from tests.support import require_tools

pytestmark = pytest.mark.privileged


@pytest.fixture(autouse=True)
def _qemu_img():
    require_tools("qemu-img")


def qemu_img(*argv: str) -> None:
    subprocess.run(["qemu-img", *argv], check=True, capture_output=True)


def test_formats_are_what_qemu_says(tmp_path):
    raw, qcow2 = tmp_path / "a.raw", tmp_path / "b.qcow2"
    raw.write_bytes(b"\0" * 4096)
    qemu_img("create", "-q", "-f", "qcow2", str(qcow2), "2G")
    assert probe_file(str(raw), "raw").virtual_size == 4096
    assert probe_file(str(qcow2), "qcow2").virtual_size == 2 << 30
    # the first MiB of an upload is enough to know a qcow2 image and its virtual size
    assert probe_head(qcow2.read_bytes()[:PROBE_BYTES], "qcow2").virtual_size == 2 << 30
    with pytest.raises(FormatError, match="qcow2 image, not raw"):
        probe_file(str(qcow2), "raw")
    with pytest.raises(FormatError, match="raw image, not qcow2"):
        probe_file(str(raw), "qcow2")
    with pytest.raises(FormatError, match="not supported"):
        probe_file(str(raw), "vmdk")


def test_other_formats_and_backing_files_are_refused(tmp_path):
    base, child, vmdk = tmp_path / "base.qcow2", tmp_path / "child.qcow2", tmp_path / "d.vmdk"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "64M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(child))
    with pytest.raises(FormatError, match="backing or data file"):
        probe_file(str(child), "qcow2")
    qemu_img("create", "-q", "-f", "vmdk", str(vmdk), "64M")
    with pytest.raises(FormatError, match="vmdk image; convert it first"):
        probe_file(str(vmdk), "raw")
