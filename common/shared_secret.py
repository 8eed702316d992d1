"""A secret two services of one cloud share (the metadata proxy and the metadata API sign
and check the instance identity with it), from config or made once in the data dir."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

METADATA_SECRET_FILE = "metadata-secret"  # the metadata proxy's and API's, in the data dir


def shared_secret(data_dir: Path, name: str, configured: str = "") -> bytes:
    """``configured`` when set; else the file ``<data_dir>/<name>``, which the first
    process to need it creates (mode 0600). Two processes racing to create it agree: the
    file is linked into place only if it is not there yet, and both read what is there."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / name
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_hex(32).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)
    tmp.unlink()
    return path.read_bytes()
