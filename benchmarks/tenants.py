"""Many tenants in one process: one `run --once` cycle against a fast fake API, and its floor;
then, optionally, a fleet of `run` workers on PostgreSQL at the largest N.

    .venv/bin/python benchmarks/tenants.py [--tenants 100,1000,3000] [--records-per-page 2]
        [--steady SECONDS] [--soak MINUTES [--soak-interval 10]]
        [--fleet-workers 1,2,4 [--fleet-seconds 60] [--fleet-analyze]
         [--postgres postgresql://postgres@127.0.0.1:5432/test]]

For each N: ``benchmarks/fakeapi.py`` runs in its own process (raw asyncio, keep-alive; each
log request answers a page of a few new records and no ``next``); a configuration with N API
2.0 tenants x 4 categories (the default ones) and one jsonl sink is written; then, each in a process of its own,
measured with ``wait4``:

* the connector: ``mimecast-connector run --once``, from process start to exit;
* the floor: a bare asyncio HTTP/1.1 client (this file, ``--bare``) making the same requests
  (one token per tenant, one log request per stream) over 32 keep-alive connections, decoding
  each page with msgspec and appending its records to a file.

Printed per N: wall seconds, CPU seconds, the CPU ratio connector / floor, peak RSS, start-up
(process start to the first log request the server sees), the server's connection count and its
own CPU seconds (to show it is not the bottleneck).

The steady state (``--steady SECONDS``, off by default): ``run`` with every stream polled every
SECONDS; once every stream had its first poll, its CPU over one interval and the polls that
ended in it, as milliseconds a poll. Two floors, from one bare-client process: a later cycle
of the same requests all at once (a burst over its 32 connections: each wake-up of its loop
serves many answers), and one more cycle paced as ``run`` must poll (each stream at its own
moment, spread evenly over the interval, those due within 50 ms started together): the same
requests at the same pace, so the same wake-ups and timers a poll.

The soak (``--soak MINUTES``, off by default): at the largest N, ``run`` with every stream
polled every ``--soak-interval`` seconds (10: six times the polls of a 60 s interval), for
MINUTES; each minute its resident and peak memory, its CPU seconds so far and the state's size
on disk. Memory that stops growing once the caches are warm says nothing is kept per poll.

The fleet (``--fleet-workers``, off by default): for each worker count W, at the largest N, the
fake API and ``benchmarks/fakesink.py`` (a fast webhook receiver) each run in a process of their
own, a fresh schema of ``--postgres`` holds the state, and the configuration has every tenant
polled every 60 s and one ``webhook`` sink. W ``mimecast-connector run`` workers run for
``--fleet-seconds``. Polls are counted from the state (``mimecast_streams.last_success``;
procrastinate's events go with the jobs, deleted on success) over the run's last poll interval:
a stream ends at most one poll in it, so a fleet that keeps up polls every stream once there, N x
4 / 60 polls a second (the needed rate; run longer than 60 s plus the start-up spread of N x 4 /
``START_RATE`` s for the steady state). Then, with W >= 2, one worker is killed with SIGKILL at
a moment when every worker runs a round (10 s of waiting at most), and the takeover of the
rounds (jobs of a tenant's polls) it held is measured as ``scripts/fleet_soak.py`` does (from the kill until each ran elsewhere or
was done; 150 s at most); the others are stopped with SIGTERM and must exit 0, and the schema
is dropped. ``--fleet-analyze`` runs ANALYZE on the schema's tables every 10 s, as autovacuum
would: the plan of procrastinate's job fetch depends on the statistics of its table, and
without any (a new table on a server whose autovacuum is off, or before its first autoanalyze)
each fetch checks the lock of every waiting job, seconds at 9,000 of them.

Printed per W: polls/s in the window, the needed rate and their ratio (a little under 1 for a
fleet that keeps up: a stream's next poll is due 60 s after its last one ended, so its polls are
60 s plus a poll's latency apart); streams never polled, and the seconds since the least recent
last successful poll of the others (about 60 plus that latency for a fleet that keeps up); polls
overdue by more than 5 s at the end, and the most overdue one's lateness; start-up (workers
started to the first log request); the workers' CPU milliseconds per poll in the window, and
their PostgreSQL backends' (by ``application_name``, those alive at the window's ends), the
backend count; the largest worker's peak RSS; the takeover seconds (and rounds held); the API's
and the receiver's CPU seconds over the whole run, the alerts received, the load average, and the
exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from mimecast_connector._categories import DEFAULT_CATEGORIES

#: What a tenant reads by default (the configuration names none): the TTP logs and rejections.
CATEGORIES = tuple(c.value for c in DEFAULT_CATEGORIES)
PATHS = {c.value: c.path for c in DEFAULT_CATEGORIES}
HERE = Path(__file__).resolve().parent
#: The fleet's database: a fresh schema of it per measurement.
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Measured:
    wall: float
    cpu: float
    rss_mib: float
    startup: float
    connections: int
    server_cpu: float
    written: int  # records in the output file: the floor and the connector must agree


def _start(script: str, tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    """Start ``script``, a server of this folder, in its own process: it, its port file, port."""
    port_file = tmp / f"port-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, str(HERE / script), "--port-file", str(port_file), *args],
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{script} did not start")
        time.sleep(0.02)
    return process, port_file, int(port_file.read_text())


def start_server(tmp: Path, per_page: int) -> tuple[subprocess.Popen[bytes], Path, int]:
    return _start("fakeapi.py", tmp, "--records-per-page", str(per_page))


def start_sink(tmp: Path) -> tuple[subprocess.Popen[bytes], Path, int]:
    return _start("fakesink.py", tmp)


def stop_server(process: subprocess.Popen[bytes]) -> dict[str, float]:
    process.terminate()
    out, _ = process.communicate(timeout=30)
    result: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def write_config(
    tmp: Path, tenants: int, port: int, head: list[str] | None = None, per_tenant: str = ""
) -> Path:
    """N tenants on the fake API at ``port``; ``head``: the global lines (default: a SQLite
    state and a jsonl sink); ``per_tenant``: one more line in each tenant's table."""
    start = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0).isoformat()
    lines = head or [
        'state = "state.db"',
        'dead_letter = "dead-letter.jsonl"',
        "",
        "[[sinks]]",
        'type = "jsonl"',
        'path = "alerts.jsonl"',
    ]
    for n in range(tenants):
        lines += [
            "",
            "[[tenants]]",
            f'name = "tenant-{n:05d}"',
            f'base_url = "http://127.0.0.1:{port}"',
            f'client_id = "client-{n:05d}"',
            f'client_secret = "secret-{n:05d}-0123456789abcdef"',
            f'start = "{start}"',
            *([per_tenant] if per_tenant else []),
        ]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def measure(command: list[str], tmp: Path, per_page: int, tenants: int) -> Measured:
    server, port_file, port = start_server(tmp, per_page)
    try:
        config = write_config(tmp, tenants, port)
        first = port_file.with_suffix(".first")
        started = time.time()
        began = time.monotonic()
        child = subprocess.Popen(
            [*command, "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp,
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.monotonic() - began
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{command[-1]} failed with {os.waitstatus_to_exitcode(status)}")
        startup = float(first.read_text()) - started if first.exists() else float("nan")
        written = sum(
            path.read_bytes().count(b"\n")
            for path in (tmp / "alerts.jsonl", tmp / "bare.jsonl")
            if path.exists()
        )
    finally:
        stats = stop_server(server)
    return Measured(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_mib=usage.ru_maxrss / 1024,
        startup=startup,
        connections=int(stats["connections"]),
        server_cpu=stats["cpu_s"],
        written=written,
    )


# --- the steady state: `run` past its start-up, one poll interval -------------------------------


@dataclass
class Steady:
    polls: int  # streams whose last successful poll ended in the window
    cpu: float  # the connector's CPU seconds in the window
    floor_cpu: float  # the bare client's CPU seconds for one later cycle of every stream
    paced_cpu: float  # the same, its requests spread over the interval as the connector's are
    rss_mib: float  # the connector's peak RSS at the end


def _polled(state: Path, since: float) -> tuple[int, int]:
    """Streams of the SQLite state at ``state``: those with a successful poll ending after
    ``since``, and those with any (read-only, beside the running writer)."""
    if not state.exists():
        return 0, 0
    db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        row = db.execute(
            "SELECT count(*) FILTER (WHERE last_success >= ?), count(last_success) FROM streams",
            (since,),
        ).fetchone()
    except sqlite3.OperationalError:  # the schema is still being created
        return 0, 0
    finally:
        db.close()
    return int(row[0]), int(row[1])


def start_run(config: Path, tmp: Path) -> subprocess.Popen[bytes]:
    """``mimecast-connector run`` on ``config`` in ``tmp``, its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp,
    )


def stop_run(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and the exit status must be 0 (it drains, then exits)."""
    child.terminate()
    if child.wait(timeout=60) != 0:
        raise SystemExit(f"the connector exited with {child.returncode}")


def measure_steady(tenants: int, per_page: int, interval: float) -> Steady:
    """The connector's ``run`` with every tenant polled every ``interval`` s: once every stream
    had its first poll (start-up and its spread behind), its CPU over the next interval, and
    the polls that ended in it; the floor: the bare client's CPU for a second cycle."""
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server, _, port = start_server(tmp, per_page)
        try:
            config = write_config(
                tmp, tenants, port, per_tenant=f'poll_interval = "{interval:.0f}s"'
            )
            floor = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--bare", "--cycles", "2",
                 "--paced", str(interval), "--config", str(config)],
                capture_output=True, check=True, cwd=tmp,
            )  # fmt: skip
            said = [json.loads(line) for line in floor.stdout.decode().strip().splitlines()]
            floor_cpu = next(d["cycle_cpu"] for d in said if "cycle_cpu" in d)
            paced_cpu = next(d["paced_cpu"] for d in said if "paced_cpu" in d)
            child = start_run(config, tmp)
            try:
                state = tmp / "state.db"
                deadline = time.monotonic() + interval + tenants * len(CATEGORIES) / 50 + 60
                while _polled(state, 0.0)[1] < tenants * len(CATEGORIES):
                    if child.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the connector did not poll every stream once")
                    time.sleep(0.5)
                since, cpu = time.time(), _cpu_seconds(child.pid)
                time.sleep(interval)
                cpu = _cpu_seconds(child.pid) - cpu
                polls = _polled(state, since)[0]
                status = Path(f"/proc/{child.pid}/status").read_text()
                rss = int(status.split("VmHWM:")[1].split()[0]) / 1024
            finally:
                stop_run(child)
        finally:
            stop_server(server)
    return Steady(polls=polls, cpu=cpu, floor_cpu=floor_cpu, paced_cpu=paced_cpu, rss_mib=rss)


