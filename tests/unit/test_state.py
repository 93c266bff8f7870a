"""Unit tests of the SQLite state store: checkpoints, delivered ids, counters, sink positions."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimecast_connector._errors import StateError
from mimecast_connector.state import SCHEMA_VERSION, StateStore

T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "connector.db"


@pytest.fixture
def store(db: Path) -> Iterator[StateStore]:
    opened = StateStore(db)
    yield opened
    opened.close()


def commit(
    store: StateStore,
    *,
    cursor: datetime | None = None,
    delivered: list[tuple[str, float]] | None = None,
    counts: dict[str, int] | None = None,
    positions: dict[str, str] | None = None,
    prune_before: datetime | None = None,
    tenant: str = "acme",
    category: str = "url",
) -> None:
    store.commit(
        tenant,
        category,
        cursor=cursor,
        delivered=delivered or [],
        counts=counts or {},
        sink_positions=positions or {},
        prune_before=prune_before,
    )


def ids(prefix: str, n: int, start: datetime = T0) -> list[tuple[str, float]]:
    """``n`` delivered ids, one second apart from ``start``."""
    return [(f"{prefix}{i}", (start + timedelta(seconds=i)).timestamp()) for i in range(n)]


def test_a_commit_survives_reopening(db: Path) -> None:
    """Cursor, delivered ids, counters, sink positions and success time are read back after reopening."""
    first = StateStore(db)
    first.commit(
        "acme",
        "url",
        cursor=T0,
        delivered=ids("a", 3),
        counts={"alerts": 3, "fetched": 5},
        sink_positions={"jsonl:alerts": "1234"},
        prune_before=None,
        success_at=T0.timestamp() + 5,
    )
    first.close()
    again = StateStore(db, create=False)
    try:
        assert again.cursor("acme", "url") == T0
        assert again.cursor("acme", "attachment") is None
        assert again.already_delivered("acme", "url", ["a0", "a2", "zz"]) == {"a0", "a2"}
        assert again.sink_position("jsonl:alerts") == "1234"
        [stream] = again.streams()
        assert (stream.tenant, stream.category, stream.cursor) == ("acme", "url", T0)
        assert stream.last_success == T0 + timedelta(seconds=5)
        assert dict(stream.counters) == {"alerts": 3, "fetched": 5}
    finally:
        again.close()


def test_opening_a_missing_store_without_create_says_to_run_first(db: Path) -> None:
    """``create=False`` on a path with no database is a StateError, and creates nothing."""
    with pytest.raises(StateError, match="run the connector first"):
        StateStore(db, create=False)
    assert not db.exists()


def test_the_cursor_never_moves_backwards(store: StateStore) -> None:
    """An older cursor, or none, leaves the newer one in place; a newer one advances it."""
    commit(store, cursor=T0 + timedelta(minutes=5))
    commit(store, cursor=T0)
    assert store.cursor("acme", "url") == T0 + timedelta(minutes=5)
    commit(store, cursor=None, counts={"fetched": 1})
    assert store.cursor("acme", "url") == T0 + timedelta(minutes=5)
    commit(store, cursor=T0 + timedelta(minutes=6))
    assert store.cursor("acme", "url") == T0 + timedelta(minutes=6)


def test_streams_are_kept_apart(store: StateStore) -> None:
    """Cursors, ids and counters of one tenant and category do not leak into another."""
    commit(store, cursor=T0, delivered=[("x", T0.timestamp())], counts={"alerts": 1})
    commit(store, cursor=T0 + timedelta(hours=1), tenant="globex", counts={"alerts": 7})
    commit(store, cursor=T0 - timedelta(hours=1), category="attachment")
    assert store.cursor("acme", "url") == T0
    assert store.cursor("globex", "url") == T0 + timedelta(hours=1)
    assert store.cursor("acme", "attachment") == T0 - timedelta(hours=1)
    assert store.already_delivered("globex", "url", ["x"]) == set()
    assert store.already_delivered("acme", "attachment", ["x"]) == set()
    counters = {(s.tenant, s.category): dict(s.counters) for s in store.streams()}
    assert counters == {
        ("acme", "attachment"): {},
        ("acme", "url"): {"alerts": 1},
        ("globex", "url"): {"alerts": 7},
    }


def _raising_after(items: list[tuple[str, float]], n: int) -> Iterator[tuple[str, float]]:
    yield from items[:n]
    raise RuntimeError("the sink ack was lost halfway")


def test_a_commit_that_fails_midway_leaves_nothing(store: StateStore) -> None:
    """An exception inside a commit rolls back its cursor, ids, counters and positions; later commits work."""
    commit(store, cursor=T0, delivered=ids("old", 2), counts={"alerts": 2}, positions={"f": "10"})
    with pytest.raises(RuntimeError, match="halfway"):
        store.commit(
            "acme",
            "url",
            cursor=T0 + timedelta(hours=1),
            delivered=_raising_after(ids("new", 10), 5),
            counts={"alerts": 10},
            sink_positions={"f": "99"},
            prune_before=T0 + timedelta(days=1),
        )
    assert store.cursor("acme", "url") == T0
    assert store.already_delivered("acme", "url", [f"new{i}" for i in range(10)]) == set()
    assert store.already_delivered("acme", "url", ["old0", "old1"]) == {"old0", "old1"}
    assert dict(store.streams()[0].counters) == {"alerts": 2}
    assert store.sink_position("f") == "10"
    commit(store, cursor=T0 + timedelta(hours=2), counts={"alerts": 1})
    assert store.cursor("acme", "url") == T0 + timedelta(hours=2)


def test_a_failed_first_commit_does_not_create_the_stream(store: StateStore) -> None:
    """Even the stream's row, created inside the commit, is rolled back."""
    with pytest.raises(RuntimeError):
        store.commit(
            "acme", "url", cursor=T0, delivered=_raising_after(ids("n", 3), 1),
            counts={}, sink_positions={}, prune_before=None,
        )  # fmt: skip
    assert store.streams() == []


