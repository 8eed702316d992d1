"""The one way soko writes a file that must survive a crash.

Temp file in the same directory, write, fsync the file, ``os.replace`` over the target,
fsync the directory so the rename itself is durable. A reader sees the old file or the new
one, never a torn mix; a crash leaves at worst a stray ``.tmp-*`` file that the next write
or a cleanup pass removes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a rename or a create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: str | os.PathLike) -> None:
    """Creates ``path`` and its missing parents, fsyncing each parent that gained an entry."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        fsync_dir(directory.parent)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Replaces ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    makedirs_durable(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)
