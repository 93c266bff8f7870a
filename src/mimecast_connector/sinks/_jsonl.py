"""The ``jsonl`` sink: alerts appended to a file, one JSON object a line; ``-`` is stdout.

Exactly once, across crashes: see :class:`~mimecast_connector.sinks._appendfile.AppendFile`.
Standard output has no position: there it is at least once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal, Self

from pydantic import field_validator

from mimecast_connector._fields import path_text
from mimecast_connector.alerts import LINE_ENCODERS, Alert, Format
from mimecast_connector.sinks._appendfile import AppendFile
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._registry import SinkKind, SinkSettings


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


class JsonlSinkConfig(SinkSettings):
    """Alerts appended to a file, one JSON object a line (``-`` is standard output)."""

    type: Literal["jsonl"]
    path: str
    format: Format = "native"

    _path = field_validator("path", mode="before")(path_text)

    def local_files(self) -> list[tuple[str, Path]]:
        return [] if self.path == "-" else [("path", Path(self.path))]

    def anchored(self, base_dir: Path) -> Self:
        if self.path == "-" or Path(self.path).is_absolute():
            return self
        return self.model_copy(update={"path": str(base_dir / self.path)})


def _build(settings: JsonlSinkConfig) -> Sink:
    return JsonlSink(settings.path, settings.format)


KIND = SinkKind(
    type="jsonl",
    settings=JsonlSinkConfig,
    build=_build,
    protocol="a file, one alert a line (`-`: standard output)",
    acknowledged="the lines are written and fsynced",
    guarantee="exactly once in the file: a crash cuts the file back to the last commit "
    "(standard output: at least once)",
    order=0,
    tested_against="a real file (and standard output)",
    fleet_refusal=(
        "a jsonl sink writes a file local to one worker, and `state` is PostgreSQL (a fleet, "
        "whose workers share the streams): each worker's file would hold a part of the alerts, "
        "and no worker could continue another's file. Deliver through a network sink (`type = "
        '"webhook"`), or use a SQLite `state` file for a single process'
    ),
)
