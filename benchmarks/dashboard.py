"""The dashboard over a big state: 3,000 tenants x 4 logs (12,000 streams) and their alerts.

    .venv/bin/python benchmarks/dashboard.py [--tenants 3000] [--hours 168] [--addresses 10]
        [--polls-per-hour 1]

A SQLite state is filled through the store's own commits: every stream with a health (one
tenant in 100 failing, one in 250 degraded), counters, and for every tenant ``--hours`` hours
of alert counts (three alert types) and, for the last 48 hours, ``--addresses`` senders and
recipients an hour. With ``--polls-per-hour P``, the senders and recipients of the last 24
hours come in P commits an hour (as a tenant whose polls bring alerts P times an hour, each
commit adding the same addresses again), in groups of 200 tenants. Then the dashboard is served on loopback (``observe.MetricsServer``, as
``mimecast-connector dashboard`` serves it, with a token) and each endpoint is timed over HTTP:
its first answer (cold: the read of the state) and the median of 20 more (the dashboard keeps
a read for 5 s, the charts for 30 s, so these are what a busy page costs).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from mimecast_connector._health import State, StreamHealth
from mimecast_connector.config import load_config
from mimecast_connector.dashboard import Dashboard
from mimecast_connector.observe import MetricsServer
from mimecast_connector.state import Commit, SqliteStore, StateStore, Tallies

TOKEN = "bench-dashboard-token-0123"
CATEGORIES = ("attachment", "impersonation", "url", "rejection")


def write_config(folder: Path, tenants: int) -> Path:
    lines = [f'state = "{folder / "state.db"}"', f'metrics_token = "{TOKEN}"']
    for i in range(tenants):
        lines += [
            "[[tenants]]",
            f'name = "tenant-{i:04d}"',
            f'client_id = "id-{i}"',
            'client_secret = "bench-secret"',
        ]
    lines += ["[[sinks]]", 'type = "jsonl"', f'path = "{folder / "out.jsonl"}"']
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fill(path: Path, tenants: int, hours: int, addresses: int, polls: int) -> float:
    now = datetime.now(UTC)
    hour_now = int(now.timestamp()) // 3600
    started = time.perf_counter()
    store = SqliteStore(StateStore(path, writer=True))

    def health(i: int, category: str) -> StreamHealth:
        if i % 100 == 7 and category == "url":
            return StreamHealth(State.FAILING, "Mimecast refused the credentials", "fix", 1.0)
        if i % 250 == 3 and category == "attachment":
            return StreamHealth(State.DEGRADED, "HTTP 503", "wait", 1.0)
        return StreamHealth(State.COLLECTING, "the last poll finished", "", 1.0)

    async def write() -> None:
        for i in range(tenants):
            name = f"tenant-{i:04d}"
            parties = {
                (hour_now - h, role): {
                    f"{role}{k}-{i % 50}@example.com": 1 + k for k in range(addresses)
                }
                for h in range(min(hours, 48))
                for role in ("sender", "recipient")
            }
            counts = {
                (hour_now - h, alert_type, technique): 1 + (h % 5)
                for h in range(hours)
                for alert_type, technique in (
                    ("URL Protection", "T1598.003"),
                    ("Unsafe Email Attachment", "T1598.002"),
                    ("Invalid Recipient", "TA0005"),
                )
            }
            await store.commit_group(
                [
                    Commit(
                        name,
                        category,
                        now - timedelta(minutes=1),
                        [],
                        {
                            "fetched": 100,
                            "alerts": 40,
                            "dropped: clean": 60,
                            "dead_lettered": i % 3,
                        },
                        success_at=now.timestamp(),
                        health=health(i, category),
                        tallies=Tallies(category, counts, parties, hour_now)
                        if category == "url"
                        else None,
                    )
                    for category in CATEGORIES
                ],
                {},
            )
        for _ in range(polls - 1):
            for first in range(0, tenants, 200):
                group = []
                for i in range(first, min(first + 200, tenants)):
                    parties = {
                        (hour_now - h, role): {
                            f"{role}{k}-{i % 50}@example.com": 1 for k in range(addresses)
                        }
                        for h in range(min(hours, 24))
                        for role in ("sender", "recipient")
                    }
                    tallies = Tallies("url", {}, parties, hour_now)
                    group.append(Commit(f"tenant-{i:04d}", "url", None, [], {}, tallies=tallies))
                await store.commit_group(group, {})
        await store.aclose()

    asyncio.run(write())
    return time.perf_counter() - started


async def measure(config_path: Path) -> list[tuple[str, float, float]]:
    config = load_config(config_path, {})
    server = MetricsServer("127.0.0.1", 0, metrics=None, token=TOKEN, dashboard=Dashboard(config))
    host, port = await server.start()
    out = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=headers) as http:
            for path in (
                "/api/streams",
                "/api/streams?page=30",
                "/api/streams?q=tenant-12",
                "/api/streams?health=failing,degraded",
                "/api/charts",
                "/",
                "/?tenant=tenant-0042",
            ):
                started = time.perf_counter()
                answer = await http.get(path)
                cold = time.perf_counter() - started
                answer.raise_for_status()
                times = []
                for _ in range(20):
                    started = time.perf_counter()
                    (await http.get(path)).raise_for_status()
                    times.append(time.perf_counter() - started)
                out.append((path, cold, statistics.median(times)))
    finally:
        await server.aclose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=3000)
    parser.add_argument("--hours", type=int, default=168)
    parser.add_argument("--addresses", type=int, default=10)
    parser.add_argument("--polls-per-hour", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mimecast-dashboard-bench-") as tmp:
        folder = Path(tmp)
        config = write_config(folder, args.tenants)
        filled = fill(
            folder / "state.db", args.tenants, args.hours, args.addresses, args.polls_per_hour
        )
        size = (folder / "state.db").stat().st_size
        with sqlite3.connect(folder / "state.db") as db:
            rows = db.execute("SELECT count(*) FROM alert_parties").fetchone()[0]
        db.close()
        print(
            f"state: {args.tenants} tenants x 4 logs, {args.hours} h of counts, "
            f"{args.addresses} senders/recipients an hour in {args.polls_per_hour} commit(s) an "
            f"hour; filled in {filled:.1f} s, {size / 2**20:.1f} MiB, {rows:,} rows of senders "
            "and recipients"
        )
        print(f"{'endpoint':40} {'first (cold)':>14} {'median of 20':>14}")
        for path, cold, warm in asyncio.run(measure(config)):
            print(f"{path:40} {cold * 1000:11.1f} ms {warm * 1000:11.1f} ms")


if __name__ == "__main__":
    main()
