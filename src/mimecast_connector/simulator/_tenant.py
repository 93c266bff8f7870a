"""One simulated Mimecast customer: credentials, roles, records, rate limit and live mode.

:class:`SimTenant` is public (re-exported by the package) but only :class:`Simulator` creates one.
Its methods are how a test shapes the data a tenant serves: generated history, exact records,
late records, a rate limit and a stream of live records. The server side reads the rest
(``store``, ``bucket``, ``note_request``).
"""

from __future__ import annotations

import contextlib
import gc
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from mimecast_connector._categories import Category
from mimecast_connector.simulator._generate import (
    Dice,
    Record,
    RecordFactory,
    pick_category,
    tenant_domain,
)
from mimecast_connector.simulator._ratelimit import TokenBucket
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
    gets 403 (``shared/docs/mimecast-api.md`` §3.2, §4.3).
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
    ) -> None:
        self._name = name
        self._credentials = credentials
        self._roles = roles
        self._seed = seed
        self._clock = clock
        self._wall_clock = wall_clock
        self._domain = tenant_domain(name)
        self._stores = {c: RecordStore(c) for c in Category}
        self._lock = threading.Lock()
        self._factories: dict[str, RecordFactory] = {}
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