def soak(tenants: int, per_page: int, interval: float, minutes: float) -> None:
    """``run`` with every tenant polled every ``interval`` s for ``minutes``: each minute its
    resident and peak memory, CPU seconds so far, and the state's size on disk."""
    streams = tenants * len(CATEGORIES)
    print(
        f"\nsoak: `run`, {tenants} tenants x {len(CATEGORIES)}, every stream every "
        f"{interval:g} s ({streams * 60 / interval:,.0f} polls a minute), {minutes:g} min:\n"
        f"{'minute':>7}{'RSS MiB':>9}{'peak MiB':>10}{'CPU s':>8}{'state MiB':>11}"
    )
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        server, _, port = start_server(tmp, per_page)
        try:
            config = write_config(tmp, tenants, port, per_tenant=f'poll_interval = "{interval:g}s"')
            child = start_run(config, tmp)
            try:
                for minute in range(1, int(minutes) + 1):
                    time.sleep(60)
                    if child.poll() is not None:
                        raise SystemExit(f"the connector exited with {child.returncode}")
                    status = Path(f"/proc/{child.pid}/status").read_text()
                    rss = int(status.split("VmRSS:")[1].split()[0]) / 1024
                    peak = int(status.split("VmHWM:")[1].split()[0]) / 1024
                    state = sum(p.stat().st_size for p in tmp.glob("state.db*")) / 2**20
                    print(
                        f"{minute:>7}{rss:>9.1f}{peak:>10.1f}{_cpu_seconds(child.pid):>8.1f}"
                        f"{state:>11.1f}",
                        flush=True,
                    )
            finally:
                stop_run(child)
        finally:
            stop_server(server)


