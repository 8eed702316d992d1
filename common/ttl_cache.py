"""An in-process cache whose entries expire ``ttl`` seconds after they were read, each
re-read by one thread at a time.

When a hot entry expires, every thread serving it would otherwise miss at once and re-read
it (a database row, a HEAD sub-request): with a worker's 16 threads on one key, one read per
TTL became sixteen. Here the first thread to find the entry stale reads it and the others
on that key wait for its answer. An entry expires ``ttl`` after its read began, so a value
is never served longer than ``ttl`` plus one read past the moment it was read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class TtlCache:
    def __init__(self, ttl: float, *, limit: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._reading: dict[Hashable, threading.Event] = {}

    def get(self, key: Hashable, read: Callable[[], Any]) -> Any:
        """The cached value of ``key``, or ``read()``'s (an exception from it is not cached:
        the next caller reads again)."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and entry[0] > self.clock():
                    return entry[1]
                done = self._reading.get(key)
                if done is None:
                    done = self._reading[key] = threading.Event()
                    break
            done.wait()
        try:
            started = self.clock()
            value = read()
            self.put(key, value, started)
            return value
        finally:
            with self._lock:
                del self._reading[key]
            done.set()

    def put(self, key: Hashable, value: Any, when: float | None = None) -> None:
        """Caches ``value`` as read at ``when`` (now)."""
        expires = (self.clock() if when is None else when) + self.ttl
        with self._lock:
            if len(self._entries) >= self.limit and key not in self._entries:
                self._entries.clear()
            self._entries[key] = (expires, value)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)
