"""The ``jsonl`` sink: alerts appended to a file, one JSON object a line; ``-`` is stdout.

Exactly once, across crashes: see :class:`~mimecast_connector.sinks._appendfile.AppendFile`.
Standard output has no position: there it is at least once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from mimecast_connector.alerts import LINE_ENCODERS, Alert, Format
from mimecast_connector.sinks._appendfile import AppendFile


class JsonlSink:
    """Append-only JSON lines with a committed position."""

    def __init__(
        self, path: str, format: Format = "native", *, stdout: BinaryIO | None = None
    ) -> None:
        self.name = f"jsonl:{path}"
        self._file = None if path == "-" else AppendFile(Path(path), self.name)
        self._format: Format = format
        self._encode = LINE_ENCODERS[format]
        self._stdout = stdout

    def __repr__(self) -> str:
        return f"JsonlSink({self.name!r}, format={self._format!r})"

    @property
    def format(self) -> Format:
        return self._format

    async def start(self, position: str | None) -> str | None:
        if self._file is None:
            return None
        return await self._file.open(position)

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        data = self._encode(alerts)
        if self._file is not None:
            return await self._file.append(data)
        out = self._stdout or sys.stdout.buffer
        out.write(data)
        out.flush()
        return None

    def committed(self, position: str | None) -> None:
        if self._file is not None and position is not None:
            self._file.committed(position)

    async def aclose(self) -> None:
        if self._file is not None:
            self._file.close()
