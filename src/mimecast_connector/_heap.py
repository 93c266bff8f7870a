"""The garbage collector, told what a long run's heap is like.

A run at thousands of tenants holds a large heap built at start (configuration, clients,
chains, schedules: ~10^5 objects at 3,000 tenants) that lives as long as the run; each poll
makes short-lived objects, some of which live a quarter of a second (a quiet page waits that
long for company to commit). With CPython's defaults those survive two young collections,
reach the oldest generation, and every few of them make a full collection walk the whole heap
again: measured at 3,000 tenants x 4, 15% of a steady run's CPU went to the collector, 10% to
four full collections a minute (``benchmarks/tenants.py --steady``; README).

So once a long run (``run`` without ``--once``, a fleet worker too) has started, :func:`settle`
collects once and moves what is left (the start's heap) out of the collector's view
(``gc.freeze``): it is still freed by reference counting when let go, but full collections no
longer walk it; and the young generation is collected after :data:`YOUNG` net allocations
instead of 700, so that a poll's objects are mostly gone before a collection would promote them.
Garbage in cycles is still collected: it is never freed by reference counting, so it counts
towards the threshold until a collection takes it. After a reload the heap changed (tenants
added and removed): :func:`resettle` lets the collector see everything again, collects, and
freezes anew, so that nothing a removed tenant left in a cycle is kept (one full collection:
~0.06 s at 3,000 tenants). Measured at 3,000 tenants x 4, steady: the collector's share of the
CPU went from 15% to under 1%.

A one-shot run (``run --once``) is :func:`brief`: young collections are as rare for its length,
and the thresholds are put back when it ends (it may be a call inside a longer-lived process:
the tests invoke the command in theirs); nothing is frozen, since the heap it starts with is
not all its own. At 3,000 tenants x 4 the collector's time in one cycle went from 1.2-1.3 s
(837 young, 77 middle, 6 full collections) to 0.3-0.6 s (167, 16, 1; the young ones mostly
the imports', before the command starts).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: Allocations (less deallocations) of container objects between two young collections:
#: CPython's 700 makes ten a second at 200 polls a second, each promoting whatever a poll in
#: flight holds at that moment.
YOUNG = 10_000


def settle() -> None:
    """Collect once, then freeze what survives (call when start-up is done)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)


def resettle() -> None:
    """After the heap changed at once (a reload): unfreeze, then :func:`settle` again."""
    gc.unfreeze()
    settle()


@contextlib.contextmanager
def brief() -> Iterator[None]:
    """For a one-shot run: young collections after :data:`YOUNG` allocations while it lasts, the
    thresholds as they were afterwards."""
    before = gc.get_threshold()
    gc.set_threshold(YOUNG, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
