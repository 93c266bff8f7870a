"""A fleet: several ``run`` workers, on one machine or many, sharing the streams through
procrastinate, a task queue on the PostgreSQL database that also holds the state.

Why procrastinate (README "A fleet of workers" says more): the state is in PostgreSQL already,
so a queue in the same database adds no server; it has the three things a fleet needs, each a
database guarantee rather than a protocol of ours: a **lock** per job (PostgreSQL refuses a
second running job with the same lock: a unique index), a **queueing lock** (at most one waiting
job with a given key), and **worker heartbeats** (a worker that stops beating is found by any
other, and its running jobs retried).

How the streams are shared:

* **One job is one poll of one stream.** Its lock and queueing lock are the stream's key, so
  no two workers ever poll one stream at once and each stream has at most one poll waiting.
  Any worker with a free slot takes the next poll that is due: adding a worker spreads the
  polls at once, with no restart of the others, and removing one hands them to the rest.
* **Each poll schedules the next** before it ends: one poll interval later after a success, or
  after the backoff of ``runner._schedule`` (the count of failures in a row travels with the
  job). A poll cancelled by a stopping worker schedules its next one too.
* **The sweep** (a procrastinate periodic task, run once per ``SWEEP_EVERY`` seconds by
  whichever worker takes it) does the rest: polls left running by a worker whose heartbeat
  stopped ``STALLED_AFTER`` seconds ago (killed, frozen, cut off) are retried by the others,
  and any configured stream with no poll waiting or running gets one (a new tenant, a chain
  broken by a crash between two statements). A worker starting does the second part at once.
* A poll of a tenant this worker does not know (removed from its configuration) ends without
  a successor: every worker of a fleet must share one configuration, and a worker that does
  know the tenant gives it a poll back at its next sweep.

Takeover: a killed worker's streams are polled again by the others at most ``TAKEOVER``
seconds after its last heartbeat (stalled after + one sweep + one fetch interval). What it was
writing when it died is safe either way: a page is delivered, then committed in one
transaction; the retried poll starts from the last commit and the delivered ids suppress what
was committed before. A page delivered and not committed is delivered again (at least once,
as for a single process with a network sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime, timedelta

import procrastinate
import psycopg
import structlog

from mimecast_connector._categories import Category
from mimecast_connector.runner._runner import Runner
from mimecast_connector.runner._schedule import START_RATE, next_wait

_log = structlog.get_logger("mimecast_connector.fleet")

#: The queue of stream polls, and the one of the sweep.
POLLS = "mimecast-polls"
SWEEPS = "mimecast-sweep"
#: Polls one worker runs at once at most.
CONCURRENCY = 64
#: Seconds between a worker's heartbeats, and without one before its polls are taken over.
HEARTBEAT = 2.0
STALLED_AFTER = 10.0
#: Seconds between sweeps (a cron of seconds), and between a worker's looks for due polls.
SWEEP_EVERY = 5
FETCH_EVERY = 0.5
#: Seconds from a worker's last heartbeat until its streams are polled by others, at most.
TAKEOVER = STALLED_AFTER + SWEEP_EVERY + FETCH_EVERY
#: Seconds a stopping worker lets its polls finish before it cancels them.
GRACE = 10.0
#: Key of the advisory lock under which the first worker creates procrastinate's tables.
_SCHEMA_LOCK = 0x70726F63  # "proc"


def stream_key(tenant: str, category: str) -> str:
    """The lock and queueing lock of a stream's polls."""
    return f"mimecast-stream:{tenant}:{category}"


