"""The state store's semantics, held by both stores: every test runs on SQLite and on PostgreSQL.

``store`` is a store opened in a place of its own (a SQLite file in the test's temporary folder,
or a fresh PostgreSQL schema, ``tests.pg``, dropped afterwards); ``reopen`` closes a store and
opens the same place again, as a restarted connector would. What only one store has is tested
beside: ``tests/unit/test_state.py`` (the file) and ``tests/state/test_postgres.py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, cast

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimecast_connector._health import State, StreamHealth
from mimecast_connector.state import (
    HOURS_KEPT,
    PARTY_HOURS_KEPT,
    Commit,
    SqliteStore,
    StateStore,
    Store,
    Tallies,
)
from mimecast_connector.state._postgres import PostgresStore
from tests.pg import fresh_schema

T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)

#: ``sqlite-nojson``: SQLite as built without its JSON functions (before 3.38, without JSON1),
#: where the store binds a row per id and looks each party row up on its own.
Kind = Literal["sqlite", "sqlite-nojson", "postgresql"]
KINDS: tuple[Kind, ...] = ("sqlite", "sqlite-nojson", "postgresql")
Reopen = Callable[[Store], Awaitable[Store]]


# --- where a store lives -----------------------------------------------------------------------


class Place:
    """Where one test's state lives; every store opened here is closed by :func:`place_of`."""

    def __init__(self, where: Path | str, *, json: bool = True) -> None:
        self.where = where
        self.json = json
        self._open: list[Store] = []

    async def open(self) -> Store:
        store: Store
        if isinstance(self.where, Path):
            opened = StateStore(self.where, writer=True)
            opened._json = opened._json and self.json
            store = SqliteStore(opened)
        else:
            store = await PostgresStore.open(self.where)
        self._open.append(store)
        return store

    async def reopen(self, store: Store) -> Store:
        """Close ``store`` (releasing SQLite's writer lock), then open the same place again."""
        self._open.remove(store)
        await store.aclose()
        return await self.open()

    async def party_rows(self) -> list[tuple[int, str, str]]:
        """The (hour, role, tenant) of every ``alert_parties`` row, sorted, read raw."""
        if isinstance(self.where, Path):
            db = sqlite3.connect(self.where)
            try:
                rows = db.execute("SELECT hour, role, tenant FROM alert_parties").fetchall()
            finally:
                db.close()
        else:
            async with await psycopg.AsyncConnection.connect(self.where) as conn:
                cursor = await conn.execute("SELECT hour, role, tenant FROM mimecast_alert_parties")
                rows = await cursor.fetchall()
        return sorted((int(str(h)), str(r), str(t)) for h, r, t in rows)

    async def add_party_row(self, hour: int, role: str, tenant: str, counts: bytes) -> None:
        """A row as an older release wrote it: one more for its hour, role and tenant."""
        if isinstance(self.where, Path):
            db = sqlite3.connect(self.where)
            try:
                with db:
                    db.execute(
                        "INSERT INTO alert_parties VALUES (?, ?, ?, ?)",
                        (hour, role, tenant, counts),
                    )
            finally:
                db.close()
        else:
            async with await psycopg.AsyncConnection.connect(self.where, autocommit=True) as conn:
                await conn.execute(
                    "INSERT INTO mimecast_alert_parties VALUES (%s, %s, %s, %s)",
                    (hour, role, tenant, counts),
                )

    async def close_all(self) -> None:
        while self._open:
            await self._open.pop().aclose()


@contextlib.asynccontextmanager
async def place_of(kind: Kind, folder: Path) -> AsyncIterator[Place]:
    """A new, empty place of ``kind``: ``folder / "state.db"``, or a fresh schema."""
    async with contextlib.AsyncExitStack() as stack:
        if kind != "postgresql":
            place = Place(folder / "state.db", json=kind == "sqlite")
        else:
            place = Place(await stack.enter_async_context(fresh_schema()))
        stack.push_async_callback(place.close_all)  # before the schema is dropped
        yield place


@pytest.fixture(params=KINDS)
async def place(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Place]:
    async with place_of(cast(Kind, request.param), tmp_path) as opened:
        yield opened


@pytest.fixture
async def store(place: Place) -> Store:
    return await place.open()


@pytest.fixture
def reopen(place: Place) -> Reopen:
    return place.reopen


# --- helpers -----------------------------------------------------------------------------------


async def commit(
    store: Store,
    *,
    cursor: datetime | None = None,
    delivered: list[tuple[str, float]] | None = None,
    counts: dict[str, int] | None = None,
    positions: dict[str, str] | None = None,
    prune_before: datetime | None = None,
    success_at: float | None = None,
    tenant: str = "acme",
    category: str = "url",
    marker: str | None = None,
) -> None:
    """One stream's commit, alone in its transaction."""
    entry = Commit(
        tenant,
        category,
        cursor,
        delivered or [],
        counts or {},
        prune_before,
        success_at,
        marker=marker,
    )
    await store.commit_group([entry], positions or {})


def ids(prefix: str, n: int, start: datetime = T0) -> list[tuple[str, float]]:
    """``n`` delivered ids, one second apart from ``start``."""
    return [(f"{prefix}{i}", (start + timedelta(seconds=i)).timestamp()) for i in range(n)]


def at(prefix: str, *indices: int) -> list[tuple[str, float]]:
    """The ids ``ids(prefix, ...)`` made at these indices, with their times."""
    return [(f"{prefix}{i}", (T0 + timedelta(seconds=i)).timestamp()) for i in indices]


def raising_after(items: list[tuple[str, float]], n: int) -> Iterator[tuple[str, float]]:
    """The first ``n`` of ``items``, then a failure: a commit that breaks midway."""
    yield from items[:n]
    raise RuntimeError("the sink ack was lost halfway")


async def counters(store: Store) -> dict[tuple[str, str], dict[str, int]]:
    return {(s.tenant, s.category): dict(s.counters) for s in await store.streams()}


