"""Initiator-side helpers for data-path tests: QEMU's libiscsi client and libiscsi tools,
logging in with the connection info the API returned."""

from __future__ import annotations

import subprocess


def image_opts(data: dict, initiator: str, *, with_chap: bool = True) -> list[str]:
    """qemu-io/qemu-img arguments for the LUN: ``--image-opts`` names the initiator (an
    ``iscsi://`` URL cannot), the CHAP password travels as a secret object."""
    opts = (f"driver=iscsi,transport=tcp,portal={data['target_portal']},"
            f"target={data['target_iqn']},lun={data['target_lun']},initiator-name={initiator}")
    if not with_chap:
        return ["--image-opts", opts]
    return ["--object", f"secret,id=chap,data={data['auth_password']}", "--image-opts",
            f"{opts},user={data['auth_username']},password-secret=chap"]


def qemu_io(data: dict, initiator: str, command: str, *, with_chap: bool = True,
            check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["qemu-io", *image_opts(data, initiator, with_chap=with_chap),
                           "-c", command], capture_output=True, text=True, timeout=60)
    failed = proc.returncode != 0 or "Pattern verification failed" in proc.stdout
    if check and failed:
        raise AssertionError(f"qemu-io {command!r} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def read_capacity(data: dict, initiator: str) -> int:
    """The LUN's size in bytes as the target reports it (SCSI READ CAPACITY(16))."""
    user, password = data["auth_username"], data["auth_password"]
    url = f"iscsi://{user}%{password}@{data['target_portal']}/{data['target_iqn']}/1"
    out = subprocess.run(["iscsi-readcapacity16", "-i", initiator, url], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return int(next(line for line in out.splitlines()
                    if line.startswith("Total size:")).split(":")[1])
