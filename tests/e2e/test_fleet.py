"""A fleet: workers sharing one PostgreSQL state through procrastinate (runner._fleet).

Against the real PostgreSQL server on 127.0.0.1:5432 (a fresh schema per test, tests/pg.py):
two fleets in one process never poll one stream at once and deliver the reference set exactly
once; real worker processes killed with SIGKILL lose nothing (scripts/fleet_soak.py, briefly);
the configuration refuses what a fleet cannot do.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector._cli import main
from mimecast_connector._errors import ConfigError, UnavailableError
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.config import Config, TenantConfig, load_config
from mimecast_connector.runner import Runner, StreamResult
from mimecast_connector.runner._committer import QUIET_COMMIT_GAP
from mimecast_connector.runner._fleet import (
    POLLS,
    RETIRED_TASK,
    ROUND_TASK,
    TAKEOVER,
    Fleet,
    _streams_of,
)
from tests.e2e.conftest import CATEGORIES, COUNTS, NOW, START, World, load_script
from tests.pg import admin, fresh_schema


class Recorder:
    """A sink that keeps every alert id it is given, in memory."""

    format: Format = "native"

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.ids: Counter[str] = Counter()

    async def start(self, position: str | None) -> str | None:
        return None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        self.ids.update(alert.id for alert in alerts)
        return None

    def committed(self, position: str | None) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Watched(Runner):
    """A runner whose polls report, in a table shared by every runner of the test, how many
    polls of each stream run at once (a pause widens every overlap there could be), and when
    each stream's last successful poll began."""

    def __init__(self, config: Config, active: Counter[str], most: Counter[str]) -> None:
        self.recorder = Recorder()
        super().__init__(config, sinks=[self.recorder])
        self._active, self._most = active, most
        self.succeeded: dict[str, float] = {}

    async def poll(
        self,
        tenant: TenantConfig,
        category: Category,
        *,
        lease: int | None = None,
        position: tuple[datetime | None, float | None] | None = None,
    ) -> StreamResult:
        key = f"{tenant.name}/{category.value}"
        self._active[key] += 1
        self._most[key] = max(self._most[key], self._active[key])
        began = asyncio.get_running_loop().time()
        try:
            await asyncio.sleep(0.05)
            result = await super().poll(tenant, category, lease=lease, position=position)
        finally:
            self._active[key] -= 1
        if result.error is None:
            self.succeeded[key] = began
        return result


def small_config(tmp: Path, state_line: str, *, sink: str) -> Path:
    """A one-tenant configuration with ``state_line`` and a jsonl or a webhook sink."""
    sinks = {
        "jsonl": '[[sinks]]\ntype = "jsonl"\npath = "alerts.jsonl"\n',
        "webhook": '[[sinks]]\ntype = "webhook"\nurl = "https://siem.example/in"\n',
    }
    path = tmp / "config.toml"
    path.write_text(
        state_line
        + '[[tenants]]\nname = "acme"\nclient_id = "id"\nclient_secret = "secret"\n\n'
        + sinks[sink],
        "utf-8",
    )
    return path


