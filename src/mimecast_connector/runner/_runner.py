"""The run: every tenant and category polled concurrently, delivered, committed.

One *stream* is a tenant and a category. A poll of a stream reads the window
``[max(start, cursor - lookback), now]`` (asked for oldest first), page by page, and for each
page:

1. runs the chain (format check, safe filter, alert type, ATT&CK, identity);
2. takes the delivery lock, drops what the state store says was handled before, hands the
   new alerts to every sink and the new dead letters to the dead-letter file;
3. commits, in one state transaction, the handled ids, the counters, the sinks' positions and
   the cursor, then tells the sinks their position is safe.

How far the cursor moves is decided from what has been *seen*, never from what Mimecast
promises. When the whole window has been read, the cursor becomes the window's end. Within a
window it moves to the newest event time read so far only while every record of the window
has come oldest first, checked page by page, and on a page that climbs (two distinct times at
least, so a server paging newest first is caught before it can move anything). Once one
record is out of order (newest first, or no order at all) the cursor waits for the window's
end, so a window interrupted part-way is read again in full. (A server that shuffles can only
be caught once a page shows it; pages of two records that happen to climb are the one case in
which the order is taken on trust.) Records dated
outside the window asked for are counted (``outside_window``) and handled by id, and never
move the cursor; one dated before the oldest time whose ids the store still remembers cannot
be told from one delivered long ago, so it is counted (``too_old``) and not delivered.

Anything that fails before step 3 leaves the cursor where it was: the page is read again on
the next poll, and what was already delivered is suppressed by id.

A stream's failure is logged, recorded for ``status``, and retried on a backoff; the other
streams go on. Configuration faults (bad key, missing role) back off longer than upstream
ones, since only a person can fix them. Each stream's health (``_health``) is kept here for
the metrics and ``/readyz``, and in the store for ``status``, written only with what is
written anyway (the failure's record, the poll's last commit) or when it changes (Mimecast
accepted the credentials of a stream that had none accepted). A sink that refuses a batch for good (a 4xx other than
408/429), or a state database that cannot take a commit (deleted or replaced under the
process), halts the whole run: every checkpoint waits for every sink and for the store, so
retrying could only repeat the refusal; the state is left as it was, and a restart after the
fix resumes there. A run that stops for any reason but a requested stop says why and exits
non-zero (``_commands``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import httpx
import structlog

from mimecast_connector._categories import Category
from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import (
    ApiError,
    ConfigError,
    ConnectorError,
    InternalError,
    LeaseLostError,
    SinkRejectedError,
    StateError,
)
from mimecast_connector._health import (
    NEVER_POLLED,
    State,
    StreamHealth,
    accepted,
    classify,
    collecting,
    derived,
)
from mimecast_connector._logging import redactor_of
from mimecast_connector.client import (
    Auth,
    ClientOptions,
    HmacSigner,
    HttpPool,
    MimecastClient,
    OAuth2ClientCredentials,
    Page,
    RateLimiter,
)
from mimecast_connector.config import Config, TenantConfig
from mimecast_connector.observe import Metrics, StreamRow
from mimecast_connector.rules import AttackTable, Rules, build_rules, load_table
from mimecast_connector.runner._alarm import Alarm
from mimecast_connector.runner._backfill import (
    Backfill,
    Gate,
    gated,
    is_backfill,
    read_requests,
    request_folder,
)
from mimecast_connector.runner._chain import Chain, Handled
from mimecast_connector.runner._committer import (
    MAX_PAGES_HELD,
    PAGES_IN_FLIGHT,
    QUIET_COMMIT_GAP,
    Committer,
    Lane,
)
from mimecast_connector.runner._feed import FeedReader, Marker
from mimecast_connector.runner._receipt_chain import ReceiptChain
from mimecast_connector.runner._schedule import GATHER, Due, Schedule
from mimecast_connector.sinks import AppendFile, Sink, make_sink
from mimecast_connector.state import Store, open_store

_log = structlog.get_logger("mimecast_connector.runner")

#: How far back the first poll of a stream reaches when the tenant sets no ``start``.
DEFAULT_START = timedelta(hours=24)
#: Seconds between progress lines of one long poll.
PROGRESS_EVERY = 10.0
#: Only windows longer than this log their progress (a live poll's is lookback + interval).
PROGRESS_WINDOW = timedelta(hours=6)
#: Ids are kept this much longer than any future window can reach, against clock skew.
PRUNE_MARGIN = timedelta(hours=1)
#: A stream's old ids are pruned once its prune point moved this far since the last prune this
#: run made for it, not by every poll (three statements a poll saved; ids older than the
#: margin are kept up to this much longer, and ``kept_from`` says so, so nothing is judged on
#: ids that are gone).
PRUNE_STEP = timedelta(minutes=10)
#: How long a receipt feed's ids (its rejections') are kept: longer than Mimecast keeps SIEM
#: files (7 days), so a page listed again from its start is recognised whole.
FEED_KEEP = timedelta(days=8)
#: The categories a stream's health is kept for (a backfill's lane is none of them).
_STREAM_CATEGORIES = frozenset(c.value for c in Category)
#: A fleet worker reads every stream's health from the store (the other workers poll most of
#: them) at most this often, when asked (``/metrics``, ``/readyz``).
HEALTH_REFRESH = 5.0
#: Seconds a stopping run waits for its polls to commit the pages they are reading (SIGTERM,
#: SIGINT); past it they are cancelled, which is safe (what was not committed is read again).
DRAIN_TIMEOUT = 30.0


_SECOND = timedelta(seconds=1)


def _horizon(stored: datetime | None, kept: float | None, start: datetime) -> float:
    """The oldest event time whose ids the store still remembers, fixed for a whole poll (ids
    are pruned only once a window has been read in full): a record older than that cannot be
    told from one delivered long ago. A stream without a cursor starts at its window."""
    if kept is not None:
        return kept
    if stored is not None:
        # A store from before ``kept_from`` pruned at ``cursor - lookback - 1 h`` with the
        # lookback of then, which may have been shorter: assume the shortest (0).
        return (stored - PRUNE_MARGIN).timestamp()
    return start.timestamp()


class _Permit:
    """One of the committer's ``held`` permits, for the page a poll is reading: taken before
    a page request's first try (``take``, passed to the client as its admission), handed over
    with the page it was taken for, given back when that page is committed or abandoned."""

    __slots__ = ("_held", "_permits")

    def __init__(self, permits: asyncio.Semaphore) -> None:
        self._permits = permits
        self._held = False

    async def take(self) -> None:
        if not self._held:  # a retry, or an empty page before this one: still the same permit
            await self._permits.acquire()
            self._held = True

    def hand_over(self) -> _Permit:
        """This permit now belongs to the page just read; a new one for the next page."""
        owned = _Permit(self._permits)
        owned._held, self._held = self._held, False
        return owned

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._permits.release()

    def given_back(self, _done: object) -> None:
        """``give_back``, as a future's done-callback."""
        self.give_back()