async def markers(store: Store) -> dict[tuple[str, str], str | None]:
    """Every stream's marker as ``streams()`` (``status``) reports it."""
    return {(s.tenant, s.category): s.marker for s in await store.streams()}


# --- durability --------------------------------------------------------------------------------


async def test_a_commit_survives_reopening(store: Store, reopen: Reopen) -> None:
    """Cursor, delivered ids, counters, sink positions, kept_from and success time are read back after reopening."""
    await commit(
        store,
        cursor=T0,
        delivered=ids("a", 3),
        counts={"alerts": 3, "fetched": 5},
        positions={"jsonl:alerts": "1234"},
        prune_before=T0 - timedelta(hours=1),
        success_at=T0.timestamp() + 5,
    )
    again = await reopen(store)
    assert await again.cursor("acme", "url") == T0
    assert await again.position("acme", "url") == (T0, (T0 - timedelta(hours=1)).timestamp())
    assert await again.cursor("acme", "attachment") is None
    assert await again.already_delivered("acme", "url", at("a", 0, 2) + at("zz", 0)) == {"a0", "a2"}
    assert await again.sink_position("jsonl:alerts") == "1234"
    [stream] = await again.streams()
    assert (stream.tenant, stream.category, stream.cursor) == ("acme", "url", T0)
    assert stream.last_success == T0 + timedelta(seconds=5)
    assert (stream.last_error, stream.last_error_at) == (None, None)
    assert dict(stream.counters) == {"alerts": 3, "fetched": 5}


async def test_a_new_store_knows_nothing(store: Store) -> None:
    """An empty store has no streams, no cursor, no kept_from, no ids and no sink positions."""
    assert await store.streams() == []
    assert await store.position("acme", "url") == (None, None)
    assert await store.cursor("acme", "url") is None
    assert (
        await store.already_delivered("acme", "url", at("a", 0) + at("b", 0), ["a", "b"]) == set()
    )
    assert await store.sink_position("jsonl:alerts") is None


# --- the cursor --------------------------------------------------------------------------------


async def test_the_cursor_never_moves_backwards(store: Store) -> None:
    """An older cursor, or none, leaves the newer one in place; a newer one advances it."""
    await commit(store, cursor=T0 + timedelta(minutes=5))
    await commit(store, cursor=T0)
    assert await store.cursor("acme", "url") == T0 + timedelta(minutes=5)
    await commit(store, cursor=None, counts={"fetched": 1})
    assert await store.cursor("acme", "url") == T0 + timedelta(minutes=5)
    await commit(store, cursor=T0 + timedelta(minutes=6))
    assert await store.cursor("acme", "url") == T0 + timedelta(minutes=6)
    assert (await store.position("acme", "url"))[0] == T0 + timedelta(minutes=6)


async def test_streams_are_kept_apart(store: Store) -> None:
    """Cursors, ids, counters and prunes of one tenant and category do not leak into another."""
    await commit(store, cursor=T0, delivered=ids("x", 1), counts={"alerts": 1})
    await commit(store, cursor=T0 + timedelta(hours=1), tenant="globex", counts={"alerts": 7})
    await commit(
        store,
        cursor=T0 - timedelta(hours=1),
        category="attachment",
        prune_before=T0 + timedelta(days=1),
    )
    assert await store.cursor("acme", "url") == T0
    assert await store.cursor("globex", "url") == T0 + timedelta(hours=1)
    assert await store.cursor("acme", "attachment") == T0 - timedelta(hours=1)
    assert await store.already_delivered("acme", "url", at("x", 0)) == {"x0"}
    assert await store.already_delivered("globex", "url", at("x", 0)) == set()
    assert await store.already_delivered("acme", "attachment", at("x", 0)) == set()
    assert (await store.position("acme", "url"))[1] is None
    assert await counters(store) == {
        ("acme", "attachment"): {},
        ("acme", "url"): {"alerts": 1},
        ("globex", "url"): {"alerts": 7},
    }


@pytest.mark.parametrize("kind", KINDS)
@settings(deadline=None, max_examples=30)
@given(
    cursors=st.lists(
        st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(2000, 1, 1),
                max_value=datetime(2100, 1, 1),
                timezones=st.just(UTC),
            ),
        ),
        min_size=1,
        max_size=8,
    )
)
async def test_any_sequence_of_commits_keeps_the_newest_cursor(
    kind: Kind, cursors: list[datetime | None]
) -> None:
    """Whatever order cursors are committed in (None included), the stored one is their maximum, even after reopening."""
    with tempfile.TemporaryDirectory() as folder:  # a fresh place per example, not per test
        async with place_of(kind, Path(folder)) as fresh:
            store = await fresh.open()
            for index, cursor in enumerate(cursors):
                await commit(store, cursor=cursor)
                seen = [c for c in cursors[: index + 1] if c is not None]
                assert await store.cursor("acme", "url") == (max(seen) if seen else None)
            again = await fresh.reopen(store)
            present = [c for c in cursors if c is not None]
            assert await again.cursor("acme", "url") == (max(present) if present else None)


# --- all or nothing ----------------------------------------------------------------------------


async def test_a_commit_that_fails_midway_leaves_nothing(store: Store) -> None:
    """An exception inside a commit rolls back its cursor, ids, counters, prune and positions; later commits work."""
    await commit(
        store, cursor=T0, delivered=ids("old", 2), counts={"alerts": 2}, positions={"f": "10"}
    )
    broken = Commit(
        "acme",
        "url",
        T0 + timedelta(hours=1),
        raising_after(ids("new", 10), 5),
        {"alerts": 10},
        prune_before=T0 + timedelta(days=1),
        success_at=T0.timestamp(),
    )
    with pytest.raises(RuntimeError, match="halfway"):
        await store.commit_group([broken], {"f": "99"})
    assert await store.position("acme", "url") == (T0, None)
    assert await store.already_delivered("acme", "url", ids("new", 10)) == set()
    assert await store.already_delivered("acme", "url", ids("old", 2)) == {"old0", "old1"}
    [stream] = await store.streams()
    assert (dict(stream.counters), stream.last_success) == ({"alerts": 2}, None)
    assert await store.sink_position("f") == "10"
    await commit(store, cursor=T0 + timedelta(hours=2), counts={"alerts": 1})
    assert await store.cursor("acme", "url") == T0 + timedelta(hours=2)
    assert await counters(store) == {("acme", "url"): {"alerts": 3}}


