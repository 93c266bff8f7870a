"""The state store's guards: one writer however the path is spelled, a database that vanishes
or is replaced under a running store, and read-only opening for ``status``."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mimecast_connector._errors import StateError
from mimecast_connector._health import State, StreamHealth
from mimecast_connector.state import SCHEMA_VERSION, Commit, StateStore

T0 = datetime(2025, 3, 4, 9, 0, tzinfo=UTC)


def commit(
    store: StateStore, cursor: datetime = T0, positions: dict[str, str] | None = None
) -> None:
    store.commit(
        "acme",
        "url",
        cursor=cursor,
        delivered=[("id-1", cursor.timestamp())],
        counts={"alerts": 1},
        sink_positions=positions or {},
        prune_before=None,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "a" / "state.db"


@pytest.fixture
def holder(db: Path) -> Iterator[StateStore]:
    """A writer holding the one-writer lock on ``a/state.db``."""
    store = StateStore(db, writer=True)
    yield store
    store.close()


# --- one writer, however the path is spelled ---------------------------------------------------


def other_spellings(db: Path) -> dict[str, Path]:
    """Other names of ``a/state.db``: a symlink to the file, one to its folder, a hard link, '..'."""
    root = db.parent.parent
    (root / "b").mkdir()
    (root / "b" / "state.db").symlink_to(Path("..") / "a" / "state.db")
    (root / "c").symlink_to("a")
    (root / "d").mkdir()
    os.link(db, root / "d" / "state.db")
    return {
        "symlink-to-file": root / "b" / "state.db",
        "symlink-to-folder": root / "c" / "state.db",
        "hard-link": root / "d" / "state.db",
        "dot-dot": root / "a" / ".." / "a" / "state.db",
        "dot": Path(f"{root}/a/./state.db"),
    }


def test_every_spelling_of_the_database_shares_one_lock(holder: StateStore, db: Path) -> None:
    """While a writer holds a/state.db, a writer through a symlink (file or folder), a hard link, '..' or '.' is refused naming the holder."""
    for how, path in other_spellings(db).items():
        with pytest.raises(StateError, match=rf"in use by process {os.getpid()} on ") as caught:
            StateStore(path, writer=True)
        assert "only one connector may write it" in str(caught.value), how


def test_after_the_holder_closes_another_spelling_may_write(db: Path) -> None:
    """The lock is the database's, not the spelling's: once released, a writer through a symlink takes it and holds it against the original path."""
    StateStore(db, writer=True).close()
    link = other_spellings(db)["symlink-to-file"]
    second = StateStore(link, writer=True)
    try:
        with pytest.raises(StateError, match="in use by"):
            StateStore(db, writer=True)
    finally:
        second.close()


# --- the database deleted or replaced under a running store ------------------------------------


def cursor_in(path: Path) -> float | None:
    """The committed cursor of acme/url, read with plain sqlite3 (not the code under test)."""
    raw = sqlite3.connect(path)
    try:
        row = raw.execute(
            "SELECT cursor FROM streams WHERE tenant = 'acme' AND category = 'url'"
        ).fetchone()
    finally:
        raw.close()
    return None if row is None else float(row[0])


def rescue_named_in(message: str) -> Path:
    """The copy of the orphaned database that the message names."""
    match = re.search(r"saved as '([^']+)'", message)
    assert match, message
    return Path(match.group(1))


def test_a_deleted_database_stops_every_write_with_a_state_error(
    holder: StateStore, db: Path
) -> None:
    """After the file is deleted, commit, set_sink_positions and record_error each raise StateError saying so, and name one saved copy holding the last commit."""
    commit(holder)
    db.unlink()
    rescues: set[Path] = set()
    writes: list[Callable[[], None]] = [
        lambda: commit(holder, T0.replace(hour=10)),
        lambda: holder.set_sink_positions({"jsonl:x": "10"}),
        lambda: holder.record_error("acme", "url", "boom", T0.timestamp()),
    ]
    for write in writes:
        with pytest.raises(StateError) as caught:
            write()
        message = str(caught.value)
        assert f"{str(db)!r} was deleted while this connector was using it" in message
        assert "Stop the connector" in message
        rescues.add(rescue_named_in(message))
    [rescue] = rescues
    assert cursor_in(rescue) == T0.timestamp()
    assert not db.exists()


def test_a_replaced_database_gets_nothing_more(
    holder: StateStore, db: Path, tmp_path: Path
) -> None:
    """A new file put in place of the open one: the next commit raises StateError, the new file is untouched, the saved copy holds the old state."""
    commit(holder)
    other = tmp_path / "other" / "state.db"
    StateStore(other).close()
    os.replace(other, db)
    before = db.read_bytes()
    with pytest.raises(StateError, match="was replaced by another file") as caught:
        commit(holder, T0.replace(hour=10))
    assert db.read_bytes() == before
    assert cursor_in(rescue_named_in(str(caught.value))) == T0.timestamp()


def test_a_database_replaced_under_a_writer_cannot_get_a_second_writer(
    holder: StateStore, db: Path, tmp_path: Path
) -> None:
    """A backup moved into place while a writer runs is a new file, yet a second writer on that path is refused (the lock on <state>.lock is held for the whole run), and the backup is left as it was."""
    commit(holder)
    backup = tmp_path / "backup" / "state.db"
    StateStore(backup).close()
    os.replace(backup, db)
    before = db.read_bytes()
    with pytest.raises(StateError, match=rf"in use by process {os.getpid()} on "):
        StateStore(db, writer=True)
    assert db.read_bytes() == before


# --- read-only opening (``status``) -------------------------------------------------------------


def filled(db: Path) -> Path:
    store = StateStore(db)
    commit(store, positions={"jsonl:x": "42"})
    store.close()
    return db


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_read_only_opening_writes_nothing(db: Path) -> None:
    """A read-only store reads the state and leaves the database file's bytes and mtime as they were."""
    before = fingerprint(filled(db))
    store = StateStore(db, read_only=True)
    try:
        assert store.cursor("acme", "url") == T0
        assert store.sink_position("jsonl:x") == "42"
    finally:
        store.close()
    assert fingerprint(db) == before


