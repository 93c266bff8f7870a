"""Durable state: checkpoints, delivered ids, counters, sink positions. One SQLite file.

What the checkpoint means (style.md habit 8): for a tenant and category, ``cursor`` is the
newest event time among the records of every page that has been fully handled: each record
validated, filtered or turned into an alert, and every alert acknowledged by every sink. It
advances in the same transaction that records the delivered alert ids, the counters and the
sinks' positions, so after a crash the store is at one batch boundary or the one before.

Each poll re-reads from ``cursor - lookback`` to catch records Mimecast publishes late; the
``delivered`` table suppresses the alerts already sent. Ids older than the oldest time any
future window can reach are pruned, so the table stays as small as the lookback window.

A tenant's rows are keyed by its configured name, not its API version, so switching a tenant
from API 1.0 to 2.0 keeps its checkpoints and its delivered ids.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mimecast_connector._errors import StateError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    cursor REAL,
    last_success REAL,
    last_error TEXT,
    last_error_at REAL,
    PRIMARY KEY (tenant, category)
);
CREATE TABLE IF NOT EXISTS delivered (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    id TEXT NOT NULL,
    event_time REAL NOT NULL,
    PRIMARY KEY (tenant, category, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivered_time ON delivered (tenant, category, event_time);
CREATE TABLE IF NOT EXISTS counters (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (tenant, category, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sinks (name TEXT PRIMARY KEY, position TEXT NOT NULL);
"""

_RECOVERY = (
    "stop every connector using it, move the file aside and restore it from a backup; or, "
    "to start afresh, move it aside and set each tenant's `start` to the time up to which "
    "alerts were already delivered (a fresh store re-reads from `start`)"
)


class WriterLock:
    """One writer per state database: an exclusive ``flock`` on ``<state>.lock``.

    The lock file holds the pid, host and start time of its holder, so a second run can say
    who holds it. The kernel releases the lock when the holder exits, however it exits
    (SIGKILL included), so a crash never leaves a stale lock behind.
    """

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise StateError(
                f"the state database {str(self.path.with_suffix(''))!r} is in use by {holder}; "
                "only one connector may write it. Stop that process first (or give this one its "
                "own `state` file)."
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()} (since {started})".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