async def test_a_failed_first_commit_does_not_create_the_stream(store: Store) -> None:
    """Even the stream's row, created inside the commit, is rolled back."""
    broken = Commit("acme", "url", T0, raising_after(ids("n", 3), 1), {"alerts": 1})
    with pytest.raises(RuntimeError, match="halfway"):
        await store.commit_group([broken], {})
    assert await store.streams() == []
    assert await store.position("acme", "url") == (None, None)


async def test_a_group_commit_of_several_streams_is_one_transaction(store: Store) -> None:
    """A group commits every stream's share together; a failure in the second share leaves the first's out too."""
    await store.commit_group(
        [
            Commit("acme", "url", T0, ids("u", 2), {"alerts": 2}),
            Commit("globex", "attachment", T0 + timedelta(hours=1), ids("g", 1), {"alerts": 1}),
        ],
        {"jsonl:alerts": "50"},
    )
    assert await store.cursor("acme", "url") == T0
    assert await store.cursor("globex", "attachment") == T0 + timedelta(hours=1)
    with pytest.raises(RuntimeError, match="halfway"):
        await store.commit_group(
            [
                Commit("acme", "url", T0 + timedelta(hours=2), ids("u2-", 3), {"alerts": 3}),
                Commit("initech", "url", T0, [], {"alerts": 4}),
                Commit("globex", "attachment", T0 + timedelta(hours=3), raising_after(ids("g2-", 3), 2), {}),
            ],
            {"jsonl:alerts": "99"},
        )  # fmt: skip
    assert await store.cursor("acme", "url") == T0
    assert await store.cursor("globex", "attachment") == T0 + timedelta(hours=1)
    assert await store.already_delivered("acme", "url", ids("u", 2) + ids("u2-", 2)) == {
        "u0",
        "u1",
    }
    assert await store.sink_position("jsonl:alerts") == "50"
    assert await counters(store) == {
        ("acme", "url"): {"alerts": 2},
        ("globex", "attachment"): {"alerts": 1},
    }


async def test_pages_of_one_stream_in_one_group_add_up_in_order(store: Store) -> None:
    """Several pages of one poll in one group: counters add up, the newest cursor and the last success win, the last page's prune reaches every page's older ids, and a success clears the last error."""
    await store.record_error("acme", "url", "earlier failure", T0.timestamp())
    await store.commit_group(
        [
            Commit("acme", "url", T0 + timedelta(minutes=2), ids("p", 3), {"alerts": 3, "fetched": 4}),
            Commit("acme", "url", T0 + timedelta(minutes=1), ids("q", 3, T0 + timedelta(seconds=10)), {"alerts": 1}),
            Commit(
                "acme", "url", None, [], {"fetched": 2},
                prune_before=T0 + timedelta(seconds=2), success_at=T0.timestamp() + 99,
            ),
        ],
        {"jsonl:alerts": "7"},
    )  # fmt: skip
    assert await store.position("acme", "url") == (
        T0 + timedelta(minutes=2),
        (T0 + timedelta(seconds=2)).timestamp(),
    )
    known = await store.already_delivered(
        "acme", "url", ids("p", 3) + ids("q", 3, T0 + timedelta(seconds=10))
    )
    assert known == {"p2", "q0", "q1", "q2"}
    [stream] = await store.streams()
    assert dict(stream.counters) == {"alerts": 4, "fetched": 6}
    assert stream.last_success == T0 + timedelta(seconds=99)
    assert (stream.last_error, stream.last_error_at) == (None, None)


# --- delivered ids and pruning -----------------------------------------------------------------


async def test_already_delivered_handles_more_than_500_ids(store: Store) -> None:
    """A query of 1 501 ids (past SQLite's variable limit chunks) finds exactly the 1 200 delivered."""
    delivered = ids("d", 1200)
    await commit(store, delivered=delivered)
    wanted = delivered + ids("absent", 301)
    assert await store.already_delivered("acme", "url", wanted) == {id_ for id_, _ in delivered}
    found = await store.already_delivered("acme", "url", iter(at("d", 0, 1199, 1200)))
    assert found == {"d0", "d1199"}
    assert await store.already_delivered("acme", "url", []) == set()


async def test_a_record_id_is_known_within_its_second(store: Store) -> None:
    """A record's id goes with its event time, and the id is made from the record's whole second: asked with any time in that second it is known; an absent id, or one newer than anything kept, is not."""
    await commit(store, delivered=[("r", T0.timestamp() + 0.25), ("s", T0.timestamp() + 60)])
    assert await store.already_delivered("acme", "url", [("r", T0.timestamp() + 0.75)]) == {"r"}
    assert await store.already_delivered("acme", "url", [("r", T0.timestamp())]) == {"r"}
    assert await store.already_delivered("acme", "url", [("q", T0.timestamp())]) == set()
    later = (T0 + timedelta(days=1)).timestamp()
    assert await store.already_delivered("acme", "url", [("t", later)]) == set()


async def test_delivering_an_id_twice_is_harmless(store: Store) -> None:
    """Re-recording an id (an overlap re-read) neither fails nor loses it, until pruned."""
    await commit(store, delivered=[("same", T0.timestamp())])
    await commit(store, delivered=[("same", T0.timestamp())])
    assert await store.already_delivered("acme", "url", [("same", T0.timestamp())]) == {"same"}
    await commit(store, prune_before=T0 + timedelta(seconds=1))
    assert await store.already_delivered("acme", "url", [("same", T0.timestamp())]) == set()


