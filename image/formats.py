"""What a disk image really is, asked of ``qemu-img info`` (never guessed from a name).

A raw image is whatever QEMU's probe does not recognise; anything it does recognise
(qcow2, vmdk, vhdx...) is that format. Uploading a qcow2 file as ``raw`` would hand its
header to a guest as disk bytes, and the reverse would let a guest-made file be read as
a format with pointers into the host (the classic backing-file attack), so a mismatch is
refused, and so is a qcow2 image that names a backing or external data file.

QEMU reads only the header and metadata tables to answer, so the first MiB of an upload
is enough: the service probes before it stores a byte. It runs under ``prlimit`` (30 s of
CPU, 1 GiB of address space), as Nova and Cinder run it on untrusted images: a crafted
header must not make ``qemu-img`` eat the host (CVE-2015-5162).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile

DISK_FORMATS = ("raw", "qcow2")
PROBE_BYTES = 1 << 20
LIMITS = ["prlimit", "--cpu=30", f"--as={1 << 30}"]


class FormatError(ValueError):
    """The data is not the disk format it claims to be; the message says what it is."""


@dataclasses.dataclass(frozen=True)
class Probe:
    format: str
    virtual_size: int


def qemu_img_info(path: str) -> dict:
    try:
        proc = subprocess.run([*LIMITS, "qemu-img", "info", "--output", "json", path],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise FormatError("qemu-img or prlimit is not installed (run "
                          "tools/install-system-deps.sh)") from None
    if proc.returncode != 0:
        # The path is ours (a temp file on the server for an upload): never the client's.
        reason = proc.stderr.strip().replace(f"'{path}'", "the image").replace(path, "the image")
        raise FormatError(f"qemu-img cannot read it: {reason}")
    return json.loads(proc.stdout)


def probe_file(path: str, disk_format: str) -> Probe:
    """Checks that ``path`` holds a ``disk_format`` image; raises ``FormatError`` if not."""
    if disk_format not in DISK_FORMATS:
        raise FormatError(f"disk format {disk_format!r} is not supported "
                          f"(use {' or '.join(DISK_FORMATS)})")
    info = qemu_img_info(path)
    found = info.get("format")
    if found != disk_format:
        raise FormatError(f"the data is a {found} image, not {disk_format}: "
                          f"upload it with --disk-format {found}"
                          if found in DISK_FORMATS else
                          f"the data is a {found} image; convert it first: "
                          f"qemu-img convert -O qcow2 FILE OUT.qcow2")
    data = (info.get("format-specific") or {}).get("data") or {}
    if info.get("backing-filename") or info.get("full-backing-filename") or \
            data.get("data-file"):
        raise FormatError("qcow2 images that refer to other files (backing or data file) "
                          "are refused; flatten it: qemu-img convert -O qcow2 FILE OUT.qcow2")
    return Probe(found, int(info["virtual-size"]))


def probe_head(head: bytes, disk_format: str) -> Probe:
    """Probes the first bytes of an upload (``PROBE_BYTES`` or all of a smaller image)."""
    with tempfile.NamedTemporaryFile(prefix="soko-probe-") as f:
        f.write(head)
        f.flush()
        return probe_file(f.name, disk_format)
