"""What only the SQLite state store has: its file (missing, damaged, of a newer release).

The semantics it shares with the PostgreSQL store (checkpoints, delivered ids, counters, sink
positions, errors) are tested on both by ``tests/state/test_conformance.py``; the writer lock,
the read-only opening and a file replaced under a run by ``test_state_guards.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimecast_connector._errors import StateError
from mimecast_connector.state import SCHEMA_VERSION, StateStore

T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "connector.db"


def ids(prefix: str, n: int, start: datetime = T0) -> list[tuple[str, float]]:
    """``n`` delivered ids, one second apart from ``start``."""
    return [(f"{prefix}{i}", (start + timedelta(seconds=i)).timestamp()) for i in range(n)]


def test_opening_a_missing_store_without_create_says_to_run_first(db: Path) -> None:
    """``create=False`` on a path with no database is a StateError, and creates nothing."""
    with pytest.raises(StateError, match="run the connector first"):
        StateStore(db, create=False)
    assert not db.exists()


# --- damaged and foreign databases -------------------------------------------------------------


def _real_database(db: Path) -> bytes:
    """A closed store holding enough rows to span many pages; returns its bytes."""
    store = StateStore(db)
    store.commit(
        "acme",
        "url",
        cursor=T0,
        delivered=ids("id-with-some-length-", 3000),
        counts={"a": 1},
        sink_positions={},
        prune_before=None,
    )
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


def test_a_version_5_file_is_refused_by_a_release_that_reads_version_4(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This release's files (version 5: streams' health) are refused by the check as a version 4 release ships it, writer and ``status`` alike, before anything is written."""
    from mimecast_connector.state import _store

    StateStore(db).close()
    before = db.read_bytes()
    monkeypatch.setattr(_store, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(_store, "_READABLE", {"1", "2", "3", "4"})
    for options in ({}, {"writer": True}, {"read_only": True}):
        with pytest.raises(StateError) as caught:
            StateStore(db, **options)
        assert str(caught.value) == (
            f"the state database {str(db)!r} has schema version 5, this version of "
            "mimecast-connector reads version 4: use the matching release"
        )
    assert db.read_bytes() == before


@pytest.mark.parametrize("json_functions", [True, False])
def test_delivered_ids_are_kept_with_or_without_sqlites_json_functions(
    db: Path, json_functions: bool
) -> None:
    """A page's ids go in as one statement through SQLite's JSON functions, or one row each on
    a SQLite built without them: the same ids kept either way (a quote or a backslash in an id
    included), a page repeated adds nothing, and a page whose ids fail midway keeps none."""
    store = StateStore(db)
    assert store._json is True  # this machine's SQLite has them
    store._json = json_functions
    # Ids are hex digests; quotes, a backslash and non-ASCII must survive the JSON all the same.
    odd = [('quo"te\\', T0.timestamp()), ("é", T0.timestamp() + 1.5)]
    page = [*ids("a", 300), *odd]

    def commit(delivered: Iterable[tuple[str, float]]) -> None:
        store.commit(
            "acme",
            "url",
            cursor=T0,
            delivered=delivered,
            counts={},
            sink_positions={},
            prune_before=None,
        )

    commit(page)
    commit(page)
    commit([])
    with pytest.raises(RuntimeError):
        commit(_breaking(ids("b", 10), 5))
    asked = [*page, *ids("b", 10)]
    assert store.already_delivered("acme", "url", asked) == {id_ for id_, _ in page}
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM delivered").fetchone()
    assert rows == (302,)
    store.close()


def _breaking(items: list[tuple[str, float]], n: int) -> Iterator[tuple[str, float]]:
    yield from items[:n]
    raise RuntimeError("the sink ack was lost halfway")
