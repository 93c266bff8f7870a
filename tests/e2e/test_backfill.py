"""`mimecast-connector backfill` (issue 11): an old range of one tenant, through the same chain,
dedup and sinks as `run`; resumable after kill -9; beside a running `run`, handed to it."""

from __future__ import annotations

import gc
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from mimecast_connector import Category
from mimecast_connector.simulator import SimTenant, Simulator
from tests.e2e.conftest import canonical, expected_kept

NOW = datetime.now(UTC).replace(microsecond=0)
#: Where the live streams begin (the tenant's ``start``): the backfill reads what is before.
BEGAN = NOW - timedelta(days=1)
OLDEST = NOW - timedelta(days=10)
CATEGORIES = (Category.URL, Category.ATTACHMENT)


@dataclass
class History:
    sim: Simulator
    tenant: SimTenant
    made: dict[Category, list[dict[str, Any]]]
    tmp: Path

    def config(self, *, interval: str = "60s", sinks: str = "", page_size: int = 200) -> Path:
        t = self.tenant
        path = self.tmp / "config.toml"
        path.write_text(
            'state = "state/connector.db"\ndead_letter = "state/dead-letter.jsonl"\n'
            f'lookback = "30m"\npage_size = {page_size}\n\n'
            f'[[tenants]]\nname = "acme"\nbase_url = "{self.sim.url}"\n'
            f'client_id = "{t.client_id}"\nclient_secret = "{t.client_secret}"\n'
            f'start = "{BEGAN.isoformat()}"\npoll_interval = "{interval}"\n'
            f"categories = [{', '.join(repr(c.value) for c in CATEGORIES)}]\n\n"
            '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.jsonl"\n' + sinks,
            "utf-8",
        )
        return path

    def expected(self) -> set[str]:
        """Canonical raw records that must become alerts."""
        out = set()
        for category, records in self.made.items():
            for record in records:
                if expected_kept(category, record):
                    out.add(canonical(record))
        return out

    def delivered(self) -> Counter[str]:
        path = self.tmp / "out/alerts.jsonl"
        if not path.exists():
            return Counter()
        lines = path.read_text("utf-8").splitlines()
        return Counter(canonical(json.loads(line)["raw"]) for line in lines)


def make_history(tmp: Path, old: int, recent: int) -> Iterator[History]:
    with Simulator(seed=7) as sim:
        tenant = sim.add_tenant("acme")
        made: dict[Category, list[dict[str, Any]]] = {}
        for category in CATEGORIES:
            made[category] = tenant.generate(
                category, count=old, start=OLDEST, end=BEGAN - timedelta(minutes=5)
            ) + tenant.generate(category, count=recent, start=BEGAN, end=NOW - timedelta(minutes=1))
        yield History(sim, tenant, made, tmp)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    yield from make_history(tmp_path, old=600, recent=100)


