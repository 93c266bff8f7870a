"""Group commit: pages of many streams delivered and committed together, in order.

Every page a poll reads is handed to the one :class:`Committer` of the run, which takes what is
queued (at most ``MAX_GROUP`` pages) as one *group* and, for the whole group:

1. drops what the state store (or an earlier page of the group) says was handled before;
2. hands the group's new alerts to every sink in one batch (one write and fsync a file sink),
   and its new dead letters to the dead-letter file;
3. commits every page of the group in one state transaction (one fsync): handled ids,
   counters, sinks' positions and each stream's cursor (or its marker, a stream that has no
   time cursor); then tells the sinks their position is safe, and each page's poll that its
   page is in.

The checkpoint means what it meant page by page: a stream's cursor moves only in the
transaction that records its page as delivered by every sink. What changes is how many pages one
fsync covers: while one group is written, the next one gathers, so a busy run commits fewer,
larger groups, and a quiet one commits each page at once.

Order and failure, per *lane* (one poll of one stream): a lane's pages commit in the order they
were submitted, each in its own group or a later one than the page before it. When a group
fails (a sink refused or is down, the store cannot commit), every page in it fails, and so does
every later page of the same lanes: no page commits after one of its stream's earlier pages did
not, so no cursor can pass an undelivered alert. The lane's poll sees the error, and the stream
retries on its next poll from its last committed page.

For the dashboard, each page's delivered alerts are counted (:func:`tally`: by hour of their
event time, alertType and technique, and by sender and recipient) and the counts go into the
same transaction (``Commit.tallies``): one pass of dictionary counting per page.

Metrics (``observe.Metrics``): each sink's batches are timed and counted around its
``deliver``, each group's state commit is timed, and each page committed adds its counters and
cursor, all per batch or page, never per record.

Memory is bounded: at most ``MAX_PAGES_HELD`` pages are read and not yet committed in the whole
run (a poll takes a permit from ``held`` before it asks for a page), the queue holds at most
``MAX_QUEUED_RECORDS`` records (a page bigger than that is admitted alone), and a poll keeps at
most ``PAGES_IN_FLIGHT`` of its pages uncommitted. A poll past any of these waits: back-pressure
on the polls, nothing dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import operator
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

import structlog

from mimecast_connector._errors import InternalError, LeaseLostError, SinkRejectedError
from mimecast_connector._health import StreamHealth
from mimecast_connector.alerts import Alert
from mimecast_connector.observe import Metrics, SinkWatch, sink_label
from mimecast_connector.runner._chain import Handled, count, select_fresh
from mimecast_connector.sinks import AppendFile, Sink
from mimecast_connector.state import PARTY_CHARS, Commit, Store, Tallies

_log = structlog.get_logger("mimecast_connector.runner")

#: Pages committed in one group at most.
MAX_GROUP = 64
#: Records queued for commit at most, all streams together.
MAX_QUEUED_RECORDS = 20_000
#: Pages one poll may have read and not yet seen committed.
PAGES_IN_FLIGHT = 20
#: Pages read and not yet committed, all streams together (see ``held``).
MAX_PAGES_HELD = 256
#: Seconds from the end of one group's commit to the start of the next, at least, while pages
#: keep coming: polls spread over the interval end a few milliseconds apart, and each would
#: otherwise be a group of its own, with its own fsyncs (a sink file's and the state's). A page
#: after a quiet spell is committed at once; under load a group waits at most this long for
#: company, so alerts are delayed by at most this much and fsyncs are at most 1 / this a second.
MIN_COMMIT_GAP = 0.05
#: The same for a group whose pages carry no records (polls that found nothing new: a cursor,
#: a success and a health each), when the run polls on a schedule (``quiet_gap``): a group is
#: one transaction and one fsync, ~0.1 ms of CPU whatever its size, so 1,000 quiet polls a
#: minute in groups of three spent a seventh of their CPU there. Nothing waits on such a group
#: but its polls' ends (their streams are next due a poll interval later); a page with records
#: arriving meanwhile waits with it, at most this long.
QUIET_COMMIT_GAP = 0.25


@dataclass(eq=False, slots=True)
class Lane:
    """One poll of one stream, as the committer sees it. ``failed`` poisons the pages after."""

    tenant: str
    category: str
    failed: BaseException | None = None
    #: A fleet poll's lease (``PostgresStore.take_lease``); None in a single process.
    lease: int | None = None
    #: A live poll's window start, committed with its pages (``Commit.began``).
    began: datetime | None = None

    @property
    def label(self) -> str:
        """The category as metrics name it: a backfill's (``url@backfill:<range>``) without
        its range, so that each backfill adds no series of its own."""
        return self.category.partition(":")[0]

    @property
    def plain(self) -> str:
        """The category itself, a backfill's (``url@backfill:<range>``) too: ``url``."""
        return self.category.partition("@")[0]


