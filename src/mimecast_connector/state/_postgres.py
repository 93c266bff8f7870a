"""The PostgreSQL state store: the same checkpoints, ids, counters and positions as the SQLite
file, in tables that a fleet of workers shares (``state = "postgresql://…"``).

Semantics are the SQLite store's (``state._store`` says what the checkpoint means; one
conformance suite holds both to it). What differs:

* **Many writers.** Every worker of a fleet writes here; no two of them ever poll one stream at
  once (the fleet's job lock per stream, ``runner._fleet``), so no two transactions touch one
  stream's rows. There is no file lock: ``WriterLock`` is SQLite's.
* **Dead letters** live in ``mimecast_dead_letters``, written in the commit's transaction
  (workers on different machines share no file).
* **Two connections**: one for commits (the run's one committer, one transaction at a time)
  and one, in autocommit, for the reads and error notes the polls make meanwhile, so that
  nothing a poll does can land inside a commit's transaction.
* **A lost connection is retryable**: the call raises :class:`StateUnavailableError` (the poll
  fails and backs off, nothing committed past the last commit), and the next call reconnects.
* Durability is the server's: a ``COMMIT`` returns once PostgreSQL has flushed its WAL
  (``synchronous_commit`` on, the default; a server set to ``off`` loses the last commits of a
  server crash, and says so in its own documentation).

The URL may carry a password: it is a secret, redacted from every message, never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import cast

import psycopg

from mimecast_connector._errors import LeaseLostError, StateError, StateUnavailableError
from mimecast_connector._health import StreamHealth
from mimecast_connector.state._protocol import (
    HOURS_KEPT,
    PARTY_HOURS_KEPT,
    Commit,
    StreamState,
    stream_columns,
    stream_state,
)
from mimecast_connector.state._tallies import (
    PARTY_ROW_BYTES,
    PartyKey,
    group_parties,
    group_tallies,
    merge_parties,
    ranked_parties,
)
from mimecast_connector.state._url import shown_url

#: The version of these tables. A column added since (``lease``, ``marker``, the ``health_*``
#: columns) is added in place
#: by the first worker of a release that uses it (releases before it ignore the column), so
#: the version stays.
SCHEMA_VERSION = 2

#: The dashboard's counts of delivered alerts (``Commit.tallies``), keyed hour first; made at
#: open when missing (tables of an earlier release have none). Senders and recipients: one
#: row of ``{address: n}`` for each tenant, hour and role (``state._tallies``). The totals
#: are the hours' counts summed over the tenants, for the all-tenants charts.
_SCHEMA_TALLIES = """CREATE TABLE IF NOT EXISTS mimecast_alert_hours (
    hour BIGINT NOT NULL,
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    alert_type TEXT NOT NULL,
    technique TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (hour, tenant, category, alert_type, technique)
);
CREATE INDEX IF NOT EXISTS mimecast_alert_hours_tenant ON mimecast_alert_hours (tenant, hour);
CREATE TABLE IF NOT EXISTS mimecast_alert_totals (
    hour BIGINT NOT NULL,
    category TEXT NOT NULL,
    alert_type TEXT NOT NULL,
    technique TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (hour, category, alert_type, technique)
);
CREATE TABLE IF NOT EXISTS mimecast_alert_parties (
    hour BIGINT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT NOT NULL,
    counts BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS mimecast_alert_parties_hour ON mimecast_alert_parties (hour, role);
CREATE INDEX IF NOT EXISTS mimecast_alert_parties_tenant ON mimecast_alert_parties (tenant, hour)"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mimecast_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mimecast_streams (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    cursor DOUBLE PRECISION,
    last_success DOUBLE PRECISION,
    last_error TEXT,
    last_error_at DOUBLE PRECISION,
    kept_from DOUBLE PRECISION,
    lease BIGINT NOT NULL DEFAULT 0,
    marker TEXT,
    health TEXT,
    health_reason TEXT,
    health_advice TEXT,
    health_since DOUBLE PRECISION,
    began DOUBLE PRECISION,
    PRIMARY KEY (tenant, category)
);
CREATE TABLE IF NOT EXISTS mimecast_delivered (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    id TEXT NOT NULL,
    event_time DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, category, id)
);
CREATE INDEX IF NOT EXISTS mimecast_delivered_time
    ON mimecast_delivered (tenant, category, event_time);
