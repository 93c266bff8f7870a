"""The delivery guarantees end to end, under the faults that test them.

The guarantees (``state/_store.py``, ``runner/_runner.py``): a stream's cursor is the end of the
last window read in full, or, within a window read oldest first, the newest event time of the
pages fully handled and acknowledged by every sink, so it never runs ahead of what was
delivered; every kept record becomes exactly one alert, whatever fails on the way, once
the fault is gone; late records within the lookback are still delivered, once; one process
writes a state file; a damaged state file is refused untouched; a tenant keeps its checkpoints
across an API version switch.

How the cursor is checked (``check_run``), after every run, for every stream, from the records
the simulator was given (never from the code under test):

* *no gap behind it*: the cursor is never later than the oldest expected alert that is not yet
  delivered (every sink acknowledged it). Pages are read oldest first and a page is committed
  only once handled, so every alert strictly older than the cursor must be out already. A
  cursor committed for a page that was not delivered (or set to the window's end after a
  failure) puts an undelivered alert behind it and fails here.
* *nothing invented*: the cursor is the event time of a record of that stream or the ``to`` of
  a window the simulator was asked for, never some other time.
* it never moves backwards, and no alert is in the output twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import cycle
from typing import Any, Literal

import httpx
import pytest
from click.testing import CliRunner

from mimecast_connector import (
    ApiFailure,
    AuthError,
    Category,
    ConnectorError,
    PaginationError,
    UnavailableError,
    UpstreamFormatError,
)
from mimecast_connector._cli import main
from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError, StateError
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.client import ClientOptions, RetryPolicy
from mimecast_connector.config import Config
from mimecast_connector.runner import Runner, StreamResult
from mimecast_connector.simulator import LoggedRequest, faults
from mimecast_connector.sinks import JsonlSink, Sink, WebhookSink
from mimecast_connector.state import StateStore
from tests.e2e.conftest import CATEGORIES, World, canonical, expected_kept, expected_type
from tests.e2e.receiver import Answer, Receiver, Request
from tests.fakes import sqlite, sqlite_path

TENANT = "acme"
PAGE_SIZE = 20  # small pages, so that a fault lands in the middle of a window
FAST = RetryPolicy(attempts=3, initial=0.01, maximum=0.05)
Cursors = dict[Category, datetime | None]
NEVER = datetime.min.replace(tzinfo=UTC)  # stands in for a missing cursor in comparisons


def options(read: float = 10.0) -> ClientOptions:
    return ClientOptions(page_size=PAGE_SIZE, timeout=httpx.Timeout(10.0, read=read), retry=FAST)


def event_time(category: Category, record: dict[str, Any]) -> datetime:
    """A record's event time, parsed here rather than by the code under test."""
    return datetime.strptime(record[category.time_field], "%Y-%m-%dT%H:%M:%S%z")


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass
class Ledger:
    """What must come out, per stream, from the records the simulator was given."""

    wanted: dict[Category, dict[str, datetime]]  # canonical record -> event time, kept ones
    times: dict[Category, set[datetime]]  # every record's event time

    @classmethod
    def of(cls, world: World) -> Ledger:
        wanted: dict[Category, dict[str, datetime]] = {c: {} for c in CATEGORIES}
        times: dict[Category, set[datetime]] = {c: set() for c in CATEGORIES}
        for category in CATEGORIES:
            for record in world.made[category]:
                times[category].add(event_time(category, record))
                if expected_kept(category, record):
                    wanted[category][canonical(record)] = event_time(category, record)
        return cls(wanted, times)

    def expected(self) -> set[str]:
        return {key for stream in self.wanted.values() for key in stream}


def cursors(runner: Runner) -> Cursors:
    return {c: sqlite(runner).cursor(TENANT, c.value) for c in CATEGORIES}


def delivered(world: World) -> Counter[str]:
    return Counter(canonical(a["raw"]) for a in world.alerts())


