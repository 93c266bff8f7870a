"""What only the PostgreSQL store has: tables in its schema, dead letters kept in the commit, a
lost connection, workers opening it together, a password in its URL. (What it shares with the
SQLite store: ``test_conformance.py``.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from psycopg import sql

from mimecast_connector._errors import LeaseLostError, StateError, StateUnavailableError
from mimecast_connector._health import State, StreamHealth
from mimecast_connector.state import Commit, Tallies
from mimecast_connector.state._postgres import SCHEMA_VERSION, PostgresStore
from tests.pg import admin, fresh_schema, schema_of, tables_in

T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)
TABLES = {
    "mimecast_meta",
    "mimecast_streams",
    "mimecast_delivered",
    "mimecast_counters",
    "mimecast_sinks",
    "mimecast_dead_letters",
    "mimecast_alert_hours",
    "mimecast_alert_parties",
    "mimecast_alert_totals",
}
PASSWORD = "s3cr3t-pw"


@pytest.fixture
async def url() -> AsyncIterator[str]:
    """The URL of a fresh, empty schema (dropped afterwards)."""
    async with fresh_schema() as fresh:
        yield fresh


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    opened = await PostgresStore.open(url)
    yield opened
    await opened.aclose()


def raising_after(items: list[tuple[str, float]], n: int) -> Iterator[tuple[str, float]]:
    """The first ``n`` of ``items``, then a failure: a commit that breaks midway."""
    yield from items[:n]
    raise RuntimeError("the sink ack was lost halfway")


async def test_the_tables_are_made_in_the_urls_schema(store: PostgresStore, url: str) -> None:
    """Opening creates every table in the schema first on the URL's search_path, with schema version 2."""
    schema = schema_of(url)
    assert await tables_in(schema) == TABLES
    async with await admin() as conn:
        query = sql.SQL("SELECT key, value FROM {}.mimecast_meta ORDER BY key")
        rows = await (await conn.execute(query.format(sql.Identifier(schema)))).fetchall()
    meta = {str(key): str(value) for key, value in rows}
    assert sorted(meta) == ["created_at", "schema_version"]
    assert meta["schema_version"] == str(SCHEMA_VERSION) == "2"


# --- dead letters ------------------------------------------------------------------------------


async def test_dead_letters_are_kept_with_their_commit(store: PostgresStore) -> None:
    """The store keeps dead letters: a commit's lines are read back, in order, with their stream."""
    assert PostgresStore.keeps_dead_letters is True
    assert store.keeps_dead_letters is True
    assert await store.dead_letters() == []
    await store.commit_group(
        [Commit("acme", "url", T0, [("a", T0.timestamp())], {"dead_lettered": 2}, dead=[b"line1", b"line2"])],
        {},
    )  # fmt: skip
    await store.commit_group(
        [Commit("globex", "attachment", None, [], {}, dead=[b"\x00\xffraw"])], {}
    )
    assert await store.dead_letters() == [
        ("acme", "url", b"line1"),
        ("acme", "url", b"line2"),
        ("globex", "attachment", b"\x00\xffraw"),
    ]
    assert await store.cursor("acme", "url") == T0


async def test_a_commit_that_fails_midway_keeps_none_of_its_dead_letters(
    store: PostgresStore,
) -> None:
    """Dead letters are in the commit's transaction: a failure, in their own share or a later one, keeps none."""
    await store.commit_group([Commit("acme", "url", T0, [], {}, dead=[b"kept"])], {})
    with pytest.raises(RuntimeError, match="halfway"):
        await store.commit_group(
            [Commit("acme", "url", T0, raising_after([("a", 1.0), ("b", 2.0)], 1), {}, dead=[b"lost1"])],
            {},
        )  # fmt: skip
    with pytest.raises(RuntimeError, match="halfway"):
        await store.commit_group(
            [
                Commit("acme", "url", T0, [], {}, dead=[b"lost2", b"lost3"]),
                Commit("globex", "url", T0, raising_after([("c", 1.0), ("d", 2.0)], 1), {}),
            ],
            {},
        )
    assert await store.dead_letters() == [("acme", "url", b"kept")]


# --- a lost connection -------------------------------------------------------------------------


