"""Backfill: one tenant's old range read through the same chain, dedup and sinks as a run.

A backfill of a stream is a stream of its own in the state, ``<category>@backfill:<from>-<to>``
(one a range), with its own cursor (how far it has come: a kill -9 resumes there), ids, counters and marker (the request:
its range, its share of the quota, and whether it is done). Its range ends before the live
stream's ``began`` (the start of the live stream's first window), and the live stream never
reads before ``began``: the two never read the same time, so neither needs the other's ids.

The quota: Mimecast counts calls per API user (``mimecast-api.md`` §8.3). A backfill call goes
only while the user's ``X-RateLimit-Remaining`` is above ``(1 - share) x X-RateLimit-Limit``,
and at most ``share`` of the rate at which the quota fills again: the rest is left to the live
polls, which therefore never wait on the backfill (``Gate``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mimecast_connector._categories import Category
from mimecast_connector._clock import Clock

#: What a backfill stream's category is called in the state: ``url@backfill``.
SUFFIX = "@backfill"

#: How far back Mimecast keeps each log (``mimecast-api.md`` §8.4): TTP logs 30 days, the
#: rejected and deferred messages 7 days.
RETENTION = {
    Category.ATTACHMENT: timedelta(days=30),
    Category.IMPERSONATION: timedelta(days=30),
    Category.URL: timedelta(days=30),
    Category.REJECTION: timedelta(days=7),
}

#: The share of a tenant's quota a backfill takes when none is asked for.
DEFAULT_SHARE = 0.5


def request_folder(state: Path) -> Path:
    """Where ``backfill`` leaves requests for the ``run`` holding the SQLite state ``state``."""
    return state.with_name(f"{state.name}.backfill")


def read_requests(folder: Path) -> tuple[list[Backfill], list[tuple[Path, str]]]:
    """The requests waiting in ``folder``, and the files that are not one (path, why)."""
    jobs: list[Backfill] = []
    broken: list[tuple[Path, str]] = []
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError as exc:
        return [], [(folder, exc.strerror or "unreadable")]
    for path in paths:
        try:
            parsed = Backfill.parse(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            broken.append((path, str(exc)))
            continue
        if parsed is None:
            broken.append((path, "not a backfill request"))
        else:
            jobs.append(parsed[0])
    return jobs, broken


def lane_of(category: Category) -> str:
    """How the state's names of ``category``'s backfill streams begin."""
    return f"{category.value}{SUFFIX}"


def is_backfill(lane: str) -> bool:
    """Whether a stream of the state is a backfill's (``url@backfill:<from>-<to>``)."""
    return SUFFIX in lane


