"""Conformance adapters of the ``jsonl`` sink: a file, and standard output."""

from __future__ import annotations

import io
from pathlib import Path

from mimecast_connector.alerts import Format
from mimecast_connector.sinks import JsonlSink, Sink
from tests.sinks.adapters import Adapter, AdapterFactory


class FileAdapter(Adapter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def make(self, format: Format) -> Sink:
        return JsonlSink(str(self.path), format)

    def units(self) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True) if self.path.exists() else []


class StdoutAdapter(Adapter):
    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()

    def make(self, format: Format) -> Sink:
        return JsonlSink("-", format, stdout=self.buffer)

    def units(self) -> list[bytes]:
        return self.buffer.getvalue().splitlines(keepends=True)


ADAPTERS: dict[str, AdapterFactory] = {
    "jsonl-file": lambda request, tmp: FileAdapter(tmp / "out" / "alerts.jsonl"),
    "jsonl-stdout": lambda request, tmp: StdoutAdapter(),
}
