"""SIGTERM and SIGINT (issue 11): a `run` stops starting polls, commits the batch in flight,
closes its sinks and exits 0; a second signal exits at once. Nothing is lost either way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from mimecast_connector._commands import serve
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.runner import Runner
from mimecast_connector.sinks import JsonlSink
from tests.e2e.conftest import World
from tests.e2e.receiver import Answer, Receiver, Request
from tests.e2e.test_guarantees import assert_exactly

#: The webhook's answer to the batch in flight when the signal comes: late, but within the
#: run's drain timeout.
IN_FLIGHT_ANSWER = 1.5


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


def webhook_config(world: World, receiver: Receiver) -> Path:
    sinks = (
        '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.jsonl"\n\n'
        f'[[sinks]]\ntype = "webhook"\nurl = "{receiver.url()}"\n'
    )
    return world.write_config(sinks=sinks)


@contextlib.contextmanager
def running(config: Path, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `run` process logging to ``log_path``; killed on the way out if still there."""
    with log_path.open("wb") as log:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config)],
            stdout=log,
            stderr=log,
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def run_once(config: Path) -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config), "--once"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()


def hold_first_batch(receiver: Receiver, delay: float) -> threading.Event:
    """Answer the first batch ``delay`` seconds late (it is in flight when the test signals),
    every later one at once; the event is set when the first arrives."""
    arrived = threading.Event()

    def policy(request: Request) -> Answer:
        if arrived.is_set():
            return Answer(200)
        arrived.set()
        return Answer(200, delay=delay)

    receiver.policy = policy
    return arrived


def webhook_ids(receiver: Receiver) -> Counter[str]:
    """Every alert id the webhook received, with how many times (answered or not)."""
    return Counter(a["id"] for r in list(receiver.requests) for a in json.loads(r.body))


def test_sigterm_mid_batch_commits_the_batch_in_flight_and_exits_0(
    world: World, receiver: Receiver
) -> None:
    """SIGTERM while the webhook holds a batch: the run waits for its answer, commits it, exits 0 well within the drain timeout; the next run sends the webhook only the rest (each alert exactly once) and the file ends exact."""
    config = webhook_config(world, receiver)
    arrived = hold_first_batch(receiver, IN_FLIGHT_ANSWER)
    log_path = world.tmp / "run.log"
    with running(config, log_path) as child:
        assert arrived.wait(60), log_path.read_text()
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=30)
        took = time.monotonic() - signalled
    out = log_path.read_text()
    assert code == 0, out
    assert took >= IN_FLIGHT_ANSWER - 0.2, "it did not wait for the batch in flight"
    assert took < 20, out
    assert "SIGTERM: stopping" in out
    first = webhook_ids(receiver)
    held = {a["id"] for a in json.loads(receiver.requests[0].body)}
    assert held <= set(first)
    written = {a["id"] for a in world.alerts()}
    assert held <= written, "the batch in flight was not written to the file"

    # The next run re-sends nothing committed: had the held batch not been committed, the
    # webhook would receive it a second time.
    receiver.policy = lambda request: Answer(200)
    run_once(config)
    both = webhook_ids(receiver)
    assert [i for i, n in both.items() if n > 1] == []
    assert set(both) == {a["id"] for a in world.alerts()}
    assert_exactly(world, world.expected())


def test_a_second_signal_exits_at_once_and_loses_nothing(world: World, receiver: Receiver) -> None:
    """A sink that hangs holds the drain; a second SIGINT exits at once (128 + 2) and the next run delivers everything: at least once at the webhook, exactly once in the file."""
    config = webhook_config(world, receiver)
    arrived = hold_first_batch(receiver, 60.0)
    log_path = world.tmp / "run.log"
    with running(config, log_path) as child:
        assert arrived.wait(60), log_path.read_text()
        child.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 10
        while b"SIGINT: stopping" not in log_path.read_bytes():
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert child.poll() is None, "the first signal must wait for the batch in flight"
        signalled = time.monotonic()
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=10)
        took = time.monotonic() - signalled
    out = log_path.read_text()
    assert code == 128 + signal.SIGINT, out
    assert took < 5, out
    assert "SIGINT again: exiting at once" in out
    receiver.policy = lambda request: Answer(200)
    run_once(config)
    assert_exactly(world, world.expected())
    assert set(webhook_ids(receiver)) == {a["id"] for a in world.alerts()}


class HangingSink:
    """A sink whose every delivery waits forever: a drain can only end by its timeout."""

    name = "hanging"
    format: Format = "native"

    def __init__(self) -> None:
        self.reached = asyncio.Event()

    async def start(self, position: str | None) -> str | None:
        return None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        self.reached.set()
        await asyncio.Event().wait()
        return None

    def committed(self, position: str | None) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_drain_that_outlasts_its_timeout_cancels_the_polls_and_exits_0(
    world: World,
) -> None:
    """A stop while a sink never answers: the polls are cancelled after the drain timeout, nothing is committed past the last acknowledged batch, and serve returns 0 (the stop was asked for); the next run delivers everything exactly once."""
    hanging = HangingSink()
    jsonl = JsonlSink(str(world.tmp / "out/alerts.jsonl"))
    runner = Runner(world.config(), sinks=[jsonl, hanging])
    runner.drain_timeout = 0.5
    await runner.start()
    stop = asyncio.Event()
    try:
        serving = asyncio.ensure_future(serve(runner, once=False, stop=stop))
        await asyncio.wait_for(hanging.reached.wait(), 30)
        began = asyncio.get_running_loop().time()
        runner.drain()
        stop.set()
        status = await asyncio.wait_for(serving, 10)
        took = asyncio.get_running_loop().time() - began
    finally:
        await runner.aclose()
    assert status == 0
    assert 0.4 <= took < 5
    assert (await _cursors(world)) == {}, "a batch no sink acknowledged moved a cursor"
    again = Runner(world.config())
    await again.start()
    try:
        results = await again.run_once()
    finally:
        await again.aclose()
    assert [r.error for r in results] == [None] * len(results)
    assert_exactly(world, world.expected())


async def test_run_once_drained_ends_each_poll_after_its_page(world: World) -> None:
    """`run --once` told to drain after its first pages ends every poll early without an error, its cursors short of the window's end; the next run completes the set exactly."""
    runner = Runner(world.config())
    await runner.start()
    try:
        runner.drain()
        results = await runner.run_once()
    finally:
        await runner.aclose()
    assert [r.error for r in results] == [None] * len(results)
    assert all(r.pages <= 1 for r in results if not r.category.is_feed), results
    assert 0 < len(world.alerts()) < len(world.expected())
    again = Runner(world.config())
    await again.start()
    try:
        await again.run_once()
    finally:
        await again.aclose()
    assert_exactly(world, world.expected())


async def _cursors(world: World) -> dict[str, Any]:
    with sqlite3.connect(world.tmp / "state/connector.db") as db:
        rows = db.execute("SELECT category, cursor FROM streams WHERE cursor IS NOT NULL")
        return dict(rows.fetchall())
