"""The checkpoint, window and dedup logic as a model, driven through the real Runner.

Hypothesis draws a scenario, a sequence of steps on one tenant's four streams (the three TTP
logs and the rejection log):

* ``arrive``: records become visible in the (in-memory) Mimecast API, each dated ``age``
  seconds before the current time, ``age`` up to ``lookback + 5 min``: some on time, some late,
  some too late; now and then an exact twin of an earlier record (byte-identical records are
  one record, one id, one alert: README "Identity");
* ``advance``: time passes on the injected clock;
* ``poll``: ``runner.run_once()``, also what a *retry* after a crash is;
* ``crash``: the run is interrupted, by the sink raising on its k-th delivery before writing,
  or after writing (the ack is lost), or by cancelling the run task at the k-th API request;
  then the Runner is closed and a new one built on the same state and output files.

At the end it polls until quiet and compares the jsonl output with the model.

The rule the model derives from the window semantics (runner module docstring, state store
docstring). Let ``C`` be a stream's cursor when a poll starts. Its window is
``[max(start, C - lookback), now]``, and ``C`` only grows: to the window's end when the window
has been read in full, and within a window only to the newest event time read while every
record came oldest first, on pages that climb (the rejection log cannot be asked for an order,
and the fake server pages it newest first). The fake server pages as asked or newest first
(drawn per scenario; a shuffling server, which small pages can hide, is tests/e2e/
test_hostile_order.py's). A record with event time ``e`` becomes visible at time ``a``; let ``C_a`` be the
cursor when the first poll after ``a`` starts. Then the record is delivered, exactly once, iff
it passes the safe filter and ``C_a`` is unset or ``e >= C_a - lookback``:

* if ``e >= C_a - lookback`` it lies in that poll's window; if the poll is interrupted before
  reaching it, the cursor moved only past records proven read (oldest first) or not at all, so
  it stays ``<= max(C_a, e)`` and the record stays inside every later window until delivered;
* if ``e < C_a - lookback`` no later window reaches back to it, since the cursor never shrinks.

``C_a`` depends on where earlier crashes cut a poll, so the model reads it from the state store
at each poll start, and checks it on its own against the spec: the cursor never exceeds the
clock, never moves back, and after a poll in which every stream succeeded it equals that
poll's window end. Every cursor is the end of a window that started before ``a`` or a record
time read by then, so ``C_a <= a``, hence the guarantee users read: a record that arrives no
later than ``lookback`` after its event time is always delivered (asserted separately).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector._errors import SinkUnavailableError
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.config import Config, load_config
from mimecast_connector.runner import Runner
from mimecast_connector.sinks import JsonlSink
from tests.fakes import FakeClock, sqlite
from tests.properties.fake_api import FakeMimecast, Order
from tests.unit.samples import ATTACHMENT_LINE, IMPERSONATION_LINE, REJECTION_LINE, URL_CLICK_LINE

LOOKBACK = 600  # seconds; the config says "10m"
T0 = 1_764_000_000  # FakeClock's default start, a whole second
START = T0 - 7200  # the tenant's start: before every record a scenario makes
TENANT = "acme"
PAGE_SIZE = 2  # small, so that windows span pages and crashes land between them
# At most this many byte-identical records (twins) per record, and one twinned record per
# second: enough to fill pages with copies (test_identical_records_filling_two_pages_do_not_
# stall_the_stream covers more) while keeping the scenarios varied.
MAX_COPIES = 2 * PAGE_SIZE - 1

CrashMode = Literal["sink_before_write", "sink_after_write", "cancel"]

# Verdicts drawn per category; the oracle below decides which are kept, independently. A
# rejection's verdict is its (description, info): texts the shipped phrases match (some with the
# drift of real data) and texts none matches.
VERDICTS: dict[Category, list[Any]] = {
    Category.ATTACHMENT: ["malicious", "safe", "clean", "SAFE", "timeout", "unsafe"],
    Category.IMPERSONATION: [True, False, True, False, True, True],
    Category.URL: ["malicious", "clean", "Clean", "timeout", "malicious", "unknown"],
    Category.REJECTION: [
        ("Invalid Recipient Address", "Invalid Recipient"),
        ("Greylisting", "Greylisting in action, please come back later"),
        ("Anti-Spoofing Lockout", "ANTI-SPOOFING POLICY \u2013 INBOUND NOT ALLOWED"),
        ("Message Size Limit", "Message exceeds the maximum size limit"),
        ("Virus Signature Detection", None),
        ("Connection Limit Exceeded", "IP Temporarily Blacklisted [0a1b2c3d.mimecast.example]"),
    ],
}
#: The phrases of data/rejection-texts.toml that the rejection verdicts above hold, copied by
#: hand, lower-case with hyphens (the texts are compared that way).
REJECTION_PHRASES = (
    "invalid recipient",
    "anti-spoofing policy - inbound not allowed",
    "virus signature detection",
    "ip temporarily blacklisted",
)
TIME_STYLES = ("+0000", "Z", "+00:00")


def kept(category: Category, record: dict[str, Any]) -> bool:
    """alert-rules.md section 2.2, written out independently of the code under test."""
    if category is Category.ATTACHMENT:
        return str(record["result"]).lower() not in ("safe", "clean")
    if category is Category.URL:
        return str(record["scanResult"]).lower() != "clean"
    if category is Category.REJECTION:  # a phrase in info or description; else dropped
        texts = (record.get("info") or "", record.get("description") or "")
        return any(
            phrase in text.lower().replace("\u2013", "-")
            for text in texts
            for phrase in REJECTION_PHRASES
        )
    return record["taggedMalicious"] is not False


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def event_time_text(epoch: int, style: str) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S") + style


def make_record(category: Category, serial: int, epoch: int, verdict: Any, style: str) -> bytes:
    """A real-looking record (the shapes of tests/unit/samples.py), unique by ``serial``."""
    when = event_time_text(epoch, style)
    if category is Category.ATTACHMENT:
        record = json.loads(ATTACHMENT_LINE)
        record.update(
            date=when,
            result=verdict,
            fileName=f"Remittance_{serial}.xlsm",
            messageId=f"<m{serial}.2210@mail.invoices-example.net>",
        )
    elif category is Category.IMPERSONATION:
        record = json.loads(IMPERSONATION_LINE)
        record.update(
            id=f"MTOKEN:eNqrSYNTHETIC{serial:06d}", eventTime=when, taggedMalicious=verdict
        )
    elif category is Category.URL:
        record = json.loads(URL_CLICK_LINE)
        record.update(
            date=when,
            scanResult=verdict,
            url=f"https://parcel-notify.example.net/track/{serial}",
            messageId=f"<{serial}@parcel-notify.example.net>",
        )
    else:
        description, info = verdict
        record = json.loads(REJECTION_LINE)
        record.update(id=f"eNpVT1tP{serial:08d}", created=when, description=description, info=info)
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


# --- the scenario --------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    category: Category
    age: int
    verdict: int
    style: str
    twin: bool  # an exact copy of an earlier record of the category (not impersonation)


@dataclass(frozen=True)
class Arrive:
    records: tuple[Arrival, ...]


@dataclass(frozen=True)
class Advance:
    seconds: int


@dataclass(frozen=True)
class Poll:
    pass


@dataclass(frozen=True)
class Crash:
    mode: CrashMode
    k: int


Step = Arrive | Advance | Poll | Crash

arrivals = st.builds(
    Arrival,
    category=st.sampled_from(list(LOG_CATEGORIES)),
    age=st.integers(0, LOOKBACK + 300),
    verdict=st.integers(0, 5),
    style=st.sampled_from(TIME_STYLES),
    twin=st.sampled_from([False, False, False, False, True]),
)
crashes = st.builds(
    Crash,
    st.sampled_from(["sink_before_write", "sink_after_write", "cancel"]),
    st.integers(1, 4),
)


@st.composite
def scenarios(draw: st.DrawFn) -> list[Step]:
    """Rounds of: some arrivals, some time, then a poll, a crash, or nothing; flattened."""
    out: list[Step] = []
    for _ in range(draw(st.integers(1, 8))):
        batch = draw(st.lists(arrivals, max_size=8))
        if batch:
            out.append(Arrive(tuple(batch)))
        seconds = draw(st.one_of(st.just(0), st.integers(1, 60), st.integers(1, 2 * LOOKBACK)))
        if seconds:
            out.append(Advance(seconds))
        action = draw(st.one_of(st.just(Poll()), crashes, st.none()))
        if action is not None:
            out.append(action)
    return out


@dataclass
class Made:
    """One record the scenario made visible, and what the model knows of it."""

    category: Category
    raw: bytes
    epoch: int
    arrived: int
    first_cursor: float | None = None
    polled: bool = False  # whether a poll has started since it arrived

    @property
    def value(self) -> Any:
        return json.loads(self.raw)


# --- the interruptible sink ---------------------------------------------------------------


class CrashingSink:
    """A jsonl sink that can fail its k-th delivery, before or after writing.

    Cancelling a delivery waits for the write in its worker thread to end first, so the
    interruption lands between whole writes (a partial write is the append file's own test).
    """

    def __init__(self, inner: JsonlSink) -> None:
        self.inner = inner
        self.calls = 0
        self.fail_on: int | None = None
        self.mode: CrashMode = "sink_before_write"

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def format(self) -> Format:
        return self.inner.format

    async def start(self, position: str | None) -> str | None:
        return await self.inner.start(position)

    def _failing(self) -> bool:
        if self.fail_on is not None and self.calls == self.fail_on:
            self.fail_on = None
            return True
        return False

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        self.calls += 1
        fail = self._failing()
        if fail and self.mode == "sink_before_write":
            raise SinkUnavailableError("injected failure before writing", sink=self.name)
        task = asyncio.ensure_future(self.inner.deliver(alerts))
        try:
            position = await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await task
            raise
        if fail:
            raise SinkUnavailableError("injected failure after writing", sink=self.name)
        return position

    def committed(self, position: str | None) -> None:
        self.inner.committed(position)

    async def aclose(self) -> None:
        await self.inner.aclose()


# --- the model run ---------------------------------------------------------------------------


@dataclass
class World:
    folder: Path
    config: Config
    clock: FakeClock = field(default_factory=lambda: FakeClock(start=float(T0)))
    api: FakeMimecast = field(default_factory=FakeMimecast)
    made: list[Made] = field(default_factory=list)
    last_cursor: dict[Category, float | None] = field(default_factory=dict)
    runner: Runner | None = None
    sink: CrashingSink | None = None

    @property
    def now(self) -> int:
        return int(self.clock.time())

    @property
    def output(self) -> Path:
        return self.folder / "out" / "alerts.jsonl"

    async def open(self) -> Runner:
        self.sink = CrashingSink(JsonlSink(str(self.output)))
        self.runner = Runner(
            self.config,
            clock=self.clock,
            sinks=[self.sink],
            transport=lambda tenant: self.api.transport(),
        )
        await self.runner.start()
        return self.runner

    async def restart(self) -> None:
        assert self.runner is not None
        await self.runner.aclose()
        await self.open()

    def before_poll(self) -> None:
        """Check each cursor against the spec, and give each new record its ``C_a``."""
        assert self.runner is not None
        for category in LOG_CATEGORIES:
            found = sqlite(self.runner).cursor(TENANT, category.value)
            cursor = found.timestamp() if found is not None else None
            previous = self.last_cursor.get(category)
            if cursor is not None:
                assert cursor <= self.now, (category, cursor, self.now)
                assert previous is None or cursor >= previous, (category, cursor, previous)
            else:
                assert previous is None, (category, "the cursor went away")
            self.last_cursor[category] = cursor
            for made in self.made:
                if made.category is category and not made.polled:
                    made.polled = True
                    made.first_cursor = cursor

    def after_clean_poll(self, started: int) -> None:
        """After a poll in which every stream succeeded, each cursor is its window's end: the
        clock when the poll started (the fake clock moves only when a rate limit waits)."""
        assert self.runner is not None
        for category in LOG_CATEGORIES:
            found = sqlite(self.runner).cursor(TENANT, category.value)
            assert found is not None, category
            assert started <= found.timestamp() <= self.now, (category, found, started)

    async def poll(self) -> bool:
        """One run; True if every stream succeeded."""
        assert self.runner is not None
        self.before_poll()
        started = self.now
        results = await self.runner.run_once()
        note(f"  poll at {self.now}: {[(r.category.value, r.alerts, r.error) for r in results]}")
        clean = all(r.error is None for r in results)
        if clean:
            self.after_clean_poll(started)
        return clean

    def arrive(self, arrivals: Sequence[Arrival]) -> None:
        for arrival in arrivals:
            twins = [m for m in self.made if m.category is arrival.category and self.twinable(m)]
            if arrival.twin and twins and arrival.category is not Category.IMPERSONATION:
                original = twins[arrival.age % len(twins)]
                raw, epoch = original.raw, original.epoch
            else:
                epoch = self.now - arrival.age
                verdict = VERDICTS[arrival.category][arrival.verdict]
                raw = make_record(arrival.category, len(self.made), epoch, verdict, arrival.style)
            self.api.add(arrival.category, raw, epoch)
            self.made.append(Made(arrival.category, raw, epoch, self.now))

    def twinable(self, made: Made) -> bool:
        """Whether one more copy of ``made`` keeps within the known pagination bug: fewer than
        ``MAX_COPIES`` copies, and no other record of its second has a twin (two twinned
        records X, Y in one second can page as (X, Y), (X', Y'))."""
        copies = Counter(m.raw for m in self.made if m.category is made.category)
        others = [
            raw
            for m in self.made
            if m.category is made.category and m.epoch == made.epoch and (raw := m.raw) != made.raw
        ]
        return copies[made.raw] < MAX_COPIES and all(copies[raw] == 1 for raw in others)

    async def crash(self, mode: CrashMode, k: int) -> None:
        assert self.runner is not None
        assert self.sink is not None
        self.before_poll()
        if mode == "cancel":
            gate = asyncio.Event()  # never set: the requests from the k-th on wait forever
            task = asyncio.ensure_future(self.runner.run_once())
            first = len(self.api.requests)

            def hook(number: int) -> Any:
                if number - first < k:
                    return None
                task.cancel()
                return gate.wait()

            self.api.on_request = hook
            with contextlib.suppress(asyncio.CancelledError):
                await task
            event(f"cancel landed: {task.cancelled()}")
            self.api.on_request = None
        else:
            self.sink.mode = mode
            self.sink.fail_on = self.sink.calls + k
            results = await self.runner.run_once()
            event(f"{mode} landed: {any(r.error is not None for r in results)}")
            self.sink.fail_on = None
        await self.restart()

    def alerts(self) -> list[dict[str, Any]]:
        if not self.output.exists():
            return []
        data = self.output.read_bytes()
        assert data == b"" or data.endswith(b"\n"), "the output ends in a partial line"
        return [json.loads(line) for line in data.split(b"\n") if line]


def write_config(folder: Path, page_size: int = PAGE_SIZE) -> Config:
    path = folder / "config.toml"
    start = datetime.fromtimestamp(START, UTC).isoformat()
    path.write_text(
        'state = "state/connector.db"\ndead_letter = "state/dead-letter.jsonl"\n'
        f'lookback = "{LOOKBACK // 60}m"\npage_size = {page_size}\n\n'
        f'[[tenants]]\nname = "{TENANT}"\nbase_url = "https://api.example.test"\n'
        f'client_id = "model-client"\nclient_secret = "model-secret"\nstart = "{start}"\n\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.jsonl"\n',
        "utf-8",
    )
    return load_config(path, {})


async def play(folder: Path, scenario: Sequence[Step], order: Order = "asked") -> None:
    world = World(folder, write_config(folder), api=FakeMimecast(order=order))
    await world.open()
    try:
        for step in scenario:
            note(f"t={world.now}: {step}")
            if isinstance(step, Arrive):
                world.arrive(step.records)
            elif isinstance(step, Advance):
                world.clock.advance(step.seconds)
            elif isinstance(step, Poll):
                await world.poll()
            else:
                await world.crash(step.mode, step.k)
        # Poll until quiet: a clean poll that delivers nothing new. Crashes are one-shot, so
        # the first poll is clean; the second proves that re-reading the window adds nothing.
        quiet = False
        for _ in range(3):
            assert world.runner is not None
            clean = await world.poll()
            if clean and await _quiet(world):
                quiet = True
                break
        assert quiet, "the runner never went quiet"
    finally:
        assert world.runner is not None
        await world.runner.aclose()

    alerts = world.alerts()
    ids = [a["id"] for a in alerts]
    assert len(ids) == len(set(ids)), "an alert id was delivered twice"
    expected = [
        m
        for m in world.made
        if kept(m.category, m.value)
        and (m.first_cursor is None or m.epoch >= m.first_cursor - LOOKBACK)
    ]
    got = Counter(canonical(a["raw"]) for a in alerts)
    # Byte-identical records are one record (one id): each distinct record once.
    want = Counter(set(canonical(m.value) for m in expected))
    note(f"missing: {want - got}")
    note(f"unexpected: {got - want}")
    assert got == want
    event(f"alerts delivered: {min(len(alerts) // 5 * 5, 20)}+")
    late = [m for m in world.made if kept(m.category, m.value) and m not in expected]
    event(f"kept records too late for their window: {min(len(late), 1)}+")
    event(f"twins delivered: {sum(n > 1 for n in got.values()) > 0}")
    for alert in alerts:
        assert alert["tenant"] == TENANT
    on_time = set(
        canonical(m.value)
        for m in world.made
        if kept(m.category, m.value) and m.arrived - m.epoch <= LOOKBACK
    )
    assert not on_time - set(got), "a record that arrived within the lookback was lost"
    dead = folder / "state" / "dead-letter.jsonl"
    assert not dead.exists() or dead.read_bytes() == b""


async def _quiet(world: World) -> bool:
    """One more poll delivers nothing and fails nowhere."""
    assert world.runner is not None
    world.before_poll()
    results = await world.runner.run_once()
    return all(r.error is None and r.alerts == 0 for r in results)


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios(), order=st.sampled_from(["asked", "newest"]))
def test_every_expected_alert_is_delivered_exactly_once(scenario: list[Step], order: Order) -> None:
    """Across arrivals, late records, polls and crashes, and whatever order the server pages in, the output is exactly the model's alerts, each id once."""
    event(f"server order: {order}")
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(play(Path(folder), scenario, order))


# --- a sink failure must not leave another sink's write running past the delivery lock -------


class ScriptedSink:
    """A sink wrapper whose n-th delivery first waits (at most 0.5 s) for ``wait_before[n]``,
    then raises if ``n`` is in ``failures``, else hands the batch to ``inner`` (or acknowledges
    it itself) and sets ``signal_after[n]``."""

    def __init__(
        self,
        name: str,
        inner: JsonlSink | None,
        *,
        wait_before: dict[int, asyncio.Event] | None = None,
        signal_after: dict[int, asyncio.Event] | None = None,
        failures: frozenset[int] = frozenset(),
    ) -> None:
        self._name = name
        self.inner = inner
        self.wait_before = wait_before or {}
        self.signal_after = signal_after or {}
        self.failures = failures
        self.calls = 0

    @property
    def name(self) -> str:
        return self.inner.name if self.inner is not None else self._name

    @property
    def format(self) -> Format:
        return "native"

    async def start(self, position: str | None) -> str | None:
        return await self.inner.start(position) if self.inner is not None else None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        self.calls += 1
        number = self.calls
        gate = self.wait_before.get(number)
        if gate is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), timeout=0.5)
        if number in self.failures:
            raise SinkUnavailableError("scripted failure", sink=self.name)
        position = await self.inner.deliver(alerts) if self.inner is not None else None
        done = self.signal_after.get(number)
        if done is not None:
            done.set()
        return position

    def committed(self, position: str | None) -> None:
        if self.inner is not None:
            self.inner.committed(position)

    async def aclose(self) -> None:
        if self.inner is not None:
            await self.inner.aclose()