def window_ends(world: World, category: Category) -> set[datetime]:
    """The end (``to``; ``end`` for rejections) of every window of ``category`` the simulator
    was asked for."""
    return {
        datetime.strptime(r.json["data"][0][category.window_keys[1]], "%Y-%m-%dT%H:%M:%S%z")
        for r in world.sim.requests
        if r.category is category and r.json
    }


def check_run(
    runner: Runner, world: World, ledger: Ledger, before: Cursors, out: Counter[str]
) -> Cursors:
    """The cursor invariants of the module docstring, given what is out (``out``, acknowledged)."""
    now = cursors(runner)
    for category in CATEGORIES:
        cursor = now[category]
        if cursor is None:
            assert before[category] is None, f"{category}: the cursor was dropped"
            continue
        assert cursor in ledger.times[category] | window_ends(world, category), (
            f"{category}: cursor {cursor} is neither a record's time nor a window's end"
        )
        pending = [t for key, t in ledger.wanted[category].items() if key not in out]
        assert not pending or cursor <= min(pending), (
            f"{category}: cursor {cursor} is past an alert not delivered yet ({min(pending)})"
        )
        previous = before[category]
        assert previous is None or previous <= cursor, f"{category}: the cursor went back"
    return now


def no_duplicates(world: World, name: str = "out/alerts.jsonl") -> None:
    twice = [
        k for k, n in Counter(canonical(a["raw"]) for a in world.alerts(name)).items() if n > 1
    ]
    assert not twice, f"{len(twice)} alert(s) twice in {name}"


def assert_exactly(world: World, expected: dict[str, str]) -> None:
    """The native output is exactly ``expected`` (canonical record -> alert type), each once;
    the OCSF output, when there is one, has the same alerts."""
    alerts = world.alerts()
    got = Counter(canonical(a["raw"]) for a in alerts)
    missing = set(expected) - set(got)
    extra = set(got) - set(expected)
    twice = [k for k, n in got.items() if n > 1]
    assert (len(missing), len(extra), len(twice)) == (0, 0, 0), "missing, extra, twice"
    assert {canonical(a["raw"]): a["alertType"] for a in alerts} == expected
    assert len({a["id"] for a in alerts}) == len(alerts)
    if (world.tmp / "out/alerts.ocsf.jsonl").exists():
        ocsf = world.alerts("out/alerts.ocsf.jsonl")
        assert sorted(f["finding_info"]["uid"] for f in ocsf) == sorted(a["id"] for a in alerts)


async def run_ok(runner: Runner) -> list[StreamResult]:
    results = await runner.run_once()
    assert [r.error for r in results] == [None] * len(results)
    return results


@dataclass(frozen=True)
class Fault:
    """One row of the API fault matrix.

    ``skip`` URL requests pass untouched first (a ``Slow(0)`` rule ahead of the fault), so the
    fault lands mid-window, after some pages were delivered and committed. ``first`` is what the
    first run must show, so that a fault that never landed cannot pass unnoticed: ``fails``
    (a stream ends with an ``error`` of that type), ``early`` (no error, but the window was not
    read to its end) or ``absorbed`` (the client rode it out; ``trace`` answers prove it hit).
    """

    id: str
    fault: faults.Fault | None
    times: int
    first: Literal["fails", "early", "absorbed"]
    error: type[ConnectorError] | None = None
    category: Category | None = Category.URL
    skip: int = 3
    read: float = 10.0
    bucket: tuple[int, float] | None = None
    trace: tuple[int, int] | None = None  # (status, at least this many answers with it)
    marks: tuple[pytest.MarkDecorator, ...] = ()