async def test_a_lost_connection_is_retryable_and_the_next_call_reconnects(url: str) -> None:
    """With its backends terminated, a read and a commit each raise StateUnavailableError once; the next call reconnects, nothing committed lost."""
    name = schema_of(url)  # the store's own connections, and only those, carry it
    store = await PostgresStore.open(f"{url}&application_name={name}")
    try:
        await store.commit_group([Commit("acme", "url", T0, [("a", 1.0)], {"alerts": 1})], {})
        assert await store.cursor("acme", "url") == T0  # the reader is connected too

        async def terminate() -> int:
            async with await admin() as conn:
                rows = await (
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                        "WHERE datname = 'test' AND application_name = %s "
                        "AND pid <> pg_backend_pid()",
                        (name,),
                    )
                ).fetchall()
            assert all(done for (done,) in rows)
            return len(rows)

        assert await terminate() == 2  # the writer and the reader
        with pytest.raises(StateUnavailableError) as caught:
            await store.cursor("acme", "url")
        assert caught.value.retryable is True
        assert caught.value.fault == "upstream"
        assert "retried from its last commit" in str(caught.value)
        assert await store.cursor("acme", "url") == T0
        with pytest.raises(StateUnavailableError):
            await store.commit_group([Commit("acme", "url", T0, [("b", 2.0)], {"alerts": 1})], {})
        await store.commit_group([Commit("acme", "url", T0, [("c", 3.0)], {"alerts": 1})], {})

        assert await terminate() == 2
        with pytest.raises(StateUnavailableError):
            await store.record_error("acme", "url", "poll failed", T0.timestamp())
        await store.record_error("acme", "url", "poll failed", T0.timestamp())
        [stream] = await store.streams()
        assert (stream.cursor, dict(stream.counters)) == (T0, {"alerts": 2})
        assert stream.last_error == "poll failed"
        assert await store.already_delivered(
            "acme", "url", [("a", 1.0), ("b", 2.0), ("c", 3.0)]
        ) == {"a", "c"}
    finally:
        await store.aclose()


# --- opening -----------------------------------------------------------------------------------


async def test_opening_without_create_on_an_empty_schema_says_to_run_first(url: str) -> None:
    """``create=False`` on a schema without the tables is a StateError, and creates nothing."""
    with pytest.raises(StateError, match="run the connector first"):
        await PostgresStore.open(url, create=False)
    assert await tables_in(schema_of(url)) == set()


async def test_opening_without_create_reads_an_existing_store(url: str) -> None:
    """``create=False`` (``status``) opens a store the connector made, and reads what it holds."""
    first = await PostgresStore.open(url)
    await first.commit_group([Commit("acme", "url", T0, [], {})], {})
    await first.aclose()
    reader = await PostgresStore.open(url, create=False)
    try:
        assert await reader.cursor("acme", "url") == T0
    finally:
        await reader.aclose()


@pytest.mark.parametrize("version", ["1", "3", "banana"])
async def test_another_schema_version_is_refused(url: str, version: str) -> None:
    """A ``schema_version`` other than 2 in mimecast_meta is a StateError naming it, and is left as it was."""
    first = await PostgresStore.open(url)
    await first.aclose()
    schema = sql.Identifier(schema_of(url))
    async with await admin() as conn:
        await conn.execute(
            sql.SQL("UPDATE {}.mimecast_meta SET value = %s WHERE key = 'schema_version'").format(
                schema
            ),
            (version,),
        )
    for create in (True, False):
        with pytest.raises(StateError) as caught:
            await PostgresStore.open(url, create=create)
        assert f"schema version {version}," in str(caught.value)
        assert "use the matching release" in str(caught.value)
    async with await admin() as conn:
        row = await (
            await conn.execute(
                sql.SQL("SELECT value FROM {}.mimecast_meta WHERE key = 'schema_version'").format(
                    schema
                )
            )
        ).fetchone()
    assert row == (version,)


async def columns_of_streams(schema: str) -> set[str]:
    async with await admin() as conn:
        rows = await (
            await conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = 'mimecast_streams'",
                (schema,),
            )
        ).fetchall()
    return {str(name) for (name,) in rows}


HEALTH_COLUMNS = ["health", "health_reason", "health_advice", "health_since", "began"]


