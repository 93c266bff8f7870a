"""A fleet: several ``run`` workers, on one machine or many, sharing the streams through
procrastinate, a task queue on the PostgreSQL database that also holds the state.

Why procrastinate (README "A fleet of workers" says more): the state is in PostgreSQL already,
so a queue in the same database adds no server; it has what a fleet needs as database
guarantees rather than a protocol of ours: a **lock** per job (PostgreSQL refuses a second
running job with the same lock: a unique index), a **queueing lock** (at most one waiting job
with a given key), and **worker heartbeats**.

How the streams are shared:

* **One job is one poll of one stream.** Its lock and queueing lock are the stream's key, so
  each stream has at most one poll running and one waiting. Any worker with a free slot takes
  the next poll that is due: adding a worker spreads the polls at once, with no restart of the
  others, and removing one hands them to the rest.
* **Each poll schedules the next** before it ends: one poll interval later after a success, or
  after the backoff of ``runner._schedule`` (the count of failures in a row travels with the
  job). A poll cancelled by a stopping worker hands its stream on at once.
* **Each poll takes a lease** on its stream first (``PostgresStore.take_lease``: a number that
  only grows). Every page is checked against it before delivery, and every commit in its
  transaction: a poll whose worker was presumed dead but was only stalled (a paused VM, a
  frozen loop, a cut network) delivers and commits nothing more once another poll of its
  stream has started. So even then no two polls of one stream both move its checkpoint.
* **The sweep** runs in every worker every ``SWEEP_EVERY`` seconds, outside the poll slots (so
  busy slots cannot delay it), one worker at a time (a PostgreSQL advisory lock). The polls of
  a worker whose heartbeat stopped ``STALLED_AFTER`` seconds ago (killed, frozen, cut off) are
  deleted and given to the others as new polls (its own late ``finish`` then finds nothing to
  delete), and any configured stream with no poll waiting or running gets one (a new tenant, a
  chain broken by a crash between two statements). A worker starting does the latter at once,
  in batches, spread over the start-up rate.
* The procrastinate worker is restarted (backing off) when it ends on its own, a database
  restart for instance; only an outage of more than ``MAX_RESTARTS`` tries stops the process.
* A poll of a tenant this worker does not know (removed from its configuration) ends without
  a successor: every worker of a fleet must share one configuration, and a worker that does
  know the tenant gives it a poll back at its next sweep.

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
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
import structlog

from mimecast_connector._categories import Category
from mimecast_connector._errors import LeaseLostError
from mimecast_connector.runner._runner import Runner
from mimecast_connector.runner._schedule import START_RATE, next_wait
from mimecast_connector.state._postgres import PostgresStore

_log = structlog.get_logger("mimecast_connector.fleet")

#: The queue of stream polls.
POLLS = "mimecast-polls"
#: Seconds a pooled queue connection may have been idle and still be handed out unchecked. The
#: queue takes a connection three times a poll (fetch, finish, defer), and checking it each
#: time (a round trip) cost about a tenth of a worker's CPU; a connection idle longer is checked
#: as before. One the server dropped within this time fails its first use instead, and the
#: queue worker starts again, as after any outage (see ``Fleet._work``).
POOL_CHECK_IDLE = 1.0
#: Polls one worker runs at once at most.
CONCURRENCY = 64
#: Seconds between a worker's heartbeats, and without one before its polls are taken over.
HEARTBEAT = 2.0
STALLED_AFTER = 20.0
#: Seconds between sweeps, and between a worker's looks for due polls.
SWEEP_EVERY = 5.0
FETCH_EVERY = 0.5
#: Seconds from a worker's last heartbeat until its streams are polled by others, at most.
TAKEOVER = STALLED_AFTER + SWEEP_EVERY + FETCH_EVERY
#: Seconds a stopping worker lets its polls finish before it cancels them.
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


def stream_key(tenant: str, category: str) -> str:
    """The lock and queueing lock of a stream's polls."""
    return f"mimecast-stream:{tenant}:{category}"


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
        self._poll_task = self.app.task(name="mimecast_connector.poll", queue=POLLS)(self._poll)
        self._stop: asyncio.Event | None = None
        self.polls = 0  # polls this worker ran, for tests and benchmarks
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
        """Give every configured stream with no poll waiting or running one, spread over the
        start-up rate (``START_RATE`` a second), in batches; return how many were scheduled."""
        rows = await self.app.connector.execute_query_all_async(
            "SELECT DISTINCT lock FROM procrastinate_jobs "
            "WHERE queue_name = %(queue)s AND status IN ('todo', 'doing')",
            queue=POLLS,
        )
        known = {row["lock"] for row in rows}
        missing = [
            (tenant.name, category)
            for tenant, category in self._runner.streams()
            if stream_key(tenant.name, category.value) not in known
        ]
        now = datetime.now(UTC)
        scheduled = 0
        for start in range(0, len(missing), DEFER_BATCH):
            if stop is not None and stop.is_set():
                break
            chunk = missing[start : start + DEFER_BATCH]
            jobs = [
                self._job(
                    tenant,
                    category,
                    now + timedelta(seconds=(start + i + self._rng.random()) / START_RATE),
                    0,
                )
                for i, (tenant, category) in enumerate(chunk)
            ]
            try:
                await self.app.job_manager.batch_defer_jobs_async(jobs)
                scheduled += len(jobs)
            except procrastinate.exceptions.AlreadyEnqueued:
                # Another worker (or a poll) scheduled some meanwhile: these one by one.
                for job in jobs:
                    scheduled += await self._defer_job(job)
        if scheduled:
            _log.info("fleet_streams_scheduled", streams=scheduled)
        return scheduled

    def _job(
        self, tenant: str, category: Category, at: datetime, failures: int
    ) -> procrastinate.jobs.Job:
        key = stream_key(tenant, category.value)
        return self._poll_task.configure(lock=key, queueing_lock=key, schedule_at=at).make_new_job(
            tenant=tenant, category=category.value, failures=failures
        )

    async def _defer_job(self, job: procrastinate.jobs.Job) -> bool:
        """Defer ``job``; False if its stream has a poll waiting already."""
        try:
            await self.app.job_manager.defer_job_async(job)
        except procrastinate.exceptions.AlreadyEnqueued:
            return False
        return True

    async def _poll(self, tenant: str, category: str, failures: int) -> None:
        """One job: take the stream's lease, poll it, then schedule its next poll (also when
        cancelled); a poll that lost its lease leaves the stream to the one that took it."""
        runner = self._runner
        config = runner.tenant(tenant)
        try:
            kind = Category(category)
        except ValueError:
            _log.error("fleet_job_unknown_category", tenant=tenant, category=category)
            return
        if config is None or kind not in config.categories:
            _log.warning(
                "fleet_stream_not_configured",
                tenant=tenant,
                category=category,
                reason="not in this worker's configuration (removed?): every worker of a "
                "fleet must share one configuration; no further poll scheduled from here",
            )
            return
        result = None
        handed_on = True
        try:
            lease, position = await self._store.take_lease_and_position(tenant, category)
            result = await runner.poll(config, kind, lease=lease, position=position)
            handed_on = not isinstance(result.error, LeaseLostError)
        finally:
            if result is None:  # cancelled, or the lease could not be taken: again soon
                wait = 0.0 if self._stop is not None and self._stop.is_set() else 15.0
            else:
                failures = 0 if result.error is None else failures + 1
                wait = next_wait(config, failures, result.error, self._rng)
            self.polls += 1
            if handed_on:
                at = datetime.now(UTC) + timedelta(seconds=wait)
                # Shielded: a worker stopping mid-poll still hands the stream on.
                await asyncio.shield(self._defer_job(self._job(tenant, kind, at, failures)))
        if result.error is not None:
            _log.warning(
                "stream_backing_off" if handed_on else "stream_taken_over",
                tenant=tenant,
                category=category,
                failures=failures,
                wait_s=round(wait, 1) if handed_on else None,
            )
        if runner.halted is not None and self._stop is not None:
            _log.error(
                "run_halted",
                error=runner.redact(str(runner.halted)),
                reason="nothing can be committed until a person acts",
            )
            self._stop.set()

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
            # job), and replaced by a new poll: the stalled worker's late finish finds no job.
            gone = await (
                await conn.execute(
                    "DELETE FROM procrastinate_jobs WHERE id = %s AND status = 'doing' "
                    "AND worker_id IS NOT DISTINCT FROM %s RETURNING id",
                    (job.id, job.worker_id),
                )
            ).fetchone()
            if gone is None:
                continue
            args = job.task_kwargs
            try:
                kind = Category(str(args.get("category")))
            except ValueError:
                continue
            failures = args.get("failures")
            await self._defer_job(
                self._job(
                    str(args.get("tenant")), kind, now, failures if isinstance(failures, int) else 0
                )
            )
            taken += 1
        if taken:
            _log.warning(
                "fleet_polls_taken_over",
                polls=taken,
                reason=f"their worker sent no heartbeat for {STALLED_AFTER:.0f} s",
            )
        return taken


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