# --- the fleet: workers sharing the streams through PostgreSQL ---------------------------------

#: Every tenant's poll interval in the fleet configuration; polls are counted over the last one.
FLEET_INTERVAL = 60.0
#: Seconds between the ANALYZEs of ``--fleet-analyze``.
ANALYZE_EVERY = 10.0
#: Seconds after a kill past which the takeover is no longer waited for (shown as ">").
TAKEOVER_LIMIT = 150.0


@dataclass
class FleetMeasured:
    workers: int
    window: float  # seconds over which polls were counted: the run's last poll interval
    polls: int  # streams whose last successful poll ended in the window (one poll each at most)
    never: int  # streams with no successful poll by the end
    oldest: float  # seconds since the least recent last successful poll of a stream, at the end
    overdue: int  # polls waiting more than 5 s past their time at the end
    late_s: float  # the longest such wait
    startup: float  # workers started -> the first log request the API sees
    worker_cpu: float  # the workers' CPU seconds in the window
    pg_cpu: float  # their PostgreSQL backends' CPU seconds in the window (those seen at its ends)
    backends: int  # PostgreSQL backends of the workers at the end of the window
    worker_rss_mib: float  # the largest worker's peak RSS
    held: int | None  # rounds the killed worker was running (None: no kill, one worker)
    takeover: float | None  # seconds from the kill until each ran elsewhere or was done
    exits: list[int]  # the exit codes of the workers stopped with SIGTERM
    load: float  # the machine's 1-minute load average at the end of the window
    api: dict[str, float]
    sink: dict[str, float]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends(url: str, name: str) -> dict[int, float]:
    """The PostgreSQL backends connected as ``application_name = name``: pid -> CPU seconds."""
    import psycopg  # here, as below: the floor (this file, --bare) imports nothing it needs not

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchall()
    return {pid: _cpu_seconds(pid) for (pid,) in rows}