def fleet_config(world: World, state: str, tenants: int = 3) -> Path:
    """``tenants`` simulator tenants (the world's ``acme`` first), polled every second."""
    blocks = []
    for index in range(tenants):
        tenant = world.tenant if index == 0 else world.sim.add_tenant(f"extra{index}")
        if index:
            for category, n in COUNTS.items():
                tenant.generate(category, count=n // 4, start=START, end=NOW - timedelta(minutes=1))
        blocks.append(
            f'[[tenants]]\nname = "{tenant.name}"\nbase_url = "{world.sim.url}"\n'
            f'client_id = "{tenant.client_id}"\nclient_secret = "{tenant.client_secret}"\n'
            f'start = "{START.isoformat()}"\npoll_interval = "1s"\n'
        )
    path = world.tmp / f"fleet-{tenants}.toml"
    path.write_text(
        f'state = "{state}"\nlookback = "30m"\npage_size = 50\n\n'
        + "\n".join(blocks)
        + '\n[[sinks]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/unused"\n',
        "utf-8",
    )
    return path


async def reference_ids(config: Config, tmp: Path) -> Counter[str]:
    """The alert ids a single process with a fresh SQLite state delivers for ``config``."""
    alone = config.model_copy(update={"state": tmp / "reference.db"})
    runner = Runner(alone, sinks=[Recorder()])
    await runner.start()
    try:
        results = await runner.run_once()
        assert all(r.error is None for r in results), [r.message for r in results]
        recorder = runner.sinks[0]
        assert isinstance(recorder, Recorder)
        return recorder.ids
    finally:
        await runner.aclose()


async def test_two_workers_never_poll_one_stream_at_once_and_deliver_each_alert_once(
    world: World,
) -> None:
    """Two fleets on one database share the streams (both poll), never run two polls of one stream together, and deliver the reference set, each alert once."""
    async with fresh_schema() as url:
        config = load_config(fleet_config(world, url), {})
        active: Counter[str] = Counter()
        most: Counter[str] = Counter()
        runners = [Watched(config, active, most) for _ in range(2)]
        for runner in runners:
            await runner.start()
        fleets = [Fleet(runner, url, concurrency=8) for runner in runners]
        stop = asyncio.Event()
        try:
            tasks = [asyncio.create_task(fleet.run(stop)) for fleet in fleets]
            await asyncio.sleep(8.0)
            stop.set()
            await asyncio.gather(*tasks)
        finally:
            for runner in runners:
                await runner.aclose()
        want = await reference_ids(config, world.tmp)
    streams = len(runners[0].streams())
    assert len(most) == streams, "every stream was polled"
    assert max(most.values()) == 1, f"two polls of one stream at once: {most}"
    assert all(fleet.polls > 0 for fleet in fleets), [fleet.polls for fleet in fleets]
    assert sum(fleet.polls for fleet in fleets) >= 2 * streams, "each stream polled again"
    got = runners[0].recorder.ids + runners[1].recorder.ids
    assert len(want) > 300
    assert set(got) == set(want)
    assert max(got.values()) == 1, "no alert delivered twice"
    assert all(r.died is None and r.halted is None for r in runners)


async def test_a_worker_outlives_a_database_outage_and_loses_nothing(world: World) -> None:
    """Every PostgreSQL connection of a running worker is cut (a restart, a failover) and new records arrive: polls that failed are retried, every stream polls again successfully, the new alerts and the old are all delivered; the run neither halts nor dies."""
    name = "mc_outage_test"
    loop = asyncio.get_running_loop()
    async with fresh_schema() as url:
        state = f"{url}&application_name={name}"
        config = load_config(fleet_config(world, state), {})
        runner = Watched(config, Counter(), Counter())
        await runner.start()
        fleet = Fleet(runner, state, concurrency=8)
        stop = asyncio.Event()
        task = asyncio.create_task(fleet.run(stop))
        try:
            await asyncio.sleep(2.0)
            async with await admin() as conn:
                cut = await (
                    await conn.execute(
                        "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                        "WHERE application_name = %s",
                        (name,),
                    )
                ).fetchone()
            after = loop.time()
            for category in LOG_CATEGORIES:  # late records, only a poll after the cut can deliver
                world.tenant.generate(
                    category,
                    count=5,
                    start=NOW - timedelta(minutes=5),
                    end=NOW - timedelta(minutes=2),
                )
            want = await reference_ids(config, world.tmp)
            streams = {f"{t.name}/{c.value}" for t, c in runner.streams()}
            deadline = loop.time() + 60
            while not (
                set(want) <= set(runner.recorder.ids)
                and all(runner.succeeded.get(key, 0.0) > after for key in streams)
            ):
                assert not task.done(), "the worker ended"
                assert loop.time() < deadline, "not recovered within 60 s"
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            await runner.aclose()
    assert cut is not None
    assert isinstance(cut[0], int)
    assert cut[0] >= 2, "the worker's connections (store and queue) were cut"
    assert task.exception() is None
    assert runner.died is None
    assert runner.halted is None
    assert set(runner.recorder.ids) == set(want)


def test_killed_workers_lose_nothing_and_their_polls_are_taken_over() -> None:
    """Three worker processes, SIGKILLs mid-run: every reference alert reaches the webhook, nothing else does, polls the killed held are taken over within TAKEOVER seconds, the rest exit 0."""
    soak = load_script("fleet_soak")
    report = soak.fleet_soak(
        workers=3, tenants=4, seconds=35, kill_every=4.0, seed=11, records=300, say=False
    )
    assert report.kills >= 2
    assert report.takeovers, "at least one kill landed in the middle of polls"
    assert report.expected > 200
    assert report.missing == 0
    assert report.unexpected == 0
    assert report.final_exits == [0, 0, 0]
    # The measure itself waits 3 s before it looks, and samples every 0.2 s.
    assert all(took <= TAKEOVER + 1.0 for took in report.takeovers), report.takeovers


def test_a_fleet_refuses_jsonl_sinks(tmp_path: Path) -> None:
    """With a PostgreSQL state, a jsonl sink (a file local to one worker) is refused at load, naming the sink and what to use instead."""
    path = small_config(
        tmp_path, 'state = "postgresql://postgres@127.0.0.1:5432/test"\n\n', sink="jsonl"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    [(key, message)] = caught.value.problems
    assert key == "sinks[0].path"
    assert "webhook" in message
    assert "local to one worker" in message


def test_the_state_url_is_a_secret(tmp_path: Path) -> None:
    """A PostgreSQL URL's password is redacted from everything (it is in the secrets) and never shown by the config's state."""
    path = small_config(
        tmp_path, 'state = "postgresql://mc:pa55-w0rd-xyz@127.0.0.1:5432/test"\n\n', sink="webhook"
    )
    config = load_config(path, {})
    assert config.fleet
    assert "pa55-w0rd-xyz" in config.secrets()
    assert str(config.state) == "postgresql://mc@127.0.0.1:5432/test"
    assert "pa55-w0rd-xyz" not in repr(config)


def test_run_once_is_refused_in_a_fleet(tmp_path: Path) -> None:
    """`run --once` with a PostgreSQL state exits 2 and says to run the workers without it."""
    path = small_config(
        tmp_path, 'state = "postgresql://postgres@127.0.0.1:5432/test"\n\n', sink="webhook"
    )
    result = CliRunner().invoke(main, ["run", "--once", "--config", str(path)])
    assert result.exit_code == 2
    assert "without --once" in result.output


async def test_a_poll_that_lost_its_lease_delivers_and_commits_nothing(world: World) -> None:
    """A poll whose lease was superseded (its worker presumed dead and taken over) ends with LeaseLostError, having delivered nothing and moved no cursor; the newest lease's poll delivers."""
    from mimecast_connector._errors import LeaseLostError
    from mimecast_connector.state._postgres import PostgresStore

    async with fresh_schema() as url:
        config = load_config(fleet_config(world, url, tenants=1), {})
        runner = Watched(config, Counter(), Counter())
        await runner.start()
        try:
            store = runner.store
            assert isinstance(store, PostgresStore)
            tenant = config.tenants[0]
            old = await store.take_lease(tenant.name, "url")
            new = await store.take_lease(tenant.name, "url")
            stale = await runner.poll(tenant, Category.URL, lease=old)
            assert isinstance(stale.error, LeaseLostError)
            assert runner.recorder.ids == Counter()
            assert await store.cursor(tenant.name, "url") is None
            fresh = await runner.poll(tenant, Category.URL, lease=new)
            assert fresh.error is None
            assert sum(runner.recorder.ids.values()) == fresh.alerts > 0
        finally:
            await runner.aclose()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://mc:pw@127.0.0.1/test?password=Pw%zz9secret", "percent-encoding"),
        ("postgresql://mc:Hunter2@Pr1vatePart@127.0.0.1/test", "%40"),
        ("POSTGRESQL://mc:TopSecretPw99@127.0.0.1/test", "lowercase"),
        ("postgresql+psycopg://mc:Secr3tPw@127.0.0.1/test", "neither a file path"),
        ("postgresql:/mc:Secr3tPw@127.0.0.1/test", "neither a file path"),
        ("postgresql://127.0.0.1:5432/", "names no database"),
        ("postgresql://127.0.0.1:port/test", "not a valid PostgreSQL URL"),
        ("postgresql://127.0.0.1/te st", "spaces"),
    ],
)
def test_a_state_url_libpq_would_misread_is_refused_without_quoting_it(
    tmp_path: Path, url: str, problem: str
) -> None:
    """URLs libpq would misread (quoting the password in an error, reading another host, or not at all), without a database, with a bad port or spaces: config errors on `state` that never show the URL."""
    path = small_config(tmp_path, f'state = "{url}"\n\n', sink="webhook")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    [(key, message)] = caught.value.problems
    assert key == "state"
    assert problem in message
    for secret in ("zz9secret", "Hunter2", "Pr1vatePart", "TopSecretPw99", "Secr3tPw"):
        assert secret not in str(caught.value)


