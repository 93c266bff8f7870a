"""Where the dashboard reads: the state store, opened read-only, never written.

A SQLite file is opened as ``status`` opens it (``mode=ro``: a running ``run`` may hold it,
and nothing is written, not even the schema), on a thread of its own, so that a read of
thousands of streams never holds up the event loop it is served from (a ``run``'s, when the
dashboard is on its metrics port). A PostgreSQL state is read over connections of its own,
opened without creating anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from mimecast_connector.state import AlertStats, StateStore, StreamState

_T = TypeVar("_T")


class Source(AlertStats, Protocol):
    """What the dashboard reads of a store (``Store`` has all of it)."""

    async def streams(self, *, counters: bool = True) -> list[StreamState]: ...

    async def aclose(self) -> None: ...


class SqliteSource:
    """A SQLite state read-only, on one thread of its own (SQLite's connection stays there)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "mimecast-dashboard-sqlite")
        self._store: StateStore | None = None

    async def _call(self, work: Callable[[StateStore], _T]) -> _T:
        def run() -> _T:
            if self._store is None:
                # No quick_check: it reads the whole file, seconds for a big state.
                self._store = StateStore(self.path, read_only=True, integrity=False)
            return work(self._store)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def streams(self, *, counters: bool = True) -> list[StreamState]:
        return await self._call(lambda s: s.streams(counters=counters))

    async def alert_series(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[int, str, int]]:
        return await self._call(lambda s: s.alert_series(since_hour, tenant))

    async def technique_counts(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await self._call(lambda s: s.technique_counts(since_hour, tenant))

    async def top_alert_types(
        self, since_hour: int, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await self._call(lambda s: s.top_alert_types(since_hour, limit, tenant))

    async def top_parties(
        self, since_hour: int, role: str, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await self._call(lambda s: s.top_parties(since_hour, role, limit, tenant))

    async def aclose(self) -> None:
        def close() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=False)


async def open_source(state: Path | str) -> Source:
    """The state the configuration names, read-only: a SQLite file (``Path``) or a
    PostgreSQL URL. A ``StateError`` says why it cannot be read (none yet, another version)."""
    if isinstance(state, Path):
        source = SqliteSource(state)
        try:
            await source.streams(counters=False)  # opened now: its errors are told at once
        except BaseException:
            await source.aclose()
            raise
        return source
    from mimecast_connector.state._postgres import PostgresStore  # lazy: psycopg

    return await PostgresStore.open(state, create=False)
