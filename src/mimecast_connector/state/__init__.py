"""Durable state: checkpoints, delivered ids, counters and sink positions.

Import from here; the modules beside it are private. ``Store`` is what a run uses;
:func:`open_store` opens the SQLite file or the PostgreSQL database the configuration names
(psycopg is imported only for the latter: a single-machine run does not pay its import).
"""

from __future__ import annotations

from pathlib import Path

from mimecast_connector.state._protocol import (
    HOURS_KEPT,
    PARTY_CHARS,
    PARTY_HOURS_KEPT,
    AlertStats,
    Commit,
    Store,
    StreamState,
    Tallies,
)
from mimecast_connector.state._store import (
    SCHEMA_VERSION,
    SqliteStore,
    StateStore,
    WriterLock,
)
from mimecast_connector.state._url import shown_url


async def open_store(state: Path | str) -> Store:
    """The writer's store: a SQLite file (``Path``; its one-writer lock taken) or a
    PostgreSQL URL (``str``; the tables created if missing)."""
    if isinstance(state, Path):
        return SqliteStore(StateStore(state, writer=True))
    from mimecast_connector.state._postgres import (
        PostgresStore,
    )  # lazy: psycopg only for PostgreSQL

    return await PostgresStore.open(state)


__all__ = [
    "HOURS_KEPT",
    "PARTY_CHARS",
    "PARTY_HOURS_KEPT",
    "SCHEMA_VERSION",
    "AlertStats",
    "Commit",
    "SqliteStore",
    "StateStore",
    "Store",
    "StreamState",
    "Tallies",
    "WriterLock",
    "open_store",
    "shown_url",
]