def test_a_password_given_in_the_query_is_a_secret(tmp_path: Path) -> None:
    """`?password=` counts as the URL's password: it is among the secrets redacted everywhere."""
    path = small_config(
        tmp_path,
        'state = "postgresql://mc@127.0.0.1/test?password=Qu3ry-pw%2Fx"\n\n',
        sink="webhook",
    )
    config = load_config(path, {})
    assert "Qu3ry-pw/x" in config.secrets()
    assert "Qu3ry" not in str(config.state)


class Timed(Watched):
    """A watched runner whose ``slow`` streams' polls take ``seconds`` longer, and whose
    ``failing`` streams' polls end with an upstream error; it notes each poll's start."""

    def __init__(
        self,
        config: Config,
        *,
        slow: frozenset[Category] = frozenset(),
        failing: frozenset[Category] = frozenset(),
        seconds: float = 0.0,
    ) -> None:
        super().__init__(config, Counter(), Counter())
        self.slow, self.failing, self.seconds = slow, failing, seconds
        self.starts: dict[Category, list[float]] = {}
        self.gaps: set[float] = set()  # the committer's quiet gap at each poll's start

    async def poll(
        self,
        tenant: TenantConfig,
        category: Category,
        *,
        lease: int | None = None,
        position: tuple[datetime | None, float | None] | None = None,
    ) -> StreamResult:
        self.starts.setdefault(category, []).append(asyncio.get_running_loop().time())
        self.gaps.add(self._committer.quiet_gap)
        if category in self.slow:
            await asyncio.sleep(self.seconds)
        if category in self.failing:
            return StreamResult(
                tenant.name,
                category,
                error=UnavailableError("HTTP 503", tenant=tenant.name, endpoint="/x"),
            )
        return await super().poll(tenant, category, lease=lease, position=position)