def test_read_only_opening_reads_the_markers(db: Path) -> None:
    """``status`` (read-only) reads each stream's marker as committed, by marker() and streams(), and None for a stream without one."""
    filled(db)
    store = StateStore(db, writer=True)
    store.commit(
        "acme",
        "siem",
        cursor=None,
        delivered=[],
        counts={"fetched": 2},
        sink_positions={},
        prune_before=None,
        marker='{"token": "t-2", "file": "f.json.gz", "line": 7}',
    )
    store.close()
    reader = StateStore(db, read_only=True)
    try:
        assert reader.marker("acme", "siem") == '{"token": "t-2", "file": "f.json.gz", "line": 7}'
        assert (reader.marker("acme", "url"), reader.marker("acme", "other")) == (None, None)
        assert {s.category: s.marker for s in reader.streams()} == {
            "siem": '{"token": "t-2", "file": "f.json.gz", "line": 7}',
            "url": None,
        }
    finally:
        reader.close()


def test_read_only_opening_does_not_wait_for_a_writer_in_a_transaction(db: Path) -> None:
    """With another connection holding BEGIN IMMEDIATE for 4 s, a read-only open reads the committed state at once."""
    filled(db)
    began = threading.Event()

    def writer() -> None:
        raw = sqlite3.connect(db, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("UPDATE streams SET cursor = 0")
        began.set()
        time.sleep(4)
        raw.execute("ROLLBACK")
        raw.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert began.wait(5)
        started = time.monotonic()
        store = StateStore(db, read_only=True)
        try:
            assert store.cursor("acme", "url") == T0
        finally:
            store.close()
        assert time.monotonic() - started < 2
    finally:
        thread.join()


def test_a_database_locked_exclusively_is_busy_not_damaged(db: Path) -> None:
    """A database another process holds with an exclusive lock is reported busy, to retry, never damaged."""
    filled(db)
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("PRAGMA journal_mode=DELETE")
    raw.execute("PRAGMA locking_mode=EXCLUSIVE")
    raw.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StateError) as caught:
            StateStore(db, read_only=True, timeout=0.2)
    finally:
        raw.execute("ROLLBACK")
        raw.close()
    message = str(caught.value)
    assert "busy" in message
    assert "again" in message
    assert "is damaged" not in message


