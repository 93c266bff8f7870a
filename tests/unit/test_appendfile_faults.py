"""AppendFile under local faults: a full filesystem, a removed folder, a file that is not ours.

The full-disk tests mount a tiny tmpfs (root only); they skip, saying why, where mounting is
not permitted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mimecast_connector._errors import SinkError, StateError
from mimecast_connector.sinks import AppendFile


@dataclass
class Tmpfs:
    """A tmpfs of a set size mounted at ``path``; ``resize`` grows (or shrinks) it in place."""

    path: Path

    def resize(self, size: str) -> None:
        subprocess.run(  # noqa: S603 - fixed arguments
            ["mount", "-o", f"remount,size={size}", str(self.path)],  # noqa: S607
            check=True,
            capture_output=True,
        )


def mount_tmpfs(path: Path, size: str) -> Iterator[Tmpfs]:
    """Mount a tmpfs of ``size`` at ``path`` for the test, or skip if this machine forbids it."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(  # noqa: S603 - fixed arguments
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield Tmpfs(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)  # noqa: S603, S607


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Tmpfs]:
    """A 64 KiB filesystem, to fill."""
    yield from mount_tmpfs(tmp_path / "fs", "64k")


def contents(path: Path) -> bytes:
    """The file's bytes (blocking file work stays out of the async tests' bodies)."""
    return path.read_bytes()


def batch(n: int) -> bytes:
    """Batch ``n``: twelve JSON lines of ~330 bytes, so batch ends fall inside pages and buffers."""
    lines = [
        json.dumps({"batch": n, "line": i, "ttpDefinition": "Definition " + "x" * 280}) + "\n"
        for i in range(12)
    ]
    return "".join(lines).encode()


async def test_a_write_that_fails_on_a_full_disk_leaves_nothing_behind(small_fs: Tmpfs) -> None:
    """Batches appended until ENOSPC, the failed one retried after the filesystem grows: the file holds each committed batch once, no fragment."""
    path = small_fs.path / "out" / "alerts.jsonl"
    sink = AppendFile(path, "jsonl:alerts")
    await sink.open(None)
    committed: list[int] = []
    failures = 0
    n = 0
    try:
        while failures < 3:  # fill, then fail three times while full
            try:
                sink.committed(await sink.append(batch(n)))
                committed.append(n)
                n += 1
            except SinkError:
                failures += 1
        assert committed, "not one batch fitted: the filesystem is too small for this test"
        small_fs.resize("1m")
        for _ in range(5):  # the failed batch again, then more
            sink.committed(await sink.append(batch(n)))
            committed.append(n)
            n += 1
    finally:
        sink.close()
    lines = contents(path).split(b"\n")
    assert lines[-1] == b"", "the file does not end with a whole line"
    records = [json.loads(line) for line in lines[:-1]]  # a fragment fails to parse here
    assert [(r["batch"], r["line"]) for r in records] == [
        (b, i) for b in committed for i in range(12)
    ]


async def test_a_full_disk_is_our_retryable_fault_naming_the_filesystem(small_fs: Tmpfs) -> None:
    """ENOSPC is a retryable 'ours' sink error saying which filesystem is full, to free space, and that nothing past the last batch was committed."""
    path = small_fs.path / "alerts.jsonl"
    sink = AppendFile(path, "dead-letter")
    await sink.open(None)
    try:
        for n in range(100):  # the first batch that does not fit raises
            try:
                sink.committed(await sink.append(batch(n)))
            except SinkError as exc:
                error = exc
                break
        else:
            pytest.fail("100 batches fitted in 64 KiB: nothing was refused")
    finally:
        sink.close()
    assert (error.fault, error.retryable, error.sink) == ("ours", True, "dead-letter")
    message = str(error)
    assert f"no space left on {small_fs.path}" in message
    assert "free space" in message
    assert "nothing was committed past the last batch" in message


async def test_a_removed_output_folder_is_our_retryable_fault_saying_to_recreate_it(
    tmp_path: Path,
) -> None:
    """The output folder removed under a running sink: a retryable 'ours' error naming the folder and saying to recreate it; once recreated, appending goes on."""
    folder = tmp_path / "out"
    path = folder / "alerts.jsonl"
    sink = AppendFile(path, "jsonl:alerts")
    await sink.open(None)
    try:
        sink.committed(await sink.append(b"one\n"))
        shutil.rmtree(folder)
        with pytest.raises(SinkError) as caught:
            await sink.append(b"two\n")
        error = caught.value
        assert (error.fault, error.retryable) == ("ours", True)
        assert str(folder) in str(error)
        assert "recreate" in str(error)
        folder.mkdir()
        sink.committed(await sink.append(b"two\n"))
    finally:
        sink.close()
    assert contents(path) == b"two\n"


# --- first use: a file that is not ours -------------------------------------------------------


async def test_a_non_empty_file_without_a_position_is_refused_naming_it(tmp_path: Path) -> None:
    """A non-empty output file for which the state holds no position is refused at open with instructions, and left untouched."""
    path = tmp_path / "alerts.jsonl"
    path.write_bytes(b'{"id": "delivered by a run whose state is gone"}\n')
    sink = AppendFile(path, "jsonl:alerts")
    with pytest.raises(StateError) as caught:
        await sink.open(None)
    sink.close()
    message = str(caught.value)
    assert str(path) in message
    assert "move" in message
    assert "aside" in message
    assert "restore" in message
    assert contents(path) == b'{"id": "delivered by a run whose state is gone"}\n'


@pytest.mark.parametrize("exists", [True, False], ids=["empty", "missing"])
async def test_an_empty_or_missing_file_without_a_position_is_first_use(
    tmp_path: Path, exists: bool
) -> None:
    """An empty or missing output file with no position opens at 0 and is appended to."""
    path = tmp_path / "alerts.jsonl"
    if exists:
        path.write_bytes(b"")
    sink = AppendFile(path, "jsonl:alerts")
    await sink.open(None)
    try:
        assert await sink.append(b"ours\n") == "5"
    finally:
        sink.close()
    assert contents(path) == b"ours\n"
