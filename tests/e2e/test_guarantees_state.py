"""The state and output-file guarantees end to end: a full disk, a removed output folder, one
writer however the state path is spelled, a state database deleted under a running connector
(the run halts; a fresh database is refused beside the old outputs), and a read-only `status`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mimecast_connector._cli import main
from mimecast_connector._errors import ConnectorError, StateError
from mimecast_connector.runner import Runner, StreamResult
from tests.e2e.conftest import CATEGORIES, World
from tests.e2e.test_guarantees import (
    add_fresh_alerts,
    assert_exactly,
    cursors,
    no_duplicates,
    run_ok,
)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *args], capture_output=True, check=False)  # noqa: S603, S607


@pytest.fixture
def small_fs(world: World) -> Iterator[Path]:
    """A 64 KiB tmpfs under the world's folder (grown by the test), or a skip if mounting is forbidden."""
    where = world.tmp / "fs"
    where.mkdir()
    done = mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)  # noqa: S603, S607


def errors(results: list[StreamResult]) -> list[ConnectorError]:
    return [r.error for r in results if r.error is not None]


# --- the output disk -----------------------------------------------------------------------------


async def test_a_full_output_disk_loses_nothing_and_repeats_nothing_once_it_has_room(
    world: World, small_fs: Path
) -> None:
    """jsonl output on a 64 KiB filesystem: the run fails saying the disk is full (ours, retryable); once it grows, every alert is in the file exactly once, no fragment."""
    sinks = f'[[sinks]]\ntype = "jsonl"\npath = "{small_fs}/out/alerts.jsonl"\n'
    runner = Runner(world.config(sinks=sinks))
    await runner.start()
    try:
        failed = errors(await runner.run_once())
        assert failed, "nothing failed: the filesystem did not fill"
        for error in failed:
            assert (error.fault, error.retryable) == ("ours", True), error
            assert f"no space left on {small_fs}" in str(error)
        for _ in range(2):  # still full: the failed batch fails again, and leaves nothing
            await runner.run_once()
        assert mount("-o", "remount,size=16m", str(small_fs)).returncode == 0
        await run_ok(runner)
    finally:
        await runner.aclose()
    (world.tmp / "out").mkdir()
    shutil.copyfile(small_fs / "out/alerts.jsonl", world.tmp / "out/alerts.jsonl")
    assert (world.tmp / "out/alerts.jsonl").read_bytes().endswith(b"\n")
    assert_exactly(world, world.expected())


async def test_a_removed_output_folder_is_our_fault_and_delivery_resumes_once_recreated(
    world: World,
) -> None:
    """The output folder removed under a running connector: the next batch fails as ours and retryable, saying to recreate it; recreated, the new alerts land there once."""
    runner = Runner(world.config())
    await runner.start()
    try:
        await run_ok(runner)
        shutil.rmtree(world.tmp / "out")
        add_fresh_alerts(world, cursors(runner))
        failed = errors(await runner.run_once())
        assert failed
        for error in failed:
            assert (error.fault, error.retryable) == ("ours", True), error
            assert "recreate it" in str(error)
            assert str(world.tmp / "out") in str(error)
        (world.tmp / "out").mkdir()
        await run_ok(runner)
    finally:
        await runner.aclose()
    assert len(world.alerts()) == len(CATEGORIES) * 10  # the fresh alerts of each category, once
    no_duplicates(world)


# --- one writer ------------------------------------------------------------------------------------


def test_a_second_run_through_a_symlinked_state_path_is_refused(world: World) -> None:
    """`run` holds state/connector.db; `run --once` whose `state` is a symlink to it (or '..' spelling) exits 2 naming that process."""
    config = world.write_config()
    other = world.tmp / "other"
    other.mkdir()
    (other / "connector.db").symlink_to(world.tmp / "state" / "connector.db")
    text = config.read_text("utf-8")
    via_link = world.tmp / "via-link.toml"
    via_link.write_text(
        text.replace('state = "state/connector.db"', f'state = "{other}/connector.db"'), "utf-8"
    )
    via_dots = world.tmp / "via-dots.toml"
    via_dots.write_text(
        text.replace('state = "state/connector.db"', 'state = "state/../state/connector.db"'),
        "utf-8",
    )
    lock = world.tmp / "state/connector.db.lock"
    with (world.tmp / "forever.log").open("wb") as log:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config)],
            stdout=log,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 30
            while not (lock.exists() and lock.read_text().startswith("process ")):
                assert child.poll() is None, (world.tmp / "forever.log").read_text()
                assert time.monotonic() < deadline, "the connector never took the lock"
                time.sleep(0.05)
            for spelling in (via_link, via_dots):
                code, out = cli("run", "--config", str(spelling), "--once")
                assert code == 2, out
                assert f"process {child.pid} on " in out
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    no_duplicates(world)