@pytest.mark.parametrize(
    "missing",
    [HEALTH_COLUMNS, ["marker", *HEALTH_COLUMNS], ["lease", "marker", *HEALTH_COLUMNS]],
    ids=lambda m: "+".join(c for c in m if not c.startswith("health_")),
)
async def test_tables_of_an_older_release_gain_the_new_columns_in_place(
    url: str, missing: list[str]
) -> None:
    """Tables made before the streams' health (and ``marker``, and ``lease``): ``status`` (create=False) reads them as they are, markers and health None, adding nothing; the next worker adds the columns, keeping every stream's cursor, ids and counters, and its markers and health commit."""
    schema = schema_of(url)
    first = await PostgresStore.open(url)
    await first.commit_group(
        [
            Commit(
                "acme",
                "url",
                T0,
                [("a", T0.timestamp())],
                {"alerts": 1},
                prune_before=T0 - timedelta(1),
            )
        ],
        {"jsonl:alerts": "12"},
    )
    await first.aclose()
    async with await admin() as conn:
        for column in missing:
            await conn.execute(
                sql.SQL("ALTER TABLE {}.mimecast_streams DROP COLUMN {}").format(
                    sql.Identifier(schema), sql.Identifier(column)
                )
            )
    reader = await PostgresStore.open(url, create=False)
    try:
        assert await reader.marker("acme", "url") is None
        [stream] = await reader.streams()
        assert (stream.cursor, stream.marker, dict(stream.counters)) == (T0, None, {"alerts": 1})
        assert stream.health is None
    finally:
        await reader.aclose()
    assert not set(missing) & await columns_of_streams(schema)
    worker = await PostgresStore.open(url)
    try:
        assert set(missing) <= await columns_of_streams(schema)
        assert await worker.position("acme", "url") == (T0, (T0 - timedelta(1)).timestamp())
        assert await worker.already_delivered("acme", "url", [("a", T0.timestamp())]) == {"a"}
        assert await worker.sink_position("jsonl:alerts") == "12"
        assert await worker.marker("acme", "url") is None
        lease = await worker.take_lease("acme", "url")
        await worker.commit_group(
            [Commit("acme", "url", None, [], {}, lease=lease, marker="m", health=DONE, began=T0)],
            {},
        )
        # Polled before ``began`` was recorded: unknown, and no commit makes one up later.
        assert await worker.began("acme", "url") is None
    finally:
        await worker.aclose()
    again = await PostgresStore.open(url)  # the columns there: nothing to add
    try:
        assert await again.marker("acme", "url") == "m"
        assert [(s.marker, s.health, s.began) for s in await again.streams()] == [("m", DONE, None)]
    finally:
        await again.aclose()


DONE = StreamHealth(State.COLLECTING, "the last poll finished", "", T0.timestamp())


async def test_two_stores_opening_a_fresh_schema_together_both_succeed(url: str) -> None:
    """Workers starting at once on an empty schema both open it (the advisory lock serialises table creation)."""
    stores = await asyncio.gather(*(PostgresStore.open(url) for _ in range(4)))
    try:
        await stores[0].commit_group([Commit("acme", "url", T0, [], {})], {})
        assert [await s.cursor("acme", "url") for s in stores] == [T0] * 4
    finally:
        for store in stores:
            await store.aclose()
    assert await tables_in(schema_of(url)) == TABLES


# --- the password ------------------------------------------------------------------------------


