"""One simulated Mimecast customer: credentials, roles, records, rate limit and live mode.

:class:`SimTenant` is public (re-exported by the package) but only :class:`Simulator` creates one.
Its methods are how a test shapes the data a tenant serves: generated history, exact records,
late records, SIEM receipt events, a rate limit and a stream of live records. The server side
reads the rest (``store``, ``bucket``, ``note_request``, ``siem_log``, ``huge_receipts``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Literal

from mimecast_connector._categories import LOG_CATEGORIES, Category
from mimecast_connector.simulator._generate import (
    Dice,
    Record,
    RecordFactory,
    pick_category,
    tenant_domain,
)
from mimecast_connector.simulator._ratelimit import TokenBucket
from mimecast_connector.simulator._siem import Receipt, ReceiptFactory, account_id, partition_of
from mimecast_connector.simulator._siemlog import BATCH_SECONDS, SiemFileInfo, SiemLog
from mimecast_connector.simulator._store import Entry, RecordStore
from mimecast_connector.simulator._times import epoch_of

_DAY = 86_400.0
_MAX_LIVE_BURST = 1_000  # records one live tick may add to catch up after a stall


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector around a bulk build of many small containers.

    The records hold no reference cycles, yet every few hundred new dicts trigger a collection
    that walks everything built so far; pausing it roughly halves the cost of a large batch.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class SimTenant:
    """A tenant of a :class:`Simulator`, with both API 2.0 and API 1.0 credentials.

    ``roles`` is the set of categories the tenant's API user may read; a request for another one
    gets 403 (``shared/docs/mimecast-api.md`` §3.2, §4.3). ``siem`` says whether it may read the
    SIEM logs ("Threat and Security Events (SIEM) | Read" on 2.0, "Gateway | Tracking | Read" on
    1.0; ``mta-rejections.md`` §2.1, §2.2), ``enhanced_logging`` whether the account logs them.
    """

    def __init__(
        self,
        name: str,
        *,
        seed: int,
        credentials: dict[str, str],
        roles: frozenset[Category],
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        siem: bool = True,
        enhanced_logging: bool = True,
    ) -> None:
        self._name = name
        self._credentials = credentials
        self._roles = roles
        self._siem = siem
        self._enhanced_logging = enhanced_logging
        self._account = account_id(name)
        self._siem_log = SiemLog()
        self._huge_streams = 0
        self._seed = seed
        self._clock = clock
        self._wall_clock = wall_clock
        self._domain = tenant_domain(name)
        self._stores = {c: RecordStore(c) for c in LOG_CATEGORIES}
        self._lock = threading.Lock()
        self._factories: dict[str, RecordFactory] = {}
        self._receipt_factories: dict[str, ReceiptFactory] = {}
        self._receipts_lock = threading.Lock()
        self._live_categories = Dice(f"mimecast-sim/{seed}/{name}/live-categories")
        self._late: list[tuple[int, Category, list[Entry]]] = []
        self._log_requests = 0
        self._bucket: TokenBucket | None = None
        self._live: tuple[threading.Thread, threading.Event] | None = None

    # -- identity -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The tenant's name, as used in fault filters and logged requests."""
        return self._name

    @property
    def client_id(self) -> str:
        """API 2.0 client id."""
        return self._credentials["client_id"]

    @property
    def client_secret(self) -> str:
        """API 2.0 client secret."""
        return self._credentials["client_secret"]

    @property
    def app_id(self) -> str:
        """API 1.0 application id (a GUID)."""
        return self._credentials["app_id"]

    @property
    def app_key(self) -> str:
        """API 1.0 application key (a GUID); part of the signed string."""
        return self._credentials["app_key"]

    @property
    def access_key(self) -> str:
        """API 1.0 access key."""
        return self._credentials["access_key"]

    @property
    def secret_key(self) -> str:
        """API 1.0 secret key, base64-encoded."""
        return self._credentials["secret_key"]

    @property
    def roles(self) -> frozenset[Category]:
        """The categories this tenant may read."""
        return self._roles

    @property
    def siem(self) -> bool:
        """Whether this tenant's API user may read the SIEM logs (else 403)."""
        return self._siem

    @property
    def enhanced_logging(self) -> bool:
        """Whether the account has Enhanced Logging on; off, the SIEM feeds stay empty."""
        return self._enhanced_logging

    @property
    def account_id(self) -> str:
        """The Mimecast account code in SIEM events (``accountId``, ``acc``)."""
        return self._account

    # -- records ------------------------------------------------------------------------------

    def generate(
        self,
        category: Category,
        count: int = 100,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Record]:
        """Add ``count`` seeded records dated within [start, end] and return them, oldest first.

        ``end`` defaults to now and ``start`` to a day before ``end``; both must be aware
        datetimes. The same simulator seed and the same sequence of calls give the same records.
        """
        if category.is_feed:
            raise ValueError("receipt events come from generate_receipts(), not generate()")
        hi_epoch = self._wall_clock() if end is None else epoch_of(end)
        lo_epoch = hi_epoch - _DAY if start is None else epoch_of(start)
        lo, hi = math.ceil(lo_epoch), math.floor(hi_epoch)
        if lo > hi:
            raise ValueError("start must not be after end (and they must span a whole second)")
        store = self._stores[category]
        with _gc_paused():
            timed = self._factory(category.value).make(category, count, lo, hi)
            store.commit(store.prepare_timed(timed))
        return [record for _, record in timed]

    def add_records(self, category: Category, records: Iterable[Record]) -> None:
        """Add exact records, visible now. Each needs a parseable event time field."""
        self._stores[category].add(records)

    def add_late(self, category: Category, records: Iterable[Record], after_requests: int) -> None:
        """Add records that stay invisible until this tenant has made ``after_requests`` more
        TTP-log requests: records that show up after a poll, dated before it.
        """
        if after_requests < 0:
            raise ValueError(f"after_requests must be >= 0, not {after_requests}")
        prepared = self._stores[category].prepare(records)
        with self._lock:
            self._late.append((self._log_requests + after_requests, category, prepared))
        self._release_due()

    def records(self, category: Category) -> list[Record]:
        """Copies of every record visible now, oldest first."""
        self._release_due()
        return self._stores[category].records()

    # -- SIEM receipt events (mta-rejections.md §2.1, §2.2) --------------------------------------

    def generate_receipts(
        self,
        count: int = 100,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        file_size: int = 10_000,
        published: datetime | None = None,
    ) -> list[Record]:
        """Add ``count`` seeded receipt events dated within [start, end]; return them, oldest
        first, as API 2.0 batch files carry them.

        ``end`` defaults to now, ``start`` to a day before ``end`` (aware datetimes). The events
        go into the tenant's SIEM log: 2.0 batches of 15 minutes and 1.0 files of 30 minutes
        (receipt, process, delivery and now and then ttp_url rows of the same messages), at most
        ``file_size`` events or rows a file. A file is published (visible on the wall clock) at
        the end of its period, or now if a file published after that is already out: feeds only
        grow at their end. ``published`` publishes every file at that moment instead (a late
        batch). Without Enhanced Logging the events are returned but never published.
        """
        hi_epoch = self._wall_clock() if end is None else epoch_of(end)
        lo_epoch = hi_epoch - _DAY if start is None else epoch_of(start)
        at = None if published is None else epoch_of(published)
        return [
            r.event
            for r in self._add_receipts("receipts", count, lo_epoch, hi_epoch, at, file_size)
        ]

    def siem_files(self, api: Literal["1.0", "2.0"] = "2.0") -> list[SiemFileInfo]:
        """The files one SIEM feed holds now (published, not past the 7 days), in feed order."""
        return self._siem_log.infos(api, now=self._wall_clock())

    def publish_late_receipts(self, count: int, age: float) -> list[Record]:
        """Publish now ``count`` events dated in the quarter hour that ended ``age`` seconds ago
        (the ``LateBatch`` fault); they come after everything already published."""
        now = self._wall_clock()
        receipts = self._add_receipts(
            "late-receipts", count, now - age - BATCH_SECONDS + 0.001, now - age, now, 10_000
        )
        return [r.event for r in receipts]

    def huge_receipts(self, count: int, end: float, *, with_v1: bool) -> Iterator[list[Receipt]]:
        """``count`` fresh events over the quarter hour before ``end``, made a chunk at a time
        and never stored (the ``HugeFile`` fault)."""
        with self._lock:
            self._huge_streams += 1
            stream = self._huge_streams
        factory = self._receipt_factory(f"huge-{stream}", shared=False)
        hi = math.floor(end * 1000)
        return factory.stream(count, hi - BATCH_SECONDS * 1000 + 1, hi, with_v1=with_v1, chunk=250)

    @property
    def siem_log(self) -> SiemLog:
        """The SIEM feeds the server reads."""
        return self._siem_log

    def _add_receipts(
        self,
        stream: str,
        count: int,
        lo_epoch: float,
        hi_epoch: float,
        published: float | None,
        file_size: int,
    ) -> list[Receipt]:
        lo, hi = math.ceil(lo_epoch * 1000), math.floor(hi_epoch * 1000)
        if lo > hi:
            raise ValueError("start must not be after end")
        if file_size < 1:
            raise ValueError(f"file_size must be >= 1, not {file_size}")
        factory = self._receipt_factory(stream)
        with self._receipts_lock:  # one factory per stream: calls stay in order
            receipts = factory.make(count, lo, hi)
        if self._enhanced_logging:
            self._siem_log.publish(
                receipts, now=self._wall_clock(), published=published, file_size=file_size
            )
        return receipts

    def _receipt_factory(self, stream: str, *, shared: bool = True) -> ReceiptFactory:
        key = f"siem/{stream}"
        with self._lock:
            factory = self._receipt_factories.get(key) if shared else None
            if factory is None:
                factory = ReceiptFactory(
                    f"mimecast-sim/{self._seed}/{self._name}/{key}",
                    self._domain,
                    self._account,
                    partition_of(self._name),
                )
                if shared:
                    self._receipt_factories[key] = factory
            return factory

    # -- rate limit and live mode -------------------------------------------------------------

    def set_rate_limit(self, capacity: int | None, refill_per_second: float = 1.0) -> None:
        """Give the tenant a token bucket shared by all categories; ``None`` removes it (§8.3)."""
        bucket = None if capacity is None else TokenBucket(capacity, refill_per_second, self._clock)
        with self._lock:
            self._bucket = bucket

    def start_live(self, rate_per_second: float = 2.0) -> None:
        """Keep adding new records (all three categories, dated now) in a background thread.

        Content is deterministic for the simulator's seed; only the dates follow the clock.
        Starting again replaces the running stream's rate.
        """
        if not rate_per_second > 0:
            raise ValueError(f"rate_per_second must be > 0, not {rate_per_second}")
        self.stop_live()
        stop = threading.Event()
        thread = threading.Thread(
            target=self._live_loop,
            args=(1.0 / rate_per_second, stop),
            name=f"mimecast-sim-live-{self._name}",
            daemon=True,
        )
        with self._lock:
            self._live = (thread, stop)
        thread.start()

    def stop_live(self) -> None:
        """Stop live mode and wait for its thread; a no-op when it is not running."""
        with self._lock:
            live, self._live = self._live, None
        if live is not None:
            thread, stop = live
            stop.set()
            thread.join()

    @property
    def live(self) -> bool:
        """Whether live mode is running."""
        return self._live is not None

    # -- used by the server -------------------------------------------------------------------

    def store(self, category: Category) -> RecordStore:
        """The store behind one category."""
        return self._stores[category]

    @property
    def bucket(self) -> TokenBucket | None:
        """The rate-limit bucket, or None when the tenant is unlimited."""
        return self._bucket

    def note_request(self) -> None:
        """Count one TTP-log request; late records due by now become visible first."""
        self._release_due()
        with self._lock:
            self._log_requests += 1

    def _release_due(self) -> None:
        with self._lock:
            due = [item for item in self._late if item[0] <= self._log_requests]
            self._late = [item for item in self._late if item[0] > self._log_requests]
        for _, category, prepared in due:
            self._stores[category].commit(prepared)

    def _factory(self, stream: str) -> RecordFactory:
        with self._lock:
            factory = self._factories.get(stream)
            if factory is None:
                seed_material = f"mimecast-sim/{self._seed}/{self._name}/{stream}"
                factory = self._factories[stream] = RecordFactory(seed_material, self._domain)
            return factory

    def _live_loop(self, interval: float, stop: threading.Event) -> None:
        factory = self._factory("live")
        next_at = time.monotonic() + interval
        while not stop.wait(max(0.0, next_at - time.monotonic())):
            due = min(_MAX_LIVE_BURST, 1 + int((time.monotonic() - next_at) / interval))
            now = math.floor(self._wall_clock())
            for _ in range(due):
                category = pick_category(self._live_categories)
                store = self._stores[category]
                store.commit(store.prepare_timed(factory.make(category, 1, now, now)))
            next_at += due * interval
