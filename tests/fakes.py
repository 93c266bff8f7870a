"""Test doubles shared by the suites: a clock that moves only when told to; the SQLite file
behind a runner."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mimecast_connector.config import Config
from mimecast_connector.runner import Runner
from mimecast_connector.state import SqliteStore, StateStore


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


def sqlite(runner: Runner) -> StateStore:
    """The SQLite file behind a started runner, for synchronous looks from a test."""
    store = runner.store
    assert isinstance(store, SqliteStore), store
    return store.store


def sqlite_path(config: Config) -> Path:
    """The configured SQLite state file."""
    assert isinstance(config.state, Path), "a SQLite state"
    return config.state
