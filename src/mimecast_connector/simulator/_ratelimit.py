"""A per-tenant token bucket with Mimecast's three rate-limit headers.

Mimecast counts quota per API user across all of that user's keys, not per endpoint, answers 429
without running the function when the quota is spent, and puts ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (milliseconds until at least one request is
added back) on every response (``shared/docs/mimecast-api.md`` §8.3). The clock is monotonic.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable


class TokenBucket:
    """``capacity`` requests, refilled continuously at ``refill_per_second``. Thread-safe."""

    def __init__(self, capacity: int, refill_per_second: float, clock: Callable[[], float]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, not {capacity}")
        if refill_per_second <= 0:
            raise ValueError(f"refill_per_second must be > 0, not {refill_per_second}")
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(capacity)
        self._updated = clock()

    def take(self) -> tuple[bool, dict[str, str]]:
        """Spend one request if the bucket has one; whether it did, and the headers to send."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_second)
            self._updated = now
            allowed = self._tokens >= 1.0
            if allowed:
                self._tokens -= 1.0
            whole = math.floor(self._tokens)
            if whole >= self.capacity:
                reset_ms = 0
            else:
                missing = whole + 1 - self._tokens  # until the next whole request is back
                reset_ms = max(1, math.ceil(missing / self.refill_per_second * 1000))
            headers = {
                "X-RateLimit-Limit": str(self.capacity),
                "X-RateLimit-Remaining": str(whole),
                "X-RateLimit-Reset": str(reset_ms),
            }
        return allowed, headers