async def test_dead_letter_ids_are_known_by_id_and_pruned_by_when_seen(store: Store) -> None:
    """A dead letter's id is known by its id alone, in its own stream only, until a prune passes the time it was seen (not the records' times)."""
    seen = (T0 + timedelta(hours=1)).timestamp()
    await store.commit_group(
        [Commit("acme", "url", None, ids("rec", 1), {}, dead_ids=[("bad", seen)])], {}
    )
    assert await store.already_delivered("acme", "url", [], ["bad", "other"]) == {"bad"}
    assert await store.already_delivered("acme", "attachment", [], ["bad"]) == set()
    assert await store.already_delivered("acme", "url", ids("rec", 1), ["bad"]) == {"rec0", "bad"}
    await commit(store, prune_before=T0 + timedelta(minutes=30))
    assert await store.already_delivered("acme", "url", [], ["bad"]) == {"bad"}
    assert await store.already_delivered("acme", "url", ids("rec", 1)) == set()
    await commit(store, prune_before=T0 + timedelta(hours=2))
    assert await store.already_delivered("acme", "url", [], ["bad"]) == set()


async def test_prune_removes_only_ids_older_than_the_bound(store: Store) -> None:
    """Ids strictly older than ``prune_before`` go; the bound itself, newer ids and other streams stay."""
    await commit(store, delivered=ids("a", 10))
    await commit(store, delivered=ids("a", 10), category="attachment")
    await commit(store, prune_before=T0 + timedelta(seconds=4))
    assert await store.already_delivered("acme", "url", ids("a", 10)) == {
        f"a{i}" for i in range(4, 10)
    }
    kept = await store.already_delivered("acme", "attachment", ids("a", 10))
    assert len(kept) == 10


async def test_prune_raises_kept_from_and_never_lowers_it(store: Store) -> None:
    """``position()``'s kept_from is None until a prune, then the newest bound applied; an older bound leaves it."""
    await commit(store, cursor=T0, delivered=ids("a", 10))
    assert await store.position("acme", "url") == (T0, None)
    await commit(store, prune_before=T0 + timedelta(seconds=4))
    assert await store.position("acme", "url") == (T0, (T0 + timedelta(seconds=4)).timestamp())
    await commit(store, prune_before=T0 + timedelta(seconds=2))
    assert await store.position("acme", "url") == (T0, (T0 + timedelta(seconds=4)).timestamp())
    assert await store.already_delivered("acme", "url", at("a", 3, 4)) == {"a4"}
    await commit(store, prune_before=T0 + timedelta(seconds=7))
    assert await store.position("acme", "url") == (T0, (T0 + timedelta(seconds=7)).timestamp())
    assert await store.position("acme", "attachment") == (None, None)


async def test_prune_runs_after_the_batch_it_commits_with(store: Store) -> None:
    """Ids delivered in the same commit are pruned by the same bound when older than it."""
    await commit(store, delivered=ids("b", 3), prune_before=T0 + timedelta(seconds=2))
    assert await store.already_delivered("acme", "url", ids("b", 3)) == {"b2"}


# --- counters, sink positions, errors ----------------------------------------------------------


async def test_counters_add_up(store: Store) -> None:
    """Counters accumulate across commits; a zero count creates no counter."""
    await commit(store, counts={"fetched": 5, "alerts": 2, "dead_lettered": 0})
    await commit(store, counts={"fetched": 3, "dropped: url scanResult clean": 1})
    await commit(store, counts={"alerts": 4})
    assert await counters(store) == {
        ("acme", "url"): {"alerts": 6, "fetched": 8, "dropped: url scanResult clean": 1}
    }


async def test_sink_positions_are_set_and_replaced(store: Store) -> None:
    """A sink's position is its latest value, committed with a batch or set on its own; unknown sinks have none."""
    assert await store.sink_position("jsonl:a") is None
    await commit(store, positions={"jsonl:a": "100", "jsonl:b": "7"})
    await commit(store, positions={"jsonl:a": "250"})
    assert (await store.sink_position("jsonl:a"), await store.sink_position("jsonl:b")) == (
        "250",
        "7",
    )
    await store.set_sink_positions({"jsonl:b": "8", "jsonl:c": "0"})
    assert [await store.sink_position(n) for n in ("jsonl:a", "jsonl:b", "jsonl:c")] == [
        "250",
        "8",
        "0",
    ]


async def test_record_error_is_shown_until_the_next_success(store: Store) -> None:
    """The last error is kept (capped at 2 000 characters) and cleared by the next successful commit."""
    await store.record_error("acme", "url", "x" * 5000, T0.timestamp())
    [stream] = await store.streams()
    assert (stream.cursor, stream.last_success) == (None, None)
    assert stream.last_error == "x" * 2000
    assert stream.last_error_at == T0
    await store.record_error("acme", "url", "later", T0.timestamp() + 1)
    [stream] = await store.streams()
    assert (stream.last_error, stream.last_error_at) == ("later", T0 + timedelta(seconds=1))
    await commit(store, cursor=T0)  # no success_at: not a completed poll, the error stays
    assert (await store.streams())[0].last_error == "later"
    await commit(store, success_at=T0.timestamp() + 2)
    [stream] = await store.streams()
    assert (stream.last_error, stream.last_error_at) == (None, None)
    assert (stream.cursor, stream.last_success) == (T0, T0 + timedelta(seconds=2))


# --- the marker (a stream's opaque position) -----------------------------------------------------

#: A SIEM feed's position as the runner writes it: the store keeps it as it is, byte for byte.
MARKER = (
    '{"token": "eyJwYWdlIjoy\\u00e9 \'q\'", "file": "batches/ü 2025-03-04.json.gz", "line": 1234}\n'
)


async def test_a_stream_has_no_marker_until_a_commit_brings_one(store: Store) -> None:
    """A stream never given a marker has none: unknown, created by a commit without one, or by an error note."""
    assert await store.marker("acme", "url") is None
    await commit(store, cursor=T0, delivered=ids("a", 2), counts={"alerts": 2})
    await store.record_error("acme", "attachment", "failed", T0.timestamp())
    assert await store.marker("acme", "url") is None
    assert await store.marker("acme", "attachment") is None
    assert await markers(store) == {("acme", "attachment"): None, ("acme", "url"): None}