def connector(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "mimecast_connector", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def backfill_args(config: Path, *more: str) -> list[str]:
    return [
        "backfill", "--config", str(config), "--tenant", "acme",
        "--from", OLDEST.strftime("%Y-%m-%d"), *more,
    ]  # fmt: skip


def assert_exact(history: History) -> None:
    got = history.delivered()
    expected = history.expected()
    assert [k for k, n in got.items() if n > 1] == [], "delivered twice"
    assert set(got) - expected == set(), "unexpected alerts"
    assert expected - set(got) == set(), "missing alerts"


def test_backfill_then_run_delivers_every_alert_once(history: History) -> None:
    """The live streams poll from their start; a backfill from 10 days back reads what is before it (a note says where it stops), and together they deliver every alert once."""
    config = history.config()
    done = connector("run", "--config", str(config), "--once")
    assert done.returncode == 0, done.stderr
    live = len(history.delivered())
    assert 0 < live < len(history.expected())
    done = connector(*backfill_args(config))
    assert done.returncode == 0, done.stderr
    assert "backfill acme/url:" in done.stderr
    assert "backfill done" in done.stderr
    assert "%" in done.stderr, "no progress line under a non-terminal"
    assert_exact(history)
    again = connector(*backfill_args(config))
    assert again.returncode == 0, again.stderr
    assert "backfilled already" in again.stderr
    assert_exact(history)
    done = connector("run", "--config", str(config), "--once")
    assert done.returncode == 0, done.stderr
    assert_exact(history)
    status = connector("status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert "acme / url@backfill:" in status.stdout
    assert "done: " in status.stdout
    document = json.loads(connector("status", "--config", str(config), "--json").stdout)
    backfills = {b["stream"].partition(":")[0]: b for b in document["backfills"]}
    assert set(backfills) == {"url@backfill", "attachment@backfill"}
    assert all(b["done"] and b["covered"] == 1.0 for b in backfills.values())
    # Every record before the live streams' start, read once (the live overlap is theirs).
    assert sum(b["fetched"] for b in backfills.values()) == 600 * len(CATEGORIES)


def test_a_backfill_before_the_first_poll_and_the_run_after_it_meet_exactly(
    history: History,
) -> None:
    """A new tenant: the backfill reads up to its start, the first live poll from it: every alert once."""
    config = history.config()
    done = connector(*backfill_args(config))
    assert done.returncode == 0, done.stderr
    first = len(history.delivered())
    assert 0 < first < len(history.expected())
    done = connector("run", "--config", str(config), "--once")
    assert done.returncode == 0, done.stderr
    assert_exact(history)


def test_bad_requests_say_what_to_do(history: History) -> None:
    config = history.config()
    wrong = connector(
        "backfill", "--config", str(config), "--tenant", "acm", "--from", "2026-01-01"
    )
    assert wrong.returncode == 2
    assert "no tenant 'acm'" in wrong.stderr
    assert "did you mean acme" in wrong.stderr
    feed = connector(*backfill_args(config, "--categories", "receipt"))
    assert feed.returncode == 2
    assert "no range to backfill" in feed.stderr
    date = connector("backfill", "--config", str(config), "--tenant", "acme", "--from", "soon")
    assert date.returncode == 2
    assert "'soon' is not a date" in date.stderr
    old = connector(
        "backfill", "--config", str(config), "--tenant", "acme",
        "--from", (NOW - timedelta(days=45)).strftime("%Y-%m-%d"),
        "--to", (NOW - timedelta(days=44)).strftime("%Y-%m-%d"),
    )  # fmt: skip
    assert old.returncode == 0, old.stderr
    assert "keeps this log about 30 days" in old.stderr


def _backfill_cursor(state: Path) -> int:
    """Backfill streams whose cursor moved (read-only, beside the writer)."""
    if not state.exists():
        return 0
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT count(*) FROM streams WHERE category LIKE '%@backfill%' AND cursor IS NOT NULL"
        ).fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()
    return int(row[0])


def start(args: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "mimecast_connector", *args], stdout=log, stderr=log
    )


def test_kill_9_mid_backfill_and_the_same_command_goes_on(tmp_path: Path) -> None:
    """SIGKILL a backfill once its cursor moved; the same command goes on from there (it says so), and the output ends exact."""
    for history in make_history(tmp_path, old=6000, recent=50):
        config = history.config()
        state = tmp_path / "state/connector.db"
        with (tmp_path / "backfill.log").open("wb") as log:
            child = start(backfill_args(config), log)
            try:
                deadline = time.monotonic() + 120
                while _backfill_cursor(state) == 0:
                    assert child.poll() is None, (tmp_path / "backfill.log").read_text()
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                child.send_signal(signal.SIGKILL)
                child.wait()
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        part = len(history.delivered())
        assert part < len(history.expected()), "the kill came after the end"
        done = connector(*backfill_args(config))
        assert done.returncode == 0, done.stderr
        assert "going on where it stopped" in done.stderr
        done = connector("run", "--config", str(config), "--once")
        assert done.returncode == 0, done.stderr
        assert_exact(history)