def test_already_delivered_handles_more_than_500_ids(store: StateStore) -> None:
    """A query of 1 501 ids (past SQLite's variable limit chunks) finds exactly the 1 200 delivered."""
    delivered = ids("d", 1200)
    commit(store, delivered=delivered)
    wanted = [id_ for id_, _ in delivered] + [f"absent{i}" for i in range(301)]
    assert store.already_delivered("acme", "url", wanted) == {id_ for id_, _ in delivered}
    assert store.already_delivered("acme", "url", iter(["d0", "d1199", "d1200"])) == {"d0", "d1199"}
    assert store.already_delivered("acme", "url", []) == set()


def test_delivering_an_id_twice_is_harmless(store: StateStore) -> None:
    """Re-recording an id (an overlap re-read) neither fails nor changes its time."""
    commit(store, delivered=[("same", T0.timestamp())])
    commit(store, delivered=[("same", (T0 + timedelta(days=9)).timestamp())])
    commit(store, prune_before=T0 + timedelta(seconds=1))
    assert store.already_delivered("acme", "url", ["same"]) == set()


def test_prune_removes_only_ids_older_than_the_bound(store: StateStore) -> None:
    """Ids strictly older than ``prune_before`` go; the bound itself, newer ids and other streams stay."""
    commit(store, delivered=ids("a", 10))
    commit(store, delivered=ids("a", 10), category="attachment")
    commit(store, prune_before=T0 + timedelta(seconds=4))
    assert store.already_delivered("acme", "url", [f"a{i}" for i in range(10)]) == {
        f"a{i}" for i in range(4, 10)
    }
    assert len(store.already_delivered("acme", "attachment", [f"a{i}" for i in range(10)])) == 10


def test_prune_runs_after_the_batch_it_commits_with(store: StateStore) -> None:
    """Ids delivered in the same commit are pruned by the same bound when older than it."""
    commit(store, delivered=ids("b", 3), prune_before=T0 + timedelta(seconds=2))
    assert store.already_delivered("acme", "url", ["b0", "b1", "b2"]) == {"b2"}