FAULTS = [
    Fault("429-storm", faults.RateLimited(reset_ms=10), 25, "absorbed", trace=(429, 25)),
    Fault("429-token-bucket", None, 0, "absorbed", bucket=(3, 40.0)),
    Fault("503-burst", faults.HttpStatus(503), 8, "fails", UnavailableError),
    Fault("500-every-stream", faults.HttpStatus(500), 12, "fails", UnavailableError, None, 0),
    Fault("timeout", faults.Slow(1.0), 3, "fails", UnavailableError, read=0.3),
    Fault("token-expires-mid-paging", faults.ExpireToken(), 1, "absorbed", skip=1, trace=(401, 1)),
    Fault("token-expires-twice", faults.ExpireToken(), 2, "fails", AuthError, skip=1),
    Fault("fail-retryable", faults.FailResponse(retryable=True), 5, "fails", ApiFailure),
    Fault("fail-not-retryable", faults.FailResponse(), 2, "fails", ApiFailure),
    Fault("truncated-json", faults.Truncate(0.5), 2, "fails", UpstreamFormatError),
    Fault("not-json", faults.NotJson(), 2, "fails", UpstreamFormatError),
    Fault("empty-page-with-next", faults.EmptyPageWithNext(), 1, "absorbed"),
    Fault("repeated-next-token", faults.RepeatNextToken(), 1, "fails", PaginationError),
    # A token leading back to the first page re-serves its records: they carry the ids they
    # had, so the repeat is delivered nothing new and the window completes.
    Fault("repeated-next-token-first-page", faults.RepeatNextToken(), 1, "absorbed", skip=0),
    Fault("disconnect", faults.Disconnect(), 6, "fails", UnavailableError),
]


@pytest.mark.parametrize("case", [pytest.param(f, id=f.id, marks=f.marks) for f in FAULTS])
async def test_api_fault_loses_nothing_and_duplicates_nothing(world: World, case: Fault) -> None:
    """Under each API fault the cursor never passes an undelivered alert; the first run after the fault is cleared ends with every alert exactly once."""
    ledger = Ledger.of(world)
    sim = world.sim
    if case.bucket is not None:
        world.tenant.set_rate_limit(*case.bucket)
    if case.skip:
        sim.inject(faults.Slow(0.0), tenant=TENANT, category=case.category, times=case.skip)
    if case.fault is not None:
        sim.inject(case.fault, tenant=TENANT, category=case.category, times=case.times)
    runner = Runner(world.config(), client_options=options(case.read))
    await runner.start()
    history: list[tuple[list[StreamResult], bool]] = []
    served_first: list[LoggedRequest] = []
    try:
        before: Cursors = dict.fromkeys(Category)
        for number in range(1, 11):
            results = await runner.run_once()
            out = delivered(world)
            assert max(out.values(), default=1) == 1, f"run {number}: an alert went out twice"
            before = check_run(runner, world, ledger, before, out)
            complete = set(out) == ledger.expected()
            history.append((results, complete))
            if number == 1:
                served_first = [r for r in sim.requests if r.category is not None]
            if number == 2:
                sim.clear_faults()
            if number >= 3 and complete and all(r.error is None for r in results):
                break
    finally:
        await runner.aclose()

    first, complete_first = history[0]
    errors = [r.error for r in first if r.error is not None]
    if case.first == "fails":
        assert errors, "the fault did not make the first run fail"
        assert case.error is not None
        assert all(isinstance(e, case.error) for e in errors), errors
        assert not complete_first
    elif case.first == "early":
        assert not errors
        assert not complete_first, "the first run read its whole window despite the fault"
    else:
        assert not errors
    if case.trace is not None:
        status, at_least = case.trace
        assert sum(1 for r in sim.requests if r.status == status) >= at_least
    if case.bucket is not None:
        # The premise: the bucket was in force. It lets through at most `capacity` calls plus
        # `refill` a second, so the calls it allowed in the first run took at least this long.
        capacity, refill = case.bucket
        allowed = [r.time for r in served_first if r.status != 429]
        assert max(allowed) - min(allowed) >= (len(allowed) - capacity) / refill * 0.9
    assert len(history) == 3, "not recovered on the first run after the fault was cleared"
    assert runner.halted is None
    assert_exactly(world, world.expected())
    # The last window of every stream was read in full: its cursor is that window's end.
    assert before == {c: max(window_ends(world, c)) for c in CATEGORIES}, "the cursor stopped short"


# --- late records ------------------------------------------------------------------------------


