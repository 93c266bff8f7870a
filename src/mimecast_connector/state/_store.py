"""Durable state: checkpoints, delivered ids, counters, sink positions. One SQLite file.

What the checkpoint means (style.md habit 8): for a tenant and category, ``cursor`` is the
point before which every record has been fully handled (validated, filtered or turned into an
alert, and every alert acknowledged by every sink): the end of the last window read in full,
or a record time proven within a window (``runner._runner`` says how). It advances in the same
transaction that records the handled ids, the counters and the sinks' positions, so after a
crash the store is at one commit boundary or the one before. A stream that has no time cursor
(a SIEM feed: a page token, and the file and line reached in it) keeps its position in
``marker`` instead, a text the store keeps as it is given, replaced in that same transaction.

Each poll re-reads from ``cursor - lookback`` to catch records Mimecast publishes late; the
``delivered`` table suppresses what was handled before. Ids older than the oldest time any
future window can reach are pruned when a window has been read in full, so the table stays as
small as the lookback window; ``kept_from`` records, per stream, the time from which every id
is still kept, so that a record older than that is known to be unknowable rather than new
(whatever the lookback is configured to later).

A tenant's rows are keyed by its configured name, not its API version, so switching a tenant
from API 1.0 to 2.0 keeps its checkpoints and its delivered ids.

Guards: one writer per database file, however its path is spelled (:class:`WriterLock`); a
write to a database that was deleted or replaced under the running process is refused before
anything is committed (``StateError``, a copy of what it held saved beside it); readers such
as ``status`` open it read-only and write nothing (``read_only=True``). Open failures are told
apart: busy (retry), read-only (make it writable), full (free space), damaged (restore).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import sqlite3
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from mimecast_connector._errors import StateError
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
    HourKey,
    PartyKey,
    TotalKey,
    group_parties,
    group_tallies,
    merge_parties,
    ranked_parties,
)

SCHEMA_VERSION = 5
#: Versions this release opens: 1 (before ``kept_from``), 2 (ids keyed by id alone), 3
#: (before ``marker``) and 4 (before the streams' health) are migrated by the first writer,
#: and read as they are read-only. A release reading an older version refuses this one's
#: files (``_check``: "use the matching release"), before writing anything.
_READABLE = {"1", "2", "3", "4", str(SCHEMA_VERSION)}

_SCHEMA_DELIVERED = """CREATE TABLE IF NOT EXISTS delivered (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    second INTEGER NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (tenant, category, second, id)
) WITHOUT ROWID"""

# The dashboard's counts of delivered alerts (``Commit.tallies``), keyed hour first: a range
# of hours (the dashboard's reads, the prune) is one walk of the b-tree. Senders and
# recipients: one row of ``{address: n}`` for each tenant, hour and role (``state._tallies``).
# ``alert_totals`` is ``alert_hours`` summed over the tenants, kept beside it (the same few
# rows a commit) so that the all-tenants charts read hundreds of rows, not millions.
_SCHEMA_TALLIES = """CREATE TABLE IF NOT EXISTS alert_hours (
    hour INTEGER NOT NULL,
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    alert_type TEXT NOT NULL,
    technique TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, tenant, category, alert_type, technique)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_hours_tenant ON alert_hours (tenant, hour);