def _polled_since(url: str, since: float) -> int:
    """Streams whose last successful poll ended at ``since`` or later (0 before any commit)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        made = conn.execute("SELECT to_regclass('mimecast_streams') IS NOT NULL").fetchone()
        if not made or not made[0]:
            return 0
        row = conn.execute(
            "SELECT count(*) FROM mimecast_streams WHERE last_success >= %s", (since,)
        ).fetchone()
    return int(row[0]) if row else 0


def _analyze(url: str) -> None:
    """ANALYZE every table of the schema (autovacuum would, where it is on)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT oid::regclass::text FROM pg_class "
            "WHERE relnamespace = current_schema()::regnamespace AND relkind = 'r'"
        ).fetchall()
        for (table,) in tables:
            conn.execute(f"ANALYZE {table}")  # a name from the catalogue


def _check_alive(running: list[subprocess.Popen[bytes]], log: Path) -> None:
    dead = [c for c in running if c.poll() is not None]
    if dead:
        raise SystemExit(
            f"{len(dead)} worker(s) ended early:\n" + log.read_text("utf-8", "replace")[-4000:]
        )


def _reap(child: subprocess.Popen[bytes], timeout: float) -> tuple[int, resource.struct_rusage]:
    """Wait for ``child`` (SIGKILL past ``timeout``); its exit code and resource usage."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return child.returncode, usage
        if time.monotonic() > deadline:
            child.kill()
            deadline = float("inf")
        time.sleep(0.05)


def write_fleet_config(tmp: Path, tenants: int, port: int, state: str, sink_port: int) -> Path:
    head = [
        f'state = "{state}"',
        "",
        "[[sinks]]",
        'type = "webhook"',
        f'url = "http://127.0.0.1:{sink_port}/alerts"',
    ]
    return write_config(tmp, tenants, port, head, f'poll_interval = "{FLEET_INTERVAL:.0f}s"')


def measure_fleet(
    workers: int,
    tenants: int,
    seconds: float,
    per_page: int,
    postgres: str,
    rng: random.Random,
    analyze: bool,
) -> FleetMeasured:
    import psycopg
    from fleet_soak import fresh_schema

    streams = tenants * len(CATEGORIES)
    with tempfile.TemporaryDirectory() as folder, fresh_schema(postgres) as schema_url:
        tmp = Path(folder)
        name = f"mc-bench-{time.monotonic_ns()}"  # tells the workers' backends from others
        url = f"{schema_url}&application_name={name}"
        api, api_port_file, port = start_server(tmp, per_page)
        sink, _, sink_port = start_sink(tmp)
        running: list[subprocess.Popen[bytes]] = []
        try:
            config = write_fleet_config(tmp, tenants, port, url, sink_port)
            log = tmp / "workers.log"
            spawned = time.time()
            began = time.monotonic()
            with log.open("ab") as err:
                running = [
                    subprocess.Popen(
                        [
                            *(sys.executable, "-m", "mimecast_connector", "run"),
                            *("--config", str(config), "--log-level", "error"),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        cwd=tmp,
                    )
                    for _ in range(workers)
                ]
            window = min(FLEET_INTERVAL, seconds)
            window_from: float | None = None
            cpu_from: dict[int, float] = {}
            pg_from: dict[int, float] = {}
            next_say = began + 15.0
            next_analyze = began
            while (now := time.monotonic()) < began + seconds:
                _check_alive(running, log)
                if window_from is None and now >= began + seconds - window:
                    window_from = time.time()
                    cpu_from = {child.pid: _cpu_seconds(child.pid) for child in running}
                    pg_from = _backends(postgres, name)
                if analyze and now >= next_analyze:
                    _analyze(url)
                    next_analyze += ANALYZE_EVERY
                if now >= next_say:
                    print(
                        f"    {workers} worker(s), {now - began:.0f} s: "
                        f"{_polled_since(url, 0.0)} streams polled at least once, "
                        f"{_polled_since(url, window_from) if window_from else 0} in the window",
                        file=sys.stderr,
                        flush=True,
                    )
                    next_say += 15.0
                time.sleep(max(0.0, min(0.5, began + seconds - now)))
            assert window_from is not None
            window_to = time.time()
            load = os.getloadavg()[0]
            worker_cpu = sum(_cpu_seconds(c.pid) - cpu_from[c.pid] for c in running)
            pg_to = _backends(postgres, name)
            _check_alive(running, log)
            with psycopg.connect(url, autocommit=True) as conn:
                counted = conn.execute(
                    "SELECT count(*) FILTER (WHERE last_success >= %s AND last_success <= %s), "
                    "count(*) FILTER (WHERE last_success IS NOT NULL), "
                    "coalesce(%s - min(last_success), 0) FROM mimecast_streams",
                    (window_from, window_to, window_to),
                ).fetchone()
                late = conn.execute(
                    "SELECT count(*), coalesce(extract(epoch FROM now() - min(scheduled_at)), 0) "
                    "FROM procrastinate_jobs WHERE queue_name = 'mimecast-polls' "
                    "AND status = 'todo' AND scheduled_at < now() - interval '5 seconds'"
                ).fetchone()
            assert counted is not None
            assert late is not None
            held: int | None = None
            took: float | None = None
            if workers >= 2:
                held, took = _kill_one(url, running, rng)
            exits = []
            rss = 0.0
            for child in running:
                if child.returncode is None:
                    child.send_signal(signal.SIGTERM)
            for child in running:
                if child.returncode is not None and child.returncode < 0:
                    continue  # the killed one, reaped already
                code, usage = _reap(child, 60.0)
                exits.append(code)
                rss = max(rss, usage.ru_maxrss / 1024)
            if any(exits):
                print(log.read_text("utf-8", "replace")[-4000:], file=sys.stderr)
            first = api_port_file.with_suffix(".first")
            startup = float(first.read_text()) - spawned if first.exists() else float("nan")
        finally:
            for child in running:
                if child.poll() is None:
                    child.kill()
                    child.wait()
            api_stats = stop_server(api)
            sink_stats = stop_server(sink)
    return FleetMeasured(
        workers=workers,
        window=window_to - window_from,
        polls=int(counted[0]),
        never=streams - int(counted[1]),
        oldest=float(counted[2]),
        overdue=int(late[0]),
        late_s=float(late[1]),
        startup=startup,
        worker_cpu=worker_cpu,
        pg_cpu=sum(pg_to[pid] - pg_from.get(pid, 0.0) for pid in pg_to),
        backends=len(pg_to),
        worker_rss_mib=rss,
        held=held,
        takeover=took,
        exits=exits,
        load=load,
        api=api_stats,
        sink=sink_stats,
    )


def _kill_one(
    url: str, running: list[subprocess.Popen[bytes]], rng: random.Random
) -> tuple[int, float]:
    """SIGKILL one worker while it runs polls (at a moment when every worker holds one, 10 s
    of waiting at most); the polls it held, and their takeover (as scripts/fleet_soak.py
    measures it; the workers started together, so the killed one's procrastinate id is the
    one whose heartbeat stops)."""
    from fleet_soak import doing, heartbeats, stopped_beating, takeover

    victim = running[rng.randrange(len(running))]
    waited = time.monotonic() + 10.0
    while len({w for w in doing(url).values() if w is not None}) < len(running):
        if time.monotonic() > waited:
            break
        time.sleep(0.02)
    beats = heartbeats(url)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    _reap(victim, 10.0)
    # Taken after the kill: what is still running on the dead worker is what it held.
    held = doing(url)
    measured = [
        takeover(url, worker, held, killed_at, limit=TAKEOVER_LIMIT)
        for worker in stopped_beating(url, beats)
    ]
    return sum(n for n, _ in measured), max((took for _, took in measured), default=0.0)


def fleet(
    tenants: int,
    workers: list[int],
    seconds: float,
    per_page: int,
    postgres: str,
    analyze: bool,
) -> None:
    import psycopg

    # scripts/fleet_soak.py measures takeovers; this reuses its helpers.
    sys.path.insert(0, str(HERE.parent / "scripts"))
    from mimecast_connector.runner._schedule import START_RATE

    with psycopg.connect(postgres, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('autovacuum')").fetchone()
    autovacuum = row[0] if row else "?"

    streams = tenants * len(CATEGORIES)
    needed = streams / FLEET_INTERVAL
    print(
        f"\nfleet: {tenants} tenants x {len(CATEGORIES)} = {streams} streams, poll interval "
        f"{FLEET_INTERVAL:.0f} s: {needed:.1f} polls/s needed; {seconds:.0f} s a run, polls "
        f"counted over its last {min(FLEET_INTERVAL, seconds):.0f} s; the server's autovacuum "
        f"is {autovacuum}"
        + (f", and the tables are analyzed every {ANALYZE_EVERY:.0f} s" if analyze else "")
    )
    if seconds < FLEET_INTERVAL + streams / START_RATE:
        print(
            f"(shorter than a poll interval plus the start-up spread, {streams / START_RATE:.0f}"
            " s: the window holds first polls, and polls/s is not the steady state)"
        )
    print(
        f"{'workers':>8}{'polls/s':>9}{'needed':>8}{'ratio':>7}{'never':>7}{'oldest s':>9}"
        f"{'overdue':>8}"
        f"{'late s':>8}{'start s':>8}{'CPU ms/poll':>12}{'PG ms/poll':>11}{'PG conns':>9}"
        f"{'RSS MiB':>8}{'takeover s':>11}{'API CPU s':>10}{'sink CPU s':>11}{'alerts':>8}"
        f"{'load':>6}  exits"
    )
    rng = random.Random(1)
    for count in workers:
        m = measure_fleet(count, tenants, seconds, per_page, postgres, rng, analyze)
        rate = m.polls / m.window
        per_poll = 1000 / m.polls if m.polls else float("nan")
        took = (
            "-"
            if m.held is None
            else "none held"
            if m.held == 0 or m.takeover is None
            else f">{TAKEOVER_LIMIT:.0f} ({m.held})"
            if m.takeover >= TAKEOVER_LIMIT
            else f"{m.takeover:.1f} ({m.held})"
        )
        print(
            f"{m.workers:>8}{rate:>9.1f}{needed:>8.1f}{rate / needed:>7.2f}{m.never:>7}"
            f"{m.oldest:>9.1f}{m.overdue:>8}{m.late_s:>8.1f}{m.startup:>8.1f}"
            f"{m.worker_cpu * per_poll:>12.2f}"
            f"{m.pg_cpu * per_poll:>11.2f}{m.backends:>9}{m.worker_rss_mib:>8.0f}{took:>11}"
            f"{m.api['cpu_s']:>10.1f}{m.sink['cpu_s']:>11.1f}{int(m.sink['alerts']):>8}"
            f"{m.load:>6.1f}  {m.exits}",
            flush=True,
        )


# --- the floor: a bare asyncio client ---------------------------------------------------------


class Pool:
    """Keep-alive HTTP/1.1 connections to one host, at most ``size`` of them."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.slots = asyncio.Semaphore(size)

    async def post(self, path: str, body: bytes, headers: str = "") -> bytes:
        async with self.slots:
            if self.idle.empty():
                connection = await asyncio.open_connection("127.0.0.1", self.port)
            else:
                connection = self.idle.get_nowait()
            reader, writer = connection
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                f"{headers}\r\n".encode()
                + body
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            payload = await reader.readexactly(length)
            self.idle.put_nowait(connection)
            return payload