def redated(
    category: Category, template: dict[str, Any], when: datetime, tag: str
) -> dict[str, Any]:
    """A copy of ``template`` dated ``when``, made distinct from every other record by ``tag``."""
    record = dict(template)
    record[category.time_field] = stamp(when)
    if category is not Category.REJECTION:  # (a rejection has no message id: refused before DATA)
        record["messageId"] = f"<{tag}-{category.value}@mail.example.net>"
    if category in (Category.IMPERSONATION, Category.REJECTION):
        record["id"] = f"{tag}-{category.value}"
    return record


async def test_late_records_within_the_lookback_are_delivered_once_and_older_ones_not(
    world: World,
) -> None:
    """Records published at most the lookback after their event time are delivered exactly once; one dated a second before the next window can reach is (documented) not."""
    runner = Runner(world.config(), client_options=options())
    await runner.start()
    inside: dict[Category, list[dict[str, Any]]] = {}
    outside: dict[Category, dict[str, Any]] = {}
    try:
        await run_ok(runner)
        lookback = runner.config.lookback
        assert lookback == timedelta(minutes=30)
        second = timedelta(seconds=1)
        for category in CATEGORIES:
            cursor = await runner.store.cursor(TENANT, category.value)
            assert cursor is not None
            template = next(r for r in world.made[category] if expected_kept(category, r))
            # They show up during the next poll, at about `now`: each is at most the lookback
            # late (10 s to spare for the poll's own time), which README "late records" covers.
            now = datetime.now(UTC).replace(microsecond=0)
            assert now >= cursor
            moments = [now - lookback + 10 * second, now - lookback / 2, now - second, now]
            inside[category] = [
                redated(category, template, m, f"late-{n}") for n, m in enumerate(moments)
            ]
            outside[category] = redated(category, template, cursor - lookback - second, "too-late")
            world.tenant.add_late(
                category, [*inside[category], outside[category]], after_requests=1
            )
        # The invariant holds for the records published on time; the late ones are, by
        # definition, behind a cursor that was right when it moved, and are checked below.
        ledger = Ledger.of(world)
        before = cursors(runner)
        for _ in range(2):
            await run_ok(runner)
            out = delivered(world)
            assert max(out.values()) == 1
            before = check_run(runner, world, ledger, before, out)
    finally:
        await runner.aclose()

    expected = world.expected()
    for category, records in inside.items():
        expected.update({canonical(r): expected_type(category, r) for r in records})
    assert_exactly(world, expected)
    for category, record in outside.items():
        # It is there to be read (the premise), and the window did not reach back to it.
        assert canonical(record) in {canonical(r) for r in world.tenant.records(category)}
        assert canonical(record) not in delivered(world)


# --- sink faults -------------------------------------------------------------------------------

SINK_RETRY = RetryPolicy(attempts=3, deadline=0.5, initial=0.01, maximum=0.05, floor=0.01)
SINK_READ = 0.25  # seconds; the "slow" receiver answers later than this


def with_webhook(world: World, url: str) -> list[Sink]:
    """A jsonl sink and a native webhook with short, bounded retries (a test-speed policy)."""
    return [
        JsonlSink(str(world.tmp / "out/alerts.jsonl")),
        WebhookSink(url, retry=SINK_RETRY, timeout=httpx.Timeout(5.0, read=SINK_READ)),
    ]


def add_fresh_alerts(world: World, held: Cursors, count: int = 10) -> None:
    """New records of every category, all of them alerts, dated a second after every checkpoint
    in ``held`` (waiting until the clock is past that second, so the next window reaches them):
    the first page that reaches them has an alert to deliver, so no cursor can pass them
    without a sink's acknowledgement."""
    moment = max(c for c in held.values() if c is not None) + timedelta(seconds=1)
    while datetime.now(UTC) < moment + timedelta(seconds=1):
        time.sleep(0.05)
    for category in CATEGORIES:
        kept = [r for r in world.made[category] if expected_kept(category, r)]
        fresh = [redated(category, kept[n], moment, f"fresh-{n}") for n in range(count)]
        world.tenant.add_records(category, fresh)
        world.made[category].extend(fresh)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    server.start()
    yield server
    server.stop()


