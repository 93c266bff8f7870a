"""Unit tests of AppendFile: exactly-once appends by committed position and tail cut-back."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mimecast_connector._errors import SinkRejectedError
from mimecast_connector.sinks import AppendFile


def contents(path: Path) -> bytes:
    """The file's bytes (blocking file work stays out of the async tests' bodies)."""
    return path.read_bytes()


def prefill(path: Path, data: bytes) -> None:
    """Create the file with ``data``, as if someone else had written it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "out" / "alerts.jsonl"


@pytest.fixture
async def sink(path: Path) -> AsyncIterator[AppendFile]:
    """A first-use AppendFile on a file that does not exist yet."""
    opened = AppendFile(path, "jsonl:alerts")
    await opened.open(None)
    yield opened
    opened.close()


async def test_append_returns_the_new_size(sink: AppendFile, path: Path) -> None:
    """Each append returns the file's size after it, as a string position, and the bytes are on disk."""
    assert await sink.append(b"one\n") == "4"
    sink.committed("4")
    assert await sink.append(b"two two\n") == "12"
    assert contents(path) == b"one\ntwo two\n"


async def test_an_uncommitted_tail_is_cut_on_the_next_append(sink: AppendFile, path: Path) -> None:
    """A batch appended but never committed is removed before the next batch is written."""
    sink.committed(await sink.append(b"committed\n"))
    assert await sink.append(b"lost batch\n") == "21"
    with capture_logs() as logs:
        position = await sink.append(b"retried batch\n")
    assert contents(path) == b"committed\nretried batch\n"
    assert position == str(len(b"committed\nretried batch\n"))
    assert [(e["event"], e["removed_bytes"]) for e in logs] == [("uncommitted_tail_removed", 11)]


async def test_an_uncommitted_tail_is_cut_on_reopen(path: Path) -> None:
    """After a crash, reopening at the committed position removes what was written past it."""
    first = AppendFile(path, "jsonl:alerts")
    await first.open(None)
    committed = await first.append(b"a\n")
    first.committed(committed)
    await first.append(b"never committed\n")
    first.close()
    again = AppendFile(path, "jsonl:alerts")
    with capture_logs() as logs:
        await again.open(committed)
    try:
        assert contents(path) == b"a\n"
        assert [e["event"] for e in logs] == ["uncommitted_tail_removed"]
        assert await again.append(b"b\n") == "4"
        assert contents(path) == b"a\nb\n"
    finally:
        again.close()


async def test_a_file_shorter_than_committed_is_logged_and_appended_to(path: Path) -> None:
    """A file truncated or replaced outside the connector is logged, kept, and appended at its end."""
    prefill(path, b"new file\n")
    sink = AppendFile(path, "jsonl:alerts")
    with capture_logs() as logs:
        await sink.open("1000")
    try:
        assert [(e["event"], e["size"], e["committed"]) for e in logs] == [
            ("file_shorter_than_committed", 9, 1000)
        ]
        assert await sink.append(b"x\n") == "11"
        assert contents(path) == b"new file\nx\n"
    finally:
        sink.close()


async def test_a_file_truncated_during_the_run_is_appended_to(sink: AppendFile, path: Path) -> None:
    """A copytruncate-style rotation while running is logged and the next batch lands at offset 0."""
    sink.committed(await sink.append(b"0123456789\n"))
    os.truncate(path, 0)
    with capture_logs() as logs:
        assert await sink.append(b"after\n") == "6"
    assert contents(path) == b"after\n"
    assert [e["event"] for e in logs] == ["file_shorter_than_committed"]


async def test_first_use_position_is_the_size_at_open(path: Path) -> None:
    """On first use (an empty file; a non-empty one is refused), an uncommitted append is cut back to 0."""
    prefill(path, b"")
    sink = AppendFile(path, "jsonl:alerts")
    assert await sink.open(None) == "0"
    try:
        await sink.append(b"uncommitted\n")
        assert await sink.append(b"again\n") == "6"
        assert contents(path) == b"again\n"
    finally:
        sink.close()


async def test_append_before_open_is_refused(path: Path) -> None:
    """Appending to a sink that was never opened is a SinkRejectedError naming the sink."""
    with pytest.raises(
        SinkRejectedError, match="sink jsonl:alerts: append\\(\\) before open\\(\\)"
    ):
        await AppendFile(path, "jsonl:alerts").append(b"x\n")


async def test_a_path_that_cannot_be_opened_is_refused(tmp_path: Path) -> None:
    """A path that is a folder is a SinkRejectedError at open, naming the sink and the path."""
    with pytest.raises(SinkRejectedError) as caught:
        await AppendFile(tmp_path, "jsonl:dir").open(None)
    assert caught.value.sink == "jsonl:dir"
    assert str(tmp_path) in str(caught.value)


async def test_a_file_renamed_away_during_the_run_is_recreated(
    sink: AppendFile, path: Path
) -> None:
    """After logrotate renames the file, the next batch is written to a new file at the configured path."""
    sink.committed(await sink.append(b"before rotation\n"))
    os.rename(path, path.with_suffix(".1"))
    await sink.append(b"after rotation\n")
    assert contents(path) == b"after rotation\n"
