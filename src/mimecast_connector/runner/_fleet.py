"""A fleet: several ``run`` workers, on one machine or many, sharing the streams through
procrastinate, a task queue on the PostgreSQL database that also holds the state.

Why procrastinate (README "A fleet of workers" says more): the state is in PostgreSQL already,
so a queue in the same database adds no server; it has what a fleet needs as database
guarantees rather than a protocol of ours: a **lock** per job (PostgreSQL refuses a second
running job with the same lock: a unique index), a **queueing lock** (at most one waiting job
with a given key), and **worker heartbeats**.

How the streams are shared:

* **One job is one round of one tenant's polls.** Its lock and queueing lock are the
  tenant's key, so a tenant has at most one round running and one waiting, and none of its
  streams is ever polled by two workers at once. Any worker with a free slot takes the next
  round that is due: adding a worker spreads the tenants at once, with no restart of the
  others, and removing one hands them to the rest. (A job per stream cost the queue three
  statements, their triggers and their round trips for every poll, about half of a worker's
  CPU and most of PostgreSQL's: a tenant's streams, due together, share them.)
* **A round polls every stream of the tenant that is due** (within ``ROUND_GATHER``), each
  on its own; while one is still reading (a long window: a first poll, a catch-up after an
  outage), the round polls the others again as each falls due, so no stream waits for
  another's. When none is reading, the round **schedules the next** before it ends, at the
  earliest time one of them is due: one poll interval after a stream's success, or after the
  backoff of ``runner._schedule`` (each stream's due time and count of failures in a row
  travel with the job). A poll cancelled by a stopping worker is due again at once.
* **Each poll takes a lease** on its stream first (a number that only grows; the streams a
  round starts together take theirs in one statement, ``take_leases_and_positions``). Every
  page is checked against it before delivery, and every commit in its transaction: a poll
  whose worker was presumed dead but was only stalled (a paused VM, a frozen loop, a cut
  network) delivers and commits nothing more once another poll of its stream has started. So
  even then no two polls of one stream both move its checkpoint.
* **The sweep** runs in every worker every ``SWEEP_EVERY`` seconds, outside the round slots
  (so busy slots cannot delay it), one worker at a time (a PostgreSQL advisory lock). The
  rounds of a worker whose heartbeat stopped ``STALLED_AFTER`` seconds ago (killed, frozen, cut
  off) are deleted and given to the others as new rounds (its own late ``finish`` then finds
  nothing to delete), and any configured tenant with no round waiting or running gets one (a
  new tenant, a chain broken by a crash between two statements). A worker starting does the
  latter at once, in batches, spread over the start-up rate.
* The procrastinate worker is restarted (backing off) when it ends on its own, a database
  restart for instance; only an outage of more than ``MAX_RESTARTS`` tries stops the process.
* A round of a tenant this worker does not know (removed from its configuration) ends
  without a successor: every worker of a fleet must share one configuration, and a worker that
  does know the tenant gives it a round back at its next sweep. A poll job of an earlier
  release (one stream's, ``RETIRED_TASK``) ends at once: its tenant's round polls the stream.
  Upgrade a fleet by stopping every worker, then starting the new release's.

Takeover: a killed worker's streams are polled again by the others at most ``TAKEOVER``
seconds after its last heartbeat (stalled after + one sweep + one fetch interval). What it was
writing when it died is safe either way: a page is delivered, then committed in one
transaction; the new poll starts from the last commit and the delivered ids suppress what was
committed before. A page delivered and not committed is delivered again (at least once, as for
a single process with a network sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import weakref
from asyncio import FIRST_COMPLETED
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
import structlog

from mimecast_connector._categories import Category
from mimecast_connector._errors import LeaseLostError
from mimecast_connector.config import TenantConfig
from mimecast_connector.runner._runner import Runner, StreamResult
from mimecast_connector.runner._schedule import START_RATE, next_wait
from mimecast_connector.state._postgres import PostgresStore

_log = structlog.get_logger("mimecast_connector.fleet")

#: The queue of the tenants' rounds of polls.
POLLS = "mimecast-polls"
#: The task of a round, and that of an earlier release's one-stream poll (ended unrun).
ROUND_TASK = "mimecast_connector.round"
RETIRED_TASK = "mimecast_connector.poll"
#: Seconds: a round polls together the streams due within this of each other (a tenant's
#: streams stay in step rather than each needing a job of its own a moment apart).
ROUND_GATHER = 1.0
#: Seconds before a stream whose poll could not start (its lease not taken: the database
#: away) or was cancelled while the worker went on is tried again.
RETRY_SOON = 15.0
#: Seconds a pooled queue connection may have been idle and still be handed out unchecked. The
#: queue takes a connection three times a round (fetch, finish, defer), and checking it each
#: time (a round trip) cost about a tenth of a worker's CPU; a connection idle longer is checked
#: as before. One the server dropped within this time fails its first use instead, and the
#: queue worker starts again, as after any outage (see ``Fleet._work``).
POOL_CHECK_IDLE = 1.0
#: Rounds one worker runs at once at most (each polls one tenant's streams).
CONCURRENCY = 64
#: Seconds between a worker's heartbeats, and without one before its rounds are taken over.
HEARTBEAT = 2.0
STALLED_AFTER = 20.0
#: Seconds between sweeps, and between a worker's looks for due polls.
SWEEP_EVERY = 5.0
FETCH_EVERY = 0.5
#: Seconds from a worker's last heartbeat until its streams are polled by others, at most.
TAKEOVER = STALLED_AFTER + SWEEP_EVERY + FETCH_EVERY
#: Seconds a stopping worker lets its rounds finish before it cancels them.
GRACE = 10.0
#: Times in a row the procrastinate worker may end on its own (backing off 1, 2, 4 ... 30 s
#: between) before the process gives up: about five minutes of database outage.
MAX_RESTARTS = 12
#: Seconds between refreshes of the queue's planner statistics (by whichever worker sweeps).
ANALYZE_EVERY = 30.0
#: New polls deferred in one statement at start-up.
DEFER_BATCH = 500
#: Advisory lock keys: creating procrastinate's tables; one sweep at a time in the fleet.
_SCHEMA_LOCK = 0x70726F63  # "proc"
_SWEEP_LOCK = 0x73776565  # "swee"
_FETCH_INDEX = (
    "CREATE INDEX IF NOT EXISTS mimecast_procrastinate_due ON procrastinate_jobs "
    "(scheduled_at) WHERE status = 'todo'"
)


def tenant_key(tenant: str) -> str:
    """The lock and queueing lock of a tenant's rounds."""
    return f"mimecast-tenant:{tenant}"


