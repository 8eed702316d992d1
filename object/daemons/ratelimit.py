"""A rate limit shared by a daemon's threads: the replicator's bytes pushed, the auditor's
bytes and files read, so background work leaves the disks to the clients."""

from __future__ import annotations

import threading
import time

BURST_SECONDS = 0.5  # idle time that may be made up for at full speed afterwards


class RateLimiter:
    """``wait(amount)`` sleeps as needed to keep the long-run rate at most ``rate`` per second
    (0: unlimited); ``stop`` cuts a sleep short when the daemon is asked to stop."""

    def __init__(self, rate: float, stop: threading.Event | None = None):
        self.rate = rate
        self.stop = stop or threading.Event()
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def wait(self, amount: float) -> None:
        if self.rate <= 0 or amount <= 0:
            return
        with self.lock:
            now = time.monotonic()
            self.next_free = max(self.next_free, now - BURST_SECONDS)
            delay = self.next_free - now
            self.next_free += amount / self.rate
        if delay > 0:
            self.stop.wait(delay)
