"""The one way soko writes a file that must survive a crash.

Temp file in the same directory, write, fsync the file, ``os.replace`` over the target,
fsync the directory so the rename itself is durable. A reader sees the old file or the new
one, never a torn mix; a crash leaves at worst a stray ``.tmp-*`` file that the next write
or a cleanup pass removes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def fsync_dir(path: str | os.PathLike) -> None:
    """Makes a rename or a create inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# How often a write makes a directory again that another process removed under it.
RACE_RETRIES = 10


def makedirs_durable(path: str | os.PathLike) -> None:
    """Creates ``path`` and its missing parents, fsyncing each parent that gained an entry."""
    sync_parents(make_missing_dirs(Path(path)))


def make_missing_dirs(path: Path) -> list[Path]:
    """Creates ``path`` and its missing parents (not yet durable): the ones it made.

    A parent that another process removes meanwhile (a cleanup of empty dirs racing this
    write) is created again: a vanished directory is a normal event, not an error.
    """
    made: list[Path] = []
    for _ in range(RACE_RETRIES - 1):
        with contextlib.suppress(FileNotFoundError):
            return make_chain(path, made)
    return make_chain(path, made)


def make_chain(path: Path, made: list[Path]) -> list[Path]:
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir()
            made.append(directory)
    return made


def sync_parents(made: list[Path]) -> None:
    """Makes the creation of each of ``made`` durable (a dir removed since needs nothing)."""
    for directory in made:
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(directory.parent)


def in_directory(directory: str | os.PathLike, action: Callable[[], T]) -> T:
    """``action()``, which creates an entry in ``directory``; if the directory is missing
    (not made yet, or removed meanwhile by a cleanup) it is made and ``action`` runs again.

    The new dirs are fsynced only once ``action`` put an entry in them: an empty dir is what
    a cleanup removes, so it must not stay empty for the length of an fsync.
    """
    made: list[Path] = []
    try:
        for _ in range(RACE_RETRIES - 1):
            try:
                return action()
            except FileNotFoundError:
                made += make_missing_dirs(Path(directory))
        return action()
    finally:
        sync_parents(made)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Replaces ``path`` with ``data`` atomically and durably."""
    path = Path(path)
    fd, tmp = in_directory(path.parent,
                           lambda: tempfile.mkstemp(dir=path.parent, prefix=".tmp-"))
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
