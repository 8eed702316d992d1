"""An in-process cache whose entries expire ``ttl`` seconds after they were read, each
re-read by one thread at a time.

When a hot entry expires, every thread serving it would otherwise miss at once and re-read
it (a database row, a HEAD sub-request): with a worker's 16 threads on one key, one read per
TTL became sixteen. Here the first thread to find the entry stale reads it and the others
on that key take its answer. An entry expires ``ttl`` after its read began, so a value is
never served longer than ``ttl`` plus one read past the moment it was read. A key forgotten
or put while it is being read is not overwritten by that read's older answer, and whoever
asks after that waits for no read begun before it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class _Read:
    """One thread's read of a key, whose answer the threads asking meanwhile take."""

    __slots__ = ("done", "value", "failed", "superseded")

    def __init__(self):
        self.done = threading.Event()
        self.value: Any = None
        self.failed = True  # until the read returns
        self.superseded = False  # forgotten or put meanwhile: its answer is not cached


class TtlCache:
    def __init__(self, ttl: float, *, limit: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._reading: dict[Hashable, _Read] = {}

    def get(self, key: Hashable, read: Callable[[], Any],
            keep: Callable[[Any], bool] | None = None) -> Any:
        """The cached value of ``key``, or ``read()``'s, cached unless ``keep`` says not to
        (the threads that waited for that read take it either way). An exception from
        ``read`` is not cached: the next caller reads again."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] > self.clock():
                    return entry[1]
                pending = self._reading.get(key)
                if pending is None:
                    pending = self._reading[key] = _Read()
                    break
            pending.done.wait()
            if not pending.failed:
                return pending.value
        try:
            started = self.clock()
            value = pending.value = read()
            pending.failed = False
            kept = keep is None or keep(value)
            with self._lock:  # forgotten or put meanwhile: this answer may be older
                if kept and not pending.superseded:
                    self._store(key, value, started + self.ttl)
                elif not pending.superseded:
                    self._entries.pop(key, None)  # the expired entry this read replaced
            return value
        finally:
            with self._lock:
                if self._reading.get(key) is pending:
                    del self._reading[key]
            pending.done.set()

    def put(self, key: Hashable, value: Any) -> None:
        """Caches ``value`` as read now."""
        with self._lock:
            self._supersede(key)
            self._store(key, value, self.clock() + self.ttl)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._supersede(key)
            self._entries.pop(key, None)

    def _supersede(self, key: Hashable) -> None:
        pending = self._reading.pop(key, None)
        if pending is not None:
            pending.superseded = True

    def _store(self, key: Hashable, value: Any, expires: float) -> None:
        if len(self._entries) >= self.limit and key not in self._entries:
            self._entries.clear()
        self._entries[key] = (expires, value)
