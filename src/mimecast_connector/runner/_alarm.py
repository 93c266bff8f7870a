"""What wakes ``Runner.run_forever``'s loop: the next stream falling due, or something that
changes the schedule sooner (a reload, a stream put back earlier than the wake-up, a stop).

One future and at most one timer at a time, made in the loop's own code; an ``asyncio.Event``
waited with ``asyncio.wait`` cost a task, a waiter and callbacks for every wake-up, and a poll
that ended woke the loop though its stream was next due a poll interval later.
"""

from __future__ import annotations

import asyncio
import math


class Alarm:
    """Sleep until a moment of the event loop's clock, or until :meth:`ring`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        #: When the sleep in progress ends at the latest; infinity while not sleeping.
        self.at = math.inf

    def ring(self) -> None:
        """End the sleep in progress now (nothing if none is: the loop is awake and looks at
        the schedule before it sleeps again)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def ring_by(self, at: float) -> None:
        """End the sleep in progress if it would last past ``at``."""
        if at < self.at:
            self.ring()

    async def sleep(self, at: float | None) -> None:
        """Until ``at`` (None: until rung)."""
        waiter = self._waiter = self._loop.create_future()
        timer = None if at is None else self._loop.call_at(at, self.ring)
        self.at = math.inf if at is None else at
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter, self.at = None, math.inf
