"""The jsonl sink: positions are file sizes, uncommitted tails are cut, stdout has no position.

AppendFile's own mechanics (rotation, truncation, first use) are in tests/unit/test_appendfile.py;
these tests go through the sink, with real alerts.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.sinks import JsonlSink
from tests.sinks.helpers import clicks, mixed

#: The native format's keys, in order (alert-rules.md; the Alert struct's field order).
NATIVE_KEYS = [
    "id", "tenant", "category", "alertType", "threatId", "threatName", "time", "severity",
    "sender", "recipient", "subject", "messageId", "url", "fileName", "fileHash",
    "identifiers", "action", "route", "senderIp", "rejectionType", "rejectionCode",
    "rejectionInfo", "raw",
]  # fmt: skip


def size(path: Path) -> int:
    return path.stat().st_size


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def ids_in(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in lines_of(path)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "alerts.jsonl"


@pytest.fixture
async def sink(path: Path) -> AsyncIterator[JsonlSink]:
    """A first-use jsonl sink on a file that does not exist yet."""
    opened = JsonlSink(str(path))
    await opened.start(None)
    yield opened
    await opened.aclose()


async def test_the_position_is_the_file_size(sink: JsonlSink, path: Path) -> None:
    """Each deliver returns the file's size after the batch as its position."""
    first = await sink.deliver(mixed())
    assert first == str(size(path))
    sink.committed(first)
    second = await sink.deliver(clicks(3))
    assert second == str(size(path))
    assert int(second) > int(first)


async def test_a_failed_batch_is_cut_before_it_is_written_again(
    sink: JsonlSink, path: Path
) -> None:
    """A batch delivered but not committed (another sink failed) is not doubled by its retry."""
    done, failed = clicks(2), clicks(3, start=2)
    sink.committed(await sink.deliver(done))
    await sink.deliver(failed)  # never committed
    position = await sink.deliver(failed)
    assert ids_in(path) == [a.id for a in done + failed]
    assert position == str(size(path))


async def test_start_at_a_stored_position_cuts_a_longer_file(path: Path) -> None:
    """Restarted at the stored position, the sink cuts what lies beyond it before writing on."""
    done, lost = clicks(2), clicks(2, start=2)
    first = JsonlSink(str(path))
    await first.start(None)
    position = await first.deliver(done)
    assert position is not None
    first.committed(position)
    await first.deliver(lost)  # written, then the process died before the commit
    await first.aclose()
    again = JsonlSink(str(path))
    try:
        await again.start(position)
        assert size(path) == int(position)
        await again.deliver(lost)
    finally:
        await again.aclose()
    assert ids_in(path) == [a.id for a in done + lost]


async def test_stdout_has_no_position_and_one_line_per_alert() -> None:
    """To a stream, each batch is one JSON line per alert, in order, and no position."""
    out = io.BytesIO()
    sink = JsonlSink("-", stdout=out)
    await sink.start("123")  # a stored position means nothing to a stream
    batch = mixed()
    assert await sink.deliver(batch) is None
    lines = out.getvalue().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [a.id for a in batch]
    assert out.getvalue().endswith(b"\n")
    await sink.aclose()


async def test_dash_without_a_stream_writes_to_standard_output(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """``-`` with no stream given writes the lines to the process's standard output."""
    sink = JsonlSink("-")
    batch = clicks(2)
    assert await sink.deliver(batch) is None
    out = capsysbinary.readouterr().out
    assert [json.loads(line)["id"] for line in out.splitlines()] == [a.id for a in batch]


async def test_every_native_line_is_json_with_the_23_native_keys(
    sink: JsonlSink, path: Path
) -> None:
    """Each native line is one JSON object whose keys are the 23 native keys, in order, for every category's alerts."""
    batch = mixed() + clicks(2)
    await sink.deliver(batch)
    lines = lines_of(path)
    assert len(lines) == len(batch)
    for line in lines:
        assert list(json.loads(line)) == NATIVE_KEYS
    assert len(NATIVE_KEYS) == 23
    assert {json.loads(line)["category"] for line in lines} == {c.value for c in LOG_CATEGORIES}


async def test_a_file_sink_names_its_path() -> None:
    """The name is ``jsonl:`` + the configured path (the key of its position), ``jsonl:-`` for stdout."""
    assert JsonlSink("out/alerts.jsonl", "ocsf").name == "jsonl:out/alerts.jsonl"
    assert JsonlSink("-").name == "jsonl:-"
