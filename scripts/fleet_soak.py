"""Fleet soak: several `mimecast-connector run` workers on one PostgreSQL state; SIGKILL them.

    .venv/bin/python scripts/fleet_soak.py [--workers 3] [--tenants 6] [--minutes 2]
                                           [--kill-every 8] [--seed 1]
                                           [--postgres postgresql://postgres@127.0.0.1:5432/test]

The simulator runs in this process (a thread) with a few hours of history per tenant and live
records arriving; a slow webhook receiver (0 to 1.5 s an answer) in this process records every
alert id it acknowledges. ``--workers`` worker processes share the tenants' streams through the
PostgreSQL state (a fresh schema of the given database, dropped at the end). Every
``--kill-every`` seconds or so one worker, chosen at random among those running rounds, is killed
with SIGKILL in the middle of whatever it does, and a new one started in its place. The script measures how long the
rounds (a job: one tenant's polls) the killed worker was running took to be taken over by the
others (from the kill until each of them runs on another worker or is done).

At the end live mode stops, the workers finish the last records and are stopped with SIGTERM
(each must exit 0), and the webhook's ids are checked against a reference: a clean `run --once`
of a fresh SQLite state over the same data. Nothing may be missing, and nothing may be there
that the reference does not have; repeats are allowed (a network sink is at least once) and
counted. Exits 1 otherwise. `tests/e2e/test_fleet.py` runs it briefly in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import soak

from mimecast_connector.simulator import SimTenant, Simulator

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class FleetReport:
    kills: int = 0
    expected: int = 0
    received: int = 0
    missing: int = 0
    unexpected: int = 0
    repeats: int = 0
    takeovers: list[float] = field(default_factory=list)
    rounds_held_at_kill: list[int] = field(default_factory=list)
    exits: Counter[int] = field(default_factory=Counter)
    final_exits: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.missing == 0
            and self.unexpected == 0
            and self.expected > 0
            and all(code == 0 for code in self.final_exits)
        )


@contextlib.contextmanager
def fresh_schema(base: str) -> Iterator[str]:
    """A new schema of ``base``'s database; yields a URL whose tables land there."""
    schema = f"mc_fleet_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # a name made here, not input
    try:
        joiner = "&" if "?" in base else "?"
        yield f"{base}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def write_config(
    folder: Path,
    state: str,
    url: str,
    tenants: list[SimTenant],
    start: datetime,
    webhook: str | None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = f'state = "{state}"\nlookback = "30m"\npage_size = 50\n\n'
    for tenant in tenants:
        text += (
            f'[[tenants]]\nname = "{tenant.name}"\nbase_url = "{url}"\n'
            f'client_id = "{tenant.client_id}"\nclient_secret = "{tenant.client_secret}"\n'
            f'start = "{start.isoformat()}"\npoll_interval = "1s"\n\n'
        )
    if webhook is not None:
        text += f'[[sinks]]\ntype = "webhook"\nurl = "{webhook}"\n'
    else:
        text += '[[sinks]]\ntype = "jsonl"\npath = "alerts.jsonl"\n'
    path = folder / "config.toml"
    path.write_text(text)
    return path


def doing(url: str) -> dict[int, int | None]:
    """Running rounds (jobs of a tenant's polls): job id -> worker id."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, worker_id FROM procrastinate_jobs "
            "WHERE status = 'doing' AND queue_name = 'mimecast-polls'"
        ).fetchall()
    return {job: worker for job, worker in rows}


def worker_ids(url: str) -> set[int]:
    """The procrastinate workers registered (none before the first worker made the tables)."""
    with (
        contextlib.suppress(psycopg.errors.UndefinedTable),
        psycopg.connect(url, autocommit=True) as conn,
    ):
        return {row[0] for row in conn.execute("SELECT id FROM procrastinate_workers")}
    return set()


def heartbeats(url: str) -> dict[int, datetime]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, last_heartbeat FROM procrastinate_workers").fetchall()
    return dict(rows)


def stopped_beating(url: str, beats: dict[int, datetime]) -> set[int]:
    """The workers of ``beats`` (taken before a kill) that have not beaten since: the killed
    one, when its id is not known otherwise. Waits longer than a heartbeat interval first."""
    time.sleep(3.0)
    now = heartbeats(url)
    return {worker for worker, at in beats.items() if now.get(worker) == at}


@dataclass
class Worker:
    """A worker process and the id it registered with procrastinate."""

    process: subprocess.Popen[bytes]
    id: int


def registered(
    url: str, process: subprocess.Popen[bytes], known: set[int], limit: float = 90.0
) -> Worker:
    """Wait until ``process`` (just started) has registered: the id not in ``known``."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("a worker exited while starting: see its log")
        new = worker_ids(url) - known
        if new:
            return Worker(process, min(new))
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"a worker did not start within {limit:.0f} s")


def pick_victim(url: str, workers: list[Worker], rng: random.Random, limit: float = 10.0) -> int:
    """The index of a worker running rounds, chosen at random; if none runs a round within
    ``limit`` seconds, of any worker (a kill between rounds is a crash too)."""
    deadline = time.monotonic() + limit
    while True:
        running = set(doing(url).values())
        busy = [i for i, worker in enumerate(workers) if worker.id in running]
        if busy or time.monotonic() > deadline:
            return rng.choice(busy or list(range(len(workers))))
        time.sleep(0.05)