async def test_the_password_is_not_shown_by_repr(url: str) -> None:
    """An open store's repr names the server, user and database, never the URL's password."""
    with_password = url.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    assert PASSWORD in with_password
    store = await PostgresStore.open(with_password)
    try:
        assert repr(store) == "PostgresStore('postgresql://postgres@127.0.0.1:5432/test')"
        assert PASSWORD not in repr(store)
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    "bad_url",
    [
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
        f"postgresql://postgres@127.0.0.1:1/test?password={PASSWORD}",
    ],
    ids=["in-userinfo", "in-query"],
)
async def test_the_password_is_not_shown_when_connecting_fails(bad_url: str) -> None:
    """A connection refused is a StateError naming the server, without the password (in the URL or its query)."""
    with pytest.raises(StateError) as caught:
        await PostgresStore.open(bad_url, connect_timeout=2)
    assert not isinstance(caught.value, StateUnavailableError)
    message = str(caught.value)
    assert "postgresql://postgres@127.0.0.1:1/test" in message
    assert "Connection refused" in message
    assert PASSWORD not in message
    assert PASSWORD not in repr(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


# --- leases, reconnects, refusals ---------------------------------------------------------------


async def test_a_commit_under_a_stale_lease_is_refused_whole(store: PostgresStore) -> None:
    """Once a newer lease is taken on a stream, a commit carrying the older one raises LeaseLostError and commits nothing of its group; stale() names that stream."""
    from mimecast_connector._errors import LeaseLostError

    old = await store.take_lease("acme", "url")
    new = await store.take_lease("acme", "url")
    assert new == old + 1
    assert await store.stale({("acme", "url"): old}) == {("acme", "url")}
    assert await store.stale({("acme", "url"): new}) == set()
    with pytest.raises(LeaseLostError):
        await store.commit_group(
            [
                Commit("globex", "url", T0, [("g", 1.0)], {"alerts": 1}),
                Commit("acme", "url", T0, [("a", 1.0)], {"alerts": 1}, lease=old),
            ],
            {},
        )
    assert await store.cursor("globex", "url") is None
    assert await store.already_delivered("acme", "url", [("a", 1.0)]) == set()
    await store.commit_group([Commit("acme", "url", T0, [("a", 1.0)], {}, lease=new)], {})
    assert await store.cursor("acme", "url") == T0


async def test_a_commit_under_a_stale_lease_keeps_the_old_marker(store: PostgresStore) -> None:
    """A poll taken over keeps its page's marker out, and the marker of every other stream of its group: the new poll's commit is what lands."""
    old = await store.take_lease("acme", "siem")
    await store.commit_group([Commit("acme", "siem", None, [], {}, lease=old, marker="m-1")], {})
    new = await store.take_lease("acme", "siem")
    with pytest.raises(LeaseLostError):
        await store.commit_group(
            [
                Commit("globex", "siem", None, [], {}, marker="globex-1"),
                Commit("acme", "siem", None, [("a", 1.0)], {}, lease=old, marker="m-2"),
            ],
            {},
        )
    assert (await store.marker("acme", "siem"), await store.marker("globex", "siem")) == (
        "m-1",
        None,
    )
    await store.commit_group([Commit("acme", "siem", None, [], {}, lease=new, marker="m-2b")], {})
    assert await store.marker("acme", "siem") == "m-2b"


async def test_a_lease_comes_with_the_streams_position(store: PostgresStore) -> None:
    """take_lease_and_position gives a new lease and the position as committed (none for a new stream), in one statement."""
    first, position = await store.take_lease_and_position("acme", "url")
    assert position == (None, None)
    await store.commit_group(
        [
            Commit(
                "acme",
                "url",
                T0,
                [("a", 1.0)],
                {},
                prune_before=T0 - timedelta(hours=1),
                lease=first,
            )
        ],
        {},
    )
    second, position = await store.take_lease_and_position("acme", "url")
    assert second == first + 1
    assert position == await store.position("acme", "url")
    assert position == (T0, (T0 - timedelta(hours=1)).timestamp())


async def test_a_rounds_leases_come_in_one_statement_each_with_its_streams_position(
    store: PostgresStore,
) -> None:
    """take_leases_and_positions: a new lease for each stream named (one more than its last; 1 for a new one), each with its own position, and only those streams; a lease taken before is stale for commits."""
    old = await store.take_lease("acme", "url")
    await store.commit_group([Commit("acme", "url", T0, [("a", 1.0)], {}, lease=old)], {})
    taken = await store.take_leases_and_positions("acme", ["url", "attachment"])
    assert set(taken) == {"url", "attachment"}
    assert taken["url"] == (old + 1, await store.position("acme", "url"))
    assert taken["url"][1][0] == T0
    assert taken["attachment"] == (1, (None, None))
    assert await store.take_leases_and_positions("acme", []) == {}
    assert await store.stale({("acme", "url"): old}) == {("acme", "url")}
    assert await store.stale({("acme", "impersonation"): 1}) == {("acme", "impersonation")}
    with pytest.raises(LeaseLostError):
        await store.commit_group([Commit("acme", "url", T0, [], {}, lease=old)], {})


async def test_many_calls_meeting_a_lost_connection_open_one_new_one(url: str) -> None:
    """64 concurrent reads after the backends were terminated reconnect the reader once: the server sees no more connections than before."""
    name = schema_of(url) + "_r"
    store = await PostgresStore.open(f"{url}&application_name={name}")

    async def count() -> int:
        async with await admin() as conn:
            row = await (
                await conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
                )
            ).fetchone()
        assert row is not None
        assert isinstance(row[0], int)
        return row[0]

    try:
        await store.cursor("acme", "url")
        before = await count()
        async with await admin() as conn:
            await conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
        await asyncio.gather(
            *(store.cursor("acme", "url") for _ in range(64)), return_exceptions=True
        )
        await asyncio.gather(*(store.cursor("acme", "url") for _ in range(64)))
        assert await count() <= before
    finally:
        await store.aclose()


