"""A client-side request rate limit: request starts spaced evenly at 60 / requests_per_minute
seconds (a leaky bucket of depth one), shared by every worker thread.

Even spacing rather than a burst budget: a judge run is thousands of requests, so bursts buy
nothing, and even spacing never trips a provider's per-second limit. The clock and the sleep are
injected so tests check the schedule without waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, requests_per_minute: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be > 0, got {requests_per_minute}")
        self.interval_seconds = 60.0 / requests_per_minute
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")  # earliest start of the next request
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Block until this request's slot; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval_seconds
        wait = slot - now
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)