def test_beside_a_running_run_the_backfill_is_handed_to_it(history: History) -> None:
    """With a `run` holding the state, `backfill` hands it the range (SIGHUP) and shows its progress from the state until done; the run goes on; every alert once."""
    config = history.config(interval="2s")
    lock = history.tmp / "state/connector.db.lock"
    with (history.tmp / "run.log").open("wb") as log:
        child = start(["run", "--config", str(config)], log)
        try:
            deadline = time.monotonic() + 60
            while not (lock.exists() and lock.read_text().startswith("process ")):
                assert child.poll() is None, (history.tmp / "run.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            while len(history.delivered()) == 0:  # the live polls began
                assert time.monotonic() < deadline
                time.sleep(0.05)
            done = connector(*backfill_args(config))
            assert done.returncode == 0, done.stderr
            assert f"handed to the running connector (process {child.pid})" in done.stderr
            assert "backfill done" in done.stderr
            assert child.poll() is None, "the run stopped"
            assert not list((history.tmp / "state/connector.db.backfill").glob("*.json"))
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(timeout=60)
    assert child.returncode == 0, (history.tmp / "run.log").read_text()
    assert_exact(history)


#: The live streams' poll interval in the throttle test, seconds.
LIVE_EVERY = 3.0


def test_live_polls_keep_their_schedule_during_a_backfill_of_500000_records(
    tmp_path: Path,
) -> None:
    """A backfill of 500,000 URL records handed to a running `run`, on a tenant whose quota fills at 100 calls/s: the backfill takes at most its half (no 429 for anyone), and each live stream is polled every interval, never more than one interval late, from the hand-over to the end."""
    with Simulator(seed=3) as sim:
        tenant = sim.add_tenant("acme")
        made = {
            Category.URL: tenant.generate(
                Category.URL, count=500_000, start=OLDEST, end=BEGAN - timedelta(minutes=5)
            )
            + tenant.generate(Category.URL, count=20, start=BEGAN, end=NOW),
            Category.ATTACHMENT: tenant.generate(
                Category.ATTACHMENT, count=20, start=BEGAN, end=NOW
            ),
        }
        # The simulator serves from this process: its 500,000 records must not be walked by
        # every full garbage collection here (seconds each, when no live request is answered).
        gc.freeze()
        tenant.set_rate_limit(100, refill_per_second=100.0)
        history = History(sim, tenant, made, tmp_path)
        config = history.config(interval=f"{LIVE_EVERY:.0f}s", page_size=500)
        lock = tmp_path / "state/connector.db.lock"
        with (tmp_path / "run.log").open("wb") as log:
            child = start(["run", "--config", str(config)], log)
            try:
                deadline = time.monotonic() + 60
                while len(history.delivered()) < 20:  # the live polls began
                    assert child.poll() is None, (tmp_path / "run.log").read_text()
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                assert lock.read_text().startswith("process ")
                began = time.monotonic()  # the simulator logs request times on this clock
                done = connector(*backfill_args(config, "--categories", "url"), timeout=600)
                ended = time.monotonic()
                assert done.returncode == 0, done.stderr
            finally:
                child.send_signal(signal.SIGTERM)
                child.wait(timeout=60)
        requests = sim.requests
    gc.unfreeze()
    assert child.returncode == 0, (tmp_path / "run.log").read_text()
    assert_exact(history)
    assert ended - began > 4 * LIVE_EVERY, "too short a backfill to say anything"
    calls = [r for r in requests if r.category is not None and began <= r.time <= ended]
    assert [r.status for r in calls if r.status == 429] == []
    late = {}
    for category in CATEGORIES:
        live = sorted(r.time for r in calls if r.category is category and _live(r.json))
        gaps = [b - a for a, b in zip([began, *live], [*live, ended], strict=True)]
        late[category.value] = max(gaps)
    assert all(gap <= 2 * LIVE_EVERY for gap in late.values()), late
    backfill = [r for r in calls if not _live(r.json)]
    assert len(backfill) >= 1000  # 500,000 records in pages of 500 at most
    rate = len(backfill) / (ended - began)
    assert rate <= 0.5 * 100 * 1.2, f"{rate:.0f} backfill calls/s, more than half of 100/s"


def _live(body: Any) -> bool:
    """Whether a log request asked for a live window (one that ends after the tenant's start)."""
    window = body["data"][0]
    return datetime.fromisoformat(window["to"].replace("+0000", "+00:00")) >= BEGAN


async def test_with_a_postgresql_state_the_backfill_reads_in_its_own_process(
    history: History,
) -> None:
    """A PostgreSQL state (a fleet's): `backfill` reads the range itself (the one-writer rule there is per stream); the webhook receives each alert of the range once, and the same command again says it is done."""
    from tests.e2e.receiver import Receiver
    from tests.pg import fresh_schema

    receiver = Receiver()
    receiver.start()
    try:
        async with fresh_schema() as url:
            t = history.tenant
            config = history.tmp / "fleet.toml"
            config.write_text(
                f'state = "{url}"\nlookback = "30m"\npage_size = 200\n\n'
                f'[[tenants]]\nname = "acme"\nbase_url = "{history.sim.url}"\n'
                f'client_id = "{t.client_id}"\nclient_secret = "{t.client_secret}"\n'
                f'start = "{BEGAN.isoformat()}"\n'
                f"categories = [{', '.join(repr(c.value) for c in CATEGORIES)}]\n\n"
                f'[[sinks]]\ntype = "webhook"\nurl = "{receiver.url()}"\n',
                "utf-8",
            )
            done = connector(*backfill_args(config))
            assert done.returncode == 0, done.stderr
            again = connector(*backfill_args(config))
            assert again.returncode == 0, again.stderr
            assert "backfilled already" in again.stderr
    finally:
        receiver.stop()
    got = Counter(
        canonical(alert["raw"]) for r in receiver.requests for alert in json.loads(r.body)
    )
    old = {
        canonical(record)
        for category, records in history.made.items()
        for record in records
        if expected_kept(category, record) and _dated(category, record) < BEGAN
    }
    assert [k for k, n in got.items() if n > 1] == []
    assert set(got) == old


def _dated(category: Category, record: dict[str, Any]) -> datetime:
    text = str(record[category.time_field])
    return datetime.fromisoformat(text.replace("+0000", "+00:00"))


def _backfill_done(state: Path) -> bool:
    """Whether every backfill stream of the state says it is done (read-only)."""
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        markers = [
            m for (m,) in db.execute("SELECT marker FROM streams WHERE category LIKE '%@backfill%'")
        ]
    finally:
        db.close()
    return bool(markers) and all(json.loads(m)["done"] for m in markers)


def test_a_run_killed_during_a_handed_over_backfill_resumes_it_when_it_starts_again(
    tmp_path: Path,
) -> None:
    """`backfill` hands its range to a running `run`; the run is SIGKILLed once the backfill's cursor moved; started again, it finds the unfinished backfill in the state and reads it to the end by itself: every alert once, the request file gone."""
    for history in make_history(tmp_path, old=6000, recent=50):
        config = history.config()
        state = tmp_path / "state/connector.db"
        lock = tmp_path / "state/connector.db.lock"
        with (tmp_path / "run.log").open("wb") as log:
            child = start(["run", "--config", str(config)], log)
            deadline = time.monotonic() + 120
            while not (lock.exists() and lock.read_text().startswith("process ")):
                assert child.poll() is None, (tmp_path / "run.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            watcher = start(backfill_args(config), log)
            try:
                while _backfill_cursor(state) == 0:
                    assert child.poll() is None, (tmp_path / "run.log").read_text()
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                child.send_signal(signal.SIGKILL)
                child.wait()
                watcher.send_signal(signal.SIGKILL)
                watcher.wait()
                assert not _backfill_done(state), "the kill came after the end"
                child = start(["run", "--config", str(config)], log)
                while not _backfill_done(state):
                    assert child.poll() is None, (tmp_path / "run.log").read_text()
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            finally:
                for process in (child, watcher):
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                        process.wait(timeout=60)
        assert child.returncode == 0, (tmp_path / "run.log").read_text()
        assert "handed to the running connector" in (tmp_path / "run.log").read_text()
        assert not list((tmp_path / "state/connector.db.backfill").glob("*.json"))
        assert_exact(history)