@dataclass(frozen=True)
class SinkFault:
    """A way the webhook's receiver misbehaves, and the error each stream must end with
    (None: the sink's own retries win, and the runs succeed)."""

    id: str
    policy: Callable[[], Callable[[Request], Answer] | None]
    error: type[ConnectorError] | None = SinkUnavailableError
    per_batch: int = 3  # receiver requests a refused batch may cost at most


def flapping() -> Callable[[Request], Answer]:
    answers = cycle([Answer(500), Answer(200)])
    return lambda request: next(answers)


SINK_FAULTS = [
    SinkFault("down", lambda: None),  # the receiver is stopped (connection refused), then
    # a new one comes back on the same port
    SinkFault("slow", lambda: lambda request: Answer(200, delay=1.0)),
    SinkFault("500s", lambda: lambda request: Answer(500)),
    SinkFault(
        "429-retry-after",
        lambda: lambda request: Answer(429, headers={"Retry-After": "1"}),
        per_batch=1,  # a 1 s Retry-After outlasts the 0.5 s deadline: no hammering
    ),
    SinkFault("flapping", flapping, error=None),
]


@pytest.mark.parametrize("case", SINK_FAULTS, ids=lambda c: c.id)
async def test_webhook_fault_holds_the_checkpoint_until_the_receiver_acknowledges(
    world: World, case: SinkFault
) -> None:
    """While the webhook refuses, no cursor moves past an unacknowledged alert and the jsonl sink has no duplicate; once it answers 200, one run delivers everything."""
    first = Receiver()
    first.start()
    port = first.port
    url = first.url()
    receivers = [first]
    runner = Runner(world.config(), sinks=with_webhook(world, url), client_options=options())
    await runner.start()
    try:
        await run_ok(runner)
        held = cursors(runner)
        add_fresh_alerts(world, held)
        ledger = Ledger.of(world)
        policy = case.policy()
        if case.id == "down":
            first.stop()
        first.policy = policy
        answered_before = len(first.answered)
        before = held
        for _ in range(2):
            sent = len(first.requests)
            results = await runner.run_once()
            acked = Counter(canonical(a["raw"]) for a in first.acknowledged())
            before = check_run(runner, world, ledger, before, acked)
            no_duplicates(world)
            if case.error is None:
                continue
            if case.id != "down":
                assert len(first.requests) > sent, "the receiver was never asked"
            assert [type(r.error) for r in results] == [case.error] * len(CATEGORIES)
            assert before == held, "a cursor moved while the webhook refused"
            assert len(first.requests) - sent <= len(CATEGORIES) * case.per_batch
        if case.id == "down":
            receivers.append(Receiver(port))
            receivers[-1].start()
        if case.id == "flapping":
            # The premise: the receiver flapped, 500 and 200 in turn (whichever batch, of the
            # streams' concurrent ones, each answer went to).
            statuses = Counter(a.status for _, a in first.answered[answered_before:])
            # (The streams' pages may all share one group, so one batch: one 500, then a 200.)
            assert set(statuses) == {500, 200}
            assert abs(statuses[500] - statuses[200]) <= 1
        first.policy = None
        await run_ok(runner)
        final = cursors(runner)
    finally:
        await runner.aclose()
        for server in receivers:
            server.stop()

    assert_exactly(world, world.expected())
    raws = {canonical(a["raw"]) for r in receivers for a in r.acknowledged()}
    assert set(world.expected()) <= raws
    ids = {a["id"] for r in receivers for a in r.acknowledged()}
    assert {a["id"] for a in world.alerts()} <= ids
    # The last window of every stream was read in full: its cursor is that window's end.
    assert final == {c: max(window_ends(world, c)) for c in CATEGORIES}
    assert all((final[c] or NEVER) >= max(ledger.times[c]) for c in CATEGORIES)


