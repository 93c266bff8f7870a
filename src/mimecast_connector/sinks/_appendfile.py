"""An append-only file with a committed position: the mechanism behind exactly-once files.

Each append is written and fsynced, and returns the file's new size: the *position* the
runner commits to the state store in the same transaction as the checkpoint. Before each
append the file is cut back to the last committed position, so a tail written by a batch
that never committed (the process died, or another sink refused the batch) is removed before
that batch is written again. A file shorter than the committed position was truncated outside
the connector, and a path that names another file than the one open was rotated: both are
logged, and appending goes on from the end of the file the path names. (A batch written just
before a rotation and not committed stays in the rotated file and is written again to the new.)

Writes go straight to a raw descriptor (``os.write`` in a loop, no buffered file object), so a
write that fails (disk full, I/O error) leaves nothing pending in this process: whatever part
of the batch reached the file is cut off at once, or at the latest before the next append.
A failed write is a :class:`SinkStorageError` (our side, retryable) whose message says what to
do; nothing past the last committed batch is ever kept.

On first use (no committed position), the file must be empty or missing: a non-empty file
with no position in the state database was written by a run whose state is not this one, and
appending would repeat what it holds, so it is refused (:class:`StateError`).

Blocking file work runs in a worker thread; one append at a time (the runner's delivery lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from pathlib import Path

import structlog

from mimecast_connector._errors import SinkRejectedError, SinkStorageError, StateError

_log = structlog.get_logger("mimecast_connector.sinks")

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
_KEPT = "nothing was committed past the last batch, which is written again"


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem that holds ``path`` (or its nearest existing parent)."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    device = here.stat().st_dev
    while here != here.parent and here.parent.stat().st_dev == device:
        here = here.parent
    return here


def write_error(path: Path, name: str, exc: OSError) -> SinkStorageError:
    """The error for a failed local write, saying what to do about it."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            where = str(mount_point(path))
        except OSError:
            where = "the filesystem"
        what = "no space left" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return SinkStorageError(
            f"{what} on {where} (writing {str(path)!r}): free space there; {_KEPT} once there "
            "is room",
            sink=name,
        )
    if not path.parent.is_dir():
        return SinkStorageError(
            f"the folder {str(path.parent)!r} of {str(path)!r} was removed: recreate it "
            f"(mkdir -p {str(path.parent)!r}); {_KEPT} once it is back",
            sink=name,
        )
    return SinkStorageError(
        f"cannot write {str(path)!r}: {exc.strerror}: check the disk, the folder and its "
        f"permissions; {_KEPT} once it can be written",
        sink=name,
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class AppendFile:
    """``path``, appended to in batches; ``name`` keys its position in the state store."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._fd: int | None = None
        self._committed = 0
        self._io = threading.Lock()

    async def open(self, position: str | None) -> str:
        """Open for appending; ``position`` is the last committed size (None: first use).

        Returns the position to record now: on first use 0, so that a crash during the first
        batch is cut back to it too. On first use a non-empty file is refused (StateError).
        """
        await asyncio.to_thread(self._open, position)
        return str(self._committed)

    def _open(self, position: str | None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, _FLAGS, 0o644)
        except OSError as exc:
            raise SinkRejectedError(
                f"cannot open {str(self.path)!r} for appending: {exc.strerror}", sink=self.name
            ) from None
        size = os.fstat(self._fd).st_size
        if position is None and size > 0:
            self.close()
            raise StateError(
                f"{str(self.path)!r} ({self.name}) already holds {size} bytes, but the state "
                "database has no position for it: it was written by a run whose state database "
                "is not this one, and appending would deliver again everything in it. If that "
                "state database was moved or lost, stop and restore it to its place; otherwise "
                f"move {str(self.path)!r} aside (or point this output at a new file) and start "
                "again."
            )
        self._committed = 0 if position is None else int(position)
        self._cut_back()

    def _cut_back(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size > self._committed:
            os.ftruncate(self._fd, self._committed)
            os.fsync(self._fd)
            _log.warning(
                "uncommitted_tail_removed",
                file=self.name,
                removed_bytes=size - self._committed,
                reason="written by a batch that was not committed; that batch is written again",
            )
        elif size < self._committed:
            _log.warning(
                "file_shorter_than_committed",
                file=self.name,
                size=size,
                committed=self._committed,
                reason="rotated or truncated outside the connector; appending from its end",
            )
            self._committed = size

    async def append(self, data: bytes) -> str:
        """Write ``data`` durably after the committed position; return the new position."""
        return await asyncio.to_thread(self._append, data)

    def _append(self, data: bytes) -> str:
        with self._io:  # close() waits for a write whose awaiting task was cancelled
            return self._append_locked(data)

    def _append_locked(self, data: bytes) -> str:
        if self._fd is None:
            raise SinkRejectedError("append() before open()", sink=self.name)
        try:
            self._follow_rotation()
            self._cut_back()
            _write_all(self._fd, data)
            os.fsync(self._fd)
            return str(os.fstat(self._fd).st_size)
        except OSError as exc:
            self._drop_partial()
            raise write_error(self.path, self.name, exc) from None

    def _drop_partial(self) -> None:
        """After a failed write, cut what part of the batch reached the file (best effort: the
        next append cuts it in any case)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                if os.fstat(self._fd).st_size > self._committed:
                    os.ftruncate(self._fd, self._committed)

    def _follow_rotation(self) -> None:
        """If the path now names another file (renamed away by a log rotator), open that one."""
        assert self._fd is not None
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        held = os.fstat(self._fd)
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return
        fresh = os.open(self.path, _FLAGS, 0o644)
        os.close(self._fd)  # only once the new one is open: a failed open keeps the old
        self._fd = fresh
        self._committed = os.fstat(fresh).st_size
        _log.warning(
            "file_rotated",
            file=self.name,
            reason="the path names a new file (rotated or removed); appending to it from its end",
        )

    def committed(self, position: str) -> None:
        """The append that returned ``position`` is committed."""
        self._committed = int(position)

    def close(self) -> None:
        """Close, after any write still running in its worker thread (a stopped run cancels
        the task awaiting it, not the thread): never a write to a closed descriptor."""
        with self._io:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
