"""How long and how often the client tries again: bounded in attempts and in total time.

A small policy object rather than a retry library, because the client needs three different
waits in one loop (exponential backoff for failures, the server's own reset hint for 429, none
at all for the single re-authentication) and an injected clock and random source for its tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Limits for one API call (one page, or one token request).

    ``attempts`` caps the tries after failures (5xx, timeouts, connection errors, retryable
    ``fail`` entries); waiting out a 429 does not use an attempt, but it does use time, and
    ``deadline`` (seconds from the first try) bounds everything. Backoff is exponential with
    full jitter: the n-th wait is uniform in ``[0, min(maximum, initial * 2**n)]``, never
    below ``floor``.
    """

    attempts: int = 6
    deadline: float = 300.0
    initial: float = 0.5
    maximum: float = 30.0
    floor: float = 0.05

    def backoff(self, failures: int, rng: random.Random) -> float:
        """The wait before try number ``failures + 1`` (``failures`` >= 1)."""
        ceiling = min(self.maximum, self.initial * (2 ** (failures - 1)))
        return max(self.floor, rng.uniform(0.0, ceiling))
