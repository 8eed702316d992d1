"""What a replicator last found in sync, so an idle pass costs what changed, not what exists.

Replication is push-only: each replica pushes its own changes to the others. So a partition
or DB whose local state is the one it was in when it was last in sync with every peer has
nothing to push, and the replicator can skip it without asking anyone. Two things can still
need a push from an unchanged replica: a peer that lost data on its own (a quarantined
file, a replaced disk), and a peer that asked (``sync_requested`` markers, set when a peer's
pass saw a difference). The marker makes the first case quick where the peer noticed; a
full verify of every job at a random moment within ``verify_interval`` bounds the rest.
Memory is per process: a restarted daemon verifies everything once.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Hashable


class SyncMemory:
    def __init__(self, verify_interval: float):
        self.verify_interval = verify_interval
        self.lock = threading.Lock()
        self.seen: dict[Hashable, tuple[object, float]] = {}

    def unchanged(self, key: Hashable, state: object) -> bool:
        """Whether ``key`` is as it was at its last full sync and not yet due a verify."""
        with self.lock:
            remembered = self.seen.get(key)
        return (remembered is not None and remembered[0] == state
                and time.monotonic() < remembered[1])

    def same(self, key: Hashable, state: object) -> bool:
        """Whether ``key`` is as it was at its last full sync, due a verify or not."""
        with self.lock:
            remembered = self.seen.get(key)
        return remembered is not None and remembered[0] == state

    def synced(self, key: Hashable, state: object) -> None:
        """``key`` was in ``state`` when every peer last took all it had."""
        if self.verify_interval <= 0:
            return
        due = time.monotonic() + self.verify_interval * random.uniform(0.5, 1.0)
        with self.lock:
            self.seen[key] = (state, due)

    def forget(self, key: Hashable) -> None:
        with self.lock:
            self.seen.pop(key, None)