CREATE TABLE IF NOT EXISTS mimecast_counters (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    name TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (tenant, category, name)
);
CREATE TABLE IF NOT EXISTS mimecast_sinks (name TEXT PRIMARY KEY, position TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS mimecast_dead_letters (
    seq BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    stored_at DOUBLE PRECISION NOT NULL,
    line BYTEA NOT NULL
);
{tallies}
""".replace("{tallies}", _SCHEMA_TALLIES)

#: The fence of a stream's polls (see ``take_lease``), for tables made before it existed.
_ADD_LEASE = "ALTER TABLE mimecast_streams ADD COLUMN lease BIGINT NOT NULL DEFAULT 0"
#: A stream's opaque position (``Commit.marker``), for tables made before it existed.
_ADD_MARKER = "ALTER TABLE mimecast_streams ADD COLUMN IF NOT EXISTS marker TEXT"
#: A stream's health (``_health``), for tables made before it existed.
_ADD_HEALTH = (
    "ALTER TABLE mimecast_streams ADD COLUMN IF NOT EXISTS health TEXT, "
    "ADD COLUMN IF NOT EXISTS health_reason TEXT, "
    "ADD COLUMN IF NOT EXISTS health_advice TEXT, "
    "ADD COLUMN IF NOT EXISTS health_since DOUBLE PRECISION"
)
#: A stream's health replaced by the ``excluded`` row's, unless it has none; ``since`` kept
#: while the state stays the same.
_UPSERT_HEALTH = (
    "health_since = CASE WHEN excluded.health IS NULL THEN s.health_since "
    "WHEN s.health IS NOT DISTINCT FROM excluded.health AND s.health_since IS NOT NULL "
    "THEN s.health_since ELSE excluded.health_since END, "
    "health_reason = CASE WHEN excluded.health IS NULL THEN s.health_reason "
    "ELSE excluded.health_reason END, "
    "health_advice = CASE WHEN excluded.health IS NULL THEN s.health_advice "
    "ELSE excluded.health_advice END, "
    "health = coalesce(excluded.health, s.health)"
)

#: Where a stream's first window began (``Commit.began``), for tables made before it existed:
#: a stream polled before then began at a time nobody wrote down (0).
_ADD_BEGAN = (
    "ALTER TABLE mimecast_streams ADD COLUMN IF NOT EXISTS began DOUBLE PRECISION",
    "UPDATE mimecast_streams SET began = 0 WHERE began IS NULL AND cursor IS NOT NULL",
)

#: Whether the tables exist, and which of the columns added since are there.
_FOUND = (
    "SELECT to_regclass('mimecast_meta') IS NOT NULL, "
    "EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'mimecast_streams' AND column_name = 'lease'), "
    "EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'mimecast_streams' AND column_name = 'marker'), "
    "EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'mimecast_streams' AND column_name = 'health'), "
    "EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
    "AND table_name = 'mimecast_streams' AND column_name = 'began'), "
    "to_regclass('mimecast_alert_parties') IS NOT NULL"
)

#: Key of the advisory lock that serialises schema set-up among workers starting together.
_SCHEMA_LOCK = 0x6D696D65  # "mime"


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _health_columns(health: StreamHealth | None) -> tuple[object, ...]:
    """A health as its four columns: state, reason, advice, since (all None for none)."""
    if health is None:
        return (None, None, None, None)
    return (health.state.value, health.reason[:2000], health.advice[:2000], health.since)


class PostgresStore:
    """The state in PostgreSQL. Open with :meth:`open`; one per process."""

    keeps_dead_letters = True

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        self._url = url
        self.shown = shown_url(url)
        self._timeout = connect_timeout
        self._writer: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._reader: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._reconnecting = {"writer": asyncio.Lock(), "reader": asyncio.Lock()}
        #: Whether ``mimecast_streams`` has its ``marker`` column: always once opened with
        #: ``create``; tables of an older release read by ``status`` may have none.
        self._marker_column = True
        #: Whether ``mimecast_streams`` has its ``health_*`` columns, likewise.
        self._health_columns = True
        #: Whether ``mimecast_streams`` has its ``began`` column, likewise.
        self._began_column = True
        #: Whether the dashboard's tables are there, likewise.
        self._tally_tables = True
        #: The ``hour_now`` of this process's last prune of those tables (one an hour at most).
        self._tallies_pruned: int | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self.shown!r})"

    @classmethod
    async def open(
        cls, url: str, *, create: bool = True, connect_timeout: float = 10.0
    ) -> PostgresStore:
        """Connect, create the tables if they are missing, check the schema version.
        ``create=False`` (``status``) writes nothing: no tables yet is a StateError."""
        store = cls(url, connect_timeout=connect_timeout)
        try:
            # Held by the store at once, so that a refusal below (no tables, another schema
            # version) closes it with the store instead of leaving it open.
            writer = store._writer = await store._connect()
            async with writer.transaction():
                if not create:
                    found = await (await writer.execute(_FOUND)).fetchone()
                    if not found or not found[0]:
                        raise StateError(
                            f"the PostgreSQL database {store.shown} holds no connector state "
                            "yet: run the connector first"
                        )
                    store._marker_column = bool(found[2])
                    store._health_columns = bool(found[3])
                    store._began_column = bool(found[4])
                    store._tally_tables = bool(found[5])
                else:
                    # Tables are made once (the user needs CREATE then); later starts only
                    # read and write them. A column added since is added here too, once (an
                    # ALTER TABLE needs the table's owner, even when it would change nothing).
                    await writer.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                    found = await (await writer.execute(_FOUND)).fetchone()
                    if not found or not found[0]:
                        for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                            await writer.execute(statement)
                    else:
                        if not found[1]:
                            await writer.execute(_ADD_LEASE)
                        if not found[2]:
                            await writer.execute(_ADD_MARKER)
                        if not found[3]:
                            await writer.execute(_ADD_HEALTH)
                        if not found[4]:
                            for statement in _ADD_BEGAN:
                                await writer.execute(statement)
                        if not found[5]:
                            for statement in _SCHEMA_TALLIES.split(";"):
                                await writer.execute(statement)
                row = await (
                    await writer.execute(
                        "SELECT value FROM mimecast_meta WHERE key = 'schema_version'"
                    )
                ).fetchone()
                if row is None:
                    await writer.execute(
                        "INSERT INTO mimecast_meta VALUES ('schema_version', %s), "
                        "('created_at', %s)",
                        (str(SCHEMA_VERSION), str(time.time())),
                    )
                elif row[0] != str(SCHEMA_VERSION):
                    raise StateError(
                        f"the PostgreSQL state database {store.shown} has schema version "
                        f"{row[0]}, this version of mimecast-connector reads version "
                        f"{SCHEMA_VERSION}: use the matching release"
                    )
        except psycopg.Error as exc:
            await store.aclose()
            raise StateError(
                f"cannot use the PostgreSQL state database {store.shown}: "
                f"{_reason(exc)}. Check that the server runs and accepts this user, and that "
                "the database exists (`createdb`); the user needs CREATE on its schema the "
                "first time, to make the tables."
            ) from None
        except BaseException:
            await store.aclose()
            raise
        return store

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        return await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=max(1, round(self._timeout))
        )

    @contextlib.asynccontextmanager
    async def _use(self, role: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        """The connection for ``role`` ("writer" or "reader"), reconnected if it was lost; a
        failure of the server or the network is :class:`StateUnavailableError` (retryable)."""
        try:
            conn = self._writer if role == "writer" else self._reader
            if conn is None or conn.closed or conn.broken:
                # One reconnect per role, however many polls find the connection broken at
                # once: each would otherwise open (and leave open) a connection of its own.
                async with self._reconnecting[role]:
                    conn = self._writer if role == "writer" else self._reader
                    if conn is None or conn.closed or conn.broken:
                        if conn is not None:
                            await conn.close()
                        conn = await self._connect()
                        if role == "writer":
                            self._writer = conn
                        else:
                            self._reader = conn
            yield conn
        except _REFUSED as exc:
            # Tables dropped, a privilege taken away, a read-only server: nothing can be
            # committed until a person acts, so the run halts (not retried for ever).
            raise StateError(
                f"the PostgreSQL state database {self.shown} refused the connector's work "
                f"({_reason(exc)}): check that its tables exist and that this user may read "
                "and write them (and that the server is not read-only), then start again; "
                "nothing past the last commit was recorded"
            ) from None
        except psycopg.OperationalError as exc:
            raise StateUnavailableError(
                f"the PostgreSQL state database {self.shown} failed ({_reason(exc)}): the "
                "stream is retried from its last commit (if the connection broke during a "
                "COMMIT, that commit may have landed; its ids keep the retry from repeating it)"
            ) from None

    # --- reads -----------------------------------------------------------------------------

    async def _one(self, query: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
        async with self._use("reader") as conn:
            return await (await conn.execute(query, params)).fetchone()

    async def position(self, tenant: str, category: str) -> tuple[datetime | None, float | None]:
        row = await self._one(
            "SELECT cursor, kept_from FROM mimecast_streams WHERE tenant = %s AND category = %s",
            (tenant, category),
        )
        if row is None:
            return None, None
        cursor, kept = row
        assert cursor is None or isinstance(cursor, float)
        assert kept is None or isinstance(kept, float)
        return _dt(cursor), kept

    async def cursor(self, tenant: str, category: str) -> datetime | None:
        return (await self.position(tenant, category))[0]

    async def marker(self, tenant: str, category: str) -> str | None:
        if not self._marker_column:
            return None
        row = await self._one(
            "SELECT marker FROM mimecast_streams WHERE tenant = %s AND category = %s",
            (tenant, category),
        )
        return None if row is None or row[0] is None else str(row[0])

    async def already_delivered(
        self,
        tenant: str,
        category: str,
        records: Iterable[tuple[str, float]],
        dead: Iterable[str] = (),
    ) -> set[str]:
        # Ids are unique within a stream here (keyed by id alone, dead letters' too).
        wanted = [id_ for id_, _ in records]
        wanted.extend(dead)
        if not wanted:
            return set()
        async with self._use("reader") as conn:
            rows = await (
                await conn.execute(
                    "SELECT id FROM mimecast_delivered "
                    "WHERE tenant = %s AND category = %s AND id = ANY(%s)",
                    (tenant, category, wanted),
                )
            ).fetchall()
        return {str(r[0]) for r in rows}

    async def take_lease(self, tenant: str, category: str) -> int:
        """A new lease on the stream, for one poll: every earlier lease is stale from now on,
        so a poll presumed dead (its worker stalled past the fleet's limit) and still running
        can neither deliver nor commit once another poll of the stream took over."""
        return (await self.take_lease_and_position(tenant, category))[0]

    async def take_lease_and_position(
        self, tenant: str, category: str
    ) -> tuple[int, tuple[datetime | None, float | None]]:
        """:meth:`take_lease`, and the stream's :meth:`position` read in the same statement
        (one round trip a poll less)."""
        return (await self.take_leases_and_positions(tenant, [category]))[category]

    async def take_leases_and_positions(
        self, tenant: str, categories: Iterable[str]
    ) -> dict[str, tuple[int, tuple[datetime | None, float | None]]]:
        """:meth:`take_lease_and_position` of several streams of one tenant, in one statement
        (a fleet's round starts its due streams together); rows locked in key order, as a
        group commit locks them."""
        wanted = sorted(set(categories))
        if not wanted:
            return {}
        async with self._use("reader") as conn:  # autocommit, as the other one-statement writes
            rows = await (
                await conn.execute(
                    "INSERT INTO mimecast_streams (tenant, category, lease) "
                    "SELECT %s, c, 1 FROM unnest(%s::text[]) WITH ORDINALITY AS u(c, n) "
                    "ORDER BY n "
                    "ON CONFLICT (tenant, category) DO UPDATE "
                    "SET lease = mimecast_streams.lease + 1 "
                    "RETURNING category, lease, cursor, kept_from",
                    (tenant, wanted),
                )
            ).fetchall()
        taken: dict[str, tuple[int, tuple[datetime | None, float | None]]] = {}
        for category, lease, cursor, kept in rows:
            assert isinstance(category, str)
            assert isinstance(lease, int)
            assert cursor is None or isinstance(cursor, float)
            assert kept is None or isinstance(kept, float)
            taken[category] = (lease, (_dt(cursor), kept))
        assert set(taken) == set(wanted)
        return taken

    async def stale(self, leases: Mapping[tuple[str, str], int]) -> set[tuple[str, str]]:
        if not leases:
            return set()
        keys = list(leases)
        async with self._use("reader") as conn:
            rows = await (
                await conn.execute(
                    "SELECT s.tenant, s.category, s.lease FROM mimecast_streams s JOIN "
                    "unnest(%s::text[], %s::text[]) AS k(tenant, category) "
                    "ON s.tenant = k.tenant AND s.category = k.category",
                    ([t for t, _ in keys], [c for _, c in keys]),
                )
            ).fetchall()
        newest = {(str(t), str(c)): lease for t, c, lease in rows}
        return {key for key, lease in leases.items() if newest.get(key) != lease}

    async def sink_position(self, name: str) -> str | None:
        row = await self._one("SELECT position FROM mimecast_sinks WHERE name = %s", (name,))
        return None if row is None else str(row[0])

    async def streams(self, *, counters: bool = True) -> list[StreamState]:
        async with self._use("reader") as conn:
            counted = (
                await (
                    await conn.execute(
                        "SELECT tenant, category, name, value FROM mimecast_counters "
                        "ORDER BY tenant, category, name"
                    )
                ).fetchall()
                if counters
                else []
            )
            columns = stream_columns(  # NULLs: an older release's
                marker=self._marker_column, health=self._health_columns, began=self._began_column
            )
            rows = await (
                await conn.execute(
                    "SELECT tenant, category, cursor, last_success, last_error, last_error_at, "  # noqa: S608 - column names or NULLs
                    f"{columns} FROM mimecast_streams ORDER BY tenant, category"
                )
            ).fetchall()
        by_stream: dict[tuple[str, str], dict[str, int]] = {}
        for tenant, category, name, value in counted:
            by_stream.setdefault((str(tenant), str(category)), {})[str(name)] = int(value)  # type: ignore[call-overload]
        return [stream_state(row, by_stream.get((str(row[0]), str(row[1])), {})) for row in rows]

    async def dead_letters(self) -> list[tuple[str, str, bytes]]:
        """Every dead letter kept, oldest first: ``(tenant, category, line)``."""
        async with self._use("reader") as conn:
            rows = await (
                await conn.execute(
                    "SELECT tenant, category, line FROM mimecast_dead_letters ORDER BY seq"
                )
            ).fetchall()
        return [(str(t), str(c), bytes(line)) for t, c, line in rows]  # type: ignore[call-overload]

    # --- writes ----------------------------------------------------------------------------

    async def commit_group(
        self, commits: Sequence[Commit], sink_positions: Mapping[str, str]
    ) -> None:
        """Record handled batches of any streams, their dead letters and the sinks' positions
        in one transaction. A stream's ``cursor`` only ever moves forward; its ``marker`` is
        replaced by each commit that brings one (the last of the group's, for one stream)."""
        # The group as a few set-based statements, whatever its size: each stream's share
        # summed up first (its newest cursor, last success, widest prune, last marker;
        # counters added).
        # The pages of one stream in a group belong to one poll, whose prune comes with its
        # last commit, so pruning after every insert is what committing them in turn does.
        now = time.time()
        leases: dict[tuple[str, str], int] = {}
        streams: dict[tuple[str, str], list[float | None]] = {}  # cursor, success, prune
        markers: dict[tuple[str, str], str] = {}
        healths: dict[tuple[str, str], StreamHealth] = {}
        began: dict[tuple[str, str], float] = {}
        delivered: list[tuple[str, str, str, float]] = []
        counted: dict[tuple[str, str, str], int] = {}
        dead: list[tuple[str, str, bytes]] = []
        # The dashboard's counts, summed over the group (one key twice in an INSERT ... ON
        # CONFLICT DO UPDATE is an error), those of hours still kept.
        hours, totals, hour_now = group_tallies(commits)
        parties = sorted(group_parties(commits).items())  # in lock order
        for c in commits:
            key = (c.tenant, c.category)
            if c.lease is not None:
                leases[key] = c.lease
            row = streams.setdefault(key, [None, None, None])
            if c.cursor is not None:
                row[0] = _newest(row[0], c.cursor.timestamp())
            if c.success_at is not None:
                row[1] = c.success_at
            if c.prune_before is not None:
                row[2] = _newest(row[2], c.prune_before.timestamp())
            if c.marker is not None:
                markers[key] = c.marker
            if c.health is not None:
                healths[key] = c.health
            if c.began is not None:
                began.setdefault(key, c.began.timestamp())
            delivered.extend((*key, id_, when) for id_, when in c.delivered)
            delivered.extend((*key, id_, when) for id_, when in c.dead_ids)
            for name, n in c.counts.items():
                if n:
                    counted[(*key, name)] = counted.get((*key, name), 0) + n
            dead.extend((*key, line) for line in c.dead)
        # Rows other workers may write too (alert_totals: every tenant's; alert_hours: a
        # backfill's and its live stream's; a stream's row: a backfill's ``began``; the sinks')
        # are locked in one order, by key: in the order the group brought them, two workers'
        # groups could each hold a row the other waits for, and PostgreSQL would end that
        # deadlock by failing one of them.
        ordered_streams = sorted(streams.items())
        async with self._use("writer") as conn, conn.transaction(), conn.cursor() as cur:
            if leases:
                await cur.execute(
                    "SELECT s.tenant, s.category, s.lease FROM mimecast_streams s "
                    "JOIN unnest(%s::text[], %s::text[]) AS k(tenant, category) "
                    "ON s.tenant = k.tenant AND s.category = k.category "
                    "ORDER BY s.tenant, s.category FOR UPDATE OF s",
                    _columns(leases, 2),
                )
                held = {(str(t), str(c)): lease for t, c, lease in await cur.fetchall()}
                for key, lease in leases.items():
                    if held.get(key) != lease:
                        raise LeaseLostError(*key)
            if streams:
                # A stream's row, created if new; the cursor and kept_from only move forward;
                # a success clears the last error; a marker replaces the one before, and so
                # does a health (its since kept while the state is).
                await cur.execute(
                    "INSERT INTO mimecast_streams AS s (tenant, category, cursor, last_success, "  # noqa: S608 - fixed texts
                    "kept_from, marker, health, health_reason, health_advice, health_since, began) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], %s::float8[], "
                    "%s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], "
                    "%s::float8[], %s::float8[]) "
                    "ON CONFLICT (tenant, category) DO UPDATE SET "
                    "cursor = greatest(s.cursor, excluded.cursor), "
                    "last_success = coalesce(excluded.last_success, s.last_success), "
                    "last_error = CASE WHEN excluded.last_success IS NULL "
                    "THEN s.last_error END, "
                    "last_error_at = CASE WHEN excluded.last_success IS NULL "
                    "THEN s.last_error_at END, "
                    "kept_from = greatest(s.kept_from, excluded.kept_from), "
                    "marker = coalesce(excluded.marker, s.marker), "
                    f"began = coalesce(s.began, excluded.began), {_UPSERT_HEALTH}",
                    _columns(
                        [
                            (
                                *key,
                                *row,
                                markers.get(key),
                                *_health_columns(healths.get(key)),
                                began.get(key),
                            )
                            for key, row in ordered_streams
                        ],
                        11,
                    ),
                )
            if delivered:
                await cur.execute(
                    "INSERT INTO mimecast_delivered SELECT * FROM unnest(%s::text[], %s::text[], "
                    "%s::text[], %s::float8[]) ON CONFLICT DO NOTHING",
                    _columns(delivered, 4),
                )
            if counted:
                await cur.execute(
                    "INSERT INTO mimecast_counters AS n SELECT * FROM unnest(%s::text[], "
                    "%s::text[], %s::text[], %s::int8[]) ON CONFLICT (tenant, category, name) "
                    "DO UPDATE SET value = n.value + excluded.value",
                    _columns([(*key, n) for key, n in sorted(counted.items())], 4),
                )
            if dead:
                await cur.execute(
                    "INSERT INTO mimecast_dead_letters (tenant, category, stored_at, line) "
                    "SELECT t, c, %s, l FROM unnest(%s::text[], %s::text[], %s::bytea[]) "
                    "WITH ORDINALITY AS u(t, c, l, n) ORDER BY n",
                    (now, *_columns(dead, 3)),
                )
            pruned = [(*key, row[2]) for key, row in ordered_streams if row[2] is not None]
            if pruned:
                await cur.execute(
                    "DELETE FROM mimecast_delivered d "
                    "USING unnest(%s::text[], %s::text[], %s::float8[]) AS p(t, c, before) "
                    "WHERE d.tenant = p.t AND d.category = p.c AND d.event_time < p.before",
                    _columns(pruned, 3),
                )
            if sink_positions:
                await cur.execute(
                    "INSERT INTO mimecast_sinks SELECT * FROM unnest(%s::text[], %s::text[]) "
                    "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                    _columns(sorted(sink_positions.items()), 2),
                )
            if hours:
                await cur.execute(
                    "INSERT INTO mimecast_alert_hours AS h SELECT * FROM unnest(%s::int8[], "
                    "%s::text[], %s::text[], %s::text[], %s::text[], %s::int8[]) "
                    "ON CONFLICT (hour, tenant, category, alert_type, technique) "
                    "DO UPDATE SET n = h.n + excluded.n",
                    _columns([(*k, n) for k, n in sorted(hours.items())], 6),
                )
            if totals:
                await cur.execute(
                    "INSERT INTO mimecast_alert_totals AS h SELECT * FROM unnest(%s::int8[], "
                    "%s::text[], %s::text[], %s::text[], %s::int8[]) "
                    "ON CONFLICT (hour, category, alert_type, technique) "
                    "DO UPDATE SET n = h.n + excluded.n",
                    _columns([(*k, n) for k, n in sorted(totals.items())], 5),
                )
            if parties:
                # Each tenant's one row of the hour and role, locked, its counts added to;
                # several rows of one key (an older release's, two workers' first commits of
                # an hour) are folded into one; a row past PARTY_ROW_BYTES is left as it is.
                # A row another worker adds meanwhile is not seen, and stays a row of its
                # own: the reads sum them.
                await cur.execute(
                    "SELECT p.ctid::text, p.hour, p.role, p.tenant, p.counts "
                    "FROM mimecast_alert_parties p "
                    "JOIN unnest(%s::int8[], %s::text[], %s::text[]) AS k(hour, role, tenant) "
                    "ON p.hour = k.hour AND p.role = k.role AND p.tenant = k.tenant "
                    "WHERE length(p.counts) < %s "
                    "ORDER BY p.hour, p.role, p.tenant, p.ctid FOR UPDATE OF p",
                    (*_columns([key for key, _ in parties], 3), PARTY_ROW_BYTES),
                )
                kept: dict[PartyKey, list[tuple[str, bytes]]] = {}
                for found in await cur.fetchall():
                    place, hour, role, tenant, counts = cast(
                        "tuple[str, int, str, str, bytes]", found
                    )
                    kept.setdefault((hour, role, tenant), []).append((place, bytes(counts)))
                rows: list[tuple[int, str, str, bytes]] = []
                places: list[str] = []
                for party, added in parties:
                    old = kept.get(party, [])
                    merged, folded = merge_parties([counts for _, counts in old], added)
                    rows.append((*party, merged))
                    places.extend(old[i][0] for i in folded)
                if places:
                    await cur.execute(
                        "DELETE FROM mimecast_alert_parties WHERE ctid = ANY(%s::text[]::tid[])",
                        (places,),
                    )
                await cur.execute(
                    "INSERT INTO mimecast_alert_parties SELECT * FROM unnest(%s::int8[], "
                    "%s::text[], %s::text[], %s::bytea[])",
                    _columns(rows, 4),
                )
            if hour_now is not None and hour_now != self._tallies_pruned:
                # The hours no longer kept, dropped by this process's first commit of each hour.
                for table in ("mimecast_alert_hours", "mimecast_alert_totals"):
                    await cur.execute(
                        f"DELETE FROM {table} WHERE hour < %s",  # noqa: S608 - fixed names
                        (hour_now - HOURS_KEPT,),
                    )
                await cur.execute(
                    "DELETE FROM mimecast_alert_parties WHERE hour < %s",
                    (hour_now - PARTY_HOURS_KEPT,),
                )
        if hour_now is not None:
            self._tallies_pruned = hour_now

    async def set_sink_positions(self, positions: Mapping[str, str]) -> None:
        await self.commit_group([], positions)

    # --- the dashboard's reads (``AlertStats``) ----------------------------------------------

    async def alert_series(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[int, str, int]]:
        rows = await self._tally_rows(
            f"SELECT hour, category, sum(n) FROM {_hours_table(tenant)} WHERE {{where}} "  # noqa: S608 - fixed texts
            "GROUP BY hour, category ORDER BY hour, category",
            since_hour,
            tenant,
        )
        return [(int(h), str(c), int(n)) for h, c, n in rows]  # type: ignore[call-overload]

    async def technique_counts(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await self._ranked("technique", _hours_table(tenant), since_hour, None, tenant)

    async def top_alert_types(
        self, since_hour: int, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await self._ranked("alert_type", _hours_table(tenant), since_hour, limit, tenant)

    async def top_parties(
        self, since_hour: int, role: str, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        rows = await self._tally_rows(
            "SELECT counts FROM mimecast_alert_parties WHERE {where} AND role = %s",
            since_hour,
            tenant,
            (role,),
        )
        return ranked_parties((bytes(row[0]) for row in rows), limit)  # type: ignore[call-overload]

    async def _ranked(
        self,
        column: str,
        table: str,
        since_hour: int,
        limit: int | None,
        tenant: str | None,
    ) -> list[tuple[str, int]]:
        rows = await self._tally_rows(
            f"SELECT {column}, sum(n) AS total FROM {table} WHERE {{where}} "  # noqa: S608 - fixed texts
            f'GROUP BY {column} ORDER BY total DESC, {column} COLLATE "C" LIMIT %s',
            since_hour,
            tenant,
            (limit,),
        )
        return [(str(name), int(n)) for name, n in rows]  # type: ignore[call-overload]

    async def _tally_rows(
        self,
        query: str,
        since_hour: int,
        tenant: str | None,
        extra: tuple[object, ...] = (),
    ) -> list[tuple[object, ...]]:
        """``query`` with its ``{where}`` the hours from ``since_hour`` (of ``tenant``)."""
        if not self._tally_tables:
            return []
        params: tuple[object, ...] = (since_hour,)
        where = "hour >= %s"
        if tenant is not None:
            where, params = "hour >= %s AND tenant = %s", (since_hour, tenant)
        async with self._use("reader") as conn:
            return await (
                await conn.execute(query.replace("{where}", where), (*params, *extra))
            ).fetchall()

    async def record_error(
        self,
        tenant: str,
        category: str,
        message: str,
        at: float,
        health: StreamHealth | None = None,
    ) -> None:
        async with self._use("reader") as conn:
            await conn.execute(
                "INSERT INTO mimecast_streams AS s (tenant, category, last_error, last_error_at, "  # noqa: S608 - fixed texts
                "health, health_reason, health_advice, health_since) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant, category) DO UPDATE "
                "SET last_error = excluded.last_error, last_error_at = excluded.last_error_at, "
                f"{_UPSERT_HEALTH}",
                (tenant, category, message[:2000], at, *_health_columns(health)),
            )

    async def began(self, tenant: str, category: str) -> datetime | None:
        if not self._began_column:
            return None
        async with self._use("reader") as conn:
            row = await (
                await conn.execute(
                    "SELECT began FROM mimecast_streams WHERE tenant = %s AND category = %s",
                    (tenant, category),
                )
            ).fetchone()
        value = None if row is None else row[0]
        return _dt(float(value)) if value else None  # type: ignore[arg-type]

    async def set_began(self, tenant: str, category: str, began: datetime) -> None:
        # One statement, on the reader's (autocommit) connection: the writer's is the
        # committer's, whose transactions must not interleave with anything else.
        async with self._use("reader") as conn:
            await conn.execute(
                "INSERT INTO mimecast_streams AS s (tenant, category, began) "
                "VALUES (%s, %s, %s) ON CONFLICT (tenant, category) DO UPDATE SET "
                "began = coalesce(s.began, excluded.began)",
                (tenant, category, began.timestamp()),
            )

    async def set_health(self, tenant: str, category: str, health: StreamHealth) -> None:
        async with self._use("reader") as conn:
            await conn.execute(
                "INSERT INTO mimecast_streams AS s (tenant, category, health, health_reason, "  # noqa: S608 - fixed texts
                "health_advice, health_since) VALUES (%s, %s, %s, %s, %s, %s) "
                f"ON CONFLICT (tenant, category) DO UPDATE SET {_UPSERT_HEALTH}",
                (tenant, category, *_health_columns(health)),
            )

    async def aclose(self) -> None:
        for conn in (self._writer, self._reader):
            if conn is not None:
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
        self._writer = self._reader = None


#: Errors no retry can mend: SQLSTATE class 42 (an undefined table, a missing privilege)
#: and a read-only transaction or server.
_REFUSED = (psycopg.errors.ProgrammingError, psycopg.errors.ReadOnlySqlTransaction)


def _hours_table(tenant: str | None) -> str:
    """Where the counts by hour are read: one tenant's rows, or the totals of all."""
    return "mimecast_alert_totals" if tenant is None else "mimecast_alert_hours"


def _reason(exc: psycopg.Error) -> str:
    """The server's or libpq's words, first line only (the rest repeats the connection)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _newest(old: float | None, new: float) -> float:
    return new if old is None else max(old, new)


def _columns(rows: Iterable[Sequence[object]], width: int) -> list[list[object]]:
    """Rows as ``width`` column lists: one array parameter each, for ``unnest``."""
    columns: list[list[object]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns
