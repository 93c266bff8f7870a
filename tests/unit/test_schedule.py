"""The schedule of a run's polls (``runner._schedule``): spread start-up, intervals, backoff."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from mimecast_connector import Category
from mimecast_connector._categories import DEFAULT_CATEGORIES, LOG_CATEGORIES
from mimecast_connector._errors import AuthError, ConnectorError, UnavailableError
from mimecast_connector.config import Config, TenantConfig, load_config
from mimecast_connector.runner import Runner
from mimecast_connector.runner._alarm import Alarm
from mimecast_connector.runner._schedule import BACKOFF_MAX, GATHER, START_RATE, Schedule
from tests.properties.fake_api import FakeMimecast


def tenants(tmp_path: Path, count: int, interval: str = "60s") -> Config:
    lines = ['state = "state.db"', 'dead_letter = "dead.jsonl"']
    for n in range(count):
        lines += [
            "[[tenants]]",
            f'name = "t{n}"',
            'base_url = "https://api.example.test"',
            f'client_id = "c{n}"',
            f'client_secret = "s{n}-secret"',
            f'poll_interval = "{interval}"',
        ]
    lines += ["[[sinks]]", 'type = "jsonl"', 'path = "out.jsonl"']
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return load_config(path, {})


def streams(config: Config) -> list[tuple[TenantConfig, Category]]:
    return [(t, c) for t in config.tenants for c in t.categories]


def test_start_up_is_spread_at_most_start_rate_a_second_within_one_interval(
    tmp_path: Path,
) -> None:
    """12,000 streams (3,000 tenants of the four default categories) start over 60 s, never more than START_RATE in any second; one tenant's four streams do not all start at once."""
    per_tenant = len(DEFAULT_CATEGORIES)
    assert per_tenant == 4
    config = tenants(tmp_path, 12_000 // per_tenant)
    schedule = Schedule(streams(config), now=0.0, rng=random.Random(1))
    starts = [entry.at for entry in schedule.due(1e9)]
    assert len(starts) == 12_000
    assert min(starts) >= 0.0
    assert max(starts) <= 60.0
    per_second = Counter(int(at) for at in starts)
    assert max(per_second.values()) <= START_RATE + 1
    assert len(per_second) == 60, "the start is spread over the whole interval"

    small = Schedule(streams(tenants(tmp_path, 1)), now=0.0, rng=random.Random(1))
    assert small.wait(0.0) is not None
    assert len(small.due((per_tenant - 1) / START_RATE)) == per_tenant - 1
    assert len(small.due(per_tenant / START_RATE)) == 1


def test_due_takes_streams_off_until_done_puts_them_back(tmp_path: Path) -> None:
    """A due stream is not due again while its poll runs; done() schedules it one interval on."""
    schedule = Schedule(streams(tenants(tmp_path, 1)), now=0.0, rng=random.Random(2))
    taken = schedule.due(1.0)
    assert [entry.category for entry in taken] == list(DEFAULT_CATEGORIES)
    assert schedule.due(1e9) == []
    assert schedule.wait(5.0) is None, "nothing is scheduled while every stream is polled"
    assert schedule.done(taken[0], None, now=10.0) == 60.0
    assert schedule.wait(10.0) == 60.0
    assert schedule.due(69.9) == []
    assert schedule.due(70.0) == [taken[0]]


@pytest.mark.parametrize(
    ("error", "first"),
    [
        (UnavailableError("down", tenant="t", endpoint="/x"), 15.0),
        (AuthError("bad key", tenant="t", endpoint="/x"), 300.0),
    ],
)
def test_failures_back_off_exponentially_with_jitter_up_to_an_hour(
    tmp_path: Path, error: ConnectorError, first: float
) -> None:
    """The n-th failure in a row waits between half and all of base * 2^(n-1), capped at an hour and never below the interval; a success resets it."""
    schedule = Schedule(streams(tenants(tmp_path, 1, "30s")), now=0.0, rng=random.Random(3))
    entry = schedule.due(1.0)[0]
    for n in range(1, 12):
        wait = schedule.done(entry, error, now=0.0)
        ceiling = min(first * 2 ** (n - 1), BACKOFF_MAX)
        assert max(ceiling / 2, 30.0) <= wait <= max(ceiling, 30.0), (n, wait)
        assert schedule.due(1e9) == [entry]
    assert schedule.done(entry, None, now=0.0) == 30.0
    assert entry.failures == 0


def test_a_failing_stream_never_waits_less_than_its_interval(tmp_path: Path) -> None:
    """A stream polled every 2 minutes waits at least 60 s after a failure (the cap of that floor)."""
    config = tenants(tmp_path, 1, "120s")
    assert config.tenants[0].poll_interval == timedelta(minutes=2)
    schedule = Schedule(streams(config), now=0.0, rng=random.Random(4))
    entry = schedule.due(10.0)[0]
    error = UnavailableError("down", tenant="t", endpoint="/x")
    waits = []
    for _ in range(3):
        waits.append(schedule.done(entry, error, now=0.0))
        assert schedule.due(1e9) == [entry]
    assert min(waits) >= 60.0, waits
    assert waits[0] == 60.0, "the first 15 s backoff is raised to the 60 s floor"


async def test_run_forever_polls_every_stream_on_its_interval_with_a_spread_start(
    tmp_path: Path,
) -> None:
    """200 streams (50 tenants, four categories each) on a 1 s interval, for 2.6 s: every stream is polled 2 or 3 times, and the first polls are spread, not all at once."""
    api = FakeMimecast()
    times: list[float] = []

    def seen(number: int) -> None:
        times.append(time.monotonic())

    api.on_request = seen
    config = tenants(tmp_path, 50, "1s")
    runner = Runner(config, transport=lambda tenant: api.transport())
    await runner.start()
    stop = asyncio.Event()
    began = time.monotonic()
    asyncio.get_running_loop().call_later(2.6, stop.set)
    try:
        await asyncio.wait_for(runner.run_forever(stop), 20)
    finally:
        await runner.aclose()
    assert runner.died is None
    per_category = Counter(r.category for r in api.requests)
    for category in LOG_CATEGORIES:
        assert 2 * 50 <= per_category[category] <= 3 * 50, per_category
    count = 50 * len(DEFAULT_CATEGORIES)
    first = sorted(t - began for t in times)[:count]
    assert first[-1] - first[0] >= 0.5 * count / START_RATE, "the first polls came all at once"


async def test_tenants_of_one_api_user_share_one_rate_limiter(tmp_path: Path) -> None:
    """Mimecast counts quota per API user: two tenants with the same client_id share a limiter, a third with its own does not."""
    lines = ['state = "state.db"', 'dead_letter = "dead.jsonl"']
    for name, client in (("a", "shared-id"), ("b", "shared-id"), ("c", "own-id")):
        lines += [
            "[[tenants]]",
            f'name = "{name}"',
            'base_url = "https://api.example.test"',
            f'client_id = "{client}"',
            f'client_secret = "{name}-secret"',
        ]
    lines += ["[[sinks]]", 'type = "jsonl"', 'path = "out.jsonl"']
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    runner = Runner(load_config(path, {}), transport=lambda tenant: FakeMimecast().transport())
    await runner.start()
    try:
        clients = runner.clients
        assert clients["a"].limiter is clients["b"].limiter
        assert clients["c"].limiter is not clients["a"].limiter
    finally:
        await runner.aclose()


async def test_the_alarm_sleeps_until_its_time_or_until_rung_sooner() -> None:
    """``Alarm.sleep`` ends at its time; ``ring`` ends it at once; ``ring_by`` only when the
    moment given is before the sleep's end (a poll that ended with its stream due later wakes
    nothing); a ring while nobody sleeps is nothing (the loop looks at the schedule anyway)."""
    loop = asyncio.get_running_loop()
    alarm = Alarm(loop)
    alarm.ring()  # nobody sleeps: no effect on the next sleep
    start = loop.time()
    await alarm.sleep(start + 0.05)
    assert loop.time() - start >= 0.05
    assert alarm.at == float("inf")

    start = loop.time()
    sleeping = asyncio.ensure_future(alarm.sleep(start + 30))
    await asyncio.sleep(0)
    alarm.ring_by(start + 60)  # after the sleep's end: not woken
    await asyncio.sleep(0.02)
    assert not sleeping.done()
    alarm.ring_by(start + 10)  # before it: woken
    await asyncio.wait_for(sleeping, 1)
    assert loop.time() - start < 1

    sleeping = asyncio.ensure_future(alarm.sleep(None))  # until rung
    await asyncio.sleep(0.02)
    assert not sleeping.done()
    alarm.ring_by(1e12)
    await asyncio.wait_for(sleeping, 1)


def test_due_with_the_gather_window_takes_the_streams_due_soon_together(
    tmp_path: Path,
) -> None:
    """``due(now + GATHER)``, as the run asks: every stream due within ``GATHER`` of now
    starts with the first, none later than that; the next wake-up is the next stream's time."""
    config = tenants(tmp_path, 50)
    schedule = Schedule(streams(config), 0.0, random.Random(3))
    taken = schedule.due(0.2 + GATHER)
    assert taken
    assert all(entry.at <= 0.2 + GATHER for entry in taken)
    wait = schedule.wait(0.2)
    assert wait is not None
    assert wait > GATHER
