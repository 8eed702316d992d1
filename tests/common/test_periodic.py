"""The periodic loop behind the services' reconcilers: a failing call does not end it."""

from __future__ import annotations

import threading
import time

from soko.common.periodic import Periodic


def test_a_failing_call_is_retried_on_the_next_tick_and_stop_ends_the_loop():
    calls = []
    third = threading.Event()

    def flaky():
        calls.append(1)
        if len(calls) == 3:
            third.set()
        raise RuntimeError("the thing it repairs is down")

    loop = Periodic("test-loop", 0.01, flaky)
    assert third.wait(5), "the loop stopped after a failure"
    loop.stop()
    assert not loop.thread.is_alive()
    count = len(calls)
    time.sleep(0.05)
    assert len(calls) == count, "a call after stop() returned"