async def test_a_marker_is_committed_with_its_page_and_survives_reopening(
    store: Store, reopen: Reopen
) -> None:
    """A marker committed with a page's ids and counters is read back as it was given, by marker() and streams(), from the store and after reopening it."""
    await commit(
        store,
        delivered=ids("s", 3),
        counts={"fetched": 7, "dropped: receipt delivered": 4},
        positions={"jsonl:alerts": "300"},
        marker=MARKER,
    )
    assert await store.marker("acme", "siem") is None  # another stream's
    assert await store.marker("acme", "url") == MARKER
    assert await markers(store) == {("acme", "url"): MARKER}
    again = await reopen(store)
    assert await again.marker("acme", "url") == MARKER
    [stream] = await again.streams()
    assert (stream.marker, stream.cursor, dict(stream.counters)) == (
        MARKER,
        None,
        {"fetched": 7, "dropped: receipt delivered": 4},
    )
    assert await again.already_delivered("acme", "url", ids("s", 3)) == {"s0", "s1", "s2"}
    assert await again.sink_position("jsonl:alerts") == "300"


async def test_a_commit_without_a_marker_leaves_it_and_a_new_one_replaces_it(
    store: Store, reopen: Reopen
) -> None:
    """None leaves the marker as it is (whatever else the commit changes); a new one replaces it, even one that sorts lower or is empty."""
    await commit(store, marker="m-2")
    await commit(store, cursor=T0, delivered=ids("a", 1), counts={"alerts": 1}, success_at=1.0)
    await commit(store, prune_before=T0 + timedelta(hours=1))
    assert await store.marker("acme", "url") == "m-2"
    await commit(store, marker="m-1")
    assert await store.marker("acme", "url") == "m-1"
    await commit(store, marker="")
    assert await store.marker("acme", "url") == ""
    await commit(store, marker="m-3")
    again = await reopen(store)
    await commit(again, counts={"fetched": 1})
    assert await again.marker("acme", "url") == "m-3"
    assert await markers(again) == {("acme", "url"): "m-3"}


async def test_a_commit_that_fails_keeps_the_old_marker(store: Store, reopen: Reopen) -> None:
    """A commit that fails midway leaves the marker it carried out (the stream's old one stays, a new stream gets none), with its ids and counters; the next commit's marker lands."""
    await commit(store, delivered=ids("old", 1), counts={"fetched": 1}, marker="page-1")
    assert await store.marker("acme", "url") == "page-1"
    with pytest.raises(RuntimeError, match="halfway"):
        await store.commit_group(
            [
                Commit("globex", "url", None, [], {"fetched": 3}, marker="globex-1"),
                Commit("acme", "url", None, raising_after(ids("new", 4), 2), {"fetched": 4}, marker="page-2"),
            ],
            {},
        )  # fmt: skip
    assert await store.marker("acme", "url") == "page-1"
    assert await store.marker("globex", "url") is None
    assert await markers(store) == {("acme", "url"): "page-1"}
    assert await store.already_delivered("acme", "url", ids("new", 4)) == set()
    assert await counters(store) == {("acme", "url"): {"fetched": 1}}
    again = await reopen(store)
    assert await again.marker("acme", "url") == "page-1"
    await commit(again, delivered=ids("new", 4), counts={"fetched": 4}, marker="page-2")
    assert await again.marker("acme", "url") == "page-2"


async def test_the_markers_of_a_group_each_land_the_last_of_a_stream_winning(
    store: Store, reopen: Reopen
) -> None:
    """One group of several streams: each stream's marker lands, a stream's later pages' marker replaces its earlier ones', a page without one changes nothing, and a stream with none keeps its own."""
    await commit(store, tenant="initech", marker="initech-0")
    await store.commit_group(
        [
            Commit("acme", "siem", None, ids("a", 2), {"fetched": 2}, marker="acme-1"),
            Commit("globex", "siem", None, [], {"fetched": 5}, marker="globex-1"),
            Commit("acme", "siem", None, ids("b", 2), {"fetched": 2}, marker="acme-2"),
            Commit("acme", "siem", None, [], {"fetched": 1}),
            Commit("initech", "url", T0, ids("i", 1), {"alerts": 1}),
            Commit("umbrella", "url", T0, [], {"fetched": 1}),
        ],
        {"jsonl:alerts": "9"},
    )
    expected = {
        ("acme", "siem"): "acme-2",
        ("globex", "siem"): "globex-1",
        ("initech", "url"): "initech-0",
        ("umbrella", "url"): None,
    }
    assert {key: await store.marker(*key) for key in expected} == expected
    assert await markers(store) == expected
    again = await reopen(store)
    assert await markers(again) == expected
    assert await counters(again) == {
        ("acme", "siem"): {"fetched": 5},
        ("globex", "siem"): {"fetched": 5},
        ("initech", "url"): {"alerts": 1},
        ("umbrella", "url"): {"fetched": 1},
    }


# --- the streams' health -------------------------------------------------------------------------


def degraded(since: float, reason: str = "Mimecast kept failing (HTTP 503)") -> StreamHealth:
    return StreamHealth(State.DEGRADED, reason, "retried with backoff", since)


async def healths(store: Store) -> dict[tuple[str, str], StreamHealth | None]:
    return {(s.tenant, s.category): s.health for s in await store.streams(counters=False)}


async def test_a_stream_has_no_health_until_one_is_stored(store: Store) -> None:
    """Streams created by a commit or by an error note without a health have none (status derives it)."""
    await commit(store, cursor=T0, success_at=T0.timestamp())
    await store.record_error("acme", "attachment", "failed", T0.timestamp())
    assert await healths(store) == {("acme", "attachment"): None, ("acme", "url"): None}