@dataclass(eq=False, slots=True)
class _Page:
    lane: Lane
    handled: Handled
    cursor: datetime | None
    horizon: float
    prune_before: datetime | None
    success_at: float | None
    done: asyncio.Future[dict[str, int]] = field(repr=False)
    marker: str | None = None
    health: StreamHealth | None = None

    @property
    def size(self) -> int:
        return len(self.handled.ids)


class Committer:
    """The run's one writer of sinks and state, fed by every poll."""

    def __init__(
        self,
        store: Store,
        sinks: Sequence[Sink],
        dead: AppendFile | None,
        *,
        max_pages_held: int = MAX_PAGES_HELD,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._sinks = list(sinks)
        self._dead = dead
        self.metrics = metrics or Metrics()
        self._watches = [
            self.metrics.sink(sink_label(index, sink.name)) for index, sink in enumerate(sinks)
        ]
        self._queue: deque[_Page] = deque()
        self._current: list[_Page] = []
        self._queued_records = 0
        self._work = asyncio.Event()
        self._room = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        #: A poll takes one before it asks for a page, and the page's commit (or failure)
        #: gives it back: the bound on pages held in memory, however many streams poll.
        self.held = asyncio.Semaphore(max_pages_held)
        self.groups = 0  # groups committed, for tests and benchmarks
        #: How long a group of pages without records waits for company (``QUIET_COMMIT_GAP``
        #: while ``Runner.run_forever`` runs; a one-shot run ends on such a page: not there).
        self.quiet_gap = MIN_COMMIT_GAP
        #: Called if the loop ever ends on its own (a bug), with the error it ended with.
        self.on_death: Callable[[InternalError], None] | None = None
        self._broken: InternalError | None = None
        self._waking: asyncio.Future[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="committer")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The loop ended without ``aclose``: a bug. Fail everything waiting on it (no poll may
        hang on a future nobody will resolve) and say so through ``on_death``."""
        if self._closing:
            return
        cause = task.exception() if not task.cancelled() else None
        self._broken = InternalError(cause or RuntimeError("the committer stopped"))
        self._fail_waiting(self._broken)
        self._waking = asyncio.ensure_future(self._wake_submitters())
        if self.on_death is not None:
            self.on_death(self._broken)

    async def _wake_submitters(self) -> None:
        async with self._room:
            self._room.notify_all()

    def _fail_waiting(self, error: BaseException) -> None:
        for page in [*self._current, *self._queue]:
            if not page.done.done():
                page.done.set_exception(error)
                page.done.exception()  # retrieved: nobody may be waiting any more
        self._queue.clear()
        self._current = []

    async def aclose(self) -> None:
        """Stop (the group being written is abandoned like a crash would: nothing of it was
        committed, and each file sink cuts it off on its next start)."""
        self._closing = True
        if self._task is not None:
            if not self._task.done():  # one that died was reported by ``_ended`` already
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        self._fail_waiting(
            InternalError(RuntimeError("the run stopped before this page was committed"))
        )

    async def submit(
        self,
        lane: Lane,
        handled: Handled,
        *,
        cursor: datetime | None,
        horizon: float,
        prune_before: datetime | None,
        success_at: float | None = None,
        marker: str | None = None,
        health: StreamHealth | None = None,
    ) -> asyncio.Future[dict[str, int]]:
        """Queue one page of ``lane`` (waiting for room first); the future gives its counts
        once committed, or the error that kept it out. ``marker`` is the stream's position
        once this page is in (``Commit.marker``; None: unchanged), committed with the page;
        ``health`` the stream's health once it is in (``Commit.health``; None: unchanged)."""
        if self._task is None or self._task.done():
            raise self._broken or InternalError(RuntimeError("the committer is not running"))
        size = len(handled.ids)
        async with self._room:
            await self._room.wait_for(
                lambda: (
                    self._broken is not None
                    or not self._queue
                    or self._queued_records + size <= MAX_QUEUED_RECORDS
                )
            )
        if self._broken is not None:
            raise self._broken
        done: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        self._queue.append(
            _Page(lane, handled, cursor, horizon, prune_before, success_at, done, marker, health)
        )
        self._queued_records += size
        self._work.set()
        return done

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = -math.inf
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                gap = MIN_COMMIT_GAP if self._queued_records else self.quiet_gap
                wait = last + gap - loop.time()
                if wait > 0 and len(self._queue) < MAX_GROUP:
                    await asyncio.sleep(wait)
                group = [self._queue.popleft() for _ in range(min(MAX_GROUP, len(self._queue)))]
                self._current = group  # failed by aclose() if it stops the loop mid-group
                self._queued_records -= sum(page.size for page in group)
                async with self._room:
                    self._room.notify_all()
                await self._commit(group)
                self._current = []
                last = loop.time()

    async def _commit(self, group: list[_Page]) -> None:
        live = []
        for page in group:
            if page.done.cancelled():
                # Its poll was cancelled (the run is stopping): it and the lane's later pages
                # are left out, like pages never read.
                page.lane.failed = page.lane.failed or InternalError(
                    RuntimeError("the poll was cancelled before this page was committed")
                )
            elif page.lane.failed is not None:
                page.done.set_exception(page.lane.failed)
            else:
                live.append(page)
        if not live:
            return
        try:
            live = await self._drop_stale(live)
            results = await self._write(live) if live else []
        except Exception as exc:
            for page in live:
                page.lane.failed = exc
                if not page.done.done():
                    page.done.set_exception(exc)
            return
        self.groups += 1
        for page, counts in zip(live, results, strict=True):
            if not page.done.done():  # a poll cancelled meanwhile no longer waits for it
                page.done.set_result(counts)

    async def _drop_stale(self, group: list[_Page]) -> list[_Page]:
        """A fleet's pages whose poll lost its lease (taken over meanwhile) fail, before any
        of their alerts is delivered; the rest go on. (The commit checks the leases again, in
        its transaction, for a takeover between this look and it.)"""
        leases = {
            (page.lane.tenant, page.lane.category): page.lane.lease
            for page in group
            if page.lane.lease is not None
        }
        if not leases:
            return group
        stale = await self._store.stale(leases)
        if not stale:
            return group
        kept = []
        for page in group:
            key = (page.lane.tenant, page.lane.category)
            if key in stale:
                page.lane.failed = page.lane.failed or LeaseLostError(*key)
                page.done.set_exception(page.lane.failed)
            else:
                kept.append(page)
        return kept

    async def _write(self, group: list[_Page]) -> list[dict[str, int]]:
        store = self._store
        seen: dict[tuple[str, str], set[str]] = {}
        fresh_pages: list[Handled] = []
        for page in group:
            key = (page.lane.tenant, page.lane.category)
            records, dead = _split(page.handled)
            earlier = seen.setdefault(key, set())
            known = await store.already_delivered(key[0], key[1], records, dead)
            if earlier:  # ids of this group's earlier pages of the stream
                known.update(i for i, _ in page.handled.ids if i in earlier)
            fresh = select_fresh(page.handled, known, page.horizon)
            earlier.update(i for i, _ in fresh.ids)
            fresh_pages.append(fresh)
        alerts = [alert for fresh in fresh_pages for alert in fresh.alerts]
        # Dead letters: to the dead-letter file, or into the store with their commit.
        dead_lines = (
            b"".join(line for fresh in fresh_pages for _, line in fresh.dead)
            if self._dead is not None
            else b""
        )
        positions: dict[str, str] = {}
        if alerts:
            # Every sink's write finishes before the next group starts, even when one fails:
            # a write still running would race the next group.
            size = sum(len(alert.raw) for alert in alerts)
            answers = await asyncio.gather(
                *(
                    _delivered(sink, watch, alerts, size)
                    for sink, watch in zip(self._sinks, self._watches, strict=True)
                ),
                return_exceptions=True,
            )
            failures = [a for a in answers if isinstance(a, BaseException)]
            if failures:
                rejected = [f for f in failures if isinstance(f, SinkRejectedError)]
                raise (rejected or failures)[0]
            positions = {
                s.name: p for s, p in zip(self._sinks, answers, strict=True) if isinstance(p, str)
            }
        if dead_lines and self._dead is not None:
            positions[self._dead.name] = await self._dead.append(dead_lines)
        # Fetched: every row of the page, those counted and forgotten without an id too.
        counted = [
            count(fresh, len(page.handled.ids) + sum(page.handled.skipped.values()))
            for page, fresh in zip(group, fresh_pages, strict=True)
        ]
        commits = []
        hour_now = int(time.time() // 3600)
        for page, fresh, counts in zip(group, fresh_pages, counted, strict=True):
            records, dead = _split(fresh)
            commits.append(
                Commit(
                    page.lane.tenant,
                    page.lane.category,
                    page.cursor,
                    records,
                    counts,
                    page.prune_before,
                    page.success_at,
                    () if self._dead is not None else [line for _, line in fresh.dead],
                    page.lane.lease,
                    [(i, w) for i, w in fresh.ids if i in dead] if dead else (),
                    page.marker,
                    page.health,
                    page.lane.began,
                    tally(page.lane.plain, fresh.alerts, hour_now) if fresh.alerts else None,
                )
            )
        started = time.perf_counter()
        await store.commit_group(commits, positions)
        metrics = self.metrics
        metrics.commit_seconds.observe(time.perf_counter() - started)
        for page, counts in zip(group, counted, strict=True):
            # A backfill's cursor is far behind by design: it is no stream's lag.
            backfill = page.lane.label != page.lane.category
            cursor = None if page.cursor is None or backfill else page.cursor.timestamp()
            metrics.committed(page.lane.tenant, page.lane.label, counts, cursor)
        for sink in self._sinks:
            sink.committed(positions.get(sink.name))
        if self._dead is not None and self._dead.name in positions:
            self._dead.committed(positions[self._dead.name])
        return [dict(counts) for counts in counted]


async def _delivered(sink: Sink, watch: SinkWatch, alerts: list[Alert], size: int) -> str | None:
    """``sink.deliver(alerts)``, timed and counted (``size``: the batch's raw bytes)."""
    watch.started(size)
    started = time.perf_counter()
    try:
        position = await sink.deliver(alerts)
    except BaseException:
        watch.failed(time.perf_counter() - started, size)
        raise
    watch.delivered(len(alerts), time.perf_counter() - started, size)
    return position


def tally(category: str, alerts: Sequence[Alert], hour_now: int) -> Tallies:
    """``alerts`` counted for the dashboard (``state.Tallies``): by the hour of their event
    time, alertType and threatId, and by hour, role and address (cut to ``PARTY_CHARS``).

    The hot path's share, so C-level passes only (``Counter`` over ``map``), keyed by the
    text of the event time's hour (an alert's ``time`` is RFC 3339 UTC, ``2026-10-01T12:…Z``),
    turned into an epoch hour once for each distinct one."""
    times = list(map(_HOUR, map(_TIME, alerts)))
    by_hour: dict[str, Sequence[Alert]] = {}
    if len(set(times)) == 1:  # a page is mostly of one hour: then no alert is looked at again
        by_hour[times[0]] = alerts
    else:
        lists: dict[str, list[Alert]] = {}
        for alert, hour in zip(alerts, times, strict=True):
            lists.setdefault(hour, []).append(alert)
        by_hour.update(lists)
    hours: dict[tuple[int, str, str], int] = {}
    parties: dict[tuple[int, str], dict[str, int]] = {}
    for text, of_hour in by_hour.items():
        hour = _epoch_hour(text)
        for (alert_type, technique), n in Counter(map(_TYPE_TECHNIQUE, of_hour)).items():
            hours[(hour, alert_type, technique)] = n
        for role, field_ in (("sender", _SENDER), ("recipient", _RECIPIENT)):
            counted: Counter[str | None] = Counter(map(field_, of_hour))
            counted.pop(None, None)
            counted.pop("", None)
            if counted:
                kept = cast("dict[str, int]", dict(counted))
                parties[(hour, role)] = _cut(kept) if max(map(len, kept)) > PARTY_CHARS else kept
    return Tallies(category, hours, parties, hour_now)


_TIME = operator.attrgetter("time")
_HOUR = operator.itemgetter(slice(13))
_TYPE_TECHNIQUE = operator.attrgetter("alertType", "threatId")
_SENDER = operator.attrgetter("sender")
_RECIPIENT = operator.attrgetter("recipient")


def _cut(counted: dict[str, int]) -> dict[str, int]:
    """Counts of addresses cut to ``PARTY_CHARS`` (a hostile record's): those cut alike add."""
    out: dict[str, int] = {}
    for address, n in counted.items():
        short = address[:PARTY_CHARS]
        out[short] = out.get(short, 0) + n
    return out


@functools.lru_cache(maxsize=1024)
def _epoch_hour(text: str) -> int:
    """``2026-10-01T12`` (an alert time's first 13 characters) as an epoch hour."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=UTC)
    return int(moment.timestamp()) // 3600


def _split(handled: Handled) -> tuple[list[tuple[str, float]], set[str]]:
    """A page's records' ids with their times, and its dead letters' ids (the store keys the
    two apart: a malformed record has no time of its own)."""
    if not handled.dead:
        return handled.ids, set()
    dead = {id_ for id_, _ in handled.dead}
    return [(i, w) for i, w in handled.ids if i not in dead], dead
