"""Every way a run ends that is not a requested stop exits non-zero, with the reason (issue 7,
defect 3): a supervisor reads 0 as "do not restart"."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from mimecast_connector import Category
from mimecast_connector._cli import main
from mimecast_connector._commands import serve
from mimecast_connector._errors import StateError
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.runner import Runner
from mimecast_connector.sinks import Sink
from tests.e2e.conftest import World
from tests.fakes import FakeClock
from tests.properties.fake_api import FakeMimecast
from tests.properties.test_checkpoint_model import T0, make_record, write_config


def cli(*args: str) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output, result.exception


def test_a_malformed_cursor_fails_its_stream_with_exit_1_and_no_traceback(world: World) -> None:
    """A cursor the database holds as text makes `run --once` report that stream's failure and exit 1; the other streams still run."""
    config = world.write_config()
    code, out, _ = cli("run", "--config", str(config), "--once")
    assert code == 0, out
    with sqlite3.connect(world.tmp / "state/connector.db") as db:
        db.execute("UPDATE streams SET cursor = 'garbage' WHERE category = 'url'")
    code, out, exc = cli("run", "--config", str(config), "--once")
    assert code == 1, out
    assert isinstance(exc, SystemExit), exc
    assert "Traceback" not in out
    assert "acme/url:" in out
    assert "unexpected TypeError" in out
    assert out.count(" ok ") + out.count("│ ok") >= 2, out  # attachment and impersonation ran


async def started(tmp_path: Path, sinks: Sequence[Sink] | None = None) -> Runner:
    """A started Runner on the fake API serving one URL alert, on a fake clock."""
    api = FakeMimecast()
    api.add(Category.URL, make_record(Category.URL, 1, T0 - 60, "malicious", "+0000"), T0 - 60)
    runner = Runner(
        write_config(tmp_path),
        clock=FakeClock(start=float(T0)),
        sinks=sinks,
        transport=lambda tenant: api.transport(),
    )
    await runner.start()
    return runner


class ExplodingError(Exception):
    """An error that cannot even be printed: the last thing a stream's error handling expects."""

    def __str__(self) -> str:
        raise RuntimeError("this error has no text")


class ExplodingSink:
    name = "exploding"
    format: Format = "native"

    async def start(self, position: str | None) -> str | None:
        return None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        raise ExplodingError

    def committed(self, position: str | None) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_stream_task_that_dies_ends_run_with_exit_1_and_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In forever mode a stream whose failure handling itself fails stops the run, which exits 1 naming what died."""
    runner = await started(tmp_path, [ExplodingSink()])
    try:
        status = await asyncio.wait_for(serve(runner, once=False, stop=asyncio.Event()), 10)
    finally:
        await runner.aclose()
    assert status == 1
    assert runner.died is not None
    assert "this error has no text" in runner.died
    err = capsys.readouterr().err
    assert "stopped:" in err
    assert "this error has no text" in err


async def test_a_requested_stop_exits_0(tmp_path: Path) -> None:
    """The one clean end: a stop that was asked for (SIGINT/SIGTERM set the same event)."""
    runner = await started(tmp_path)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    try:
        status = await asyncio.wait_for(serve(runner, once=False, stop=stop), 10)
    finally:
        await runner.aclose()
    assert status == 0
    assert runner.died is None
    assert runner.halted is None


async def test_a_state_database_deleted_under_a_forever_run_halts_it_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state file deleted under `run`: the first commit refuses, the run halts by itself and exits 1 naming the state error."""
    runner = await started(tmp_path)
    (tmp_path / "state" / "connector.db").unlink()
    try:
        status = await asyncio.wait_for(serve(runner, once=False, stop=asyncio.Event()), 10)
    finally:
        await runner.aclose()
    assert status == 1
    assert isinstance(runner.halted, StateError)
    err = capsys.readouterr().err
    assert "stopped:" in err
    assert "was deleted" in err


class Boom(BaseException):
    """Not an Exception: the kind of error that could end the committer's loop."""


class BoomSink(ExplodingSink):
    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        raise Boom("the sink blew up")


async def test_a_committer_that_dies_stops_the_run_with_exit_1_and_nothing_hangs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sink raising a BaseException ends the committer's loop: every poll waiting on it gets an error instead of hanging, and the run stops by itself with exit 1 naming the committer."""
    runner = await started(tmp_path, [BoomSink()])
    try:
        status = await asyncio.wait_for(serve(runner, once=False, stop=asyncio.Event()), 10)
    finally:
        await runner.aclose()
    assert status == 1
    assert runner.died is not None
    assert "the committer died" in runner.died
    assert "the committer died" in capsys.readouterr().err