async def run_fleet(runner: Runner, url: str, seconds: float) -> Fleet:
    """``runner`` as one fleet worker on ``url`` for ``seconds``, then stopped."""
    await runner.start()
    fleet = Fleet(runner, url, concurrency=8)
    stop = asyncio.Event()
    try:
        task = asyncio.create_task(fleet.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task
    finally:
        await runner.aclose()
    return fleet


async def queued_rounds(url: str) -> list[tuple[str, dict[str, object]]]:
    """The rounds waiting in the queue: their task names and arguments."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT task_name, args FROM procrastinate_jobs WHERE status = 'todo'"
            )
        ).fetchall()
    return [(str(name), dict(args)) for name, args in rows]


async def test_a_round_polls_each_stream_as_it_falls_due_while_another_is_still_reading(
    world: World,
) -> None:
    """One tenant's URL poll reads for 3 s (a long window); meanwhile its other streams, polled every second, are polled again as each falls due, never two polls of one stream at once; the next round waits in the queue with every stream's due time."""
    async with fresh_schema() as url:
        config = load_config(fleet_config(world, url, tenants=1), {})
        runner = Timed(config, slow=frozenset({Category.URL}), seconds=3.0)
        fleet = await run_fleet(runner, url, 4.5)
        rounds = await queued_rounds(url)
    first_url = runner.starts[Category.URL][0]
    for category in CATEGORIES:
        if category is Category.URL:
            continue
        during = [t for t in runner.starts[category] if first_url <= t < first_url + 3.0]
        assert len(during) >= 2, (category, runner.starts[category], first_url)
    assert max(runner._most.values()) == 1, runner._most
    assert fleet.polls == sum(len(starts) for starts in runner.starts.values())
    # Polls on a schedule: quiet pages' commits wait for company, as in a single process.
    assert runner.gaps == {QUIET_COMMIT_GAP}
    [(task, args)] = rounds
    assert task == ROUND_TASK
    assert args["tenant"] == world.tenant.name
    due = args["due"]
    assert isinstance(due, dict)
    assert set(due) == {c.value for c in CATEGORIES}


async def test_a_failing_stream_backs_off_alone_and_its_failures_travel_with_the_round(
    world: World,
) -> None:
    """A tenant's URL stream fails every poll: it backs off (due >= 7.5 s later, counted in the round's failures) while the tenant's other streams go on every second."""
    async with fresh_schema() as url:
        config = load_config(fleet_config(world, url, tenants=1), {})
        runner = Timed(config, failing=frozenset({Category.URL}))
        began = time.time()
        await run_fleet(runner, url, 3.5)
        [(_, args)] = await queued_rounds(url)
    assert len(runner.starts[Category.URL]) == 1
    assert all(len(runner.starts[c]) >= 2 for c in CATEGORIES if c is not Category.URL)
    assert args["failures"] == {"url": 1}
    due = args["due"]
    assert isinstance(due, dict)
    assert due["url"] >= began + 7.5  # 15 s x a jitter of 0.5 to 1
    assert all(due[c.value] < began + 6.0 for c in CATEGORIES if c is not Category.URL)


