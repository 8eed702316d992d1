"""The shared TTL cache: one read per key at a time, whose answer every waiting thread takes;
answers not to keep and answers older than a forget or put are not cached."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from soko.common.ttl_cache import TtlCache


class SlowRead:
    """A read that holds until released, counting how often it ran."""

    def __init__(self, value):
        self.value, self.calls = value, 0
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self):
        self.calls += 1
        self.started.set()
        assert self.release.wait(10)
        return self.value


def test_an_answer_not_kept_is_shared_by_the_waiting_threads_but_not_cached():
    cache, read = TtlCache(60), SlowRead(None)  # e.g. a container that is not there
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(cache.get, "k", read, keep=lambda v: v is not None)
        assert read.started.wait(10)
        waiting = [pool.submit(cache.get, "k", read, keep=lambda v: v is not None)
                   for _ in range(7)]
        read.release.set()
        assert [f.result(10) for f in [first, *waiting]] == [None] * 8
    assert read.calls == 1
    assert cache.get("k", lambda: "made since", keep=lambda v: v is not None) == "made since"
    assert cache.get("k", lambda: "not read again") == "made since"


def test_a_read_begun_before_a_forget_is_neither_cached_nor_handed_to_later_callers():
    cache, old = TtlCache(60), SlowRead("before the change")
    with ThreadPoolExecutor(2) as pool:
        in_flight = pool.submit(cache.get, "k", old)
        assert old.started.wait(10)
        cache.forget("k")  # the container changed through this worker
        assert cache.get("k", lambda: "after the change") == "after the change"
        old.release.set()
        assert in_flight.result(10) == "before the change"
    assert cache.get("k", lambda: "not read again") == "after the change"


def test_a_put_during_a_read_wins_over_the_read():
    cache, old = TtlCache(60), SlowRead("unrecorded")
    with ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(cache.get, "bucket", old)
        assert old.started.wait(10)
        cache.put("bucket", "claimed")
        old.release.set()
        in_flight.result(10)
    assert cache.get("bucket", lambda: "not read again") == "claimed"