# --- the state database deleted under a running connector ------------------------------------------


def test_a_deleted_state_database_halts_the_run_and_a_fresh_one_is_refused(
    world: World,
) -> None:
    """State deleted mid-run: the next commit fails with StateError; a restart on a fresh database refuses the non-empty outputs; the saved copy moved back resumes with every alert once."""
    config_path = world.write_config()
    state = world.tmp / "state/connector.db"

    async def delete_mid_run() -> list[ConnectorError]:
        runner = Runner(world.config())
        await runner.start()
        try:
            await run_ok(runner)
            held = cursors(runner)
            state.unlink()
            add_fresh_alerts(world, held)
            return errors(await runner.run_once())
        finally:
            await runner.aclose()

    failed = asyncio.run(delete_mid_run())
    assert failed
    assert all(isinstance(e, StateError) for e in failed), failed
    message = str(failed[0])
    assert "was deleted while this connector was using it" in message
    before = (world.tmp / "out/alerts.jsonl").read_bytes()
    code, out = cli("run", "--config", str(config_path), "--once")
    assert code == 2, out
    assert "alerts.jsonl" in out
    assert "already holds" in out
    assert "aside" in out
    assert (world.tmp / "out/alerts.jsonl").read_bytes() == before
    [saved] = [p for p in state.parent.iterdir() if ".orphaned-" in p.name]
    assert str(saved) in message
    for suffix in ("", "-wal", "-shm"):  # the fresh database of the refused start
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    os.rename(saved, state)
    code, out = cli("run", "--config", str(config_path), "--once")
    assert code == 0, out
    assert_exactly(world, world.expected())


# --- status is read-only ----------------------------------------------------------------------------


def fingerprint(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_status_reads_at_once_while_a_writer_holds_a_transaction(world: World) -> None:
    """With a writer holding BEGIN IMMEDIATE for 8 s, `status` shows the checkpoints within 3 s, exits 0, says nothing of damage, and changes nothing."""
    config = world.write_config()
    assert cli("run", "--config", str(config), "--once")[0] == 0
    state = world.tmp / "state/connector.db"
    began, done = threading.Event(), threading.Event()

    def writer() -> None:
        raw = sqlite3.connect(state, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("UPDATE streams SET last_error = 'uncommitted'")
        began.set()
        done.wait(8)
        raw.execute("ROLLBACK")
        raw.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert began.wait(5)
        before = fingerprint(state)
        started = time.monotonic()
        code, out = cli("status", "--config", str(config))
        took = time.monotonic() - started
        assert fingerprint(state) == before
    finally:
        done.set()
        thread.join()
    assert code == 0, out
    assert "damaged" not in out
    assert "checkpoint" in out
    assert "uncommitted" not in out
    assert took < 3, took


def test_status_works_on_a_read_only_mount_and_says_damaged_only_when_it_is(world: World) -> None:
    """`status` on a state folder bind-mounted read-only shows the checkpoints (exit 0); a garbled file there says damaged (exit 2); neither is changed."""
    config = world.write_config()
    assert cli("run", "--config", str(config), "--once")[0] == 0
    view = world.tmp / "ro-state"
    view.mkdir()
    if mount("--bind", str(world.tmp / "state"), str(view)).returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        assert mount("-o", "remount,bind,ro", str(view)).returncode == 0
        ro_config = world.tmp / "ro.toml"
        ro_config.write_text(
            config.read_text("utf-8").replace(
                'state = "state/connector.db"', 'state = "ro-state/connector.db"'
            ),
            "utf-8",
        )
        state = world.tmp / "state/connector.db"
        before = fingerprint(state)
        code, out = cli("status", "--config", str(ro_config))
        assert code == 0, out
        assert "checkpoint" in out
        assert fingerprint(state) == before
        broken = b"\x00garbage" * 16 + state.read_bytes()[128:]
        state.write_bytes(broken)
        code, out = cli("status", "--config", str(ro_config))
        assert code == 2, out
        assert "damaged" in out
        assert state.read_bytes() == broken
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)  # noqa: S603, S607
