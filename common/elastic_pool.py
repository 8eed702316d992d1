"""A thread pool that grows with demand and shrinks back when the demand is gone.

A gunicorn worker gives each request a thread for as long as the request lasts, and a
client that stalls its body holds that thread until its read times out. A fixed pool of a
few threads is then exhausted by a few stalled clients; a pool that starts a thread for
every waiting request (up to ``limit``) keeps serving everyone else. Threads beyond
``core`` exit after ``idle_timeout`` without work, so a burst leaves no lasting cost.
"""

from __future__ import annotations

import _thread
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future


class ElasticPool:
    """The part of ``concurrent.futures.ThreadPoolExecutor`` gunicorn's gthread worker uses
    (``submit``, ``shutdown``), with threads that retire when idle."""

    def __init__(self, core: int, limit: int, idle_timeout: float = 30.0):
        self.core = core
        self.limit = max(core, limit)
        self.idle_timeout = idle_timeout
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        # One permit per idle thread no job has claimed yet.
        self.idle = threading.Semaphore(0)
        self.lock = threading.Lock()
        self.threads = 0

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self.jobs.put((future, fn, args))
        if not self.idle.acquire(blocking=False):
            with self.lock:
                if self.threads < self.limit:
                    self.threads += 1
                    # Not threading.Thread.start(): it waits until the new thread runs,
                    # and with busy threads around that took milliseconds of the caller's
                    # (the event loop's) time per thread.
                    _thread.start_new_thread(self.run, ())
        return future

    def run(self) -> None:
        while True:
            try:
                job = self.jobs.get(timeout=self.idle_timeout)
            except queue.Empty:
                # Retire only if no job claimed this thread's idleness meanwhile.
                with self.lock:
                    if self.threads > self.core and self.idle.acquire(blocking=False):
                        self.threads -= 1
                        return
                continue
            if job is None:
                return
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del job, future, fn, args  # drop references to the finished request before idling
            self.idle.release()

    def shutdown(self, wait: bool = False) -> None:
        """Lets idle threads exit; busy ones finish their request first (none outlives the
        process: they are not ``threading`` threads, nobody joins them at exit)."""
        with self.lock:
            for _ in range(self.threads):
                self.jobs.put(None)
