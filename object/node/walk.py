"""Walking a device's trees while other processes change them.

Directories vanish under a walker as a matter of course: the replicator reclaims old
tombstones and removes empty hash and suffix dirs, reverts a handoff partition, the auditor
quarantines a hash dir. A walker treats a directory that is gone as empty, never as an
error that ends its pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def entries(path: str | os.PathLike) -> list[os.DirEntry]:
    """The entries of a directory; none if it is gone (or is not a directory)."""
    try:
        with os.scandir(path) as found:
            return list(found)
    except (FileNotFoundError, NotADirectoryError):
        return []


def hash_dirs(root: Path) -> Iterator[tuple[str, Path]]:
    """``(partition, hash dir)`` of every object (or DB) under ``<device>/<kind>s``."""
    for part in entries(root):
        if part.name.isdigit():
            for suffix in entries(part.path):
                for entry in entries(suffix.path):
                    yield part.name, Path(entry.path)