async def test_set_health_stores_it_whole_and_it_survives_reopening(
    store: Store, reopen: Reopen
) -> None:
    """set_health creates the stream if new and keeps state, reason, advice and since as given, after reopening too."""
    health = StreamHealth(
        State.AUTHENTICATED, "accepted \u2019\u00e9'", "nothing to do", T0.timestamp()
    )
    await store.set_health("acme", "url", health)
    assert await healths(store) == {("acme", "url"): health}
    again = await reopen(store)
    assert await healths(again) == {("acme", "url"): health}
    [stream] = await again.streams()
    assert (stream.cursor, stream.last_error, dict(stream.counters)) == (None, None, {})


async def test_since_is_kept_while_the_state_stays_and_replaced_when_it_changes(
    store: Store,
) -> None:
    """A second degraded note keeps the first one's since (the run of failures began then) but takes the new reason; another state brings its own since."""
    t0 = T0.timestamp()
    await store.record_error("acme", "url", "first", t0, degraded(t0, "first"))
    await store.record_error("acme", "url", "second", t0 + 60, degraded(t0 + 60, "second"))
    assert (await healths(store))[("acme", "url")] == degraded(t0, "second")
    failing = StreamHealth(State.FAILING, "refused", "check client_id", t0 + 120)
    await store.record_error("acme", "url", "refused", t0 + 120, failing)
    assert (await healths(store))[("acme", "url")] == failing
    await store.set_health("acme", "url", degraded(t0 + 180))
    assert (await healths(store))[("acme", "url")] == degraded(t0 + 180)


async def test_record_error_without_a_health_leaves_the_stored_one(store: Store) -> None:
    """An error note that brings no health (a fleet poll taken over) changes the last error only."""
    t0 = T0.timestamp()
    await store.record_error("acme", "url", "503", t0, degraded(t0))
    await store.record_error("acme", "url", "taken over", t0 + 5)
    [stream] = await store.streams()
    assert (stream.last_error, stream.health) == ("taken over", degraded(t0))


async def test_a_commit_brings_its_health_with_its_success(store: Store, reopen: Reopen) -> None:
    """A poll's last commit sets collecting with the success and clears the error; later successes keep collecting's since; a commit without a health leaves it."""
    t0 = T0.timestamp()
    await store.record_error("acme", "url", "503", t0, degraded(t0))
    done = StreamHealth(State.COLLECTING, "the last poll finished", "", t0 + 10)
    await store.commit_group(
        [Commit("acme", "url", T0, [], {}, success_at=t0 + 10, health=done)], {}
    )
    [stream] = await store.streams()
    assert (stream.health, stream.last_error, stream.last_success) == (
        done,
        None,
        T0 + timedelta(seconds=10),
    )
    later = StreamHealth(State.COLLECTING, "the last poll finished", "", t0 + 70)
    await store.commit_group(
        [Commit("acme", "url", T0, [], {}, success_at=t0 + 70, health=later)], {}
    )
    await commit(store, cursor=T0 + timedelta(seconds=80))  # a page of a poll: no health
    again = await reopen(store)
    assert await healths(again) == {("acme", "url"): done}


async def test_a_commit_that_fails_keeps_the_old_health(store: Store) -> None:
    """A group that fails midway changes no stream's health, its own or the others'."""
    t0 = T0.timestamp()
    await store.record_error("acme", "url", "503", t0, degraded(t0))
    done = StreamHealth(State.COLLECTING, "the last poll finished", "", t0 + 10)
    with pytest.raises(RuntimeError, match="halfway"):
        await store.commit_group(
            [
                Commit("globex", "url", None, [], {}, success_at=t0 + 10, health=done),
                Commit("acme", "url", None, raising_after(ids("n", 4), 2), {}, success_at=t0 + 10, health=done),
            ],
            {},
        )  # fmt: skip
    assert await healths(store) == {("acme", "url"): degraded(t0)}


async def test_each_stream_of_a_group_gets_its_own_health(store: Store) -> None:
    """One group carrying several streams' healths stores each with its stream, the last of a stream's winning."""
    t0 = T0.timestamp()
    first = StreamHealth(State.COLLECTING, "the last poll finished", "", t0)
    other = StreamHealth(State.COLLECTING, "done", "", t0 + 1)
    await store.commit_group(
        [
            Commit("acme", "url", T0, [], {}, health=first),
            Commit("globex", "url", T0, [], {}),
            Commit("initech", "url", T0, [], {}, health=other),
        ],
        {},
    )
    assert await healths(store) == {
        ("acme", "url"): first,
        ("globex", "url"): None,
        ("initech", "url"): other,
    }


async def test_streams_without_counters_are_the_same_streams(store: Store) -> None:
    """streams(counters=False) gives every stream with its cursor, errors, marker and health, and no counters."""
    t0 = T0.timestamp()
    await commit(store, cursor=T0, counts={"alerts": 3}, marker="m")
    await store.record_error("acme", "url", "503", t0, degraded(t0))
    await store.record_error("globex", "attachment", "x", t0)
    full = await store.streams()
    light = await store.streams(counters=False)
    assert [dict(s.counters) for s in full] == [{"alerts": 3}, {}]
    assert [dict(s.counters) for s in light] == [{}, {}]
    assert [(s.tenant, s.category, s.cursor, s.last_error, s.marker, s.health) for s in light] == [
        (s.tenant, s.category, s.cursor, s.last_error, s.marker, s.health) for s in full
    ]