def takeover(
    url: str,
    victim: int,
    before: dict[int, int | None],
    killed_at: float,
    limit: float = 60.0,
) -> tuple[int, float]:
    """How many rounds the killed worker was running, and the seconds from the kill until each
    ran elsewhere or was done."""
    held = {job for job, worker in before.items() if worker == victim}
    left = set(held)
    while left and time.monotonic() - killed_at < limit:
        running = doing(url)
        left = {job for job in left if running.get(job) == victim}
        if left:
            time.sleep(0.2)
    return len(held), time.monotonic() - killed_at


def fleet_run(
    report: FleetReport,
    url: str,
    workers: list[Worker],
    spawn: Callable[[], Worker],
    receiver: soak.SlowReceiver,
    rng: random.Random,
    seconds: float,
    kill_every: float,
    say: bool,
) -> None:
    """Kill a worker every ``kill_every`` seconds or so (one running rounds: in the middle of
    polls), measure the takeover of its rounds, start a new one in its place; for ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(0.5, 1.5) * kill_every)
        index = pick_victim(url, workers, rng)
        victim = workers[index]
        victim.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        report.exits[victim.process.wait()] += 1
        report.kills += 1
        # Read after the kill: what is still running on the dead worker is what it held (a
        # round it finished between the choice and the kill is not counted).
        held, took = takeover(url, victim.id, doing(url), killed_at)
        report.rounds_held_at_kill.append(held)
        if held:
            report.takeovers.append(took)
        workers[index] = spawn()
        if say:
            print(
                f"  kill {report.kills}: {held} round(s) running on it, "
                + (f"taken over in {took:.1f} s" if held else "nothing to take over")
                + f"; {len(receiver.ids)} ids received",
                flush=True,
            )


def command(config: Path, *extra: str) -> list[str]:
    return soak.command(config, *extra)


def fleet_soak(
    *,
    workers: int,
    tenants: int,
    seconds: float,
    kill_every: float,
    seed: int,
    postgres: str = POSTGRES,
    records: int = 600,
    say: bool = True,
) -> FleetReport:
    rng = random.Random(seed)
    report = FleetReport()
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=3)
    with (
        tempfile.TemporaryDirectory() as scratch,
        Simulator(seed=seed) as sim,
        fresh_schema(postgres) as url,
    ):
        root = Path(scratch)
        made = []
        for index in range(tenants):
            tenant = sim.add_tenant(f"tenant{index:03d}")
            for category, share in soak.SHARE.items():
                tenant.generate(
                    category,
                    count=int(records * share),
                    start=start,
                    end=now - timedelta(minutes=1),
                )
            tenant.start_live(rate_per_second=1.0)
            made.append(tenant)
        # Slow enough (up to 1.5 s an answer) that most kills land in the middle of polls.
        receiver = soak.SlowReceiver(seed, slowest=1.5)
        config = write_config(root / "fleet", url, sim.url, made, start, receiver.url)
        log_path = root / "workers.log"

        started: list[subprocess.Popen[bytes]] = []  # every one, stopped in `finally`

        def spawn() -> Worker:
            known = worker_ids(url)
            with log_path.open("ab") as log:
                process = subprocess.Popen(command(config), stdout=subprocess.DEVNULL, stderr=log)
            started.append(process)
            return registered(url, process, known)

        try:
            # One at a time: a worker's procrastinate id is the one that appears after it starts.
            running = [spawn() for _ in range(workers)]
            fleet_run(report, url, running, spawn, receiver, rng, seconds, kill_every, say)
            for tenant in made:
                tenant.stop_live()
            time.sleep(6.0)  # a few poll intervals: the last live records are read
            for worker in running:
                worker.process.send_signal(signal.SIGTERM)
            report.final_exits = [worker.process.wait(timeout=60) for worker in running]
        finally:
            for child in started:  # whatever went wrong, no worker outlives the soak
                if child.poll() is None:
                    child.kill()
                    child.wait()

        reference = write_config(root / "reference", "state.db", sim.url, made, start, None)
        done = subprocess.run(
            command(reference, "--once"), capture_output=True, timeout=600, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"the reference run failed:\n{done.stderr.decode(errors='replace')}")
        want = set(soak.ids_in(root / "reference" / "alerts.jsonl"))
        got = receiver.ids
        receiver.close()
        if any(code != 0 for code in report.final_exits):
            print(log_path.read_text("utf-8", "replace")[-4000:], file=sys.stderr)
    report.expected = len(want)
    report.received = len(got)
    report.missing = len(want - set(got))
    report.unexpected = len(set(got) - want)
    report.repeats = sum(n - 1 for n in got.values() if n > 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--tenants", type=int, default=6)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--kill-every", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--postgres", default=POSTGRES)
    args = parser.parse_args()
    print(
        f"fleet soak: {args.workers} workers, {args.tenants} tenants x 3 categories, "
        f"{args.minutes} min, a SIGKILL every ~{args.kill_every} s, seed {args.seed}"
    )
    report = fleet_soak(
        workers=args.workers,
        tenants=args.tenants,
        seconds=args.minutes * 60,
        kill_every=args.kill_every,
        seed=args.seed,
        postgres=args.postgres,
    )
    took = sorted(report.takeovers) or [0.0]
    print(
        f"{report.kills} kills; alerts: reference {report.expected:,}, received {report.received:,} "
        f"distinct; missing {report.missing}, unexpected {report.unexpected}, repeats "
        f"{report.repeats} (at least once); rounds running on the killed worker: "
        f"{sum(report.rounds_held_at_kill)} over {report.kills} kills; takeover s: median "
        f"{took[len(took) // 2]:.1f}, max {took[-1]:.1f}; final exits {report.final_exits}"
    )
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