@dataclass(frozen=True, slots=True)
class Reload:
    """What a reload changed: tenants by name, and the global keys only a restart applies."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    restart_for: list[str]


@dataclass(slots=True)
class StreamResult:
    """One poll of one stream."""

    tenant: str
    category: Category
    alerts: int = 0
    pages: int = 0
    error: ConnectorError | None = None
    message: str = ""  # the error's text, every configured secret redacted
    counts: dict[str, int] = field(default_factory=dict)
    #: The stream's health after this poll (None: unchanged, a poll taken over).
    health: StreamHealth | None = None


def make_auth(tenant: TenantConfig, clock: Clock) -> Auth:
    """The auth of a tenant's configured API version."""
    if tenant.api == "2.0":
        assert tenant.client_id is not None
        assert tenant.client_secret is not None
        return OAuth2ClientCredentials(tenant.client_id, tenant.client_secret, clock=clock)
    assert tenant.app_id is not None
    assert tenant.app_key is not None
    assert tenant.access_key is not None
    assert tenant.secret_key is not None
    return HmacSigner(
        app_id=tenant.app_id,
        app_key=tenant.app_key,
        access_key=tenant.access_key,
        secret_key=tenant.secret_key,
        clock=clock,
    )


def api_user(tenant: TenantConfig) -> tuple[str, str]:
    """Who Mimecast counts a tenant's quota against: its API 2.0 ``client_id``, or a digest of
    its API 1.0 access key (a secret: only its digest is kept as a key)."""
    if tenant.api == "2.0":
        return ("2.0", tenant.client_id or "")
    key = tenant.access_key.get_secret_value() if tenant.access_key is not None else ""
    return ("1.0", hashlib.blake2b(key.encode(), digest_size=16).hexdigest())


def make_sinks(config: Config) -> list[Sink]:
    """The configured sinks."""
    return [make_sink(sink) for sink in config.sinks]


TransportFactory = Callable[[TenantConfig], httpx.AsyncBaseTransport | None]


