"""Writeback of a large body while it streams in, so no write stalls on a big flush.

A body written with no flush until its final fsync leaves up to its whole size dirty in the
page cache; flushing it in one blocking ``fdatasync`` every 512 MiB (Swift's
``mb_per_sync``) stopped each node for 2 s per 512 MiB during a 1 GiB PUT (strace), while
the proxy, which sends to the replicas in turn, waited on it. Instead every
``WINDOW`` written is handed to the disk at once without waiting
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``) and the window before it is waited for: the
disk writes while the next window arrives, and at most two windows are dirty. Durability is
unchanged: this only starts writes early; the writer's ``fsync`` before its rename is
still what makes the object durable.
"""

from __future__ import annotations

import ctypes
import os

# Small enough that the fsync before a body's rename has little left to write (a 100 MiB SLO
# segment acks after at most two windows' flush), large enough to be a handful of syscalls.
WINDOW = 16 * 1024 * 1024

# <linux/fs.h>
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
WAIT_FOR_RANGE = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER

_libc = ctypes.CDLL(None, use_errno=True)
_sync_file_range = _libc.sync_file_range
_sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)


def sync_file_range(fd: int, offset: int, length: int, flags: int) -> None:
    if _sync_file_range(fd, offset, length, flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


class Writeback:
    """Told how far a file has been written; starts the writeback of each full window."""

    def __init__(self, fd: int):
        self.fd = fd
        self.started = 0  # writeback started for [0, started)
        self.waited = 0  # and done for [0, waited)

    def written(self, size: int) -> None:
        if size - self.started < WINDOW:
            return
        sync_file_range(self.fd, self.started, size - self.started, SYNC_FILE_RANGE_WRITE)
        if self.started > self.waited:  # the previous window: bounds the dirty pages
            sync_file_range(self.fd, self.waited, self.started - self.waited, WAIT_FOR_RANGE)
            self.waited = self.started
        self.started = size