@dataclass(frozen=True, slots=True)
class Backfill:
    """One stream's backfill: records with event times in ``[start, end]`` (whole seconds)."""

    tenant: str
    category: Category
    start: datetime
    end: datetime
    share: float = DEFAULT_SHARE

    @property
    def lane(self) -> str:
        """Its stream in the state: one a range, so that a later range starts afresh."""
        return f"{lane_of(self.category)}:{self.start:%Y%m%dT%H%M%SZ}-{self.end:%Y%m%dT%H%M%SZ}"

    def marker(self, *, done: bool = False) -> str:
        """The request as the backfill stream's marker (and as a request file's text)."""
        return json.dumps(
            {
                "tenant": self.tenant,
                "category": self.category.value,
                "from": self.start.isoformat(),
                "to": self.end.isoformat(),
                "share": self.share,
                "done": done,
            },
            sort_keys=True,
        )

    @classmethod
    def parse(cls, text: str | None) -> tuple[Backfill, bool] | None:
        """The backfill and whether it is done, from ``marker``'s text; None if it is not one
        (a damaged marker is not guessed at: the command asks for the range again)."""
        try:
            data = json.loads(text or "")
            job = cls(
                tenant=str(data["tenant"]),
                category=Category(data["category"]),
                start=_utc(data["from"]),
                end=_utc(data["to"]),
                share=float(data["share"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if not (0 < job.share <= 1) or job.start > job.end:
            return None
        return job, bool(data.get("done"))

    def covered(self, cursor: datetime | None) -> float:
        """The share of the range read, from the backfill stream's cursor (0 to 1)."""
        if cursor is None:
            return 0.0
        span = max(1.0, (self.end - self.start).total_seconds())
        return min(1.0, max(0.0, (cursor - self.start).total_seconds() / span))


def _utc(text: object) -> datetime:
    moment = datetime.fromisoformat(str(text))
    if moment.tzinfo is None:
        raise ValueError("no time zone")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Plan:
    """What a backfill of one stream will read, and what the person asking should know."""

    job: Backfill | None  # None: nothing to read
    notes: tuple[str, ...]


def plan(
    tenant: str,
    category: Category,
    start: datetime,
    end: datetime | None,
    *,
    began: datetime | None,
    configured_start: datetime | None,
    has_cursor: bool,
    now: datetime,
    share: float = DEFAULT_SHARE,
) -> Plan:
    """Clip ``[start, end]`` to what may be read without reading twice what the live stream
    reads (or read): before ``began``, the start of its first window. A stream never polled
    yet begins where its first window will: ``configured_start`` (the tenant's ``start``), else
    now; its ``began`` is then set to that by the backfill command, so that the live stream's
    first window starts there. A stream polled before ``began`` was recorded (a state from an
    earlier release) begins, as far as anyone can tell, at its ``start`` if set: without it,
    ``--to`` must say where (the time of its first poll, minus 24 hours, or earlier).
    """
    notes: list[str] = []
    kept = RETENTION[category]
    if now - start > kept:
        notes.append(
            f"{category.value}: Mimecast keeps this log about {kept.days} days; the range from "
            f"{_day(start)} to {_day(now - kept)} is probably gone and will read nothing"
        )
    if began is None and has_cursor:
        if configured_start is not None:
            began = configured_start
        elif end is None:
            notes.append(
                f"{category.value}: this stream was first polled by an earlier release, which "
                "did not record where its first window began; give --to at or before that "
                "time (its first poll's time minus 24 hours) so that nothing is read twice"
            )
            return Plan(None, tuple(notes))
    if began is None:
        began = configured_start or now
    limit = began - timedelta(seconds=1)
    stop = limit if end is None else min(end, limit)
    if end is not None and end > limit:
        notes.append(
            f"{category.value}: the live stream reads from {_when(began)}; the backfill stops "
            f"at {_when(limit)}"
        )
    if stop < start:
        notes.append(f"{category.value}: nothing before {_when(began)} in the range asked for")
        return Plan(None, tuple(notes))
    return Plan(Backfill(tenant, category, start, stop, share), tuple(notes))


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class Gate:
    """Lets a backfill's calls through at ``share`` of one API user's quota (see the module's
    docstring). ``quota`` gives what the user's rate limiter last learned: remaining, limit
    and the seconds Mimecast needs to put one call back; any of them None while unknown (no
    ``X-RateLimit-*`` header seen yet: the first call goes, and teaches it)."""

    def __init__(
        self,
        share: float,
        quota: Callable[[], tuple[int | None, int | None, float]],
        clock: Clock,
        *,
        max_wait: float = 60.0,
    ) -> None:
        self._share = share
        self._quota = quota
        self._clock = clock
        self._max_wait = max_wait
        self._next = 0.0  # monotonic: when the next call may go, by pace
        self.waited = 0.0  # seconds the backfill waited for the live polls' share

    async def wait(self) -> None:
        """Wait until a backfill call may go."""
        while True:
            remaining, limit, refill = self._quota()
            now = self._clock.monotonic()
            delay = max(0.0, self._next - now)
            if remaining is not None and limit is not None:
                reserved = (1.0 - self._share) * limit
                if remaining <= reserved:
                    delay = max(delay, refill if refill > 0 else 1.0)
            if delay <= 0:
                if refill > 0:
                    self._next = now + refill / self._share
                return
            delay = min(delay, self._max_wait)
            self.waited += delay
            await self._clock.sleep(delay)


def gated(gate: Gate, admit: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``admit`` (the run's page permit), after the backfill's gate."""

    async def both() -> None:
        await gate.wait()
        await admit()

    return both