def test_counters_add_up(store: StateStore) -> None:
    """Counters accumulate across commits; a zero count creates no counter."""
    commit(store, counts={"fetched": 5, "alerts": 2, "dead_lettered": 0})
    commit(store, counts={"fetched": 3, "dropped: url scanResult clean": 1})
    commit(store, counts={"alerts": 4})
    assert dict(store.streams()[0].counters) == {
        "alerts": 6,
        "fetched": 8,
        "dropped: url scanResult clean": 1,
    }


def test_sink_positions_are_set_and_replaced(store: StateStore) -> None:
    """A sink's position is its latest committed value; unknown sinks have none."""
    assert store.sink_position("jsonl:a") is None
    commit(store, positions={"jsonl:a": "100", "jsonl:b": "7"})
    commit(store, positions={"jsonl:a": "250"})
    assert (store.sink_position("jsonl:a"), store.sink_position("jsonl:b")) == ("250", "7")


def test_record_error_is_shown_until_the_next_success(store: StateStore) -> None:
    """The last error is kept (capped) and cleared by the next successful commit."""
    store.record_error("acme", "url", "x" * 5000, T0.timestamp())
    [stream] = store.streams()
    assert stream.last_error == "x" * 2000
    assert stream.last_error_at == T0
    store.commit(
        "acme", "url", cursor=None, delivered=[], counts={}, sink_positions={},
        prune_before=None, success_at=T0.timestamp() + 1,
    )  # fmt: skip
    [stream] = store.streams()
    assert (stream.last_error, stream.last_error_at) == (None, None)


# --- damaged and foreign databases -------------------------------------------------------------


def _real_database(db: Path) -> bytes:
    """A closed store holding enough rows to span many pages; returns its bytes."""
    store = StateStore(db)
    commit(store, cursor=T0, delivered=ids("id-with-some-length-", 3000), counts={"a": 1})
    store.close()
    assert not Path(f"{db}-wal").exists()
    return db.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b"\x00garbage" * 16 + b[128:], id="header-overwritten"),
        pytest.param(
            lambda b: b[:8192] + b"\xde\xad\xbe\xef" * 1024 + b[12288:], id="page-overwritten"
        ),
        pytest.param(lambda b: b[: len(b) // 2], id="truncated-half"),
        pytest.param(lambda b: b[:1000], id="truncated-to-first-page"),
    ],
)
def test_a_damaged_database_is_refused_and_left_alone(db: Path, damage: object) -> None:
    """A corrupted or truncated file raises StateError saying how to recover, and is not modified."""
    assert callable(damage)
    damaged = damage(_real_database(db))
    db.write_bytes(damaged)
    with pytest.raises(StateError) as caught:
        StateStore(db)
    message = str(caught.value)
    assert "is damaged" in message
    assert "Nothing was changed" in message
    assert "To recover" in message
    assert "restore it from a backup" in message
    assert db.read_bytes() == damaged
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]


def test_a_newer_schema_is_refused(db: Path) -> None:
    """A database written by a newer release (schema_version + 1) is refused, and kept as it was."""
    StateStore(db).close()
    with sqlite3.connect(db) as raw:
        raw.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    raw.close()
    with pytest.raises(StateError) as caught:
        StateStore(db)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(caught.value)
    assert "use the matching release" in str(caught.value)
    with sqlite3.connect(db) as raw:
        row = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    raw.close()
    assert row == (str(SCHEMA_VERSION + 1),)


# --- property: the cursor is the maximum -------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=40, deadline=None)
@given(cursors=st.lists(st.one_of(st.none(), moments), min_size=1, max_size=8))
def test_any_sequence_of_commits_keeps_the_newest_cursor(cursors: list[datetime | None]) -> None:
    """Whatever order cursors are committed in (None included), the stored one is their maximum, even after reopening."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "state.db"
        store = StateStore(path)
        try:
            for index, cursor in enumerate(cursors):
                commit(store, cursor=cursor)
                seen = [c for c in cursors[: index + 1] if c is not None]
                assert store.cursor("acme", "url") == (max(seen) if seen else None)
        finally:
            store.close()
        reopened = StateStore(path)
        try:
            present = [c for c in cursors if c is not None]
            assert reopened.cursor("acme", "url") == (max(present) if present else None)
        finally:
            reopened.close()
