"""Rate limits on writes (Swift's ``ratelimit``): container PUT/DELETE per account
(``account_ratelimit``), object writes per container and container listings, at a rate
that depends on how many objects the container holds (``container_ratelimits``,
``container_listing_ratelimits``: ``[object count, rate]`` points).

A request over its rate waits until its turn; one that would wait more than
``max_sleep_time_seconds`` is refused with Swift's ``498 Rate Limited`` / ``Slow down``.
Each proxy worker keeps its own counts (Swift keeps them in memcache, shared by every
proxy): with N workers a client may get up to N times the rate. Swift's per-account
black/white lists and ``global-write-ratelimit`` are left out.
"""

from __future__ import annotations

import threading
import time

from soko.object.middleware.subrequest import request_path, subrequest
from soko.object.proxy.access import INFO_READ_KEY

OBJECT_WRITES = ("PUT", "DELETE", "POST", "COPY")
RATE_BUFFER = 5.0  # seconds of unused rate a key may save up (Swift's rate_buffer_seconds)
KEPT = 10_000  # keys one worker tracks before it forgets the idle ones
SLOW_DOWN = b"Slow down"


class TooLong(Exception):
    """The request would have to wait longer than allowed."""


def rate_for(points: list[tuple[float, float]], size: int) -> float | None:
    """Requests per second for a container of ``size`` objects: none below the first point
    (nor for an empty container, as Swift), the line between the two points around it,
    the last point's rate beyond it."""
    if not size or not points or size < points[0][0]:
        return None
    for (low, low_rate), (high, high_rate) in zip(points, points[1:], strict=False):
        if size < high:
            return low_rate + (size - low) * (high_rate - low_rate) / (high - low)
    return points[-1][1]


class Turns:
    """When each key's next request may go: the time the requests so far have used up,
    at one ``1/rate`` each (Swift's memcache counters, here per worker)."""

    def __init__(self, max_wait: float):
        self.max_wait = max_wait
        self.booked: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait_for(self, key: str, rate: float) -> float:
        """Seconds this request must wait for its turn (booked); raises ``TooLong``."""
        step = 1.0 / rate
        with self.lock:
            now = time.time()
            booked = self.booked.get(key, 0.0) + step
            if now - booked > RATE_BUFFER:
                booked, wait = now + step, 0.0  # idle long enough: a fresh start
            else:
                wait = max(booked - now - step, 0.0)
            if self.max_wait - wait <= 0.01:
                raise TooLong(f"{wait:.2f}")
            if len(self.booked) >= KEPT:
                self.booked = {k: v for k, v in self.booked.items() if v > now - RATE_BUFFER}
            self.booked[key] = booked
        return wait


class RateLimit:
    def __init__(self, app, section):
        self.app = app
        self.account_rate = section.account_ratelimit
        self.container_points = sorted(tuple(p) for p in section.container_ratelimits)
        self.listing_points = sorted(tuple(p) for p in section.container_listing_ratelimits)
        self.max_sleep = section.max_sleep_time_seconds
        self.turns = Turns(self.max_sleep)

    @classmethod
    def swift_info(cls, section) -> dict:
        return {"account_ratelimit": section.account_ratelimit,
                "max_sleep_time_seconds": section.max_sleep_time_seconds,
                "container_ratelimits": sorted(section.container_ratelimits),
                "container_listing_ratelimits": sorted(section.container_listing_ratelimits)}

    def __call__(self, environ, start_response):
        try:
            for key, rate in self.limits(environ):
                wait = self.turns.wait_for(key, rate)
                if wait > 0:
                    time.sleep(wait)
        except TooLong:
            start_response("498 Rate Limited", [("Content-Type", "text/html; charset=UTF-8"),
                                                 ("Content-Length", str(len(SLOW_DOWN)))])
            return [SLOW_DOWN]
        return self.app(environ, start_response)

    def limits(self, environ: dict) -> list[tuple[str, float]]:
        """The ``(key, rate)`` this request counts against, in order."""
        method, path = environ["REQUEST_METHOD"], request_path(environ)
        if path is None or not path[2]:
            return []
        version, account, container, obj = path
        limits = []
        if not obj and method in ("PUT", "DELETE") and self.account_rate:
            limits.append((f"ratelimit/{account}", self.account_rate))
        points = (self.container_points if obj and method in OBJECT_WRITES
                  else self.listing_points if not obj and method == "GET" else [])
        if points:
            rate = rate_for(points, self.object_count(environ, f"/{version}/{account}/"
                                                               f"{container}"))
            if rate:
                kind = "ratelimit" if obj else "ratelimit_listing"
                limits.append((f"{kind}/{account}/{container}", rate))
        return limits

    def object_count(self, environ: dict, url: str) -> int:
        answer = subrequest(self.app, {**environ, INFO_READ_KEY: True}, "HEAD", url,
                            source="RL")
        answer.close()
        count = answer.headers.get("x-container-object-count", "")
        return int(count) if answer.status // 100 == 2 and count.isdigit() else 0