#: Streams due this close together start together, as ``runner._schedule.GATHER`` does in the
#: connector (not imported: the floor's process imports httpx and msgspec only, as a bare client).
GATHER = 0.05


class _Token(msgspec.Struct):
    access_token: str


class _Page(msgspec.Struct):
    data: list[dict[str, list[msgspec.Raw]]]


async def bare(
    config: dict[str, Any], config_path: Path, cycles: int = 1, paced: float = 0.0
) -> None:
    port = int(config["tenants"][0]["base_url"].rsplit(":", 1)[1])
    pool = Pool(port, 32)
    token_decoder = msgspec.json.Decoder(_Token)
    page_decoder = msgspec.json.Decoder(_Page)
    out = open(config_path.parent / "bare.jsonl", "ab")  # noqa: SIM115, ASYNC230 - the floor
    now = datetime.now(UTC)
    start = (now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    end = now.strftime("%Y-%m-%dT%H:%M:%S+0000")
    ttp = {"from": start, "to": end, "oldestFirst": True}
    rejections = {"start": start, "end": end, "admin": True}
    bodies = {
        category: msgspec.json.encode(
            {
                "meta": {"pagination": {"pageSize": 500}},
                "data": [rejections if category == "rejection" else ttp],
            }
        )
        for category in CATEGORIES
    }

    async def stream(token: str, category: str) -> None:
        page = page_decoder.decode(
            await pool.post(
                PATHS[category],
                bodies[category],
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n",
            )
        )
        out.write(
            b"".join(bytes(r) + b"\n" for item in page.data for rs in item.values() for r in rs)
        )

    async def tenant(entry: dict[str, str]) -> str:
        form = f"grant_type=client_credentials&client_id={entry['client_id']}&client_secret={entry['client_secret']}"
        token = token_decoder.decode(
            await pool.post(
                "/oauth/token",
                form.encode(),
                "Content-Type: application/x-www-form-urlencoded\r\n",
            )
        ).access_token
        await asyncio.gather(*(stream(token, c) for c in CATEGORIES))
        return token

    tokens = await asyncio.gather(*(tenant(t) for t in config["tenants"]))
    out.flush()
    os.fsync(out.fileno())
    for _ in range(cycles - 1):
        # A later cycle, as a long-running client makes it: tokens held, connections open.
        began = time.process_time()
        await asyncio.gather(*(stream(token, c) for token in tokens for c in CATEGORIES))
        out.flush()
        os.fsync(out.fileno())
        print(json.dumps({"cycle_cpu": time.process_time() - began}), flush=True)
    if paced:
        # One more cycle paced as the connector's `run` polls: each stream at its own moment,
        # spread evenly over ``paced`` seconds, those due within GATHER started together.
        loop = asyncio.get_running_loop()
        pending = [(token, c) for token in tokens for c in CATEGORIES]
        count, began, first = len(pending), time.process_time(), loop.time()
        started: list[asyncio.Task[None]] = []
        for index, (token, category) in enumerate(pending):
            at = first + paced * index / count
            if at > loop.time() + GATHER:
                await asyncio.sleep(at - loop.time())
            started.append(asyncio.create_task(stream(token, category)))
        await asyncio.gather(*started)
        out.flush()
        os.fsync(out.fileno())
        print(json.dumps({"paced_cpu": time.process_time() - began}), flush=True)
    out.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--tenants", default="100,1000,3000")
    parser.add_argument("--records-per-page", type=int, default=2)
    parser.add_argument(
        "--fleet-workers",
        default="",
        help="then the fleet at the largest N: worker counts, e.g. 1,2,4 (default: no fleet)",
    )
    parser.add_argument("--fleet-seconds", type=float, default=60.0)
    parser.add_argument(
        "--fleet-analyze",
        action="store_true",
        help=f"ANALYZE the fleet's tables every {ANALYZE_EVERY:.0f} s, as autovacuum would",
    )
    parser.add_argument("--postgres", default=POSTGRES, help="the fleet's database (a schema each)")
    parser.add_argument(
        "--steady",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="then, per N, `run` with this poll interval: CPU of one interval past start-up",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="then, at the largest N, `run` for MINUTES polling every --soak-interval s: its\n"
        "memory, CPU and state each minute (flat memory: nothing grows with the polls)",
    )
    parser.add_argument("--soak-interval", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cycles", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--paced", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    workers = [int(n) for n in args.fleet_workers.split(",") if n.strip()]
    if any(n < 1 for n in workers) or args.fleet_seconds <= 0:
        parser.error("--fleet-workers takes counts of 1 or more, --fleet-seconds a positive time")
    if args.bare:
        config = tomllib.loads(args.config.read_text("utf-8"))
        asyncio.run(bare(config, args.config, args.cycles, args.paced))
        return
    connector = [sys.executable, "-m", "mimecast_connector", "run", "--once"]
    floor = [sys.executable, str(Path(__file__).resolve()), "--bare"]
    print(
        f"{'tenants':>8} {'streams':>8} {'':<10}{'wall s':>8}{'CPU s':>8}{'ratio':>8}"
        f"{'RSS MiB':>9}{'start s':>9}{'sockets':>9}{'server CPU s':>14}{'records':>9}"
    )
    for tenants in (int(n) for n in args.tenants.split(",")):
        results = {}
        for name, command in (("floor", floor), ("connector", connector)):
            with tempfile.TemporaryDirectory() as folder:
                results[name] = measure(command, Path(folder), args.records_per_page, tenants)
        assert (
            results["floor"].written
            == results["connector"].written
            == tenants * len(CATEGORIES) * (args.records_per_page)
        ), "the connector and the floor did not write the same records"
        for name in ("floor", "connector"):
            m = results[name]
            ratio = m.cpu / results["floor"].cpu
            print(
                f"{tenants:>8} {tenants * len(CATEGORIES):>8} {name:<10}{m.wall:>8.1f}{m.cpu:>8.1f}{ratio:>7.1f}x"
                f"{m.rss_mib:>9.0f}{m.startup:>9.2f}{m.connections:>9}{m.server_cpu:>14.1f}"
                f"{m.written:>9}",
                flush=True,
            )
    if args.steady:
        print(
            f"\nsteady state, `run` polling every stream every {args.steady:.0f} s, one interval "
            "past start-up:\n"
            f"{'tenants':>8} {'streams':>8}{'polls':>8}{'CPU s':>8}{'ms/poll':>9}"
            f"{'floor ms/poll':>15}{'ratio':>8}{'paced floor':>13}{'ratio':>8}{'RSS MiB':>9}"
        )
        for tenants in (int(n) for n in args.tenants.split(",")):
            steady = measure_steady(tenants, args.records_per_page, args.steady)
            per_poll = steady.cpu / max(1, steady.polls) * 1000
            floor_per_poll = steady.floor_cpu / (tenants * len(CATEGORIES)) * 1000
            paced_per_poll = steady.paced_cpu / (tenants * len(CATEGORIES)) * 1000
            print(
                f"{tenants:>8} {tenants * len(CATEGORIES):>8}{steady.polls:>8}{steady.cpu:>8.2f}"
                f"{per_poll:>9.3f}{floor_per_poll:>15.3f}{per_poll / floor_per_poll:>7.1f}x"
                f"{paced_per_poll:>13.3f}{per_poll / paced_per_poll:>7.1f}x{steady.rss_mib:>9.0f}",
                flush=True,
            )
    if args.soak:
        soak(
            max(int(n) for n in args.tenants.split(",")),
            args.records_per_page,
            args.soak_interval,
            args.soak,
        )
    if workers:
        largest = max(int(n) for n in args.tenants.split(","))
        fleet(
            largest,
            workers,
            args.fleet_seconds,
            args.records_per_page,
            args.postgres,
            args.fleet_analyze,
        )


if __name__ == "__main__":
    main()
