"""When each stream is polled next: one schedule for every stream of a run.

A run with 3,000 tenants has 9,000 to 12,000 streams. One task per stream, each sleeping on its
own, costs memory per stream and starts every poll at the same instant; instead one loop
(``Runner.run_forever``) asks this schedule which streams are due and starts only those.

The rules, all of them here:

* **Start-up is spread**, not a thundering herd: the first polls start at most ``START_RATE``
  a second, in configuration order, each jittered within its slot, and never later than one
  poll interval after start.
* **Polls due close together start together**: the run's loop takes every stream due within
  ``GATHER`` (50 ms) of now at each wake-up, so it wakes a few times a second, not once a poll.
* **After a poll that succeeded** the stream is due one ``poll_interval`` after it finished.
* **After a failure** it backs off exponentially with jitter: from 15 s for an upstream fault,
  from 300 s for a configuration fault (a bad key or a missing role, which only a person can
  fix), doubling up to an hour, never sooner than the stream's interval (at most 60 s).
* Fairness across tenants is the HTTP layer's: every request waits its turn for one shared,
  first-come first-served limit on requests in flight, so a stream paging through a long window
  (a backfill) takes one turn per page, like every other stream, and cannot crowd out live polls.

Times are monotonic seconds (the event loop's clock). Nothing here does I/O or sleeps.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass

from mimecast_connector._categories import Category
from mimecast_connector._errors import ConnectorError
from mimecast_connector.config import TenantConfig

#: First polls started per second at most, when a run starts.
START_RATE = 200.0
#: The first backoff after a failure, by whose fault it was.
BACKOFF_BASE = {"config": 300.0, "upstream": 15.0, "ours": 15.0}
#: No backoff is longer than this.
BACKOFF_MAX = 3600.0
#: Streams due within this many seconds of the first due one start with it: one wake-up of the
#: run's loop for them all, not one each (12,000 streams a minute: ~10 polls a wake-up, each
#: at most this much early).
GATHER = 0.05


@dataclass(slots=True)
class Due:
    """One stream's next poll: ``at`` (monotonic seconds) and how many polls failed in a row."""

    at: float
    tenant: TenantConfig
    category: Category
    failures: int = 0


class Schedule:
    """The next poll of every stream that is not being polled right now."""

    def __init__(
        self,
        streams: list[tuple[TenantConfig, Category]],
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        self._rng = rng or random.Random()
        self._seq = 0
        # (at, a sequence number: equal times in the order pushed, the entry): tuples compare
        # in C, a dataclass's generated order in Python.
        self._heap: list[tuple[float, int, Due]] = []
        count = len(streams)
        for index, (tenant, category) in enumerate(streams):
            interval = tenant.poll_interval.total_seconds()
            spread = min(count / START_RATE, interval)
            offset = spread * (index + self._rng.random()) / count
            self._push(Due(now + offset, tenant, category))

    def __len__(self) -> int:
        return len(self._heap)

    def _push(self, entry: Due) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (entry.at, self._seq, entry))

    def add(self, tenant: TenantConfig, category: Category, now: float) -> None:
        """Schedule a stream new to the run (a reload): due within a second, jittered."""
        self._push(Due(now + self._rng.random(), tenant, category))

    def remove(self, tenants: set[str]) -> int:
        """Take every scheduled stream of ``tenants`` off (a reload), in one pass; return how
        many. Streams being polled are not here: their polls end, and are not put back."""
        kept = [e for e in self._heap if e[2].tenant.name not in tenants]
        removed = len(self._heap) - len(kept)
        if removed:
            self._heap = kept
            heapq.heapify(self._heap)
        return removed

    def due(self, now: float) -> list[Due]:
        """Every stream due by ``now``, earliest first, taken off the schedule (``done`` puts
        each back when its poll ends)."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        return out

    def wait(self, now: float) -> float | None:
        """Seconds until the next stream is due (0 if one is), None if none is scheduled."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - now)

    def done(self, entry: Due, error: ConnectorError | None, now: float) -> float:
        """Put ``entry``'s stream back after a poll that ended at ``now`` with ``error``;
        return the seconds until it is due again."""
        entry.failures = 0 if error is None else entry.failures + 1
        wait = next_wait(entry.tenant, entry.failures, error, self._rng)
        entry.at = now + wait
        self._push(entry)
        return wait


def next_wait(
    tenant: TenantConfig, failures: int, error: ConnectorError | None, rng: random.Random
) -> float:
    """Seconds until a stream is due again after a poll that ended with ``error`` (None: it
    succeeded), ``failures`` being how many polls in a row failed, this one included."""
    interval = tenant.poll_interval.total_seconds()
    if error is None:
        return interval
    base = BACKOFF_BASE[error.fault]
    wait: float = min(base * 2.0 ** min(failures - 1, 16), BACKOFF_MAX)
    wait *= 0.5 + rng.random() / 2
    return max(wait, min(interval, 60.0))