async def test_a_one_stream_poll_of_an_earlier_release_ends_unrun_and_the_tenant_gets_a_round(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A fleet upgraded with an earlier release's one-stream poll job still queued: the job ends without an error and polls nothing itself; the tenant's streams are polled by its round."""
    async with fresh_schema() as url:
        config = load_config(fleet_config(world, url, tenants=1), {})
        runner = Timed(config)
        await runner.start()
        fleet = Fleet(runner, url, concurrency=8)
        key = f"mimecast-stream:{world.tenant.name}:url"
        async with fleet.app.open_async():
            await fleet._ensure_schema()
            await fleet.app.configure_task(
                RETIRED_TASK, queue=POLLS, lock=key, queueing_lock=key
            ).defer_async(tenant=world.tenant.name, category="url", failures=0)
        stop = asyncio.Event()
        try:
            task = asyncio.create_task(fleet.run(stop))
            await asyncio.sleep(2.5)
            stop.set()
            await task
        finally:
            await runner.aclose()
        rounds = await queued_rounds(url)
    assert [name for name, _ in rounds] == [ROUND_TASK]
    assert all(runner.starts.get(c) for c in CATEGORIES), runner.starts
    assert max(runner._most.values()) == 1
    errors = [r for r in caplog.records if r.name.startswith("procrastinate") and r.levelno >= 40]
    assert errors == [], [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    ("due", "failures", "want_due", "want_failures"),
    [
        (None, None, 0.0, 0),
        ("soon", [1], 0.0, 0),
        ({"url": "soon", "attachment": True}, {"url": "2", "attachment": -3}, 0.0, 0),
        ({"url": float("nan")}, {"url": float("inf")}, 0.0, 0),
        ({"url": 1e9}, {"url": 4}, 1e9, 4),
    ],
)
def test_a_rounds_arguments_from_the_queue_are_checked(
    due: object, failures: object, want_due: float, want_failures: int
) -> None:
    """A round's arguments come from a shared table: anything but finite numbers is dropped (the stream is then due at once with no failures), streams not configured are ignored."""
    when, failed = _streams_of([Category.URL, Category.ATTACHMENT], due, failures)
    assert when[Category.URL] == want_due
    assert failed[Category.URL] == want_failures
    assert when[Category.ATTACHMENT] == 0.0
    assert failed[Category.ATTACHMENT] == 0
    assert set(when) == set(failed) == {Category.URL, Category.ATTACHMENT}


async def test_a_round_given_out_by_the_database_polls_its_streams_whatever_this_workers_clock(
    world: World,
) -> None:
    """A round whose streams are due 30 s ahead of this worker's clock (the worker that scheduled it, or the database, runs ahead) is given out now: it polls them, rather than ending at once and going round the queue until this clock catches up."""
    async with fresh_schema() as url:
        config = load_config(fleet_config(world, url, tenants=1), {})
        runner = Timed(config)
        await runner.start()
        fleet = Fleet(runner, url, concurrency=8)
        ahead = time.time() + 30.0
        async with fleet.app.open_async():
            await fleet._ensure_schema()
            await fleet._defer_job(
                fleet._job(
                    world.tenant.name,
                    {c.value: ahead for c in CATEGORIES},
                    {},
                    datetime.now(UTC),
                )
            )
        stop = asyncio.Event()
        try:
            task = asyncio.create_task(fleet.run(stop))
            await asyncio.sleep(1.5)
            stop.set()
            await task
        finally:
            await runner.aclose()
    assert all(runner.starts.get(c) for c in CATEGORIES), runner.starts
