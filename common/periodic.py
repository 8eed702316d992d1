"""A background thread that calls a function every ``interval`` seconds until stopped.

The services' reconcile loops run on it: a failed call is logged and retried on the next
tick, never allowed to end the loop (the thing it repairs may come back at any time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(self, name: str, interval: float, func: Callable[[], object]):
        self.name = name
        self.interval = interval
        self.func = func
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.loop, name=name, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.func()
            except Exception:
                log.exception("%s failed; retrying in %.1f s", self.name, self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