async def test_webhook_400_halts_the_run_without_retrying_and_a_restart_resumes(
    world: World, receiver: Receiver
) -> None:
    """A 400 halts the run: every failure reported, `halted` set, no cursor moved, one request per batch, forever mode stops by itself; after the fix a restart delivers everything."""
    config = world.config()
    runner = Runner(config, sinks=with_webhook(world, receiver.url()), client_options=options())
    await runner.start()
    try:
        await run_ok(runner)
        held = cursors(runner)
        add_fresh_alerts(world, held)
        receiver.policy = lambda request: Answer(400)
        sent = len(receiver.requests)
        results = await runner.run_once()
        assert [type(r.error) for r in results] == [SinkRejectedError] * len(CATEGORIES)
        assert "HTTP 400" in str(results[0].error)
        assert isinstance(runner.halted, SinkRejectedError)
        assert cursors(runner) == held
        # One request per batch (the streams' pages may share a group's batch), none retried:
        # every alert refused was sent once.
        refused = receiver.requests[sent:]
        assert 1 <= len(refused) <= len(CATEGORIES)
        ids = [a["id"] for r in refused for a in json.loads(r.body)]
        assert ids
        assert len(ids) == len(set(ids))
        no_duplicates(world)
    finally:
        await runner.aclose()

    forever = Runner(config, sinks=with_webhook(world, receiver.url()), client_options=options())
    await forever.start()
    try:
        sent = len(receiver.requests)
        await asyncio.wait_for(forever.run_forever(asyncio.Event()), timeout=20)
        assert forever.halted is not None
        assert cursors(forever) == held
        assert len(receiver.requests) - sent <= 3
    finally:
        await forever.aclose()

    receiver.policy = None
    fixed = Runner(config, sinks=with_webhook(world, receiver.url()), client_options=options())
    await fixed.start()
    try:
        await run_ok(fixed)
    finally:
        await fixed.aclose()
    assert_exactly(world, world.expected())
    assert {a["id"] for a in world.alerts()} <= {a["id"] for a in receiver.acknowledged()}


class StallsOnce:
    """A sink that stalls ``delay`` seconds before its first write (a disk that hangs once),
    and counts how many of its deliveries were ever in flight at the same time."""

    def __init__(self, inner: JsonlSink, delay: float) -> None:
        self.inner = inner
        self.name = inner.name
        self.format: Format = inner.format
        self.delay = delay
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def start(self, position: str | None) -> str | None:
        return await self.inner.start(position)

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.calls == 1:
                await asyncio.sleep(self.delay)
            return await self.inner.deliver(alerts)
        finally:
            self.in_flight -= 1

    def committed(self, position: str | None) -> None:
        self.inner.committed(position)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_a_refused_batch_leaves_no_write_running_outside_the_delivery_lock(
    world: World, receiver: Receiver
) -> None:
    """When the webhook refuses a batch while the jsonl write of it is still under way, the next batch waits for that write: one batch in flight per sink, and the file ends exactly right."""
    jsonl = StallsOnce(JsonlSink(str(world.tmp / "out/alerts.jsonl")), delay=0.5)
    once = RetryPolicy(attempts=1, deadline=5.0, initial=0.01, maximum=0.05)
    webhook = WebhookSink(receiver.url(), retry=once, timeout=httpx.Timeout(5.0))
    # The first batch is refused at once; the next one is acknowledged after the stalled write.
    receiver.script(Answer(500), Answer(200, delay=1.2))
    runner = Runner(world.config(), sinks=[jsonl, webhook], client_options=options())
    await runner.start()
    try:
        first = await runner.run_once()
        # The refused batch failed its streams (one group may hold pages of several streams).
        assert any(r.error is not None for r in first)
        await asyncio.sleep(0.6)  # let a write left behind finish, wherever it is
        await run_ok(runner)
    finally:
        await runner.aclose()
    assert jsonl.most_in_flight == 1
    assert_exactly(world, world.expected())


# --- one writer --------------------------------------------------------------------------------


