"""Where one tenant's records of one category live, and how a query selects them.

A :class:`RecordStore` keeps records in event-time order (ties in insertion order), each already
encoded to JSON so that serving a page is a byte join. Every record gets a sequence number when it
becomes visible; a query is answered against a *snapshot* (all records with a smaller sequence
number), so a paging session that started before new or late records arrived keeps seeing the
same result set, and the newcomers show up in the next query instead. Results are cached per
(query, snapshot): pages after the first cost a slice.

Filters and ordering follow ``shared/docs/mimecast-api.md`` §4.1, §5.1, §6.1 and §7.1.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from mimecast_connector._categories import Category
from mimecast_connector.simulator._generate import Record
from mimecast_connector.simulator._times import parse_time

_CACHE_SIZE = 16
_VERDICT_FIELD = {Category.ATTACHMENT: "result", Category.URL: "scanResult"}


class Query(msgspec.Struct, frozen=True, array_like=True):
    """A frozen TTP log query: what a page token remembers of the first request's filters.

    ``start``/``end`` are epoch seconds, inclusive. ``route`` and ``verdict`` are lower-case or
    None for ``all``; ``verdict`` is ``result`` (attachment) or ``scanResult`` (URL).
    ``tagged_malicious`` is None when the impersonation filter was absent. ``own_mailbox``: a
    rejection query without ``admin: true``, which sees only the API user's mailbox (nothing).
    """

    start: float
    end: float
    oldest_first: bool = False
    route: str | None = None
    verdict: str | None = None
    tagged_malicious: bool | None = None
    own_mailbox: bool = False


class Entry:
    """One stored record: its event time, visibility sequence, encoded JSON and filter keys."""

    __slots__ = ("encoded", "route", "seq", "tagged", "ts", "verdict")

    def __init__(self, ts: float, encoded: bytes, record: Record, verdict_field: str) -> None:
        self.ts = ts
        self.seq = -1  # set when the record becomes visible
        self.encoded = encoded
        route = record.get("route")
        self.route = route.lower() if isinstance(route, str) else None
        verdict = record.get(verdict_field)
        self.verdict = verdict.lower() if isinstance(verdict, str) else None
        tagged = record.get("taggedMalicious")
        self.tagged = tagged if isinstance(tagged, bool) else None


def _newest_first(entry: Entry) -> float:
    return -entry.ts


class RecordStore:
    """The visible records of one category for one tenant. Thread-safe."""

    def __init__(self, category: Category) -> None:
        self.category = category
        self._verdict_field = _VERDICT_FIELD.get(category, "")
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._times: list[float] = []
        self._sorted = True
        self._next_seq = 0
        self._cache: OrderedDict[tuple[Query, int], list[Entry]] = OrderedDict()
        self._encoder = msgspec.json.Encoder()

    def prepare(self, records: Iterable[Record]) -> list[Entry]:
        """Check and encode ``records`` without making them visible (see :meth:`commit`).

        Each must be an object with a parseable event time (§4.1); a ValueError says which not.
        """
        field = self.category.time_field
        timed = []
        for record in records:
            ts = parse_time(record.get(field)) if isinstance(record, dict) else None
            if ts is None:
                raise ValueError(
                    f"a {self.category} record needs {field!r} as an ISO 8601 time with an "
                    f"offset, e.g. '2025-03-04T09:12:45+0000'; got {record!r:.200}"
                )
            timed.append((ts, record))
        return self.prepare_timed(timed)

    def prepare_timed(self, timed: Iterable[tuple[float, Record]]) -> list[Entry]:
        """Like :meth:`prepare` for records whose event times are already known."""
        encode, verdict_field = self._encoder.encode, self._verdict_field
        return [Entry(ts, encode(record), record, verdict_field) for ts, record in timed]

    def commit(self, entries: Iterable[Entry]) -> None:
        """Make prepared records visible now, each with the next sequence number."""
        with self._lock:
            for entry in entries:
                if self._times and entry.ts < self._times[-1]:
                    self._sorted = False
                entry.seq = self._next_seq
                self._next_seq += 1
                self._entries.append(entry)
                self._times.append(entry.ts)

    def add(self, records: Iterable[Record]) -> None:
        """Check, encode and make visible ``records`` now."""
        self.commit(self.prepare(records))

    @property
    def snapshot(self) -> int:
        """A marker for "everything visible now", to pass to :meth:`select` later."""
        with self._lock:
            return self._next_seq

    def records(self) -> list[Record]:
        """Fresh copies of every visible record, oldest first (ties in insertion order)."""
        with self._lock:
            self._ensure_sorted()
            encoded = [e.encoded for e in self._entries]
        decode = msgspec.json.decode
        return [decode(raw) for raw in encoded]

    def select(self, query: Query, snapshot: int) -> list[Entry]:
        """The records matching ``query`` among those visible at ``snapshot``, in served order.

        The returned list is shared with the cache: read it, never change it.
        """
        key = (query, snapshot)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            self._ensure_sorted()
            lo = bisect_left(self._times, query.start)
            hi = bisect_right(self._times, query.end)
            keep = _predicate(query)
            chosen = [e for e in self._entries[lo:hi] if e.seq < snapshot and keep(e)]
            if not query.oldest_first:
                chosen.sort(key=_newest_first)  # stable: ties stay in insertion order
            self._cache[key] = chosen
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return chosen

    def _ensure_sorted(self) -> None:
        if not self._sorted:
            self._entries.sort(key=lambda e: (e.ts, e.seq))
            self._times = [e.ts for e in self._entries]
            self._sorted = True


def _predicate(query: Query) -> Callable[[Entry], bool]:
    """One check built for the whole query: the filters that are set, nothing else."""
    checks: list[Callable[[Entry], bool]] = []
    if query.own_mailbox:
        return _never
    route, verdict, tagged = query.route, query.verdict, query.tagged_malicious
    if route is not None:
        checks.append(lambda e: e.route == route)
    if verdict is not None:
        checks.append(lambda e: e.verdict == verdict)
    if tagged is not None:
        checks.append(lambda e: e.tagged is tagged)
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return lambda e: all(check(e) for check in checks)


def _always(_entry: Any) -> bool:
    return True


def _never(_entry: Any) -> bool:
    return False