@dataclass(frozen=True, slots=True)
class StreamState:
    """What the store knows of one tenant and category."""

    tenant: str
    category: str
    cursor: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    counters: Mapping[str, int]


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class StateStore:
    """The SQLite state file. Not thread-safe: one event loop owns it."""

    def __init__(self, path: Path, *, create: bool = True, writer: bool = False) -> None:
        """Open ``path``. ``writer=True`` takes the one-writer lock first (see :class:`WriterLock`);
        readers such as ``status`` do not need it."""
        self.path = path
        self._lock: WriterLock | None = None
        if writer:
            self._lock = WriterLock(path)
            self._lock.acquire()
        try:
            self._open(path, create)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _open(self, path: Path, create: bool) -> None:
        if not create and not path.exists():
            raise StateError(
                f"there is no state database at {str(path)!r} yet: run the connector first"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=5.0)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state database {str(path)!r}: {exc}") from None
        try:
            self._setup()
        except StateError:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StateError(
                f"the state database {str(path)!r} is damaged ({exc}). Nothing was changed. To recover: {_RECOVERY}"
            ) from None

    def _setup(self) -> None:
        db = self._db
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(
                f"integrity check failed: {check[0] if check else 'no answer'}"
            )
        # The version is checked before anything is written, so a newer file is left untouched.
        if db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone():
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and row[0] != str(SCHEMA_VERSION):
                raise StateError(
                    f"the state database {str(self.path)!r} has schema version {row[0]}, this "
                    f"version of mimecast-connector reads version {SCHEMA_VERSION}: use the "
                    "matching release"
                )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("BEGIN IMMEDIATE")
        for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
            db.execute(statement)
        if db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            db.execute("INSERT INTO meta VALUES ('created_at', ?)", (str(time.time()),))
        db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
        if self._lock is not None:
            self._lock.release()

    # --- reads -----------------------------------------------------------------------------

    def cursor(self, tenant: str, category: str) -> datetime | None:
        row = self._db.execute(
            "SELECT cursor FROM streams WHERE tenant = ? AND category = ?", (tenant, category)
        ).fetchone()
        return _dt(row[0]) if row else None

    def already_delivered(self, tenant: str, category: str, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` were delivered before."""
        wanted = list(ids)
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id FROM delivered WHERE tenant = ? AND category = ? AND id IN ({marks})",  # noqa: S608 - only placeholders
                (tenant, category, *chunk),
            )
            found.update(r[0] for r in rows)
        return found

    def sink_position(self, name: str) -> str | None:
        row = self._db.execute("SELECT position FROM sinks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def streams(self) -> list[StreamState]:
        counters: dict[tuple[str, str], dict[str, int]] = {}
        for tenant, category, name, value in self._db.execute(
            "SELECT tenant, category, name, value FROM counters ORDER BY tenant, category, name"
        ):
            counters.setdefault((tenant, category), {})[name] = value
        out = []
        for tenant, category, cursor, success, error, error_at in self._db.execute(
            "SELECT tenant, category, cursor, last_success, last_error, last_error_at FROM streams "
            "ORDER BY tenant, category"
        ):
            out.append(
                StreamState(
                    tenant,
                    category,
                    _dt(cursor),
                    _dt(success),
                    error,
                    _dt(error_at),
                    counters.get((tenant, category), {}),
                )
            )
        return out

    # --- writes ----------------------------------------------------------------------------

    def commit(
        self,
        tenant: str,
        category: str,
        *,
        cursor: datetime | None,
        delivered: Iterable[tuple[str, float]],
        counts: Mapping[str, int],
        sink_positions: Mapping[str, str],
        prune_before: datetime | None,
        success_at: float | None = None,
    ) -> None:
        """Record one handled batch, atomically. ``cursor`` only ever moves forward."""
        db = self._db
        with self._transaction():
            db.execute(
                "INSERT INTO streams (tenant, category) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (tenant, category),
            )
            if cursor is not None:
                db.execute(
                    "UPDATE streams SET cursor = max(coalesce(cursor, ?), ?) WHERE tenant = ? AND category = ?",
                    (cursor.timestamp(), cursor.timestamp(), tenant, category),
                )
            if success_at is not None:
                db.execute(
                    "UPDATE streams SET last_success = ?, last_error = NULL, last_error_at = NULL "
                    "WHERE tenant = ? AND category = ?",
                    (success_at, tenant, category),
                )
            db.executemany(
                "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?, ?)",
                ((tenant, category, id_, when) for id_, when in delivered),
            )
            db.executemany(
                "INSERT INTO counters VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = value + excluded.value",
                ((tenant, category, name, n) for name, n in counts.items() if n),
            )
            db.executemany(
                "INSERT INTO sinks VALUES (?, ?) ON CONFLICT DO UPDATE SET position = excluded.position",
                sink_positions.items(),
            )
            if prune_before is not None:
                db.execute(
                    "DELETE FROM delivered WHERE tenant = ? AND category = ? AND event_time < ?",
                    (tenant, category, prune_before.timestamp()),
                )

    def set_sink_positions(self, positions: Mapping[str, str]) -> None:
        """Record sinks' positions on their own (the baselines taken at start)."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO sinks VALUES (?, ?) ON CONFLICT DO UPDATE SET position = excluded.position",
                positions.items(),
            )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def record_error(self, tenant: str, category: str, message: str, at: float) -> None:
        """Remember the last failure of a stream, for ``status``."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO streams (tenant, category, last_error, last_error_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at",
                (tenant, category, message[:2000], at),
            )
