"""Which blocks of a reflinked file are still the very blocks of an older copy.

On the reflink pool a snapshot shares its extents with the volume, and XFS writes a
shared block copy-on-write. So while the snapshot an earlier backup read (its *base*) is
kept, a block of the new snapshot that maps to the same physical block as in the base
holds the same bytes: it need not be read at all. ``FS_IOC_FIEMAP`` gives both mappings.
Where it is not available (a block device, another filesystem) nothing is known, and the
caller reads everything.
"""

from __future__ import annotations

import bisect
import fcntl
import struct

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1
HEADER = struct.Struct("=QQLLLL")  # fm_start, fm_length, flags, mapped, count, reserved
EXTENT = struct.Struct("=QQQ16xL12x")  # logical, physical, length, flags
LAST = 0x1
# Extents whose physical address says nothing stable about their bytes.
UNSURE = 0x2 | 0x4 | 0x8 | 0x80 | 0x100 | 0x200 | 0x400  # unknown, delalloc, encoded...
UNWRITTEN = 0x800  # reads as zeros: part of what a block is, next to where it lives
BATCH = 512


class ExtentMap:
    """A file's logical → physical mapping, for comparing ranges with another file's."""

    def __init__(self, extents: list[tuple[int, int, int, int]]):
        self.extents = extents  # (logical, physical, length, flags), sorted
        self.starts = [e[0] for e in extents]

    @classmethod
    def of(cls, path: str) -> ExtentMap | None:
        """The file's map, or None where FIEMAP does not work on it."""
        extents: list[tuple[int, int, int, int]] = []
        start = 0
        try:
            with open(path, "rb") as f:
                while True:
                    buf = bytearray(HEADER.pack(start, (1 << 64) - 1 - start, FIEMAP_FLAG_SYNC,
                                                0, BATCH, 0) + bytes(EXTENT.size * BATCH))
                    fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf)
                    mapped = HEADER.unpack_from(buf)[3]
                    batch = [EXTENT.unpack_from(buf, HEADER.size + i * EXTENT.size)
                             for i in range(mapped)]
                    extents += batch
                    if not batch or batch[-1][3] & LAST:
                        return cls(extents)
                    start = batch[-1][0] + batch[-1][2]
        except OSError:
            return None

    def pieces(self, start: int, stop: int) -> list[tuple[int, int, int, int]] | None:
        """``(logical, physical, length, unwritten)`` of the mapped parts of a range; None
        when any part is of an unsure kind."""
        out = []
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while i < len(self.extents) and self.extents[i][0] < stop:
            logical, physical, length, flags = self.extents[i]
            lo, hi = max(start, logical), min(stop, logical + length)
            if lo < hi:
                if flags & UNSURE:
                    return None
                out.append((lo, physical + lo - logical, hi - lo, flags & UNWRITTEN))
            i += 1
        return out

    def same_as(self, base: ExtentMap, start: int, stop: int) -> bool:
        """Whether the range maps to exactly the blocks (and holes) it has in ``base``."""
        mine = self.pieces(start, stop)
        return mine is not None and mine == base.pieces(start, stop)