def test_a_corrupt_database_read_only_still_says_damaged(db: Path) -> None:
    """Real corruption opened read-only is 'damaged', and the file is not modified."""
    filled(db)
    broken = b"\x00garbage" * 16 + db.read_bytes()[128:]
    db.write_bytes(broken)
    with pytest.raises(StateError, match="is damaged"):
        StateStore(db, read_only=True)
    assert db.read_bytes() == broken


@pytest.fixture
def read_only_view(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(writable folder, a read-only bind mount of it), or a skip where mounting is forbidden."""
    source, view = tmp_path / "rw", tmp_path / "ro"
    source.mkdir()
    view.mkdir()
    done = subprocess.run(  # noqa: S603 - fixed arguments
        ["mount", "--bind", str(source), str(view)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here (needs root): {done.stderr.decode().strip()}")
    try:
        subprocess.run(  # noqa: S603 - fixed arguments
            ["mount", "-o", "remount,bind,ro", str(view)],  # noqa: S607
            check=True,
            capture_output=True,
        )
        yield source, view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)  # noqa: S603, S607


def test_a_database_on_a_read_only_mount_can_be_read(read_only_view: tuple[Path, Path]) -> None:
    """A cleanly closed database on a read-only mount opens read-only and reads its state."""
    source, view = read_only_view
    before = fingerprint(filled(source / "state.db"))
    store = StateStore(view / "state.db", read_only=True)
    try:
        assert store.cursor("acme", "url") == T0
    finally:
        store.close()
    assert fingerprint(source / "state.db") == before


def test_a_crashed_writers_journal_on_a_read_only_mount_is_read(
    read_only_view: tuple[Path, Path],
) -> None:
    """A database whose writer died with commits still in its -wal file (no -shm) is read with those commits from a read-only mount."""
    source, view = read_only_view
    db = filled(source / "state.db")
    script = (
        "import os, sqlite3, sys\n"
        "raw = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "raw.execute('PRAGMA wal_autocheckpoint=0')\n"
        "raw.execute('UPDATE streams SET cursor = cursor + 60')\n"
        "os._exit(0)\n"  # dies without checkpointing: the commit is only in the -wal file
    )
    subprocess.run([sys.executable, "-c", script, str(db)], check=True)  # noqa: S603
    assert Path(f"{db}-wal").stat().st_size > 0
    Path(f"{db}-shm").unlink()
    before = fingerprint(db)
    store = StateStore(view / "state.db", read_only=True)
    try:
        assert store.cursor("acme", "url") == T0.replace(minute=1)
    finally:
        store.close()
    assert fingerprint(db) == before


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE streams (tenant TEXT NOT NULL, category TEXT NOT NULL, cursor REAL,
    last_success REAL, last_error TEXT, last_error_at REAL, PRIMARY KEY (tenant, category));
CREATE TABLE delivered (tenant TEXT NOT NULL, category TEXT NOT NULL, id TEXT NOT NULL,
    event_time REAL NOT NULL, PRIMARY KEY (tenant, category, id)) WITHOUT ROWID;
CREATE TABLE counters (tenant TEXT NOT NULL, category TEXT NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (tenant, category, name)) WITHOUT ROWID;
CREATE TABLE sinks (name TEXT PRIMARY KEY, position TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO streams (tenant, category, cursor) VALUES ('acme', 'url', 1764000000.0);
"""


def prune(store: StateStore, before: float) -> None:
    """Commit nothing but a prune of acme/url's ids older than ``before`` (epoch seconds)."""
    store.commit(
        "acme",
        "url",
        cursor=None,
        delivered=(),
        counts={},
        sink_positions={},
        prune_before=datetime.fromtimestamp(before, UTC),
    )


def test_a_version_1_database_is_migrated_and_keeps_its_cursor(tmp_path: Path) -> None:
    """A state file of the first schema opens, keeps its cursor, gains kept_from (unset until the first prune) and says the current version."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    store = StateStore(path, writer=True)
    try:
        cursor, kept = store.position("acme", "url")
        assert cursor is not None
        assert cursor.timestamp() == 1764000000.0
        assert kept is None
        prune(store, 1763990000.0)
        assert store.position("acme", "url")[1] == 1763990000.0
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )


V2_SCHEMA = (
    V1_SCHEMA.replace("last_error_at REAL,", "last_error_at REAL, kept_from REAL,").replace(
        "'schema_version', '1'", "'schema_version', '2'"
    )
    + """
CREATE INDEX delivered_time ON delivered (tenant, category, event_time);
INSERT INTO delivered VALUES ('acme', 'url', 'rec', 1764000000.75);
INSERT INTO delivered VALUES ('acme', 'url', 'dead', 1764000300.5);
"""
)


def test_a_version_2_database_keeps_every_delivered_id(tmp_path: Path) -> None:
    """Version 2 kept records' and dead letters' ids alike, by id: after the migration each is still known, by its record time or as a dead letter, and prunes still reach them."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.executescript(V2_SCHEMA)
    store = StateStore(path, writer=True)
    try:
        assert store.already_delivered("acme", "url", [("rec", 1764000000.0)]) == {"rec"}
        assert store.already_delivered("acme", "url", [], ["dead"]) == {"dead"}
        assert store.already_delivered("acme", "url", [("other", 1764000000.0)]) == set()
        prune(store, 1764000100.0)
        assert store.already_delivered("acme", "url", [("rec", 1764000000.0)]) == set()
        assert store.already_delivered("acme", "url", [], ["dead"]) == {"dead"}
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert "delivered_v2" not in tables
    assert "delivered_time" not in tables


V3_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE streams (tenant TEXT NOT NULL, category TEXT NOT NULL, cursor REAL,
    last_success REAL, last_error TEXT, last_error_at REAL, kept_from REAL,
    PRIMARY KEY (tenant, category));
CREATE TABLE delivered (tenant TEXT NOT NULL, category TEXT NOT NULL, second INTEGER NOT NULL,
    id TEXT NOT NULL, PRIMARY KEY (tenant, category, second, id)) WITHOUT ROWID;
CREATE TABLE dead_seen (tenant TEXT NOT NULL, category TEXT NOT NULL, id TEXT NOT NULL,
    seen REAL NOT NULL, PRIMARY KEY (tenant, category, id)) WITHOUT ROWID;
CREATE TABLE counters (tenant TEXT NOT NULL, category TEXT NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (tenant, category, name)) WITHOUT ROWID;
CREATE TABLE sinks (name TEXT PRIMARY KEY, position TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '3'), ('created_at', '1763000000.0');
INSERT INTO streams VALUES ('acme', 'url', 1764000000.0, 1764000005.0, NULL, NULL, 1763990000.0);
INSERT INTO streams VALUES ('acme', 'attachment', 1764000100.0, NULL, 'timed out', 1764000200.0,
    NULL);
INSERT INTO delivered VALUES ('acme', 'url', 1764000000, 'rec');
INSERT INTO dead_seen VALUES ('acme', 'url', 'dead', 1764000300.5);
INSERT INTO counters VALUES ('acme', 'url', 'alerts', 3), ('acme', 'url', 'fetched', 5);
INSERT INTO sinks VALUES ('jsonl:alerts', '1234');
"""


def made(path: Path, script: str) -> Path:
    """A database file made by ``script`` (an older release's schema and rows), closed."""
    db = sqlite3.connect(path)
    try:
        db.executescript(script)
    finally:
        db.close()
    return path


def version_and_columns(path: Path) -> tuple[str, set[str]]:
    """The file's schema version and the columns of its ``streams`` table."""
    db = sqlite3.connect(path)
    try:
        [version] = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        columns = {row[1] for row in db.execute("PRAGMA table_info(streams)")}
    finally:
        db.close()
    return version, columns


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def test_a_version_3_database_is_migrated_keeping_everything(tmp_path: Path) -> None:
    """The first writer of a version 3 file migrates it to the current one: every cursor, kept_from, id, dead letter's id, counter, sink position, success and error is kept, every marker is NULL, and markers commit and survive reopening."""
    path = made(tmp_path / "state.db", V3_SCHEMA)
    store = StateStore(path, writer=True)
    try:
        assert store.position("acme", "url") == (at(1764000000.0), 1763990000.0)
        assert store.position("acme", "attachment") == (at(1764000100.0), None)
        assert store.already_delivered("acme", "url", [("rec", 1764000000.5)], ["dead"]) == {
            "rec",
            "dead",
        }
        assert store.sink_position("jsonl:alerts") == "1234"
        attachment, url = store.streams()
        assert (url.last_success, dict(url.counters), url.marker) == (
            at(1764000005.0),
            {"alerts": 3, "fetched": 5},
            None,
        )
        assert (attachment.last_error, attachment.last_error_at, attachment.marker) == (
            "timed out",
            at(1764000200.0),
            None,
        )
        assert store.marker("acme", "url") is None
        store.commit(
            "acme",
            "url",
            cursor=None,
            delivered=[],
            counts={"fetched": 1},
            sink_positions={},
            prune_before=None,
            marker="m-1",
        )
        assert store.marker("acme", "url") == "m-1"
    finally:
        store.close()
    assert version_and_columns(path) == (
        str(SCHEMA_VERSION),
        {"tenant", "category", "cursor", "last_success", "last_error", "last_error_at"}
        | {"kept_from", "marker"}
        | {"health", "health_reason", "health_advice", "health_since", "began"},
    )
    assert SCHEMA_VERSION == 5
    again = StateStore(path, writer=True)
    try:
        assert (again.marker("acme", "url"), again.marker("acme", "attachment")) == ("m-1", None)
        # Polled before ``began`` was recorded: unknown, and no later commit makes one up.
        assert again.began("acme", "url") is None
        again.commit_group([Commit("acme", "url", None, [], {}, began=at(1764000000.0))], {})
        assert again.began("acme", "url") is None
        assert again.position("acme", "url") == (at(1764000000.0), 1763990000.0)
    finally:
        again.close()


@pytest.mark.parametrize("script", [V1_SCHEMA, V2_SCHEMA, V3_SCHEMA], ids=["v1", "v2", "v3"])
def test_every_older_version_is_migrated_to_the_current_one_with_markers(
    tmp_path: Path, script: str
) -> None:
    """Versions 1, 2 and 3 each end at the current version, in one step, with the marker column: none set, and one committed is read back after reopening."""
    path = made(tmp_path / "state.db", script)
    store = StateStore(path, writer=True)
    try:
        assert store.cursor("acme", "url") == at(1764000000.0)
        assert store.marker("acme", "url") is None
        store.commit(
            "acme",
            "url",
            cursor=None,
            delivered=[],
            counts={},
            sink_positions={},
            prune_before=None,
            marker="m",
        )
    finally:
        store.close()
    version, columns = version_and_columns(path)
    assert (version, "marker" in columns) == (str(SCHEMA_VERSION), True)
    again = StateStore(path, writer=True)
    try:
        assert again.marker("acme", "url") == "m"
        markers = {s.category: s.marker for s in again.streams()}
        assert (markers["url"], markers.get("attachment")) == ("m", None)
    finally:
        again.close()


def test_a_version_3_database_is_read_by_status_as_it_is(tmp_path: Path) -> None:
    """Opened read-only (``status``), a version 3 file is read without being migrated: its streams, counters and errors, every marker None; the file is left as it was."""
    path = made(tmp_path / "state.db", V3_SCHEMA)
    before = fingerprint(path)
    store = StateStore(path, read_only=True)
    try:
        attachment, url = store.streams()
        assert (url.cursor, dict(url.counters), url.marker) == (
            at(1764000000.0),
            {"alerts": 3, "fetched": 5},
            None,
        )
        assert (attachment.last_error, attachment.marker) == ("timed out", None)
        assert store.marker("acme", "url") is None
        assert store.marker("acme", "other") is None
    finally:
        store.close()
    assert fingerprint(path) == before
    version, columns = version_and_columns(path)
    assert (version, "marker" in columns) == ("3", False)


def test_a_migration_that_fails_midway_leaves_the_old_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steps from version 2 to the current one are one transaction: the last one failing leaves a version 2 file as it was (the ids' table unmoved), and the next writer migrates it whole."""
    from mimecast_connector.state import _store

    path = made(tmp_path / "state.db", V2_SCHEMA)
    monkeypatch.setattr(_store, "_ADD_MARKER", "ALTER TABLE no_such_table ADD COLUMN marker TEXT")
    with pytest.raises(StateError, match="no_such_table"):
        StateStore(path, writer=True)
    monkeypatch.undo()
    assert version_and_columns(path) == (
        "2",
        {"tenant", "category", "cursor", "last_success", "last_error", "last_error_at"}
        | {"kept_from"},
    )
    db = sqlite3.connect(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = db.execute("SELECT id, event_time FROM delivered ORDER BY id").fetchall()
    finally:
        db.close()
    assert "delivered_v2" not in tables
    assert rows == [("dead", 1764000300.5), ("rec", 1764000000.75)]
    store = StateStore(path, writer=True)
    try:
        assert store.already_delivered("acme", "url", [("rec", 1764000000.0)], ["dead"]) == {
            "rec",
            "dead",
        }
        assert store.marker("acme", "url") is None
    finally:
        store.close()
    assert version_and_columns(path)[0] == str(SCHEMA_VERSION)


#: A version 4 file: version 3 with the streams' markers, before their health.
V4_SCHEMA = (
    V3_SCHEMA.replace(
        "kept_from REAL,\n    PRIMARY KEY", "kept_from REAL, marker TEXT,\n    PRIMARY KEY"
    )
    .replace("'schema_version', '3'", "'schema_version', '4'")
    .replace("1763990000.0);", "1763990000.0, 'm-4');")
    .replace("\n    NULL);", "\n    NULL, NULL);")
)


def test_a_version_4_database_is_migrated_keeping_everything_with_no_health(
    tmp_path: Path,
) -> None:
    """The first writer of a version 4 file migrates it to 5: markers, cursors, errors and counters kept, every health None, and a health set is read back after reopening."""
    assert SCHEMA_VERSION == 5
    path = made(tmp_path / "state.db", V4_SCHEMA)
    store = StateStore(path, writer=True)
    try:
        attachment, url = store.streams()
        assert (url.marker, url.cursor, dict(url.counters), url.health) == (
            "m-4",
            at(1764000000.0),
            {"alerts": 3, "fetched": 5},
            None,
        )
        assert (attachment.last_error, attachment.health) == ("timed out", None)
        store.set_health("acme", "url", StreamHealth(State.COLLECTING, "done", "", 1764000300.0))
    finally:
        store.close()
    version, columns = version_and_columns(path)
    assert (version, {"marker", "health", "health_since"} <= columns) == ("5", True)
    again = StateStore(path, writer=True)
    try:
        healths = {s.category: s.health for s in again.streams()}
        assert healths == {
            "url": StreamHealth(State.COLLECTING, "done", "", 1764000300.0),
            "attachment": None,
        }
        assert again.marker("acme", "url") == "m-4"
    finally:
        again.close()


def test_a_version_4_database_is_read_by_status_as_it_is(tmp_path: Path) -> None:
    """Opened read-only (``status``), a version 4 file is read without being migrated: every health None, the file left as it was."""
    path = made(tmp_path / "state.db", V4_SCHEMA)
    before = fingerprint(path)
    store = StateStore(path, read_only=True)
    try:
        attachment, url = store.streams()
        assert (url.marker, url.health, attachment.health) == ("m-4", None, None)
        assert [s.health for s in store.streams(counters=False)] == [None, None]
    finally:
        store.close()
    assert fingerprint(path) == before
    assert version_and_columns(path)[0] == "4"