async def test_began_is_set_once_by_the_first_commit_or_set_began(
    store: Store, reopen: Reopen
) -> None:
    """A stream's ``began`` is the first one a commit or ``set_began`` brings, kept over later ones and a restart; streams of a group get their own; ``streams`` shows it."""
    assert await store.began("acme", "url") is None
    await store.commit_group(
        [
            Commit("acme", "url", T0, [("a", T0.timestamp())], {"fetched": 1}, began=T0),
            Commit("acme", "attachment", None, [], {}, began=T0 + timedelta(hours=1)),
        ],
        {},
    )
    await store.commit_group(
        [Commit("acme", "url", None, [], {}, began=T0 - timedelta(days=1))], {}
    )
    await store.set_began("acme", "url", T0 - timedelta(days=2))
    assert await store.began("acme", "url") == T0
    assert await store.began("acme", "attachment") == T0 + timedelta(hours=1)
    # A stream never polled: ``set_began`` creates it (a backfill ran first).
    await store.set_began("acme", "impersonation", T0 + timedelta(hours=2))
    await store.commit_group(
        [Commit("acme", "impersonation", None, [], {}, began=T0 - timedelta(hours=5))], {}
    )
    store = await reopen(store)
    assert await store.began("acme", "url") == T0
    assert await store.began("acme", "impersonation") == T0 + timedelta(hours=2)
    assert {s.category: s.began for s in await store.streams()} == {
        "attachment": T0 + timedelta(hours=1),
        "impersonation": T0 + timedelta(hours=2),
        "url": T0,
    }


# --- the dashboard's counts (``Commit.tallies``) --------------------------------------------------

H0 = int(T0.timestamp()) // 3600


def tallies(
    hours: dict[tuple[int, str, str], int],
    parties: dict[tuple[int, str], dict[str, int]] | None = None,
    *,
    category: str = "url",
    hour_now: int = H0 + 1,
) -> Tallies:
    return Tallies(category, hours, parties or {}, hour_now)


async def test_a_group_counting_one_row_many_times_adds_every_count(store: Store) -> None:
    """One group: three pages of one stream count the same hour, type and technique, another tenant counts it too, and the stream's counters come with each page: every count is added once, whichever store sums them."""
    page = [
        Commit(
            "acme",
            "url",
            None,
            [],
            {"fetched": 2, "alerts": n},
            tallies=tallies({(H0, "URL Protection", "T1598.003"): n}),
        )
        for n in (1, 2, 3)
    ]
    other = Commit(
        "globex",
        "url",
        None,
        [],
        {"fetched": 5},
        tallies=tallies({(H0, "URL Protection", "T1598.003"): 4}),
    )
    await store.commit_group([*page, other], {})
    await store.commit_group([page[0]], {})
    assert await store.alert_series(H0 - 1) == [(H0, "url", 11)]
    assert await store.alert_series(H0 - 1, "acme") == [(H0, "url", 7)]
    assert await store.technique_counts(H0 - 1, "globex") == [("T1598.003", 4)]
    counted = {(s.tenant, s.category): dict(s.counters) for s in await store.streams()}
    assert counted[("acme", "url")] == {"fetched": 8, "alerts": 7}
    assert counted[("globex", "url")] == {"fetched": 5}


async def test_tallies_are_added_up_and_read_back_by_hour_type_technique_and_party(
    store: Store, reopen: Reopen
) -> None:
    """Counts of two commits (one a group of two tenants) add up; each read sums what it names, in its order, filtered by tenant and hour; they survive reopening."""
    await store.commit_group(
        [
            Commit(
                "acme",
                "url",
                None,
                [],
                {},
                tallies=tallies(
                    {(H0, "URL Protection", "T1598.003"): 3, (H0 - 1, "Malicious", "T1566"): 1},
                    {(H0, "sender"): {"bad@evil.example": 3}, (H0, "recipient"): {"bob@acme": 2}},
                ),
            ),
            Commit(
                "globex",
                "attachment",
                None,
                [],
                {},
                tallies=tallies(
                    {(H0, "Unsafe Email Attachment", "T1598.002"): 2},
                    {(H0, "sender"): {"bad@evil.example": 2, "x@y": 1}},
                    category="attachment",
                ),
            ),
        ],
        {},
    )
    await store.commit_group(
        [
            Commit(
                "acme",
                "url",
                None,
                [],
                {},
                tallies=tallies(
                    {(H0, "URL Protection", "T1598.003"): 4},
                    {(H0, "recipient"): {"bob@acme": 1, "amy@acme": 4}},
                ),
            )
        ],
        {},
    )
    store = await reopen(store)
    assert await store.alert_series(H0 - 5) == [
        (H0 - 1, "url", 1),
        (H0, "attachment", 2),
        (H0, "url", 7),
    ]
    assert await store.alert_series(H0) == [(H0, "attachment", 2), (H0, "url", 7)]
    assert await store.alert_series(H0 - 5, "globex") == [(H0, "attachment", 2)]
    assert await store.technique_counts(H0 - 5) == [
        ("T1598.003", 7),
        ("T1598.002", 2),
        ("T1566", 1),
    ]
    assert await store.technique_counts(H0 - 5, "acme") == [("T1598.003", 7), ("T1566", 1)]
    assert await store.top_alert_types(H0 - 5, 2) == [
        ("URL Protection", 7),
        ("Unsafe Email Attachment", 2),
    ]
    assert await store.top_parties(H0 - 5, "sender", 10) == [("bad@evil.example", 5), ("x@y", 1)]
    assert await store.top_parties(H0 - 5, "sender", 10, "acme") == [("bad@evil.example", 3)]
    # A tie is ordered by address.
    assert await store.top_parties(H0, "recipient", 1) == [("amy@acme", 4)]
    assert await store.top_parties(H0, "recipient", 5) == [("amy@acme", 4), ("bob@acme", 3)]
    assert await store.top_parties(H0 + 1, "recipient", 5) == []