async def test_a_failed_batch_leaves_no_write_running_into_the_next_batch(tmp_path: Path) -> None:
    """One sink failing fast while the jsonl sink is slow loses nothing and duplicates nothing."""
    config = write_config(tmp_path)
    clock = FakeClock(start=float(T0))
    api = FakeMimecast()
    made = {
        Category.ATTACHMENT: make_record(Category.ATTACHMENT, 1, T0 - 60, "malicious", "+0000"),
        Category.URL: make_record(Category.URL, 2, T0 - 60, "malicious", "+0000"),
    }
    for category, raw in made.items():
        api.add(category, raw, T0 - 60)
    # Batch 1 (whichever stream delivers first): the fast sink refuses it at once, while the
    # jsonl sink's write of it waits until batch 2 (the other stream) has been written. Batch 2
    # is committed once the fast sink acknowledges it, after the write of batch 1 ended. (With
    # every sink awaited before the lock is released, the waits simply time out.)
    batch_2_written, batch_1_written = asyncio.Event(), asyncio.Event()
    fast = ScriptedSink("fast", None, wait_before={2: batch_1_written}, failures=frozenset({1}))
    jsonl = ScriptedSink(
        "",
        JsonlSink(str(tmp_path / "out" / "alerts.jsonl")),
        wait_before={1: batch_2_written},
        signal_after={1: batch_1_written, 2: batch_2_written},
    )
    runner = Runner(
        config, clock=clock, sinks=[fast, jsonl], transport=lambda tenant: api.transport()
    )
    await runner.start()
    try:
        first = await runner.run_once()
        # The injected failure landed (on whichever group took batch 1: streams whose pages
        # shared that group fail with it).
        assert any(r.error is not None for r in first)
        await asyncio.sleep(0.6)  # let whatever is still running finish
        for _ in range(3):
            results = await runner.run_once()
            if all(r.error is None and r.alerts == 0 for r in results):
                break
    finally:
        await runner.aclose()
    lines = (tmp_path / "out" / "alerts.jsonl").read_bytes().split(b"\n")
    alerts = [json.loads(line) for line in lines if line]
    got = Counter(canonical(a["raw"]) for a in alerts)
    assert got == Counter(canonical(json.loads(raw)) for raw in made.values())


@pytest.mark.parametrize(("page_size", "copies"), [(1, 2), (2, 4)])
async def test_identical_records_filling_two_pages_do_not_stall_the_stream(
    tmp_path: Path, page_size: int, copies: int
) -> None:
    """Byte-identical records filling two pages are one alert, and the stream goes on (no stall)."""
    api = FakeMimecast()
    click = make_record(Category.URL, 1, T0 - 30, "malicious", "+0000")
    for _ in range(copies):
        api.add(Category.URL, click, T0 - 30)
    later = make_record(Category.URL, 2, T0 - 10, "malicious", "+0000")
    api.add(Category.URL, later, T0 - 10)
    runner = Runner(
        write_config(tmp_path, page_size),
        clock=FakeClock(start=float(T0)),
        transport=lambda tenant: api.transport(),
    )
    await runner.start()
    try:
        results = await runner.run_once()
    finally:
        await runner.aclose()
    assert [r.error for r in results] == [None] * len(LOG_CATEGORIES)
    lines = (tmp_path / "out" / "alerts.jsonl").read_bytes().split(b"\n")
    got = Counter(canonical(json.loads(line)["raw"]) for line in lines if line)
    assert got == Counter({canonical(json.loads(click)): 1, canonical(json.loads(later)): 1})
