"""An append-only file with a committed position: the mechanism behind exactly-once files.

Each append is written and fsynced, and returns the file's new size: the *position* the
runner commits to the state store in the same transaction as the checkpoint. Before each
append the file is cut back to the last committed position, so a tail written by a batch
that never committed (the process died, or another sink refused the batch) is removed before
that batch is written again. A file shorter than the committed position was truncated outside
the connector, and a path that names another file than the one open was rotated: both are
logged, and appending goes on from the end of the file the path names. (A batch written just
before a rotation and not committed stays in the rotated file and is written again to the new.)

Blocking file work runs in a worker thread; one append at a time (the runner's delivery lock).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import BinaryIO

import structlog

from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError

_log = structlog.get_logger("mimecast_connector.sinks")


class AppendFile:
    """``path``, appended to in batches; ``name`` keys its position in the state store."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self._file: BinaryIO | None = None
        self._committed = 0

    async def open(self, position: str | None) -> str:
        """Open for appending; ``position`` is the last committed size (None: first use).

        Returns the position to record now: on first use, the file's size before anything is
        written, so that a crash during the first batch is cut back to it too.
        """
        await asyncio.to_thread(self._open, position)
        return str(self._committed)

    def _open(self, position: str | None) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
        except OSError as exc:
            raise SinkRejectedError(
                f"cannot open {str(self.path)!r} for appending: {exc.strerror}", sink=self.name
            ) from None
        # On first use, whatever the file holds already is not ours to cut.
        size = os.fstat(self._file.fileno()).st_size
        self._committed = size if position is None else int(position)
        self._cut_back()

    def _cut_back(self) -> None:
        assert self._file is not None
        size = os.fstat(self._file.fileno()).st_size
        if size > self._committed:
            os.truncate(self._file.fileno(), self._committed)
            os.fsync(self._file.fileno())
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
        if self._file is None:
            raise SinkRejectedError("append() before open()", sink=self.name)
        try:
            self._follow_rotation()
            self._cut_back()
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            return str(os.fstat(self._file.fileno()).st_size)
        except OSError as exc:
            raise SinkUnavailableError(
                f"cannot write {str(self.path)!r}: {exc.strerror}", sink=self.name
            ) from None

    def _follow_rotation(self) -> None:
        """If the path now names another file (renamed away by a log rotator), open that one."""
        assert self._file is not None
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        held = os.fstat(self._file.fileno())
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return
        fresh = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
        self._file.close()  # only once the new one is open: a failed open keeps the old
        self._file = fresh
        self._committed = os.fstat(self._file.fileno()).st_size
        _log.warning(
            "file_rotated",
            file=self.name,
            reason="the path names a new file (rotated or removed); appending to it from its end",
        )

    def committed(self, position: str) -> None:
        """The append that returned ``position`` is committed."""
        self._committed = int(position)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