class Runner:
    """Everything a run needs, built once from the configuration."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        sinks: Sequence[Sink] | None = None,
        table: AttackTable | None = None,
        transport: TransportFactory | None = None,
        client_options: ClientOptions | None = None,
        max_pages_held: int = MAX_PAGES_HELD,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self._clock: Clock = clock or SystemClock()
        #: The run's metrics (``observe``), fed by the clients, the committer and the polls.
        self.metrics = metrics or Metrics(clock=self._clock.time)
        self.metrics.watch(self._health_rows)
        #: Every stream's health as this process knows it (read from the store at start, kept
        #: as its polls go; a fleet worker reads the store again, see ``refresh_health``).
        self._health: dict[tuple[str, str], StreamHealth] = {}
        self._health_read = -math.inf
        #: Seconds between a fleet worker's reads of every stream's health (``refresh_health``).
        self.health_refresh = HEALTH_REFRESH
        self._table = table or load_table(config.mapping)
        #: Where each stream's first window began, once the store has it: it never changes
        #: after (``Store.set_began`` keeps the first), so a live poll asks the store (on
        #: PostgreSQL, a round trip) only until it is known.
        self._began: dict[tuple[str, str], datetime] = {}
        #: The rules of each category (and rejection setting), built once from the table for
        #: every stream's chain.
        self._rules: dict[tuple[Category, bool], Rules] = {}
        self.sinks: list[Sink] = list(sinks) if sinks is not None else make_sinks(config)
        self._transport = transport or (lambda tenant: None)
        self._options = client_options or ClientOptions(page_size=config.page_size)
        self._store: Store | None = None
        self._http: HttpPool | None = None
        self._dead = AppendFile(config.dead_letter, "dead-letter")
        self._committer_: Committer | None = None
        self._limiters: dict[tuple[str, str], RateLimiter] = {}
        self._sources: dict[str, str] = dict(config.sources)
        self._tenants: dict[str, TenantConfig] = {t.name: t for t in config.tenants}
        # While run_forever runs: its schedule and wake-up, the streams being polled, and the
        # new versions of reloaded tenants waiting for their old poll to end.
        self._schedule: Schedule | None = None
        self._wake: Alarm | None = None
        self._stop: asyncio.Event | None = None
        self._polling: set[tuple[str, Category]] = set()
        #: Set each time a poll of ``run_forever`` ends (a backfill may wait for one).
        self._poll_ended = asyncio.Event()
        self._deferred: dict[tuple[str, Category], TenantConfig] = {}
        self._max_pages_held = max_pages_held
        self._clients: dict[str, MimecastClient] = {}
        self._chains: dict[tuple[str, Category], Chain] = {}
        self._receipt_chains: dict[str, ReceiptChain] = {}
        self._rng = random.Random()
        #: Set when a sink refused a batch for good, or the state database cannot take a commit
        #: (replaced, deleted): no checkpoint can advance until a person acts, so the run stops
        #: instead of retrying forever.
        self.halted: SinkRejectedError | StateError | None = None
        # Every secret of the configuration: an error body may quote another tenant's.
        self._secrets = tuple(config.secrets())
        #: Held here, so that no churn of the shared cache can make an error rebuild it.
        self._redact = redactor_of(self._secrets)
        #: How far behind its cursor a stream's ids are kept: every later window starts at
        #: ``cursor - lookback`` at the earliest, and the margin absorbs clock skew.
        self._keep = config.lookback + PRUNE_MARGIN
        #: The prune point each lane last committed with, in this run (``PRUNE_STEP``).
        self._pruned: dict[tuple[str, str], datetime] = {}
        #: Why the run stopped, when a stream's task died instead of stopping cleanly.
        self.died: str | None = None
        #: Set by ``drain``: every poll ends after the page it is reading (committed), and
        #: ``run_forever`` starts no more.
        self.draining = False
        #: The backfills this run reads beside its live polls (``take_backfills``), by stream.
        self._backfills: dict[str, asyncio.Task[None]] = {}
        #: How long ``run_forever`` waits for its polls once stopped (``DRAIN_TIMEOUT``).
        self.drain_timeout = DRAIN_TIMEOUT

    @property
    def store(self) -> Store:
        assert self._store is not None, "start() first"
        return self._store

    @property
    def clients(self) -> Mapping[str, MimecastClient]:
        """Each tenant's client, by tenant name (after ``start``)."""
        return self._clients

    @property
    def _committer(self) -> Committer:
        assert self._committer_ is not None, "start() first"
        return self._committer_

    @contextlib.contextmanager
    def on_schedule(self) -> Iterator[None]:
        """While polls run on a schedule (``run_forever``, a fleet worker's rounds), a group
        of pages that carry no records (polls that found nothing new, most of them) waits up
        to ``QUIET_COMMIT_GAP`` for company before its commit; ``run --once`` ends on such a
        page, so it keeps the short gap."""
        committer = self._committer
        gap, committer.quiet_gap = committer.quiet_gap, QUIET_COMMIT_GAP
        try:
            yield
        finally:
            committer.quiet_gap = gap

    async def start(self) -> None:
        """Open the state store, the dead-letter file and every sink; build the clients."""
        self._store = store = await open_store(self.config.state_target)
        # Dead letters go to the dead-letter file, or (a store that keeps them: PostgreSQL,
        # shared by a fleet) into the store with their commit.
        dead = None if store.keeps_dead_letters else self._dead
        baselines = {}
        if dead is not None:
            baselines[dead.name] = await dead.open(await store.sink_position(dead.name))
        for sink in self.sinks:
            baseline = await sink.start(await store.sink_position(sink.name))
            if baseline is not None:
                baselines[sink.name] = baseline
        await store.set_sink_positions(baselines)
        await self._read_health()
        self._committer_ = Committer(
            store, self.sinks, dead, max_pages_held=self._max_pages_held, metrics=self.metrics
        )
        self._committer_.on_death = self._committer_died
        self._committer_.start()
        self._http = HttpPool(timeout=self._options.timeout)
        for tenant in self.config.tenants:
            self._add_tenant(tenant)

    def _committer_died(self, error: InternalError) -> None:
        message = self._redact(str(error))
        _log.error("committer_died", error=message, reason="stopping the run, not hiding it")
        if self.died is None:
            self.died = f"the committer died: {message}"
        if self._stop is not None:
            self._stop.set()

    def _add_tenant(self, tenant: TenantConfig) -> None:
        """Build ``tenant``'s client and chains (replacing any of an earlier version)."""
        assert self._http is not None
        # Mimecast counts quota per API user: tenants configured with the same one (the same
        # client_id, or the same API 1.0 access key) share one rate limiter.
        limiter = self._limiters.setdefault(api_user(tenant), RateLimiter(clock=self._clock))
        self._clients[tenant.name] = MimecastClient(
            tenant=tenant.name,
            base_url=tenant.url,
            auth=make_auth(tenant, self._clock),
            options=self._options,
            transport=self._transport(tenant),
            clock=self._clock,
            limiter=limiter,
            rng=self._rng,
            secrets=self._secrets,
            http=self._http,
            observer=self.metrics.calls(tenant.name),
        )
        if Category.RECEIPT in tenant.categories:
            self._receipt_chains[tenant.name] = ReceiptChain(
                tenant.name,
                tenant.api,
                self._table,
                keep_unmatched_rejections=tenant.keep_unmatched_rejections,
            )
        for category in tenant.categories:
            if category.is_feed:
                continue
            keep = tenant.keep_unmatched_rejections
            rules = self._rules.get((category, keep))
            if rules is None:
                rules = self._rules[(category, keep)] = build_rules(
                    category, self._table, keep_unmatched_rejections=keep
                )
            self._chains[(tenant.name, category)] = Chain(
                tenant.name, category, self._table, keep_unmatched_rejections=keep, rules=rules
            )

    def reload(self, new: Config, broken: Mapping[str, object] = MappingProxyType({})) -> Reload:
        """Take ``new``'s tenants (``SIGHUP``): added ones start polling, removed ones stop
        after the poll in flight, changed ones go on with their new settings once the poll in
        flight (under the old ones) ends. A tenant whose ``tenants_dir`` file is in ``broken``
        keeps running as it was. Global settings (state, sinks, lookback, page size, mapping)
        are not reloaded: they are named in ``Reload.restart_for``; a restart applies them.
        Nothing here touches the state: checkpoints stay as they are, per tenant name.
        """
        kept = {
            name: tenant
            for tenant in self.config.tenants
            if (name := tenant.name) in self._sources and self._sources[name] in broken
        }
        before = {t.name: t for t in self.config.tenants}
        # An unchanged tenant keeps its very object: a poll in flight recognises its own.
        tenants = [before.get(t.name, t) if before.get(t.name) == t else t for t in new.tenants]
        offered = {t.name for t in new.tenants}
        tenants += [t for n, t in kept.items() if n not in offered]
        sources = {**dict(new.sources), **{n: self._sources[n] for n in kept}}
        after = {t.name: t for t in tenants}
        added = [n for n in after if n not in before]
        removed = [n for n in before if n not in after]
        changed = [n for n in after if n in before and after[n] != before[n]]
        restart_for = [
            key
            for key in (
                "state",
                "dead_letter",
                "lookback",
                "page_size",
                "mapping",
                "sinks",
                "metrics",
                "metrics_token",
            )
            if getattr(new, key) != getattr(self.config, key)
        ]
        # Old secrets stay redacted too: polls of a removed tenant may still be running.
        self._secrets = tuple(dict.fromkeys([*self._secrets, *new.secrets()]))
        self._redact = redactor_of(self._secrets)
        self.config = self.config.model_copy(update={"tenants": tenants})
        self._tenants = after
        self._sources = sources
        now = asyncio.get_running_loop().time()
        gone = set(removed + changed)
        if self._schedule is not None:
            self._schedule.remove(gone)
        # A version waiting for a poll in flight is superseded (or removed) too.
        self._deferred = {k: t for k, t in self._deferred.items() if k[0] not in gone}
        for name in removed + changed:
            for category in before[name].categories:
                self._chains.pop((name, category), None)
            self._clients.pop(name, None)
        for name in added + changed:
            tenant = after[name]
            self._add_tenant(tenant)
            for category in tenant.categories:
                if (name, category) in self._polling:
                    self._deferred[(name, category)] = tenant  # after the poll in flight
                elif self._schedule is not None:
                    self._schedule.add(tenant, category, now)
        if self._wake is not None:
            self._wake.ring()
        return Reload(added, removed, changed, restart_for)

    async def aclose(self) -> None:
        backfills = list(self._backfills.values())
        for task in backfills:  # left by a run that ended without draining: resumed next time
            task.cancel()
        await asyncio.gather(*backfills, return_exceptions=True)
        if self._committer_ is not None:
            await self._committer_.aclose()
        for client in self._clients.values():
            await client.aclose()
        if self._http is not None:
            await self._http.aclose()
        for sink in self.sinks:
            await sink.aclose()
        self._dead.close()
        if self._store is not None:
            await self._store.aclose()

    def tenant(self, name: str) -> TenantConfig | None:
        """The tenant of that name as configured now (reloads included), or None."""
        return self._tenants.get(name)

    def drain(self) -> None:
        """Stop reading: each poll hands over the page it is reading, and ends once what it
        handed over is committed (its window left for the next run; nothing is skipped)."""
        self.draining = True

    def stop_with(self, stop: asyncio.Event) -> None:
        """Set ``stop`` if the run must end on its own (the committer died): for a loop other
        than ``run_forever`` (a fleet worker)."""
        self._stop = stop

    def redact(self, text: str) -> str:
        """``text`` with every secret the run holds taken out."""
        return self._redact(text)

    def streams(self) -> list[tuple[TenantConfig, Category]]:
        return [(t, c) for t in self.config.tenants for c in t.categories]

    # --- health ----------------------------------------------------------------------------

    def health(self, tenant: str, category: str) -> StreamHealth:
        """The stream's health as this process knows it."""
        return self._health.get((tenant, category), NEVER_POLLED)

    def not_ready(self) -> list[str]:
        """Every configured stream that is neither collecting nor degraded for less than
        three of its poll intervals (``/readyz``), as ``tenant/category: state (reason)``."""
        now = self._clock.time()
        out = []
        for tenant, category in self.streams():
            health = self.health(tenant.name, category.value)
            if not health.ready(tenant.poll_interval, now):
                out.append(f"{tenant.name}/{category.value}: {health.state} ({health.reason})")
        return out

    async def refresh_health(self) -> None:
        """A fleet worker: read every stream's health from the store again (at most every
        ``health_refresh`` seconds), since the other workers poll most streams. A single
        process knows its own and does nothing here."""
        if not self.config.fleet or self._store is None:
            return
        if time.monotonic() - self._health_read < self.health_refresh:
            return
        try:
            await self._read_health()
        except ConnectorError as exc:  # the next refresh tries again
            _log.warning("health_refresh_failed", error=self._redact(str(exc)))

    async def _read_health(self) -> None:
        self._health_read = time.monotonic()
        try:
            states = await self.store.streams(counters=False)
        except Exception as exc:  # a malformed value: its stream's poll reports it
            _log.warning(
                "health_unreadable",
                error=self._redact(str(InternalError(exc))),
                reason="every stream counts as never polled until its next poll",
            )
            return
        for s in states:
            key = (s.tenant, s.category)
            self._health[key] = s.health or derived(
                None if s.last_success is None else s.last_success.timestamp(),
                None if s.last_error_at is None else s.last_error_at.timestamp(),
                s.last_error,
            )
            if s.cursor is not None:
                self.metrics.committed(s.tenant, s.category, {}, s.cursor.timestamp())

    def _health_rows(self) -> list[StreamRow]:
        return [(t.name, c.value, self.health(t.name, c.value).state) for t, c in self.streams()]

    def _became(self, key: tuple[str, str], health: StreamHealth) -> None:
        """Remember ``health``, its ``since`` kept while the state is (as the store does)."""
        before = self._health.get(key)
        if before is not None and before.state is health.state and before.since is not None:
            health = StreamHealth(health.state, health.reason, health.advice, before.since)
        self._health[key] = health

    def _finished(self, result: StreamResult) -> StreamHealth:
        """The health a poll's last commit brings (kept in ``result`` for ``poll``)."""
        result.health = collecting(self._clock.time())
        return result.health

    def _accepted(self, tenant: str, category: str) -> StreamHealth | None:
        """Mimecast answered a poll of the stream: ``authenticated``, if it had no answer
        accepted yet (never polled, or failing). Known here at once; the store has it with
        the page's commit (the caller's), not in a write of its own: a first run of 12,000
        streams would otherwise cost 12,000 transactions on the event loop."""
        key = (tenant, category)
        if category not in _STREAM_CATEGORIES:
            return None  # a lane that is not a stream of its own (a backfill's)
        if self.health(tenant, category).state not in (State.CONFIGURED, State.FAILING):
            return None
        health = accepted(self._clock.time())
        self._became(key, health)
        return health

    @property
    def secrets(self) -> list[str]:
        """Every secret the run holds (the configuration's, and those of earlier reloads)."""
        return list(self._secrets)

    # --- one poll ------------------------------------------------------------------------

    async def window(
        self, tenant: TenantConfig, category: Category, now: datetime
    ) -> tuple[datetime, datetime]:
        """``[max(start, cursor - lookback), now]``.

        Without a cursor (the first poll) the window opens at the tenant's ``start``, or 24 h
        back. With one, the default never applies: after a long outage the window reaches back
        to the cursor, however far, so nothing in between is skipped.
        """
        return self._window(tenant, await self.store.cursor(tenant.name, category.value), now)

    def _window(
        self, tenant: TenantConfig, cursor: datetime | None, now: datetime
    ) -> tuple[datetime, datetime]:
        if cursor is None:
            start = tenant.start or (now - DEFAULT_START)
        else:
            start = cursor - self.config.lookback
            if tenant.start is not None:
                start = max(start, tenant.start)
        return min(start, now), now

    async def poll(
        self,
        tenant: TenantConfig,
        category: Category,
        *,
        lease: int | None = None,
        position: tuple[datetime | None, float | None] | None = None,
    ) -> StreamResult:
        """Read one stream's window to its end, delivering and committing page by page.
        ``lease``: a fleet poll's (``PostgresStore.take_lease``), checked at every commit;
        ``position``: the stream's, if read with the lease (else the store is asked).

        Nothing here may raise: every failure, ours included, ends up in the result (and in
        the store, for ``status``), so that no stream stops without saying why.
        """
        result = StreamResult(tenant.name, category)
        try:
            await self._poll(tenant, category, result, lease, position)
        except Exception as caught:
            await self._failed(result, caught, tenant.api)
        else:
            if result.health is not None:  # as its last commit stored it (``Commit.health``)
                self._became((tenant.name, category.value), result.health)
        return result

    async def _poll(
        self,
        tenant: TenantConfig,
        category: Category,
        result: StreamResult,
        lease: int | None,
        position: tuple[datetime | None, float | None] | None,
    ) -> None:
        now = datetime.fromtimestamp(self._clock.time(), UTC).replace(microsecond=0)
        if category.is_feed:
            await self._poll_feed(
                tenant, result, Lane(tenant.name, category.value, lease=lease), now
            )
            return
        stored, kept = position or await self.store.position(tenant.name, category.value)
        start, end = self._window(tenant, stored, now)
        key = (tenant.name, category.value)
        began = self._began.get(key)
        if began is None:
            began = await self.store.began(*key)
            if began is None and stored is None and self.config.fleet:
                # A first poll: a backfill in another process may set ``began`` while this one
                # reads. Set it first (the store keeps whichever came first, and the backfill
                # reads back which) and go by what won.
                await self.store.set_began(*key, start)
                began = await self.store.began(*key)
            if began is not None:  # set once, never changed after: not asked again
                self._began[key] = began
        if began is not None and began > start:  # a backfill read what is before
            start = min(began, end)
        await self._read_window(
            tenant,
            category,
            result,
            Lane(tenant.name, category.value, lease=lease, began=start),
            (start, end),
            _horizon(stored, kept, start),
            health=self._finished(result),
        )

    async def _read_window(
        self,
        tenant: TenantConfig,
        category: Category,
        result: StreamResult,
        lane: Lane,
        window: tuple[datetime, datetime],
        horizon: float,
        *,
        health: StreamHealth | None = None,
        marker: str | None = None,
        gate: Gate | None = None,
    ) -> None:
        """Read ``window`` for ``lane``, page by page; once it is read whole, commit its end as
        the cursor, with ``health`` and ``marker``. ``gate``: a backfill's share of the quota."""
        start, end = window
        # Pages handed to the committer and not yet known to be in: at most PAGES_IN_FLIGHT.
        pending: deque[asyncio.Future[dict[str, int]]] = deque()
        # Only a window far longer than a live poll's (a first run, a backfill, a long outage)
        # says how far it has come: thousands of streams polled live must not flood the log.
        long_window = (end - start) > PROGRESS_WINDOW
        async with self._settling(result, pending):
            whole = await self._read(
                tenant, category, result, lane, pending, start, end, horizon, long_window, gate
            )
            if not whole:
                return  # drained: the window's end is not reached, so the cursor stays
            pending.append(
                await self._committer.submit(
                    lane,
                    Handled(),
                    cursor=end,
                    horizon=horizon,
                    prune_before=self._prune_point(lane, end - self._keep),
                    success_at=self._clock.time(),
                    health=health,
                    marker=marker,
                )
            )

    def _prune_point(self, lane: Lane, before: datetime) -> datetime | None:
        """``before``, if the lane's ids before it are to be pruned with this commit: when the
        run has not pruned it yet, or last did ``PRUNE_STEP`` or more before; else None."""
        key = (lane.tenant, lane.category)
        last = self._pruned.get(key)
        if last is not None and before - last < PRUNE_STEP:
            return None
        self._pruned[key] = before
        return before

    async def take_backfills(self) -> None:
        """Start the backfills waiting for this run (SQLite state only): requests left by
        ``backfill`` beside the state, and those of the store not done (a run killed during
        one); each once. A request file is removed when its backfill is done."""
        state = self.config.state
        if not isinstance(state, Path):
            return  # PostgreSQL: `backfill` reads in its own process, beside the workers
        jobs: dict[str, tuple[Backfill, Path | None]] = {}
        done: set[str] = set()
        for row in await self.store.streams(counters=False):
            parsed = Backfill.parse(row.marker) if is_backfill(row.category) else None
            if parsed is not None:
                if parsed[1]:
                    done.add(parsed[0].lane)
                else:
                    jobs[parsed[0].lane] = (parsed[0], None)
        folder = request_folder(state)
        requests, broken = await asyncio.to_thread(read_requests, folder)
        for job in requests:
            request = folder / f"{job.tenant}.{job.category.value}.json"
            if job.lane in done:  # read whole before a crash took the file's removal
                await asyncio.to_thread(request.unlink, missing_ok=True)
            else:
                jobs[job.lane] = (job, request)
        for path, why in broken:
            _log.error("backfill_request_broken", file=str(path), problem=why)
        for lane, (job, file) in jobs.items():
            if lane not in self._backfills:
                self._backfills[lane] = asyncio.create_task(self._backfill_until_done(job, file))

    async def _backfill_until_done(self, job: Backfill, request: Path | None) -> None:
        _log.info(
            "backfill_started",
            tenant=job.tenant,
            category=job.category.value,
            start=job.start.isoformat(),
            end=job.end.isoformat(),
        )
        try:
            result = await self.backfill(job)
        finally:
            self._backfills.pop(job.lane, None)
        if result.error is None and not self.draining:
            if request is not None:
                await asyncio.to_thread(request.unlink, missing_ok=True)
            _log.info(
                "backfill_done",
                tenant=job.tenant,
                category=job.category.value,
                records=result.counts.get("fetched", 0),
                alerts=result.alerts,
            )

    async def backfill(self, job: Backfill) -> StreamResult:
        """Read ``job``'s range into its own stream of the state (``runner._backfill``), from
        where that stream's cursor stands; like ``poll``, nothing here raises."""
        result = StreamResult(job.tenant, job.category)
        try:
            tenant = self._tenants.get(job.tenant)
            if tenant is None or job.category not in tenant.categories:
                raise ConfigError(
                    [("backfill", f"{job.tenant}/{job.category.value} is not configured")]
                )
            # A live poll of the stream in flight here may be its first, whose window was set
            # before the backfill's ``began``: it ends first, and its commit records where it
            # began, which the backfill then stops before. (Polls start from this loop only:
            # none can start between the check and ``set_began``, which does not yield on
            # SQLite; a PostgreSQL backfill runs in a process of its own, with no live polls.)
            while (job.tenant, job.category) in self._polling:
                self._poll_ended.clear()
                await self._poll_ended.wait()
            await self.store.set_began(job.tenant, job.category.value, job.end + _SECOND)
            began = await self.store.began(job.tenant, job.category.value)
            end = job.end if began is None else min(job.end, began - _SECOND)
            stored, kept = await self.store.position(job.tenant, job.lane)
            lane = Lane(job.tenant, job.lane)
            if stored is None:  # recorded first: a later command knows this range is under way
                first = await self._committer.submit(
                    lane, Handled(), cursor=None, horizon=-math.inf, prune_before=None,
                    marker=job.marker(),
                )  # fmt: skip
                await first
            start = job.start if stored is None else max(job.start, stored)
            if end < start:  # the live stream reads all of it
                done = await self._committer.submit(
                    lane, Handled(), cursor=None, horizon=-math.inf, prune_before=None,
                    marker=job.marker(done=True),
                )  # fmt: skip
                await done
                return result
            limiter = self._limiters[api_user(tenant)]
            await self._read_window(
                tenant,
                job.category,
                result,
                lane,
                (start, end),
                _horizon(stored, kept, job.start),
                marker=job.marker(done=True),
                gate=Gate(job.share, limiter.quota, self._clock),
            )
        except Exception as caught:
            result.message = self._redact(str(caught))
            result.error = caught if isinstance(caught, ConnectorError) else InternalError(caught)
            _log.error(
                "backfill_failed",
                tenant=job.tenant,
                category=job.category.value,
                error=result.message,
            )
        return result

    @contextlib.asynccontextmanager
    async def _settling(
        self, result: StreamResult, pending: deque[asyncio.Future[dict[str, int]]]
    ) -> AsyncIterator[None]:
        """Around a poll's reading: then every page handed over is waited for and counted."""
        try:
            yield
            while pending:
                self._add(result, await pending.popleft())
        except asyncio.CancelledError:
            # The run is stopping: what the committer has not taken yet is left out (and with
            # it, the rest of this poll's pages); what it is writing may still commit, whole.
            for waiting in pending:
                waiting.cancel()
            raise
        except Exception:
            # What was handed over may still commit (each page is whole); wait for it, so that
            # no page of this poll is left behind, then report the first error.
            for counts in await asyncio.gather(*pending, return_exceptions=True):
                if isinstance(counts, dict):
                    self._add(result, counts)
            raise

    async def _poll_feed(
        self, tenant: TenantConfig, result: StreamResult, lane: Lane, now: datetime
    ) -> None:
        """One poll of a receipt feed (``runner._feed``): from the stream's marker, piece by
        piece, each committed with the marker it reached."""
        marker = Marker.parse(await self.store.marker(tenant.name, lane.category))
        pending: deque[asyncio.Future[dict[str, int]]] = deque()
        held = self._committer.held

        async def submit(
            handled: Handled, reached: Marker, cursor: datetime | None
        ) -> asyncio.Future[dict[str, int]]:
            # Mimecast answered: the credentials are accepted.
            health = self._accepted(lane.tenant, lane.category) if not result.pages else None
            # A piece waiting for its commit holds one of the run's page permits, as a page does.
            await held.acquire()
            try:
                done = await self._committer.submit(
                    lane,
                    handled,
                    cursor=cursor,
                    horizon=-math.inf,
                    prune_before=None,
                    marker=reached.text(),
                    health=health,
                )
            except BaseException:
                held.release()
                raise
            done.add_done_callback(lambda _done: held.release())
            result.pages += 1
            return done

        async def drain() -> None:
            while len(pending) > PAGES_IN_FLIGHT or (pending and pending[0].done()):
                self._add(result, await pending.popleft())

        reader = FeedReader(
            tenant=tenant.name,
            api=tenant.api,
            client=self._clients[tenant.name],
            chain=self._receipt_chains[tenant.name],
            submit=submit,
            pending=pending,
            drain=drain,
            now=now,
            first_day=(tenant.start or now - DEFAULT_START).date(),
        )
        async with self._settling(result, pending):
            reached = await reader.read(marker)
            pending.append(
                await self._committer.submit(
                    lane,
                    Handled(),
                    cursor=None,
                    horizon=-math.inf,
                    prune_before=now - FEED_KEEP,
                    success_at=self._clock.time(),
                    marker=reached.text(),
                    health=self._finished(result),
                )
            )

    @staticmethod
    def _add(result: StreamResult, counts: dict[str, int]) -> None:
        result.alerts += counts.get("alerts", 0)
        for name, value in counts.items():
            result.counts[name] = result.counts.get(name, 0) + value

    async def _read(
        self,
        tenant: TenantConfig,
        category: Category,
        result: StreamResult,
        lane: Lane,
        pending: deque[asyncio.Future[dict[str, int]]],
        start: datetime,
        end: datetime,
        horizon: float,
        long_window: bool,
        gate: Gate | None = None,
    ) -> bool:
        """Read the window page by page, handing each page to the committer in order; False
        if the run began to drain before the window's end."""
        low, high = start.timestamp(), end.timestamp()
        chain = self._chains[(tenant.name, category)]
        client = self._clients[tenant.name]
        shown = self._clock.monotonic()
        # Whether every record of the window read so far came oldest first, and the newest of
        # them: only then does a committed page prove that nothing older is still to come.
        # A page proves it only if it climbs (two distinct times at least): a page of one
        # second could be the first page of a server paging newest first.
        ordered, reached = True, -math.inf
        # A page read and not yet committed holds one of the run's MAX_PAGES_HELD permits, taken
        # once the tenant's rate limiter let its request through: however many streams poll at
        # once, and however slow a sink is, only so many pages wait in memory, and a stream
        # waiting on its quota holds none.
        permit = _Permit(self._committer.held)
        admit = permit.take if gate is None else gated(gate, permit.take)
        pages = aiter(client.pages(category, start, end, admit=admit))
        while True:
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                permit.give_back()
                return True
            except BaseException:
                permit.give_back()
                raise
            owned = permit.hand_over()
            try:
                # Mimecast answered: the credentials are accepted.
                health = self._accepted(lane.tenant, lane.category) if not result.pages else None
                handed = await self._hand_over(
                    page, chain, lane, result, (low, high), horizon, ordered, reached, health
                )
            except BaseException:
                owned.give_back()
                raise
            ordered, reached, done = handed
            done.add_done_callback(owned.given_back)
            pending.append(done)
            while len(pending) > PAGES_IN_FLIGHT or (pending and pending[0].done()):
                self._add(result, await pending.popleft())
            if self.draining:
                _log.info(
                    "poll_drained",
                    tenant=tenant.name,
                    category=category.value,
                    pages=result.pages,
                    reason="stopping: the pages read are committed, the rest is read next run",
                )
                return False
            if long_window and self._clock.monotonic() - shown >= PROGRESS_EVERY and reached > low:
                # Long windows (a first run over weeks of logs) say how far they have come.
                shown = self._clock.monotonic()
                progress = (reached - low) / max(1.0, high - low)
                _log.info(
                    "progress",
                    tenant=tenant.name,
                    category=category.value,
                    reached=datetime.fromtimestamp(reached, UTC).isoformat(),
                    window_done=f"{min(progress, 1.0):.0%}",
                    pages=result.pages,
                    records=result.counts.get("fetched", 0),
                    alerts=result.alerts,
                )

    async def _hand_over(
        self,
        page: Page,
        chain: Chain,
        lane: Lane,
        result: StreamResult,
        window: tuple[float, float],
        horizon: float,
        ordered: bool,
        reached: float,
        health: StreamHealth | None = None,
    ) -> tuple[bool, float, asyncio.Future[dict[str, int]]]:
        """Chain one page and hand it to the committer with the cursor its order proves (and
        ``health``, if the stream's changes with it); return the order seen so far and the
        future of its commit."""
        result.pages += 1
        handled = chain.process(page.records, window[1], utf8=page.utf8, window=window)
        cursor: datetime | None = None
        if ordered and handled.newest is not None and handled.oldest is not None:
            if handled.ordered and handled.oldest >= reached:
                if handled.newest > handled.oldest:
                    cursor = datetime.fromtimestamp(handled.newest, UTC)
                reached = handled.newest
            else:
                ordered = False
                if page.category.ordered:  # (the rejection log promises no order: no news)
                    _log.info(
                        "records_out_of_order",
                        tenant=lane.tenant,
                        category=lane.category,
                        reason="Mimecast did not page this window oldest first; the checkpoint "
                        "moves when the whole window has been read",
                    )
        done = await self._committer.submit(
            lane,
            handled,
            cursor=cursor,
            horizon=horizon,
            # Not within a window: a record of this window older than the cursor may still
            # come (a server that only looked ordered), and its id must still be known.
            prune_before=None,
            health=health,
        )
        return ordered, reached, done

    async def _failed(self, result: StreamResult, caught: Exception, api: str) -> None:
        """Record a failed poll: in the result, in the store for ``status`` (with the stream's
        health, in the same statement), in the log."""
        exc = caught if isinstance(caught, ConnectorError) else InternalError(caught)
        result.error = exc
        if isinstance(exc, SinkRejectedError) or (
            isinstance(exc, StateError) and not exc.retryable
        ):
            # No checkpoint can advance until a person acts: stop instead of retrying forever.
            self.halted = exc
        result.message = self._redact(str(exc))
        now = self._clock.time()
        category = result.category.value
        # A poll taken over by another worker says nothing of the stream's health.
        health = (
            None
            if isinstance(exc, LeaseLostError)
            else classify(exc, result.message, tenant=result.tenant, api=api, at=now)
        )
        result.health = health
        if health is not None:
            self._became((result.tenant, category), health)
        try:
            await self.store.record_error(result.tenant, category, result.message, now, health)
        except Exception as store_error:
            _log.error("recording_error_failed", error=self._redact(str(store_error)))
        _log.error(
            "poll_failed",
            tenant=result.tenant,
            category=category,
            request_id=exc.request_id if isinstance(exc, ApiError) else None,
            fault=exc.fault,
            retryable=exc.retryable,
            health=None if health is None else health.state.value,
            error=result.message,
        )

    # --- whole runs ----------------------------------------------------------------------

    async def run_once(self) -> list[StreamResult]:
        """Poll every stream once, concurrently, from its checkpoint up to now."""
        return list(await asyncio.gather(*(self.poll(t, c) for t, c in self.streams())))

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll every stream on its schedule (``runner._schedule``) until ``stop`` is set.

        One loop starts the polls that are due; each puts its stream back on the schedule when
        it ends. A poll task that dies (a bug: ``poll`` records every error it can name) stops
        the run, with ``died`` saying why, rather than leaving its stream unpolled.
        """
        # The schedule runs on the event loop's own clock: it is what the waits below follow
        # (an injected clock tells the time of windows, not when to wake).
        loop = asyncio.get_running_loop()
        monotonic = loop.time
        schedule = self._schedule = Schedule(self.streams(), monotonic(), self._rng)
        self._stop = stop
        running: set[asyncio.Task[None]] = set()
        alarm = self._wake = Alarm(loop)

        async def one(entry: Due) -> None:
            key = (entry.tenant.name, entry.category)
            try:
                result = await self.poll(entry.tenant, entry.category)
            finally:
                self._polling.discard(key)
                self._poll_ended.set()
            if self.halted is not None:
                _log.error(
                    "run_halted",
                    error=self._redact(str(self.halted)),
                    reason="nothing can be committed until a person acts",
                )
                stop.set()
                return
            current = self._tenants.get(key[0])
            if current is not entry.tenant:
                # Reloaded meanwhile: a removed tenant (or category) is not polled again; a
                # changed one goes on with its new settings from now.
                successor = self._deferred.pop(key, None)
                if successor is not None:
                    schedule.add(successor, entry.category, monotonic())
                alarm.ring()
                return
            wait = schedule.done(entry, result.error, monotonic())
            if result.error is not None:
                _log.warning(
                    "stream_backing_off",
                    tenant=entry.tenant.name,
                    category=entry.category.value,
                    failures=entry.failures,
                    wait_s=round(wait, 1),
                )
            alarm.ring_by(entry.at)  # due a poll interval (or a backoff) from now: rarely

        def ended(task: asyncio.Task[None]) -> None:
            running.discard(task)
            if not task.cancelled() and task.exception() is not None:
                error = self._redact(repr(task.exception()))
                _log.error(
                    "stream_task_died", error=error, reason="stopping the run, not hiding it"
                )
                if self.died is None:
                    self.died = f"a stream's task died: {error}"
                stop.set()

        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: alarm.ring())
        drained = False
        with self.on_schedule():
            try:
                while not stop.is_set():
                    for entry in schedule.due(monotonic() + GATHER):
                        # Marked before the task first runs: a reload in between must see it.
                        self._polling.add((entry.tenant.name, entry.category))
                        task = asyncio.create_task(one(entry))
                        running.add(task)
                        task.add_done_callback(ended)
                    wait = schedule.wait(monotonic())
                    await alarm.sleep(None if wait is None else monotonic() + wait)
                await self._drain(running)
                drained = True
            finally:
                stopping.cancel()
                if not drained:  # cancelled, or our own bug: nothing to wait for
                    running |= set(self._backfills.values())
                    for task in list(running):
                        task.cancel()
                    await asyncio.gather(*running, return_exceptions=True)
                self._schedule = self._wake = self._stop = None

    async def _drain(self, running: set[asyncio.Task[None]]) -> None:
        """Let the polls in flight commit what they read (``DRAIN_TIMEOUT`` at most), then
        cancel what is left."""
        self.drain()
        running = running | set(self._backfills.values())
        if running:
            _log.info(
                "draining",
                polls=len(running),
                timeout_s=self.drain_timeout,
                reason="committing the pages being read; a second signal exits at once",
            )
            _, late = await asyncio.wait(set(running), timeout=self.drain_timeout)
            for task in late:
                task.cancel()
            if late:
                _log.warning(
                    "drain_timed_out",
                    polls=len(late),
                    reason="cancelled: what they had not committed is read again next run",
                )
            await asyncio.gather(*running, return_exceptions=True)