async def test_dropped_tables_halt_instead_of_retrying_for_ever(
    store: PostgresStore, url: str
) -> None:
    """A table dropped under the run is a StateError that is not retryable (the run halts), naming what to check."""
    async with await admin() as conn:
        await conn.execute(
            sql.SQL("DROP TABLE {}.mimecast_delivered").format(sql.Identifier(schema_of(url)))
        )
    with pytest.raises(StateError) as caught:
        await store.already_delivered("acme", "url", [("x", 1.0)])
    assert not caught.value.retryable
    assert "tables exist" in str(caught.value)


# --- workers sharing rows ----------------------------------------------------------------------


def _tallied(tenant: str, category: str, hour: int, types: list[str]) -> Commit:
    """A commit of ``tenant`` whose alerts add to ``types``'s rows of ``hour`` (one each)."""
    counts = {(hour, alert_type, "T1566.002"): 1 for alert_type in types}
    return Commit(tenant, category, None, [], {}, tallies=Tallies(category, counts, {}, hour))


async def test_rows_shared_by_workers_are_locked_in_one_order(
    store: PostgresStore, url: str
) -> None:
    """Every worker's commits add to the same alert_totals rows (one per hour, category, type and technique, whatever the tenant), and a backfill's to its live stream's alert_hours rows: a group takes their locks in one order, whatever order its commits bring them in, so two workers' groups wait for each other instead of deadlocking (which PostgreSQL ends by failing one of them after a second)."""
    hour = int(T0.timestamp() // 3600)
    await store.commit_group([_tallied("acme", "url", hour, ["a-type", "b-type"])], {})
    schema = sql.Identifier(schema_of(url))
    async with await admin() as other, await admin() as watch:
        await other.set_autocommit(False)  # another worker's group, holding a-type's row
        await other.execute("SET lock_timeout = '10s'")
        update = sql.SQL("UPDATE {}.mimecast_alert_totals SET n = n + 1 WHERE alert_type = %s")
        await other.execute(update.format(schema), ("a-type",))
        # This group brings b-type first: taken in that order it would hold b-type's row
        # while it waits for a-type's.
        group = asyncio.create_task(
            store.commit_group(
                [
                    _tallied("globex", "url", hour, ["b-type"]),
                    _tallied("initech", "url", hour, ["a-type"]),
                ],
                {},
            )
        )
        for _ in range(200):  # until the group waits for a lock (10 s at most)
            waiting = await (
                await watch.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = 'test'"
                )
            ).fetchone()
            if waiting is not None and waiting[0] != 0:
                break
            assert not group.done(), group
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the group never waited for the row the other transaction holds")
        await other.execute(update.format(schema), ("b-type",))  # the other order
        await other.commit()
        await group
    async with await admin() as conn:
        query = sql.SQL("SELECT alert_type, n FROM {}.mimecast_alert_totals ORDER BY alert_type")
        rows = await (await conn.execute(query.format(schema))).fetchall()
    assert rows == [("a-type", 3), ("b-type", 3)]


async def test_two_workers_adding_to_one_tenants_senders_lose_and_double_nothing(
    url: str,
) -> None:
    """Two workers commit the same tenant's senders and recipients of the same hours at once, 40 times, their keys in opposite orders: no commit fails, and the sums are exact (each row either folded into one worker's row under its lock, or left as a row of its own)."""
    hour = int(T0.timestamp() // 3600)
    keys = [(hour, "sender"), (hour, "recipient"), (hour - 1, "sender")]
    first, second = await PostgresStore.open(url), await PostgresStore.open(url)
    try:

        def group(category: str, order: list[tuple[int, str]], i: int) -> list[Commit]:
            parties = {key: {f"a{i % 3}@x": 1, "b@x": 2} for key in order}
            tallies = Tallies(category, {}, parties, hour)
            return [Commit("acme", category, None, [], {}, tallies=tallies)]

        for i in range(40):
            await asyncio.gather(
                first.commit_group(group("url", keys, i), {}),
                second.commit_group(group("attachment", keys[::-1], i), {}),
            )
        assert await first.top_parties(hour, "sender", 5) == [
            ("b@x", 160),
            ("a0@x", 28),
            ("a1@x", 26),
            ("a2@x", 26),
        ]
        assert await first.top_parties(hour - 1, "recipient", 5) == [
            ("b@x", 160),
            ("a0@x", 28),
            ("a1@x", 26),
            ("a2@x", 26),
        ]
    finally:
        await first.aclose()
        await second.aclose()