async def test_a_tenants_senders_of_an_hour_stay_one_row(store: Store, place: Place) -> None:
    """Every commit of a tenant's alerts adds its senders and recipients to that tenant's one row of the hour and role (the dashboard reads 24 h of them every 30 s: a row per commit made that read grow with the polls); rows an older release wrote several of are folded into one when next added to; the sums are as before."""
    for i in range(30):
        await store.commit_group(
            [
                Commit(
                    tenant,
                    category,
                    None,
                    [],
                    {},
                    tallies=tallies(
                        {},
                        {
                            (H0, "sender"): {f"s{i % 7}@evil.example": 1, "bad@evil.example": 2},
                            (H0 - 1, "recipient"): {"amy@acme": 1},
                        },
                        category=category,
                    ),
                )
                for tenant, category in (("acme", "url"), ("acme", "attachment"), ("globex", "url"))
            ],
            {},
        )
    assert await place.party_rows() == [
        (H0 - 1, "recipient", "acme"),
        (H0 - 1, "recipient", "globex"),
        (H0, "sender", "acme"),
        (H0, "sender", "globex"),
    ]
    assert await store.top_parties(H0 - 5, "sender", 3) == [
        ("bad@evil.example", 180),
        ("s0@evil.example", 15),
        ("s1@evil.example", 15),
    ]
    assert await store.top_parties(H0 - 5, "recipient", 5, "acme") == [("amy@acme", 60)]
    # An older release's rows: one per commit.
    for _ in range(3):
        await place.add_party_row(H0, "sender", "initech", b'{"old@x":2}')
    assert await store.top_parties(H0, "sender", 1, "initech") == [("old@x", 6)]
    await store.commit_group(
        [
            Commit(
                "initech",
                "url",
                None,
                [],
                {},
                tallies=tallies({}, {(H0, "sender"): {"old@x": 1, "new@x": 1}}),
            )
        ],
        {},
    )
    assert [r for r in await place.party_rows() if r[2] == "initech"] == [(H0, "sender", "initech")]
    assert await store.top_parties(H0, "sender", 5, "initech") == [("old@x", 7), ("new@x", 1)]


async def test_a_full_senders_row_is_left_and_a_new_one_started(store: Store, place: Place) -> None:
    """A row past PARTY_ROW_BYTES (a campaign's 4,000 recipients in one hour) is not decoded
    and written again by every later commit of its hour: the next commit starts a row of its
    own, and later ones add to that; the sums are as if it were one."""

    def recipients(addresses: dict[str, int]) -> list[Commit]:
        parties = {(H0, "recipient"): addresses}
        return [Commit("acme", "url", None, [], {}, tallies=tallies({}, parties))]

    campaign = {f"user{i:05d}@victim.example": 1 for i in range(4_000)}
    await store.commit_group(recipients(campaign), {})
    await store.commit_group(recipients({"user00000@victim.example": 2}), {})
    await store.commit_group(recipients({"amy@acme": 5}), {})
    assert await place.party_rows() == [(H0, "recipient", "acme")] * 2
    assert await store.top_parties(H0, "recipient", 2) == [
        ("amy@acme", 5),
        ("user00000@victim.example", 3),
    ]


async def test_a_senders_row_that_does_not_decode_is_left_and_never_stops_a_commit(
    store: Store, place: Place
) -> None:
    """A row that is not the JSON of counts (a hand-edited state, a bug) does not fail the
    commits that add to its key, which would stop the stream: it is left as it is, not
    counted, and the new counts go to a row of their own."""
    await place.add_party_row(H0, "sender", "acme", b'{"bad@x": "many"')
    parties = {(H0, "sender"): {"bad@evil.example": 2}}
    for _ in range(2):
        commit = Commit("acme", "url", T0, [], {}, tallies=tallies({}, parties))
        await store.commit_group([commit], {})
    assert await store.cursor("acme", "url") == T0
    assert await place.party_rows() == [(H0, "sender", "acme")] * 2
    assert await store.top_parties(H0, "sender", 5) == [("bad@evil.example", 4)]


async def test_tallies_commit_or_fail_with_their_group(store: Store) -> None:
    """A group that breaks midway adds none of its counts; a store with none answers empty lists."""
    assert await store.alert_series(0) == []
    assert await store.technique_counts(0) == []
    assert await store.top_alert_types(0, 5) == []
    assert await store.top_parties(0, "sender", 5) == []
    with pytest.raises(RuntimeError):
        await store.commit_group(
            [
                Commit("acme", "url", None, [], {}, tallies=tallies({(H0, "A", "T1"): 1})),
                Commit("acme", "attachment", T0, raising_after(ids("x", 3), 1), {}),
            ],
            {},
        )
    assert await store.alert_series(0) == []


async def test_old_hours_are_not_kept(store: Store) -> None:
    """Type counts older than 35 days and party counts older than 48 hours before ``hour_now`` are dropped at commit, and never added."""
    await store.commit_group(
        [
            Commit(
                "acme",
                "url",
                None,
                [],
                {},
                tallies=tallies(
                    {(H0 - 10, "Old", "T1"): 1, (H0, "New", "T2"): 1},
                    {(H0 - 10, "sender"): {"old@x": 1}, (H0, "sender"): {"new@x": 1}},
                    hour_now=H0,
                ),
            )
        ],
        {},
    )
    assert [t for t, _ in await store.top_parties(0, "sender", 5)] == ["new@x", "old@x"]
    # 40 hours later: the parties of H0 - 10 are 50 hours old (gone), those of H0 are 40.
    later = H0 + 40
    await store.commit_group(
        [
            Commit(
                "acme",
                "url",
                None,
                [],
                {},
                tallies=tallies(
                    {(later - HOURS_KEPT - 1, "Too old", "T3"): 5},
                    {(later - PARTY_HOURS_KEPT - 1, "sender"): {"too-old@x": 5}},
                    hour_now=later,
                ),
            )
        ],
        {},
    )
    assert await store.top_parties(0, "sender", 5) == [("new@x", 1)]
    assert await store.top_alert_types(0, 5) == [("New", 1), ("Old", 1)]
    # 35 days and more after H0 - 10: that hour's type counts are gone too.
    much_later = H0 - 10 + HOURS_KEPT + 1
    await store.commit_group(
        [Commit("acme", "url", None, [], {}, tallies=tallies({}, hour_now=much_later))], {}
    )
    assert await store.top_alert_types(0, 5) == [("New", 1)]
    assert await store.top_alert_types(0, 5, "acme") == [("New", 1)]
    assert await store.alert_series(0) == [(H0, "url", 1)]
    assert await store.alert_series(0, "acme") == [(H0, "url", 1)]
