"""Swift's timestamps: every write carries one from the proxy, and the newest one wins.

A timestamp is kept as an integer count of 10 µs ticks, so comparing two of them is exact
(floats are not), and is written the way Swift writes it (``"%016.05f"``, e.g.
``1700000000.12345``): fixed width, so names of ``<timestamp>.data`` files sort by time.
"""

from __future__ import annotations

import functools
import math
import time
from email.utils import formatdate

TICKS_PER_SECOND = 100_000


class InvalidTimestamp(ValueError):
    """A header or a file name that should hold a timestamp does not."""


@functools.total_ordering
class Timestamp:
    __slots__ = ("ticks",)

    def __init__(self, ticks: int):
        if ticks < 0:
            raise InvalidTimestamp(f"timestamp before 1970: {ticks}")
        self.ticks = ticks

    @classmethod
    def now(cls) -> Timestamp:
        return cls(int(time.time() * TICKS_PER_SECOND))

    @classmethod
    def parse(cls, value: str | float | None) -> Timestamp:
        """Accepts Swift's forms: ``1700000000.12345``, ``1700000000``, a float."""
        if value is None:
            raise InvalidTimestamp("missing timestamp")
        try:
            seconds = float(value)
        except ValueError:
            raise InvalidTimestamp(f"not a timestamp: {value!r}") from None
        if not math.isfinite(seconds) or seconds < 0 or seconds >= 10**10:
            raise InvalidTimestamp(f"timestamp out of range: {value!r}")
        return cls(round(seconds * TICKS_PER_SECOND))

    @property
    def normal(self) -> str:
        whole, frac = divmod(self.ticks, TICKS_PER_SECOND)
        return f"{whole:010d}.{frac:05d}"

    @property
    def seconds(self) -> float:
        return self.ticks / TICKS_PER_SECOND

    @property
    def http_date(self) -> str:
        """``Last-Modified``: HTTP dates have whole seconds; Swift rounds up."""
        return formatdate(math.ceil(self.seconds), usegmt=True)

    @property
    def last_modified_iso(self) -> str:
        """The ``last_modified`` of JSON listings (microseconds, no zone, as Swift)."""
        whole, frac = divmod(self.ticks, TICKS_PER_SECOND)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{frac * 10:06d}"

    def __str__(self) -> str:
        return self.normal

    def __repr__(self) -> str:
        return f"Timestamp({self.normal})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timestamp) and self.ticks == other.ticks

    def __lt__(self, other: Timestamp) -> bool:
        return self.ticks < other.ticks

    def __hash__(self) -> int:
        return hash(self.ticks)


ZERO = Timestamp(0)
