"""Test doubles shared by the suites: a clock that moves only when told to."""

from __future__ import annotations

import asyncio


class FakeClock:
    """A Clock whose sleeps advance time at once, recording how long each one was."""

    def __init__(self, start: float = 1_764_000_000.0) -> None:
        self.now = start
        self.mono = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
