"""The state store as the runner sees it: one small async Protocol, two implementations.

``SqliteStore`` (the embedded default, one file, one writer: ``state._store``) and
``PostgresStore`` (a fleet of workers sharing one database: ``state._postgres``) keep the same
semantics, checked by one conformance suite (``tests/state/test_conformance.py``):

* a stream's ``cursor`` only moves forward, and only in the transaction that records the ids
  its page handled, its counters and the sinks' positions: after a crash the store is at one
  commit boundary or the one before;
* ``prune_before`` drops a stream's ids older than it and raises its ``kept_from``;
* ``already_delivered`` answers from what was committed: a record's id by its id and event
  time (the id is made from the record's whole second, so the two go together), a dead
  letter's id by its id alone (a malformed record has no time to trust);
* ``record_error`` remembers a stream's last failure and a later success clears it;
* a stream's health (``_health.StreamHealth``) is replaced by ``set_health``, by
  ``record_error`` and by a commit that carries one, each in its own statement or transaction;
  its ``since`` is kept while the state stays the same (a degraded stream's first failure of
  the run), and is the new one's otherwise;
* a stream's ``began`` is set once, by the first commit or ``set_began`` that brings one, and
  never changed after (a stream of an earlier release has none: unknown);
* a stream's ``marker`` (an opaque text: where a stream that has no time cursor stands, such as
  a SIEM feed's page token and the file and line reached in it) is replaced by each commit
  that carries one, in that commit's transaction, and left as it was by one that does not;
* (PostgreSQL) a commit whose lease is no longer its stream's newest is refused whole.
* a commit's ``tallies`` (its delivered alerts counted by hour, for the dashboard) are added
  in the commit's own transaction; rows of an hour older than :data:`HOURS_KEPT` (alert
  types and techniques) or :data:`PARTY_HOURS_KEPT` (senders and recipients) before the
  tallies' ``hour_now`` are not kept (pruned by the first commit of each new hour).

Dead letters: SQLite keeps them in the dead-letter file beside it (a file sink with its
position in the store); PostgreSQL keeps them in a table, written in the commit's own
transaction, since workers on different machines have no shared file. ``keeps_dead_letters``
says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, cast

from mimecast_connector._health import State, StreamHealth

#: Hours of alert counts by type and technique kept (``Tallies.hours``): 35 days.
HOURS_KEPT = 35 * 24
#: Hours of alert counts by sender and recipient kept (``Tallies.parties``): 48 hours.
PARTY_HOURS_KEPT = 48
#: The longest address kept in ``Tallies.parties`` (longer ones are cut: hostile input).
PARTY_CHARS = 320


@dataclass(frozen=True, slots=True)
class Tallies:
    """One commit's delivered alerts, counted for the dashboard (``dashboard``): ``hours``
    by (epoch hour of the alert's event time, alertType, threatId), ``parties`` by (epoch
    hour, ``"sender"`` or ``"recipient"``) then address, counted under ``category`` (the commit's
    own, less a backfill's suffix: a backfill's alerts count with their category's).
    ``hour_now`` is the current epoch hour: what the store keeps is counted back from it."""

    category: str
    hours: Mapping[tuple[int, str, str], int]
    parties: Mapping[tuple[int, str], Mapping[str, int]]
    hour_now: int


@dataclass(frozen=True, slots=True)
class Commit:
    """One stream's share of a commit: its new cursor (None: unchanged), the ids of the records
    it handled with their event times, counters to add, ids to prune, the time of a completed
    poll, (stores that keep them) its dead-letter lines, the ids of its dead letters with the
    time they were seen, and its new marker (None: unchanged)."""

    tenant: str
    category: str
    cursor: datetime | None
    delivered: Iterable[tuple[str, float]]
    counts: Mapping[str, int]
    prune_before: datetime | None = None
    success_at: float | None = None
    dead: Sequence[bytes] = ()
    #: The poll's lease (``PostgresStore.take_lease``): the commit is refused unless it is
    #: still the stream's newest. None: no lease (a single process).
    lease: int | None = None
    dead_ids: Iterable[tuple[str, float]] = ()
    #: The stream's position as an opaque text, for a stream that has no time cursor (a SIEM
    #: feed: its page token, and the file and line reached in it). The store keeps it as it is
    #: given, replacing the one before; the last of a group's commits of one stream that has
    #: one wins. None: the stream's marker is left as it is.
    marker: str | None = None
    #: The stream's health from this commit on (a poll's last commit: ``collecting``), in the
    #: same statement as ``success_at``; None: left as it is.
    health: StreamHealth | None = None
    #: The start of the window of the poll this page is of: kept as the stream's ``began`` if
    #: it has none (its first window's start; a backfill reads only before it). None: a
    #: backfill's page, or a feed's.
    began: datetime | None = None
    #: The page's delivered alerts counted (its stream's category without a backfill's
    #: range); None: none.
    tallies: Tallies | None = None


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
    #: The stream's marker as committed (``Commit.marker``); None if it never had one.
    marker: str | None = None
    #: The stream's health as stored; None if none was stored yet (a state written by an
    #: earlier release: ``_health.derived`` tells it from the rest).
    health: StreamHealth | None = None
    #: Where the stream's first window began (``Commit.began``, ``Store.set_began``); None if
    #: unknown (never polled, or polled by a release that did not record it).
    began: datetime | None = None


def stream_columns(*, marker: bool, health: bool, began: bool) -> str:
    """What a read of the streams table selects after tenant, category, cursor, last success,
    last error and its time, both stores: the marker, the four health columns and ``began``,
    NULL for each that a table of an older release lacks (a read-only open does not add it)."""
    return ", ".join(
        (
            "marker" if marker else "NULL",
            "health, health_reason, health_advice, health_since"
            if health
            else "NULL, NULL, NULL, NULL",
            "began" if began else "NULL",
        )
    )


def stream_state(row: Sequence[object], counters: Mapping[str, int]) -> StreamState:
    """A :class:`StreamState` from a row of the columns above (times as epoch seconds)."""
    (
        tenant,
        category,
        cursor,
        success,
        error,
        error_at,
        mark,
        state,
        reason,
        advice,
        since,
        first,
    ) = row
    health = None  # none stored, or a state this release does not know
    if isinstance(state, str) and state in State.__members__.values():
        health = StreamHealth(
            State(state), str(reason or ""), str(advice or ""), cast("float | None", since)
        )
    return StreamState(
        str(tenant),
        str(category),
        _time(cursor),
        _time(success),
        None if error is None else str(error),
        _time(error_at),
        counters,
        None if mark is None else str(mark),
        health,
        _time(first) if first else None,  # 0: polled before ``began`` was recorded
    )


def _time(value: object) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(cast("float", value), UTC)


class AlertStats(Protocol):
    """What the dashboard reads of the alerts delivered (``Commit.tallies``), both stores.

    Hours are epoch hours (``int(epoch_seconds // 3600)``); each answer counts the rows of
    ``since_hour`` and later, of every tenant or only of ``tenant``. A store that has no
    such rows yet (a file of an earlier release read read-only) answers empty lists.
    """

    async def alert_series(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[int, str, int]]:
        """Alerts by hour and category: ``(hour, category, n)``, oldest first."""
        ...

    async def technique_counts(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        """Alerts by threatId, most first (then by threatId)."""
        ...

    async def top_alert_types(
        self, since_hour: int, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        """The ``limit`` alertTypes with the most alerts, most first (then by name)."""
        ...

    async def top_parties(
        self, since_hour: int, role: str, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        """The ``limit`` addresses of ``role`` (``"sender"`` or ``"recipient"``) with the
        most alerts, most first (then by address)."""
        ...


class Store(AlertStats, Protocol):
    """What a run needs of its state (and the dashboard reads). Implementations:
    ``SqliteStore``, ``PostgresStore``."""

    #: True: dead letters go into the store with their commit (``Commit.dead``); False: the
    #: run writes them to its dead-letter file and records that file's position.
    keeps_dead_letters: bool

    async def position(self, tenant: str, category: str) -> tuple[datetime | None, float | None]:
        """The stream's cursor and ``kept_from`` (epoch s; None if never pruned)."""
        ...

    async def cursor(self, tenant: str, category: str) -> datetime | None: ...

    async def marker(self, tenant: str, category: str) -> str | None:
        """The stream's marker as committed (``Commit.marker``); None if it never had one."""
        ...

    async def already_delivered(
        self,
        tenant: str,
        category: str,
        records: Iterable[tuple[str, float]],
        dead: Iterable[str] = (),
    ) -> set[str]:
        """Which of these ids were committed as handled before: ``records``, records' ids with
        their event times (as committed in ``Commit.delivered``), and ``dead``, dead letters'
        ids (``Commit.dead_ids``)."""
        ...

    async def sink_position(self, name: str) -> str | None: ...

    async def stale(self, leases: Mapping[tuple[str, str], int]) -> set[tuple[str, str]]:
        """Which of these streams' leases are no longer the newest (a fleet's poll presumed
        dead and taken over meanwhile): their pages must not be delivered."""
        ...

    async def streams(self, *, counters: bool = True) -> list[StreamState]:
        """Every stream the store knows, ordered by tenant and category (``counters=False``:
        without their counters, which are most of the rows)."""
        ...

    async def commit_group(
        self, commits: Sequence[Commit], sink_positions: Mapping[str, str]
    ) -> None:
        """Record handled batches of any streams and the sinks' positions in one transaction."""
        ...

    async def set_sink_positions(self, positions: Mapping[str, str]) -> None: ...

    async def record_error(
        self,
        tenant: str,
        category: str,
        message: str,
        at: float,
        health: StreamHealth | None = None,
    ) -> None:
        """Remember the last failure of a stream, for ``status``, and its new ``health`` in
        the same statement (None: left as it is)."""
        ...

    async def set_health(self, tenant: str, category: str, health: StreamHealth) -> None:
        """Replace the stream's health (created if new): for a change that comes with no
        commit or error of its own (Mimecast accepted the credentials)."""
        ...

    async def began(self, tenant: str, category: str) -> datetime | None:
        """Where the stream's first window began (``Commit.began``); None if unknown."""
        ...

    async def set_began(self, tenant: str, category: str, began: datetime) -> None:
        """Record where the stream begins (created if new), unless it has a ``began`` already:
        a backfill of a stream never polled sets where its first window will start."""
        ...

    async def aclose(self) -> None: ...