async def test_a_second_writer_is_refused_naming_the_holder_until_it_closes(world: World) -> None:
    """While one Runner holds the state file, another Runner or writer StateStore gets StateError naming its pid; after it closes, a new one starts."""
    config = world.config()
    holder = Runner(config)
    await holder.start()
    try:
        for _ in range(2):  # a refused attempt must not weaken the holder's lock
            second = Runner(config)
            with pytest.raises(StateError, match=rf"in use by process {os.getpid()} on "):
                await second.start()
            await second.aclose()
            with pytest.raises(StateError, match=rf"process {os.getpid()} on "):
                StateStore(sqlite_path(config), writer=True)
        StateStore(sqlite_path(config)).close()  # readers (``status``) need no lock
    finally:
        await holder.aclose()
    after = Runner(config)
    await after.start()
    await after.aclose()


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_run_once_exits_2_naming_the_running_connector(world: World) -> None:
    """`run --once` beside a running `run` exits 2 naming that process's pid; once it is stopped, `run --once` works."""
    config = world.write_config()
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
            code, out = cli("run", "--config", str(config), "--once")
            assert code == 2, out
            assert f"process {child.pid} on " in out
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    code, out = cli("run", "--config", str(config), "--once")
    assert code == 0, out
    assert_exactly(world, world.expected())


# --- broken state ------------------------------------------------------------------------------


def truncated(good: bytes) -> bytes:
    return good[: len(good) // 2]


def garbage_in_the_middle(good: bytes) -> bytes:
    page = 4096
    middle = len(good) // 2 // page * page
    return good[:middle] + b"GARBAGE!" * (2 * page // 8) + good[middle + 2 * page :]


@pytest.mark.parametrize("damage", [truncated, garbage_in_the_middle])
def test_a_damaged_state_file_is_refused_with_advice_and_left_untouched(
    world: World, damage: Callable[[bytes], bytes]
) -> None:
    """`run --once` on a truncated or garbled state database exits 2 saying how to recover, and the file keeps every byte."""
    config = world.write_config()
    code, out = cli("run", "--config", str(config), "--once")
    assert code == 0, out
    state = world.tmp / "state/connector.db"
    with sqlite3.connect(state) as db:  # no free pages: the garbage lands on pages in use
        db.execute("VACUUM")
        assert db.execute("PRAGMA freelist_count").fetchone() == (0,)
    db.close()
    good = state.read_bytes()
    assert len(good) >= 8 * 4096
    broken = damage(good)
    state.write_bytes(broken)
    code, out = cli("run", "--config", str(config), "--once")
    assert code == 2, out
    assert "damaged" in out
    assert "To recover" in out
    assert "restore it from a backup" in out
    assert state.read_bytes() == broken


# --- API version switch -----------------------------------------------------------------------


async def test_switching_a_tenant_from_api_1_to_2_continues_its_checkpoints(world: World) -> None:
    """The same tenant moved from API 1.0 to 2.0 resumes at its cursor minus the lookback: no alert twice, none missing."""

    async def run(config: Config) -> Cursors:
        runner = Runner(config, client_options=options())
        await runner.start()
        try:
            await run_ok(runner)
            return cursors(runner)
        finally:
            await runner.aclose()

    first = await run(world.config("1.0"))
    assert all(r.headers.get("authorization", "").startswith("MC ") for r in world.sim.requests)
    add_fresh_alerts(world, first)
    ledger = Ledger.of(world)
    world.sim.clear_requests()
    second = await run(world.config("2.0"))

    logs = [r for r in world.sim.requests if r.category is not None]
    assert logs
    assert all(r.headers["authorization"].startswith("Bearer ") for r in logs)
    for category in CATEGORIES:
        cursor = first[category]
        assert cursor is not None
        opening = next(
            r
            for r in logs
            if r.category is category and "pageToken" not in r.json["meta"]["pagination"]
        )
        first_key, last_key = category.window_keys
        assert opening.json["data"][0][first_key] == stamp(cursor - timedelta(minutes=30))
        # The second window was read in full: the cursor is its end.
        reached = second[category]
        assert reached is not None
        assert stamp(reached) == opening.json["data"][0][last_key]
        assert reached >= max(ledger.times[category]) > cursor
    assert_exactly(world, world.expected())
