"""Time as a seam: the wall clock, the monotonic clock and sleeping, injected.

Code that waits or reads the time takes a :class:`Clock`, so tests can drive time instead of
waiting for it, and nothing reaches for ``time`` or ``asyncio.sleep`` globally.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """What the connector needs from time."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (zero or less returns at once, after yielding to the loop)."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