CREATE TABLE IF NOT EXISTS alert_totals (
    hour INTEGER NOT NULL,
    category TEXT NOT NULL,
    alert_type TEXT NOT NULL,
    technique TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, category, alert_type, technique)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alert_parties (
    hour INTEGER NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT NOT NULL,
    counts BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_parties_hour ON alert_parties (hour, role);
CREATE INDEX IF NOT EXISTS alert_parties_tenant ON alert_parties (tenant, hour)"""

#: A page's delivered ids in one statement, from ``[[second, id], ...]`` as JSON text.
_INSERT_IDS = (
    "INSERT OR IGNORE INTO delivered SELECT ?, ?, json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]') FROM json_each(?)"
)
_encode_json = msgspec.json.Encoder().encode
#: The ``alert_parties`` rows still added to of many keys in one statement, from
#: ``[[tenant, hour, role], ...]`` as JSON text (each key's rows oldest first).
_PARTY_ROWS = (
    "SELECT p.rowid, p.hour, p.role, p.tenant, p.counts FROM json_each(?) AS k "
    "JOIN alert_parties AS p ON p.tenant = json_extract(k.value, '$[0]') "
    "AND p.hour = json_extract(k.value, '$[1]') AND p.role = json_extract(k.value, '$[2]') "
    "WHERE length(p.counts) < ? ORDER BY p.rowid"
)


def _has_json(db: sqlite3.Connection) -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38, JSON1 before)."""
    try:
        db.execute("SELECT json_extract(value, '$[0]') FROM json_each('[[1]]')").fetchall()
    except sqlite3.OperationalError:
        return False
    return True


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS streams (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    cursor REAL,
    last_success REAL,
    last_error TEXT,
    last_error_at REAL,
    kept_from REAL,
    marker TEXT,
    health TEXT,
    health_reason TEXT,
    health_advice TEXT,
    health_since REAL,
    began REAL,
    PRIMARY KEY (tenant, category)
);
{delivered};
CREATE TABLE IF NOT EXISTS dead_seen (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    id TEXT NOT NULL,
    seen REAL NOT NULL,
    PRIMARY KEY (tenant, category, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    tenant TEXT NOT NULL,
    category TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (tenant, category, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sinks (name TEXT PRIMARY KEY, position TEXT NOT NULL);
{tallies}
""".replace("{delivered}", _SCHEMA_DELIVERED).replace("{tallies}", _SCHEMA_TALLIES)

# Version 3 keys a record's id by its stream, its whole second and the id: a run's ids arrive
# in time order, so inserting and pruning them walk the end of one b-tree instead of random
# places in two (the id's own index and a time index), about five times less work a record.
# Dead letters' ids (a malformed record has no time to key by) are kept apart, by id.
_MIGRATE_IDS = (
    "ALTER TABLE delivered RENAME TO delivered_v2",
    _SCHEMA_DELIVERED,
    "INSERT OR IGNORE INTO delivered SELECT tenant, category, CAST(event_time AS INTEGER), id "
    "FROM delivered_v2",
    # Version 2 did not tell dead letters' ids from records': each is kept as both.
    "INSERT OR IGNORE INTO dead_seen SELECT tenant, category, id, event_time FROM delivered_v2",
    "DROP TABLE delivered_v2",
)

# Version 4 keeps, per stream, an opaque marker (``Commit.marker``: where a SIEM feed stands),
# NULL for every stream until a commit brings one.
_ADD_MARKER = "ALTER TABLE streams ADD COLUMN marker TEXT"

# Version 5 keeps, per stream, its health (``_health``): NULL until a poll sets it, and read
# from the other columns meanwhile (``_health.derived``).
_ADD_HEALTH = (
    "ALTER TABLE streams ADD COLUMN health TEXT",
    "ALTER TABLE streams ADD COLUMN health_reason TEXT",
    "ALTER TABLE streams ADD COLUMN health_advice TEXT",
    "ALTER TABLE streams ADD COLUMN health_since REAL",
)
# Version 5 also keeps where a stream's first window began (``Commit.began``; a backfill reads
# only before it). A stream polled by an earlier release began at a time nobody wrote down: 0.
_ADD_BEGAN = (
    "ALTER TABLE streams ADD COLUMN began REAL",
    "UPDATE streams SET began = 0 WHERE cursor IS NOT NULL",
)

#: A stream's health replaced (parameters: state, reason, advice, state again, since); its
#: ``since`` kept while the state stays the same.
_SET_HEALTH = (
    "health_since = CASE WHEN health IS ? AND health_since IS NOT NULL THEN health_since "
    "ELSE ? END, health = ?, health_reason = ?, health_advice = ?"
)


def _health_params(health: StreamHealth) -> tuple[object, ...]:
    """The parameters of :data:`_SET_HEALTH`."""
    state = health.state.value
    return (state, health.since, state, health.reason[:2000], health.advice[:2000])


_RECOVERY = (
    "stop every connector using it, move the file aside and restore it from a backup; or, "
    "to start afresh, move it aside, move each jsonl output file and the dead-letter file "
    "aside too (a fresh database refuses non-empty ones: it cannot tell what they hold), and "
    "set each tenant's `start` to the time up to which alerts were already delivered (a fresh "
    "store re-reads from `start`)"
)

# SQLite's primary result codes (the low byte of ``sqlite_errorcode``) that decide the message.
_BUSY, _LOCKED, _READONLY, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 11, 13, 14, 26

#: Inodes this process holds the writer lock of. A second writer in the same process is refused
#: from this table, without opening the file: closing any descriptor of a file drops every POSIX
#: lock the process holds on it, SQLite's own included.
_HELD: dict[tuple[int, int], str] = {}


class WriterLock:
    """One writer per state database: an exclusive ``flock`` on the database file itself.

    The lock belongs to the file (its inode), not to a name, so every spelling of the path
    shares it: a symlink to the file or to its folder, a hard link, ``..``, ``.``, a bind mount.
    A second ``flock``, on ``<state>.lock`` beside the resolved path, is held for the whole run
    too: a database file replaced under a running writer (a backup moved into place) is a new
    inode, and only this one stops a second writer from opening it beside the first. The lock
    file also holds the pid, host and start time of the holder, so that a second run can say
    who holds it. The kernel releases both locks when the
    holder exits, however it exits (SIGKILL included), so a crash never leaves a stale lock.
    (A local filesystem is assumed, as SQLite assumes it: NFS emulates ``flock`` with the same
    POSIX locks SQLite uses.)
    """

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path
        resolved = Path(os.path.realpath(state_path))
        self.path = resolved.with_name(resolved.name + ".lock")
        self._fd: int | None = None
        self._note_fd: int | None = None
        self._key: tuple[int, int] | None = None

    def _refuse(self, holder: str) -> StateError:
        return StateError(
            f"the state database {str(self.state_path)!r} is in use by {holder}; only one "
            "connector may write it (however its path is spelled: symlinks and hard links name "
            "the same database). Stop that process first (or give this one its own `state` file)."
        )

    def _holder(self) -> str:
        try:
            return self.path.read_text("utf-8", "replace").strip() or "another process"
        except OSError:
            return "another process"

    def acquire(self) -> os.stat_result:
        """Take the lock; return the ``stat`` of the locked file (the store's identity)."""
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        note_fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(note_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(note_fd)
            raise self._refuse(self._holder()) from None
        try:
            held = self._acquire_file()
        except BaseException:
            os.close(note_fd)
            raise
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        note = f"process {os.getpid()} on {socket.gethostname()} (since {started})"
        with contextlib.suppress(OSError):  # the note is for messages only
            os.ftruncate(note_fd, 0)
            os.pwrite(note_fd, note.encode(), 0)
        self._note_fd = note_fd
        assert self._key is not None
        _HELD[self._key] = note
        return held

    def _acquire_file(self) -> os.stat_result:
        with contextlib.suppress(OSError):
            named = os.stat(self.state_path)
            if (named.st_dev, named.st_ino) in _HELD:
                raise self._refuse(_HELD[(named.st_dev, named.st_ino)])
        fd = os.open(self.state_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        held = os.fstat(fd)
        key = (held.st_dev, held.st_ino)
        if key in _HELD:  # created or swapped between the stat and the open: rare, still refused
            os.close(fd)
            raise self._refuse(_HELD[key])
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refuse(self._holder()) from None
        self._fd, self._key = fd, key
        return held

    def release(self) -> None:
        if self._note_fd is not None:
            with contextlib.suppress(OSError):  # no stale name for the next refusal to quote
                os.ftruncate(self._note_fd, 0)
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._note_fd is not None:
            os.close(self._note_fd)
            self._note_fd = None
        if self._key is not None:
            _HELD.pop(self._key, None)
            self._key = None


class _Damaged(Exception):
    """The integrity check failed."""


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


class StateStore:
    """The SQLite state file. Not thread-safe: one event loop owns it.

    Every write (``commit``, ``set_sink_positions``, ``record_error``) first checks, with one
    ``stat``, that the path still names the file that was opened: a database deleted or replaced
    under a running process gets nothing more, and the write raises :class:`StateError` (the
    run halts) instead of committing to a file that no longer has a name.
    """

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        writer: bool = False,
        read_only: bool = False,
        timeout: float = 5.0,
        integrity: bool = True,
    ) -> None:
        """Open ``path``. ``writer=True`` takes the one-writer lock first (see :class:`WriterLock`).
        ``read_only=True`` (``status``) writes nothing at all, not even the schema: it opens the
        file with SQLite's ``mode=ro``, waits for no writer, and reads a database on a read-only
        folder or mount too. ``timeout`` is how long to wait for a lock another process holds.
        ``integrity=False`` (read-only only: the dashboard, a long-lived reader) skips SQLite's
        ``quick_check``, which reads the whole file: a damaged page fails the read that meets it."""
        self.path = path
        self._lock: WriterLock | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._identity: tuple[int, int] | None = None
        self._rescued: Path | None = None
        #: (The one writer) every stream's cursor and kept_from as committed, read once: no
        #: other process writes the file, so only this one's commits change them.
        self._positions: dict[tuple[str, str], tuple[float | None, float | None]] | None = None
        #: (The one writer) every stream's marker as committed, read once, like ``_positions``.
        self._markers: dict[tuple[str, str], str] | None = None
        #: Whether ``streams`` has its ``marker`` column: always once a writer opened the file;
        #: a file of version 3 or older opened read-only (``status``) has none.
        self._marker_column = True
        #: Whether ``streams`` has its health columns (version 5), likewise.
        self._health_columns = True
        #: Whether ``streams`` has its ``began`` column (version 5), likewise.
        self._began_column = True
        #: (The one writer) every stream's ``began`` as committed, read once, like the others.
        self._began: dict[tuple[str, str], float | None] | None = None
        #: Whether the dashboard's tables (``alert_hours``, ``alert_parties``) are there:
        #: always once a writer opened the file; a file of an earlier release read read-only
        #: has none.
        self._tally_tables = True
        #: The ``hour_now`` of the last prune of those tables (one prune an hour at most).
        self._tallies_pruned: int | None = None
        #: (A writer) whether this SQLite has JSON functions: a page's ids in one statement.
        self._json = False
        self._integrity = integrity or not read_only
        if read_only:
            self._open_read_only(path, timeout)
            return
        held: os.stat_result | None = None
        if writer:
            self._lock = WriterLock(path)
            held = self._lock.acquire()
        try:
            self._open(path, create, timeout)
            named = os.stat(path)
            if held is not None and (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
                self._db.close()
                raise StateError(
                    f"the state database {str(path)!r} was replaced while it was being opened: "
                    "start again"
                )
            self._identity = (named.st_dev, named.st_ino)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _open(self, path: Path, create: bool, timeout: float) -> None:
        if not create and not path.exists():
            raise StateError(
                f"there is no state database at {str(path)!r} yet: run the connector first"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, timeout=timeout)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open the state database {str(path)!r}: {exc}") from None
        try:
            self._check()
            self._setup()
            self._json = _has_json(self._db)
        except StateError:
            self._db.close()
            raise
        except (sqlite3.Error, _Damaged) as exc:
            self._db.close()
            raise self._explain(exc, writing=True) from None

    def _open_read_only(self, path: Path, timeout: float) -> None:
        if not path.exists():
            raise StateError(
                f"there is no state database at {str(path)!r} yet: run the connector first"
            )
        target = Path(os.path.abspath(path))
        options = "mode=ro"
        if not _writable(target.parent):
            # SQLite reads a WAL database only with a -shm file it can write. In a folder it
            # cannot write: with no -wal content the file alone is the whole state (immutable);
            # with a -wal left by a writer that died, read a private copy of both.
            wal = Path(f"{target}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                self._scratch = tempfile.TemporaryDirectory(prefix="mimecast-status-")
                copy = Path(self._scratch.name) / target.name
                try:
                    shutil.copyfile(target, copy)
                    shutil.copyfile(wal, f"{copy}-wal")
                except OSError as exc:
                    self._scratch.cleanup()
                    raise StateError(
                        f"the state database {str(path)!r} is in a folder this process cannot "
                        f"write, with commits still in its -wal file, and copying them to read "
                        f"them failed ({exc.strerror}): free space in the temporary folder, or "
                        "run `status` where the folder is writable"
                    ) from None
                target = copy
            else:
                options += "&immutable=1"
        uri = f"file:{urllib.parse.quote(str(target))}?{options}"
        try:
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
        except sqlite3.Error as exc:
            self._drop_scratch()
            raise self._explain(exc, writing=False) from None
        try:
            self._check()
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(streams)")}
            self._marker_column = "marker" in columns
            self._health_columns = "health" in columns
            self._began_column = "began" in columns
            self._tally_tables = (
                self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alert_parties'"
                ).fetchone()
                is not None
            )
        except StateError:
            self.close()
            raise
        except (sqlite3.Error, _Damaged) as exc:
            self.close()
            raise self._explain(exc, writing=False) from None

    def _explain(self, exc: sqlite3.Error | _Damaged, *, writing: bool) -> StateError:
        """Tell busy, read-only, full and damaged apart: only real corruption says damaged."""
        where = repr(str(self.path))
        code = None if isinstance(exc, _Damaged) else _code(exc)
        if isinstance(exc, _Damaged) or code in (_CORRUPT, _NOTADB):
            return StateError(
                f"the state database {where} is damaged ({exc}). Nothing was changed. To "
                f"recover: {_RECOVERY}"
            )
        if code in (_BUSY, _LOCKED):
            return StateError(
                f"the state database {where} is busy: another process holds a lock on it (a "
                f"connector in the middle of a commit, a backup, an sqlite3 shell) ({exc}). It "
                "is not damaged and nothing was changed: try again in a moment; if it stays "
                "busy, find the process that holds it (`fuser` on the file)."
            )
        if code == _FULL:
            return StateError(
                f"no space left for the state database {where}: free space on its filesystem, "
                "then start again (nothing was committed past the last batch)"
            )
        if code in (_READONLY, _CANTOPEN):
            folder = str(Path(os.path.abspath(self.path)).parent)
            if writing:
                return StateError(
                    f"the state database {where} cannot be written ({exc}): the connector must "
                    f"write its state; make the file and its folder {folder!r} writable for "
                    "this user (not a read-only mount), or point `state` at a writable place. "
                    "It is not damaged."
                )
            return StateError(
                f"the state database {where} cannot be opened for reading ({exc}): check that "
                f"this user may read the file and its folder {folder!r}. It is not damaged."
            )
        return StateError(
            f"cannot {'open' if writing else 'read'} the state database {where} ({exc}): check "
            "the disk and the file's permissions. Nothing was changed."
        )

    def _check(self) -> None:
        """Integrity and version, before anything is written: a newer file is left untouched."""
        db = self._db
        if self._integrity:
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise _Damaged(f"integrity check failed: {check[0] if check else 'no answer'}")
        if db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone():
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and row[0] not in _READABLE:
                raise StateError(
                    f"the state database {str(self.path)!r} has schema version {row[0]}, this "
                    f"version of mimecast-connector reads version {SCHEMA_VERSION}: use the "
                    "matching release"
                )

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        with self._transaction(check=False):
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                db.execute(statement)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT INTO meta VALUES ('created_at', ?)", (str(time.time()),))
            elif version[0] != str(SCHEMA_VERSION):
                # One step after the other, in this one transaction: a crash midway leaves the
                # file at its old version, migrated again by the next writer.
                if version[0] == "1":
                    # Version 2 remembers, per stream, the oldest event time whose ids are kept.
                    db.execute("ALTER TABLE streams ADD COLUMN kept_from REAL")
                if version[0] in ("1", "2"):
                    for statement in _MIGRATE_IDS:
                        db.execute(statement)
                if version[0] in ("1", "2", "3"):
                    db.execute(_ADD_MARKER)
                for statement in (*_ADD_HEALTH, *_ADD_BEGAN):
                    db.execute(statement)
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )

    def _same_file(self) -> None:
        """Raise StateError, before anything is written, if the path no longer names our file."""
        if self._identity is None:
            raise StateError(
                f"the state database {str(self.path)!r} was opened read-only: nothing can be "
                "written through it"
            )
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            what = "was deleted"
        else:
            if (named.st_dev, named.st_ino) == self._identity:
                return
            what = "was replaced by another file"
        rescued = self._rescue()
        saved = (
            f"What this process had committed is saved as {str(rescued)!r}: to resume with "
            f"nothing repeated, move it to {str(self.path)!r} (if the file now there is not "
            "meant to replace it) and start again."
            if rescued is not None
            else "Restore the state database from a backup, or move the outputs aside too "
            "before starting afresh."
        )
        raise StateError(
            f"the state database {str(self.path)!r} {what} while this connector was using it: "
            "nothing more is committed (it would go to a file that no longer has that name). "
            f"Stop the connector. {saved} A database that holds no position for a non-empty "
            "output file refuses to start with it."
        )

    def _rescue(self) -> Path | None:
        """Best effort: copy the database this process still has open beside its old name."""
        if self._rescued is not None:
            return self._rescued
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        rescue = self.path.with_name(f"{self.path.name}.orphaned-{stamp}-{os.getpid()}")
        if not rescue.parent.is_dir() or rescue.exists():
            return None
        try:
            target = sqlite3.connect(rescue)
            try:
                self._db.backup(target)
            finally:
                target.close()
        except (OSError, sqlite3.Error):
            with contextlib.suppress(OSError):
                rescue.unlink()
            return None
        self._rescued = rescue
        return rescue

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def close(self) -> None:
        self._db.close()  # before the lock: its descriptor is closed only after SQLite's
        if self._lock is not None:
            self._lock.release()
        self._drop_scratch()

    # --- reads -----------------------------------------------------------------------------

    def cursor(self, tenant: str, category: str) -> datetime | None:
        row = self._db.execute(
            "SELECT cursor FROM streams WHERE tenant = ? AND category = ?", (tenant, category)
        ).fetchone()
        return _dt(row[0]) if row else None

    def position(self, tenant: str, category: str) -> tuple[datetime | None, float | None]:
        """The stream's cursor, and ``kept_from``: the oldest event time (epoch s) from which
        its handled ids are all kept (the newest prune applied; None if none was, or the store
        predates version 2)."""
        if self._lock is None:
            row = self._db.execute(
                "SELECT cursor, kept_from FROM streams WHERE tenant = ? AND category = ?",
                (tenant, category),
            ).fetchone()
            cursor, kept = row if row is not None else (None, None)
        else:
            if self._positions is None:
                self._positions = {
                    (t, c): (cursor, kept)
                    for t, c, cursor, kept in self._db.execute(
                        "SELECT tenant, category, cursor, kept_from FROM streams"
                    )
                }
            cursor, kept = self._positions.get((tenant, category), (None, None))
        return _dt(cursor), None if kept is None else float(kept)

    def marker(self, tenant: str, category: str) -> str | None:
        """The stream's marker as committed (``Commit.marker``); None if it never had one."""
        if self._lock is None:
            if not self._marker_column:
                return None
            row = self._db.execute(
                "SELECT marker FROM streams WHERE tenant = ? AND category = ?",
                (tenant, category),
            ).fetchone()
            return None if row is None or row[0] is None else str(row[0])
        if self._markers is None:
            self._markers = {
                (t, c): marker
                for t, c, marker in self._db.execute(
                    "SELECT tenant, category, marker FROM streams WHERE marker IS NOT NULL"
                )
            }
        return self._markers.get((tenant, category))

    def began(self, tenant: str, category: str) -> datetime | None:
        """Where the stream's first window began (``Commit.began``); None if unknown: never
        polled, or polled by a release that did not record it."""
        if self._lock is None:
            if not self._began_column:
                return None
            row = self._db.execute(
                "SELECT began FROM streams WHERE tenant = ? AND category = ?", (tenant, category)
            ).fetchone()
            value = None if row is None else row[0]
        else:
            value = self._began_map().get((tenant, category))
        return _dt(value) if value else None  # 0: polled before it was recorded

    def _began_map(self) -> dict[tuple[str, str], float | None]:
        if self._began is None:
            self._began = {
                (t, c): began
                for t, c, began in self._db.execute("SELECT tenant, category, began FROM streams")
            }
        return self._began

    def set_began(self, tenant: str, category: str, began: datetime) -> None:
        """Record where the stream begins (created if new), unless it has a ``began`` already."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO streams (tenant, category, began) VALUES (?, ?, ?) "
                "ON CONFLICT DO UPDATE SET began = coalesce(began, excluded.began)",
                (tenant, category, began.timestamp()),
            )
        self._began = None  # read again when next asked

    def already_delivered(
        self,
        tenant: str,
        category: str,
        records: Iterable[tuple[str, float]],
        dead: Iterable[str] = (),
    ) -> set[str]:
        """Which of these were delivered before: records' ids with their event times, and
        dead letters' ids (see the ``Store`` Protocol)."""
        db = self._db
        found: set[str] = set()
        records = list(records)
        wanted: list[tuple[int, str]] = []
        if records:
            # Nothing newer than the stream's newest kept second can be known: a run reading
            # new logs asks about no id at all. (``when < newest + 1`` keeps every id whose
            # second is at most ``newest``, and is cheaper than taking each second first.)
            newest = db.execute(
                "SELECT max(second) FROM delivered WHERE tenant = ? AND category = ?",
                (tenant, category),
            ).fetchone()[0]
            if newest is not None:
                limit = newest + 1
                wanted = [(int(when), id_) for id_, when in records if when < limit]
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            pairs = ",".join(["(?, ?)"] * len(chunk))
            # One primary-key seek per id (a row-value IN would scan the stream's ids).
            rows = db.execute(
                f"SELECT d.id FROM (VALUES {pairs}) AS v JOIN delivered AS d "  # noqa: S608 - only placeholders
                "ON d.tenant = ? AND d.category = ? AND d.second = v.column1 AND d.id = v.column2",
                (*(v for pair in chunk for v in pair), tenant, category),
            )
            found.update(r[0] for r in rows)
        dead_ids = list(dead)
        for start in range(0, len(dead_ids), 500):
            marks = ",".join("?" * len(dead_ids[start : start + 500]))
            rows = db.execute(
                f"SELECT id FROM dead_seen WHERE tenant = ? AND category = ? AND id IN ({marks})",  # noqa: S608 - only placeholders
                (tenant, category, *dead_ids[start : start + 500]),
            )
            found.update(r[0] for r in rows)
        return found

    def sink_position(self, name: str) -> str | None:
        row = self._db.execute("SELECT position FROM sinks WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def streams(self, *, counters: bool = True) -> list[StreamState]:
        counted: dict[tuple[str, str], dict[str, int]] = {}
        if counters:
            for tenant, category, name, value in self._db.execute(
                "SELECT tenant, category, name, value FROM counters ORDER BY tenant, category, name"
            ):
                counted.setdefault((tenant, category), {})[name] = value
        columns = stream_columns(  # NULLs: read-only, an older version
            marker=self._marker_column, health=self._health_columns, began=self._began_column
        )
        rows = self._db.execute(
            "SELECT tenant, category, cursor, last_success, last_error, last_error_at, "  # noqa: S608 - column names or NULLs
            f"{columns} FROM streams ORDER BY tenant, category"
        )
        return [stream_state(row, counted.get((row[0], row[1]), {})) for row in rows]

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
        marker: str | None = None,
    ) -> None:
        """Record one handled batch of one stream, atomically (see :meth:`commit_group`)."""
        entry = Commit(
            tenant, category, cursor, delivered, counts, prune_before, success_at, marker=marker
        )
        self.commit_group([entry], sink_positions)

    def commit_group(self, commits: Sequence[Commit], sink_positions: Mapping[str, str]) -> None:
        """Record handled batches of any streams and the sinks' positions in one transaction.

        A group of many streams' pages costs one ``BEGIN``/``COMMIT`` (and its fsyncs), not one
        each. A stream's ``cursor`` only ever moves forward; its ``marker`` is replaced by each
        commit that brings one (the last of the group's, for one stream).
        """
        db = self._db
        began = self._began_map()  # its keys: every stream that has a row
        counted: dict[tuple[str, str, str], int] = {}
        hours, totals, hour_now = group_tallies(commits)
        with self._transaction():
            for c in commits:
                tenant, category = c.tenant, c.category
                if c.marker is None:
                    if (tenant, category) not in began:
                        db.execute(
                            "INSERT INTO streams (tenant, category) VALUES (?, ?) "
                            "ON CONFLICT DO NOTHING",
                            (tenant, category),
                        )
                else:
                    db.execute(
                        "INSERT INTO streams (tenant, category, marker) VALUES (?, ?, ?) "
                        "ON CONFLICT DO UPDATE SET marker = excluded.marker",
                        (tenant, category, c.marker),
                    )
                if c.began is not None and began.get((tenant, category)) is None:
                    db.execute(
                        "UPDATE streams SET began = coalesce(began, ?) WHERE tenant = ? AND category = ?",
                        (c.began.timestamp(), tenant, category),
                    )
                # One statement for the cursor, the success and the health it brings.
                sets: list[str] = []
                params: list[object] = []
                if c.cursor is not None:
                    sets.append("cursor = max(coalesce(cursor, ?), ?)")
                    params += (c.cursor.timestamp(), c.cursor.timestamp())
                if c.success_at is not None:
                    sets.append("last_success = ?, last_error = NULL, last_error_at = NULL")
                    params.append(c.success_at)
                if c.health is not None:
                    sets.append(_SET_HEALTH)
                    params.extend(_health_params(c.health))
                if sets:
                    db.execute(
                        f"UPDATE streams SET {', '.join(sets)} WHERE tenant = ? AND category = ?",  # noqa: S608 - fixed texts
                        (*params, tenant, category),
                    )
                if self._json:
                    # One statement whatever the page's size: SQLite reads the ids out of one
                    # JSON text, a quarter faster than a row bound from Python per id. (Ids
                    # are hex digests: never a NUL, which SQLite's JSON strings end at.)
                    ids = _encode_json([(int(when), id_) for id_, when in c.delivered])
                    if ids != b"[]":
                        db.execute(_INSERT_IDS, (tenant, category, ids))
                else:
                    db.executemany(
                        "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?, ?)",
                        ((tenant, category, int(when), id_) for id_, when in c.delivered),
                    )
                if c.dead_ids:
                    db.executemany(
                        "INSERT OR IGNORE INTO dead_seen VALUES (?, ?, ?, ?)",
                        ((tenant, category, id_, when) for id_, when in c.dead_ids),
                    )
                for name, n in c.counts.items():
                    if n:
                        row = (tenant, category, name)
                        counted[row] = counted.get(row, 0) + n
                if c.prune_before is not None:
                    prune = c.prune_before.timestamp()
                    # Whole seconds: every id of a record at or after ``prune`` is kept (and
                    # those of the second before it, up to it).
                    db.execute(
                        "DELETE FROM delivered WHERE tenant = ? AND category = ? AND second < ?",
                        (tenant, category, int(prune)),
                    )
                    db.execute(
                        "DELETE FROM dead_seen WHERE tenant = ? AND category = ? AND seen < ?",
                        (tenant, category, prune),
                    )
                    db.execute(
                        "UPDATE streams SET kept_from = max(coalesce(kept_from, ?), ?) "
                        "WHERE tenant = ? AND category = ?",
                        (prune, prune, tenant, category),
                    )
            # The group's counters and alert counts, summed by row first: one statement each
            # for the whole group, and one row written once however many of its pages count it.
            if counted:
                db.executemany(
                    "INSERT INTO counters VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET value = value + excluded.value",
                    ((*key, n) for key, n in counted.items()),
                )
            if hours:
                self._add_tallies(hours, totals)
            self._add_parties(group_parties(commits))
            db.executemany(
                "INSERT INTO sinks VALUES (?, ?) ON CONFLICT DO UPDATE SET position = excluded.position",
                sink_positions.items(),
            )
            if hour_now is not None and hour_now != self._tallies_pruned:
                # The hours no longer kept, dropped by the first commit of each new hour.
                db.execute("DELETE FROM alert_hours WHERE hour < ?", (hour_now - HOURS_KEPT,))
                db.execute("DELETE FROM alert_totals WHERE hour < ?", (hour_now - HOURS_KEPT,))
                db.execute(
                    "DELETE FROM alert_parties WHERE hour < ?", (hour_now - PARTY_HOURS_KEPT,)
                )
        if hour_now is not None:
            self._tallies_pruned = hour_now
        if self._positions is not None:
            positions = self._positions
            for c in commits:
                key = (c.tenant, c.category)
                cursor, kept = positions.get(key, (None, None))
                if c.cursor is not None:
                    moved = c.cursor.timestamp()
                    cursor = moved if cursor is None else max(cursor, moved)
                if c.prune_before is not None:
                    prune = c.prune_before.timestamp()
                    kept = prune if kept is None else max(kept, prune)
                positions[key] = (cursor, kept)
        for c in commits:  # only now: a commit that failed changed none of them
            if c.began is not None and began.get((c.tenant, c.category)) is None:
                began[(c.tenant, c.category)] = c.began.timestamp()
            else:
                began.setdefault((c.tenant, c.category), None)  # the row is there now
        if self._markers is not None:
            for c in commits:
                if c.marker is not None:
                    self._markers[(c.tenant, c.category)] = c.marker

    def _add_tallies(self, hours: Mapping[HourKey, int], totals: Mapping[TotalKey, int]) -> None:
        """Add a group's alert counts (``group_tallies``'s; inside its transaction)."""
        self._db.executemany(
            "INSERT INTO alert_hours VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET n = n + excluded.n",
            ((*key, n) for key, n in hours.items()),
        )
        self._db.executemany(
            "INSERT INTO alert_totals VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT DO UPDATE SET n = n + excluded.n",
            ((*key, n) for key, n in totals.items()),
        )

    def _add_parties(self, added: Mapping[PartyKey, Mapping[str, int]]) -> None:
        """Add a group's senders and recipients to each tenant's row of the hour and role
        (inside its transaction), folding that key's rows under ``PARTY_ROW_BYTES`` into one
        if there are several, or starting a new row if there are none."""
        if not added:
            return
        db = self._db
        kept: dict[PartyKey, list[tuple[int, bytes]]] = {}
        if self._json:  # every key's rows in one statement
            keys = _encode_json([[tenant, hour, role] for hour, role, tenant in added])
            for rowid, hour, role, tenant, counts in db.execute(
                _PARTY_ROWS, (keys, PARTY_ROW_BYTES)
            ):
                kept.setdefault((hour, role, tenant), []).append((rowid, counts))
        else:
            for hour, role, tenant in added:
                kept[(hour, role, tenant)] = db.execute(
                    "SELECT rowid, counts FROM alert_parties WHERE tenant = ? AND hour = ? "
                    "AND role = ? AND length(counts) < ? ORDER BY rowid",
                    (tenant, hour, role, PARTY_ROW_BYTES),
                ).fetchall()
        new: list[tuple[int, str, str, bytes]] = []
        changed: list[tuple[bytes, int]] = []
        gone: list[tuple[int]] = []
        for key, counts in added.items():
            rows = kept.get(key, [])
            merged, folded = merge_parties([row[1] for row in rows], counts)
            if not folded:
                new.append((*key, merged))
                continue
            changed.append((merged, rows[folded[0]][0]))
            gone.extend((rows[i][0],) for i in folded[1:])
        db.executemany("INSERT INTO alert_parties VALUES (?, ?, ?, ?)", new)
        db.executemany("UPDATE alert_parties SET counts = ? WHERE rowid = ?", changed)
        db.executemany("DELETE FROM alert_parties WHERE rowid = ?", gone)

    # --- the dashboard's reads (``AlertStats``) ----------------------------------------------

    def alert_series(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[int, str, int]]:
        """Alerts by hour and category since ``since_hour``: ``(hour, category, n)``."""
        if not self._tally_tables:
            return []
        where, params = _tenant_filter(since_hour, tenant)
        return [
            (int(hour), str(category), int(n))
            for hour, category, n in self._db.execute(
                f"SELECT hour, category, sum(n) FROM {_hours_table(tenant)} WHERE {where} "  # noqa: S608 - fixed texts
                "GROUP BY hour, category ORDER BY hour, category",
                params,
            )
        ]

    def technique_counts(self, since_hour: int, tenant: str | None = None) -> list[tuple[str, int]]:
        """Alerts by threatId since ``since_hour``, most first."""
        return self._ranked("technique", _hours_table(tenant), since_hour, None, tenant)

    def top_alert_types(
        self, since_hour: int, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        """The ``limit`` alertTypes with the most alerts since ``since_hour``."""
        return self._ranked("alert_type", _hours_table(tenant), since_hour, limit, tenant)

    def top_parties(
        self, since_hour: int, role: str, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        """The ``limit`` senders or recipients (``role``) with the most alerts."""
        if not self._tally_tables:
            return []
        where, params = _tenant_filter(since_hour, tenant)
        rows = self._db.execute(
            f"SELECT counts FROM alert_parties WHERE {where} AND role = ?",  # noqa: S608 - fixed texts
            (*params, role),
        )
        return ranked_parties((row[0] for row in rows), limit)

    def _ranked(
        self,
        column: str,
        table: str,
        since_hour: int,
        limit: int | None,
        tenant: str | None,
    ) -> list[tuple[str, int]]:
        if not self._tally_tables:
            return []
        where, params = _tenant_filter(since_hour, tenant)
        rows = self._db.execute(
            f"SELECT {column}, sum(n) AS total FROM {table} WHERE {where} "  # noqa: S608 - fixed texts
            f"GROUP BY {column} ORDER BY total DESC, {column} LIMIT ?",
            (*params, -1 if limit is None else limit),
        )
        return [(str(name), int(n)) for name, n in rows]

    def set_sink_positions(self, positions: Mapping[str, str]) -> None:
        """Record sinks' positions on their own (the baselines taken at start)."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO sinks VALUES (?, ?) ON CONFLICT DO UPDATE SET position = excluded.position",
                positions.items(),
            )

    @contextlib.contextmanager
    def _transaction(self, *, check: bool = True) -> Iterator[None]:
        if check:
            self._same_file()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) may leave the transaction open: end it, so that the
            # next one can begin once there is room.
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    def record_error(
        self,
        tenant: str,
        category: str,
        message: str,
        at: float,
        health: StreamHealth | None = None,
    ) -> None:
        """Remember the last failure of a stream, for ``status``, and its ``health`` (None:
        left as it was), in one statement."""
        with self._transaction():
            if health is None:
                self._db.execute(
                    "INSERT INTO streams (tenant, category, last_error, last_error_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO UPDATE SET last_error = excluded.last_error, last_error_at = excluded.last_error_at",
                    (tenant, category, message[:2000], at),
                )
                return
            state, since, _, reason, advice = _health_params(health)
            self._db.execute(
                "INSERT INTO streams (tenant, category, last_error, last_error_at, health, "  # noqa: S608 - fixed texts
                "health_reason, health_advice, health_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET last_error = excluded.last_error, "
                f"last_error_at = excluded.last_error_at, {_SET_HEALTH}",
                (
                    *(tenant, category, message[:2000], at, state, reason, advice, since),
                    *_health_params(health),
                ),
            )

    def set_health(self, tenant: str, category: str, health: StreamHealth) -> None:
        """Replace the stream's health (created if new); ``since`` kept while its state is."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO streams (tenant, category) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (tenant, category),
            )
            self._db.execute(
                f"UPDATE streams SET {_SET_HEALTH} WHERE tenant = ? AND category = ?",  # noqa: S608 - a fixed text
                (*_health_params(health), tenant, category),
            )


def _hours_table(tenant: str | None) -> str:
    """Where the counts by hour are read: one tenant's rows, or the totals of all."""
    return "alert_totals" if tenant is None else "alert_hours"


def _tenant_filter(since_hour: int, tenant: str | None) -> tuple[str, tuple[object, ...]]:
    """The WHERE of a dashboard read: the hours from ``since_hour``, of one tenant or all."""
    if tenant is None:
        return "hour >= ?", (since_hour,)
    return "hour >= ? AND tenant = ?", (since_hour, tenant)


class SqliteStore:
    """:class:`StateStore` behind the async :class:`~mimecast_connector.state.Store` Protocol.

    SQLite answers from a local file in microseconds, so each call runs on the event loop
    itself, as before the Protocol existed; ``store`` is the file, for what only SQLite has
    (the writer lock, read-only opening).
    """

    keeps_dead_letters = False

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.store.path)!r})"

    async def position(self, tenant: str, category: str) -> tuple[datetime | None, float | None]:
        return self.store.position(tenant, category)

    async def cursor(self, tenant: str, category: str) -> datetime | None:
        return self.store.cursor(tenant, category)

    async def marker(self, tenant: str, category: str) -> str | None:
        return self.store.marker(tenant, category)

    async def already_delivered(
        self,
        tenant: str,
        category: str,
        records: Iterable[tuple[str, float]],
        dead: Iterable[str] = (),
    ) -> set[str]:
        return self.store.already_delivered(tenant, category, records, dead)

    async def sink_position(self, name: str) -> str | None:
        return self.store.sink_position(name)

    async def streams(self, *, counters: bool = True) -> list[StreamState]:
        return self.store.streams(counters=counters)

    async def stale(self, leases: Mapping[tuple[str, str], int]) -> set[tuple[str, str]]:
        assert not leases, "leases are a fleet's, and a fleet's state is PostgreSQL"
        return set()

    async def commit_group(
        self, commits: Sequence[Commit], sink_positions: Mapping[str, str]
    ) -> None:
        assert not any(c.dead or c.lease is not None for c in commits), (
            "SQLite's dead letters go to their file; leases are a fleet's"
        )
        self.store.commit_group(commits, sink_positions)

    async def set_sink_positions(self, positions: Mapping[str, str]) -> None:
        self.store.set_sink_positions(positions)

    async def record_error(
        self,
        tenant: str,
        category: str,
        message: str,
        at: float,
        health: StreamHealth | None = None,
    ) -> None:
        self.store.record_error(tenant, category, message, at, health)

    async def set_health(self, tenant: str, category: str, health: StreamHealth) -> None:
        self.store.set_health(tenant, category, health)

    async def began(self, tenant: str, category: str) -> datetime | None:
        return self.store.began(tenant, category)

    async def set_began(self, tenant: str, category: str, began: datetime) -> None:
        self.store.set_began(tenant, category, began)

    async def alert_series(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[int, str, int]]:
        return self.store.alert_series(since_hour, tenant)

    async def technique_counts(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return self.store.technique_counts(since_hour, tenant)

    async def top_alert_types(
        self, since_hour: int, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return self.store.top_alert_types(since_hour, limit, tenant)

    async def top_parties(
        self, since_hour: int, role: str, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return self.store.top_parties(since_hour, role, limit, tenant)

    async def aclose(self) -> None:
        self.store.close()
