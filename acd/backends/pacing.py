"""Client-side pacing: token buckets for requests/min and tokens/min, and retry backoff.

A provider's limits are per minute, but a bucket that holds a whole minute's worth would let a burst of
`rpm` requests out at once and then trip the provider's own finer-grained limiter. So the bucket's capacity
is one second's worth (at least 1), refilled continuously: over any window the count stays within
rate * window + capacity.
"""
from __future__ import annotations

import asyncio
import random
import time
from email.utils import parsedate_to_datetime


class TokenBucket:
    """Async token bucket; `acquire(n)` waits until n tokens are available (FIFO among waiters)."""

    def __init__(self, per_minute: float, burst_seconds: float = 1.0):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self, n: float = 1.0) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        n = min(n, self.capacity)  # a request larger than the bucket would otherwise wait forever
        async with self._lock:  # one waiter at a time keeps the order fair and the arithmetic simple
            while True:
                self._refill()
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)

    def adjust(self, delta: float) -> None:
        """Correct an estimate after the fact (e.g. real token usage); the balance may go negative (debt)."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens - delta)


class Backoff:
    """Exponential backoff with full jitter, seeded so a run's retry timing is reproducible."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, seed: int = 0):
        self.base, self.cap = base, cap
        self.rng = random.Random(seed)

    def delay(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): uniform in [base/2, min(cap, base*2^(attempt-1))]."""
        hi = min(self.cap, self.base * (2 ** (attempt - 1)))
        return self.rng.uniform(min(hi, self.base / 2), hi)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date. None if absent or unparsable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