class Fleet:
    """This worker's part of the fleet: a procrastinate worker whose jobs are ``runner``'s
    polls. ``runner`` is started; ``url`` is the PostgreSQL database of the state."""

    def __init__(
        self,
        runner: Runner,
        url: str,
        *,
        concurrency: int = CONCURRENCY,
        rng: random.Random | None = None,
    ) -> None:
        self._runner = runner
        self._url = url
        self._rng = rng or random.Random()
        self._concurrency = concurrency
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=4)
        )
        self._poll_task = self.app.task(name="mimecast_connector.poll", queue=POLLS)(self._poll)
        sweep = self.app.task(name="mimecast_connector.sweep", queue=SWEEPS)(self._sweep)
        # croniter: a sixth field, the last, is seconds.
        self.app.periodic(cron=f"* * * * * */{SWEEP_EVERY}", periodic_id="sweep")(sweep)
        self._stop: asyncio.Event | None = None
        self.polls = 0  # polls this worker ran, for tests and benchmarks

    async def run(self, stop: asyncio.Event) -> None:
        """Take polls until ``stop`` is set (or the run halts); then let the polls in flight
        finish (``GRACE`` seconds at most) and leave."""
        self._stop = stop
        async with self.app.open_async():
            await self._ensure_schema()
            await self.reconcile()
            worker = asyncio.create_task(
                self.app.run_worker_async(
                    queues=[POLLS, SWEEPS],
                    concurrency=self._concurrency,
                    install_signal_handlers=False,
                    delete_jobs="successful",
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
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            if not stop.is_set() and self._runner.died is None:
                # The worker ended on its own: procrastinate lost its database for good.
                self._runner.died = "the fleet worker stopped (see the log above)"

    async def _ensure_schema(self) -> None:
        """Create procrastinate's tables in this database the first time (one worker does)."""
        async with (
            await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn,
            conn.transaction(),
        ):
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            found = await (
                await conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            ).fetchone()
            if found is None or not found[0]:
                schema = self.app.schema_manager.get_schema()
                await conn.execute(schema)
                _log.info("fleet_schema_created", reason="first worker on this database")

    async def reconcile(self) -> int:
        """Give every configured stream with no poll waiting or running one, spread over the
        start-up rate (``START_RATE`` a second); return how many were scheduled."""
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
        for index, (tenant, category) in enumerate(missing):
            offset = (index + self._rng.random()) / START_RATE
            if await self._defer(tenant, category, now + timedelta(seconds=offset), failures=0):
                scheduled += 1
        if scheduled:
            _log.info("fleet_streams_scheduled", streams=scheduled)
        return scheduled

    async def _defer(self, tenant: str, category: Category, at: datetime, failures: int) -> bool:
        """Schedule a poll of the stream at ``at``; False if one is waiting already."""
        key = stream_key(tenant, category.value)
        try:
            await self._poll_task.configure(
                lock=key, queueing_lock=key, schedule_at=at
            ).defer_async(tenant=tenant, category=category.value, failures=failures)
        except procrastinate.exceptions.AlreadyEnqueued:
            return False
        return True

    async def _poll(self, tenant: str, category: str, failures: int) -> None:
        """One job: poll the stream, then schedule its next poll (also when cancelled)."""
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
        try:
            result = await runner.poll(config, kind)
        finally:
            if result is None:  # cancelled (this worker stops): the next one polls it now
                wait = 0.0
            else:
                failures = 0 if result.error is None else failures + 1
                wait = next_wait(config, failures, result.error, self._rng)
            at = datetime.now(UTC) + timedelta(seconds=wait)
            # Shielded: a worker stopping mid-poll still hands the stream on.
            await asyncio.shield(self._defer(tenant, kind, at, failures))
            self.polls += 1
        if result.error is not None:
            _log.warning(
                "stream_backing_off",
                tenant=tenant,
                category=category,
                failures=failures,
                wait_s=round(wait, 1),
            )
        if runner.halted is not None and self._stop is not None:
            _log.error(
                "run_halted",
                error=runner.redact(str(runner.halted)),
                reason="nothing can be committed until a person acts",
            )
            self._stop.set()

    async def _sweep(self, timestamp: int) -> None:
        """Retry the polls of workers that stopped beating; give lost streams a poll."""
        del timestamp  # when procrastinate deferred this sweep: not needed
        stalled = await self.app.job_manager.get_stalled_jobs(
            queue=POLLS, seconds_since_heartbeat=STALLED_AFTER
        )
        taken = 0
        for job in stalled:
            try:
                await self.app.job_manager.retry_job(job)
            except procrastinate.exceptions.UniqueViolation:
                # The stream's next poll is waiting already: the stalled one had handed the
                # stream on (its last step) when its worker died. End it, so the next may run;
                # only if it is still the dead worker's (a sweep may have raced this one).
                await self.app.connector.execute_query_async(
                    "DELETE FROM procrastinate_jobs WHERE id = %(job)s AND status = 'doing' "
                    "AND worker_id IS NOT DISTINCT FROM %(worker)s",
                    job=job.id,
                    worker=job.worker_id,
                )
            except procrastinate.exceptions.ConnectorException as exc:
                # Another worker's sweep retried it first, or it finished meanwhile.
                _log.debug("fleet_retry_skipped", job=job.id, error=str(exc))
                continue
            taken += 1
        if taken:
            _log.warning(
                "fleet_polls_taken_over",
                polls=taken,
                reason=f"their worker sent no heartbeat for {STALLED_AFTER:.0f} s",
            )
        await self.reconcile()