class Fleet:
    """This worker's part of the fleet: a procrastinate worker whose jobs are ``runner``'s
    polls. ``runner`` is started, on the PostgreSQL state at ``url``."""

    def __init__(
        self,
        runner: Runner,
        url: str,
        *,
        concurrency: int = CONCURRENCY,
        rng: random.Random | None = None,
    ) -> None:
        store = runner.store
        assert isinstance(store, PostgresStore), "a fleet's state is PostgreSQL"
        self._store = store
        self._runner = runner
        self._url = url
        self._rng = rng or random.Random()
        self._concurrency = concurrency
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=url, min_size=1, max_size=6, pool_factory=_queue_pool
            )
        )
        self._round_task = self.app.task(name=ROUND_TASK, queue=POLLS)(self._round)
        self.app.task(name=RETIRED_TASK, queue=POLLS)(self._retired)
        self._stop: asyncio.Event | None = None
        self.polls = 0  # stream polls this worker ran, for tests and benchmarks
        self.restarts = 0  # times the procrastinate worker was started again
        self._analyzed = -ANALYZE_EVERY

    async def run(self, stop: asyncio.Event) -> None:
        """Take polls until ``stop`` is set (or the run halts, or the committer dies); then
        let the polls in flight finish (``GRACE`` seconds at most) and leave."""
        self._stop = stop
        self._runner.stop_with(stop)
        async with self.app.open_async():
            await self._ensure_schema()
            await self.reconcile(stop)
            await self._analyze()
            sweeper = asyncio.create_task(self._sweeper(stop), name="fleet-sweeper")
            try:
                with self._runner.on_schedule():  # quiet pages' commits wait for company
                    await self._work(stop)
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper

    async def _work(self, stop: asyncio.Event) -> None:
        """Run the procrastinate worker until ``stop``; start it again, backing off, when it
        ends on its own (its database went away); give up after ``MAX_RESTARTS`` in a row."""
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.is_set():
            began = loop.time()
            worker = asyncio.create_task(
                self.app.run_worker_async(
                    queues=[POLLS],
                    concurrency=self._concurrency,
                    install_signal_handlers=False,
                    listen_notify=False,  # every poll is scheduled: a notice wakes nobody usefully
                    delete_jobs="always",
                    update_heartbeat_interval=HEARTBEAT,
                    stalled_worker_timeout=STALLED_AFTER,
                    fetch_job_polling_interval=FETCH_EVERY,
                    shutdown_graceful_timeout=GRACE,
                    name="mimecast-connector",
                ),
                name="fleet-worker",
            )
            stopping = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({worker, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not worker.done():
                    worker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
            if stop.is_set():
                return
            failures = 1 if loop.time() - began > 60.0 else failures + 1
            error = worker.exception() if not worker.cancelled() else None
            reason = self._runner.redact(repr(error)) if error else "it stopped"
            if failures > MAX_RESTARTS:
                self._runner.died = (
                    f"the fleet worker stopped {failures} times in a row (last: {reason}); is "
                    "the PostgreSQL server up?"
                )
                return
            wait = min(2.0 ** (failures - 1), 30.0)
            _log.error("fleet_worker_restarting", error=reason, attempt=failures, wait_s=wait)
            self.restarts += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def _ensure_schema(self) -> None:
        """Create procrastinate's tables in this database the first time (one worker does),
        and the index that keeps a worker's look for due polls cheap with thousands waiting."""
        async with (
            await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn,
            conn.transaction(),
        ):
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            found = await (
                await conn.execute(
                    "SELECT to_regclass('procrastinate_jobs') IS NOT NULL, "
                    "to_regclass('mimecast_procrastinate_due') IS NOT NULL"
                )
            ).fetchone()
            assert found is not None
            if not found[0]:
                await conn.execute(self.app.schema_manager.get_schema())
                _log.info("fleet_schema_created", reason="first worker on this database")
            if not found[1]:  # later starts need no CREATE privilege
                await conn.execute(_FETCH_INDEX)

    async def reconcile(self, stop: asyncio.Event | None = None) -> int:
        """Give every configured tenant with no round waiting or running one, spread over the
        start-up rate (``START_RATE`` streams a second), in batches; return how many were
        scheduled."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT DISTINCT lock FROM procrastinate_jobs "
            "WHERE queue_name = %(queue)s AND status IN ('todo', 'doing')",
            queue=POLLS,
        )
        known = {row["lock"] for row in rows}
        missing = [t for t in self._runner.config.tenants if tenant_key(t.name) not in known]
        now = datetime.now(UTC)
        scheduled = 0
        streams = 0  # the streams of the tenants before: a tenant's slot in the spread
        for start in range(0, len(missing), DEFER_BATCH):
            if stop is not None and stop.is_set():
                break
            jobs = []
            for tenant in missing[start : start + DEFER_BATCH]:
                at = now + timedelta(seconds=(streams + self._rng.random()) / START_RATE)
                jobs.append(self._job(tenant.name, {}, {}, at))
                streams += len(tenant.categories)
            try:
                await self.app.job_manager.batch_defer_jobs_async(jobs)
                scheduled += len(jobs)
            except procrastinate.exceptions.AlreadyEnqueued:
                # Another worker (or a round) scheduled some meanwhile: these one by one.
                for job in jobs:
                    scheduled += await self._defer_job(job)
        if scheduled:
            _log.info("fleet_tenants_scheduled", tenants=scheduled)
        return scheduled

    def _job(
        self, tenant: str, due: Mapping[str, float], failures: Mapping[str, int], at: datetime
    ) -> procrastinate.jobs.Job:
        """A round of ``tenant`` at ``at``; ``due``: when each stream is (epoch seconds; a
        stream not named is due at once), ``failures``: each one's failed polls in a row."""
        key = tenant_key(tenant)
        return self._round_task.configure(lock=key, queueing_lock=key, schedule_at=at).make_new_job(
            tenant=tenant, due=dict(due), failures=dict(failures)
        )

    async def _defer_job(self, job: procrastinate.jobs.Job) -> bool:
        """Defer ``job``; False if its tenant has a round waiting already."""
        try:
            await self.app.job_manager.defer_job_async(job)
        except procrastinate.exceptions.AlreadyEnqueued:
            return False
        return True

    async def _retired(self, **_: object) -> None:
        """A one-stream poll job of an earlier release: ended unrun (its tenant's round, which
        a sweep schedules if missing, polls the stream)."""

    async def _round(self, tenant: str, due: object = None, failures: object = None) -> None:
        """One job: poll each of ``tenant``'s streams that is due, each again as it falls due
        while another is still reading; then schedule the next round (also when cancelled).
        A poll that lost its lease leaves the tenant to the round that took it."""
        runner = self._runner
        config = runner.tenant(tenant)
        if config is None:
            _log.warning(
                "fleet_tenant_not_configured",
                tenant=tenant,
                reason="not in this worker's configuration (removed?): every worker of a "
                "fleet must share one configuration; no further round scheduled from here",
            )
            return
        when, failed = _streams_of(config.categories, due, failures)
        running: dict[asyncio.Task[StreamResult], Category] = {}
        handed_on = True
        # At the start, the streams due first (the queue gave the job out at their time, by
        # the database's clock: this worker's may be behind) and those due within
        # ROUND_GATHER of them; later, each stream once it is due.
        edge = max(time.time(), min(when.values(), default=0.0)) + ROUND_GATHER
        try:
            while True:
                if handed_on and not self._stopping():
                    edge = max(edge, time.time())
                    busy = set(running.values())
                    starting = [k for k in config.categories if k not in busy and when[k] <= edge]
                    edge = 0.0
                    leased = await self._leases(config, starting, when)
                    for kind, (lease, position) in leased.items():
                        poll = runner.poll(config, kind, lease=lease, position=position)
                        running[asyncio.create_task(poll)] = kind
                if not running:
                    break
                idle = [when[k] for k in config.categories if k not in running.values()]
                wake = (
                    max(0.0, min(idle) - time.time())
                    if idle and handed_on and not self._stopping()
                    else None
                )
                done, _ = await asyncio.wait(running, timeout=wake, return_when=FIRST_COMPLETED)
                for task in done:
                    kind = running.pop(task)
                    handed_on &= self._polled(config, kind, task.result(), when, failed)
        finally:
            for task, kind in running.items():  # cancelled: due again soon
                task.cancel()
                when[kind] = time.time() + (0.0 if self._stopping() else RETRY_SOON)
            if running:
                await asyncio.gather(*running, return_exceptions=True)
            if handed_on:
                at = datetime.fromtimestamp(min(when.values(), default=time.time()), UTC)
                # Shielded: a worker stopping mid-round still hands the tenant on.
                await asyncio.shield(
                    self._defer_job(
                        self._job(
                            tenant,
                            {k.value: v for k, v in when.items()},
                            {k.value: n for k, n in failed.items() if n},
                            at,
                        )
                    )
                )
        if runner.halted is not None and self._stop is not None:
            _log.error(
                "run_halted",
                error=runner.redact(str(runner.halted)),
                reason="nothing can be committed until a person acts",
            )
            self._stop.set()

    def _stopping(self) -> bool:
        """True once this worker stops (or the run halted): no new poll starts."""
        return (self._stop is not None and self._stop.is_set()) or self._runner.halted is not None

    async def _leases(
        self, config: TenantConfig, kinds: list[Category], when: dict[Category, float]
    ) -> dict[Category, tuple[int, tuple[datetime | None, float | None]]]:
        """Take the leases of the streams ``kinds`` in one statement, with their positions; if
        that fails (the database away), they are due again in ``RETRY_SOON``."""
        if not kinds:
            return {}
        try:
            taken = await self._store.take_leases_and_positions(
                config.name, [k.value for k in kinds]
            )
        except Exception as exc:
            _log.warning(
                "fleet_lease_failed",
                tenant=config.name,
                categories=[k.value for k in kinds],
                error=self._runner.redact(repr(exc)),
                wait_s=RETRY_SOON,
            )
            for kind in kinds:
                when[kind] = time.time() + RETRY_SOON
            return {}
        return {kind: taken[kind.value] for kind in kinds}

    def _polled(
        self,
        config: TenantConfig,
        kind: Category,
        result: StreamResult,
        when: dict[Category, float],
        failed: dict[Category, int],
    ) -> bool:
        """Note a poll's end: when its stream is due again; False if it lost its lease."""
        self.polls += 1
        if isinstance(result.error, LeaseLostError):
            _log.warning("stream_taken_over", tenant=config.name, category=kind.value)
            return False
        failed[kind] = 0 if result.error is None else failed[kind] + 1
        wait = next_wait(config, failed[kind], result.error, self._rng)
        when[kind] = time.time() + wait
        if result.error is not None:
            _log.warning(
                "stream_backing_off",
                tenant=config.name,
                category=kind.value,
                failures=failed[kind],
                wait_s=round(wait, 1),
            )
        return True

    async def _sweeper(self, stop: asyncio.Event) -> None:
        """Sweep every ``SWEEP_EVERY`` seconds until ``stop``; a failed sweep is logged and
        tried again at the next one."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_EVERY)
            if stop.is_set():
                return
            try:
                await self.sweep()
            except Exception as exc:
                _log.warning("fleet_sweep_failed", error=self._runner.redact(repr(exc)))

    async def sweep(self) -> int:
        """Hand the polls of workers that stopped beating to the others; give lost streams a
        poll. One sweep at a time in the fleet; returns how many polls were taken over."""
        async with (
            await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn,
            conn.transaction(),
        ):
            held = await (
                await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_SWEEP_LOCK,))
            ).fetchone()
            if not held or not held[0]:
                return 0  # another worker is sweeping
            stalled = await self.app.job_manager.get_stalled_jobs(
                queue=POLLS, seconds_since_heartbeat=STALLED_AFTER
            )
            taken = await self._take_over(conn, list(stalled))
            await self.reconcile()
        await self._analyze()
        return taken

    async def _analyze(self) -> None:
        """Refresh the planner's statistics of the queue every ``ANALYZE_EVERY`` seconds.

        The queue's rows churn at the poll rate; without fresh statistics (a server with
        autovacuum off, or one that lags) PostgreSQL plans a worker's look for due polls as if
        the table were empty, and with thousands of polls waiting each look takes seconds
        (measured: 2.3 s a poll at 9,000 streams). Best effort: a user that may not ANALYZE
        the table leaves it to autovacuum."""
        now = asyncio.get_running_loop().time()
        if now - self._analyzed < ANALYZE_EVERY:
            return
        self._analyzed = now
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await conn.execute("ANALYZE procrastinate_jobs")
        except psycopg.Error as exc:
            _log.info("fleet_analyze_skipped", error=self._runner.redact(str(exc)))

    async def _take_over(
        self,
        conn: psycopg.AsyncConnection[tuple[object, ...]],
        stalled: Sequence[procrastinate.jobs.Job],
    ) -> int:
        taken = 0
        now = datetime.now(UTC)
        for job in stalled:
            # Deleted only while still the stalled worker's (nothing else changes a running
            # job), and replaced by a new round: the stalled worker's late finish finds no
            # job. A retired one-stream poll is not replaced: the reconcile after does it.
            gone = await (
                await conn.execute(
                    "DELETE FROM procrastinate_jobs WHERE id = %s AND status = 'doing' "
                    "AND worker_id IS NOT DISTINCT FROM %s RETURNING id",
                    (job.id, job.worker_id),
                )
            ).fetchone()
            if gone is None:
                continue
            taken += 1
            args = job.task_kwargs
            if job.task_name == ROUND_TASK:
                due, failures = (
                    _numbers(args.get("due"), float),
                    _numbers(args.get("failures"), int),
                )
                await self._defer_job(self._job(str(args.get("tenant")), due, failures, now))
        if taken:
            _log.warning(
                "fleet_rounds_taken_over",
                rounds=taken,
                reason=f"their worker sent no heartbeat for {STALLED_AFTER:.0f} s",
            )
        return taken


def _numbers(value: object, kind: type[float] | type[int]) -> dict[str, Any]:
    """A job's map of stream -> number, as it came from the queue (JSON): what is not one
    dropped (the stream is then due at once, with no failures counted)."""
    if not isinstance(value, dict):
        return {}
    return {
        str(k): kind(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _streams_of(
    categories: Sequence[Category], due: object, failures: object
) -> tuple[dict[Category, float], dict[Category, int]]:
    """Each configured stream's due time (epoch seconds; 0: at once) and failures in a row,
    from a round's arguments; a stream they do not name (new in the configuration) is due at
    once."""
    when, failed = _numbers(due, float), _numbers(failures, int)
    return (
        {c: when.get(c.value, 0.0) for c in categories},
        {c: max(0, failed.get(c.value, 0)) for c in categories},
    )


def _queue_pool(**options: Any) -> psycopg_pool.AsyncConnectionPool:
    """procrastinate's pool, checking only connections idle over ``POOL_CHECK_IDLE`` seconds."""
    returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
        weakref.WeakKeyDictionary()
    )

    async def note_returned(conn: psycopg.AsyncConnection[Any]) -> None:
        returned[conn] = time.monotonic()

    async def check_if_idle(conn: psycopg.AsyncConnection[Any]) -> None:
        if time.monotonic() - returned.get(conn, -math.inf) > POOL_CHECK_IDLE:
            await psycopg_pool.AsyncConnectionPool.check_connection(conn)

    options.update(check=check_if_idle, reset=note_returned)
    return psycopg_pool.AsyncConnectionPool(**options)
