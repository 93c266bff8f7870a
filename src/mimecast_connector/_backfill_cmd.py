"""``mimecast-connector backfill``: read an old range of one tenant, with a progress bar a stream.

The range goes through the run's own chain, dedup, sinks and checkpoints (``runner._backfill``
says how it never reads what the live streams read). Two ways to run it, one result:

* no ``run`` holds the state (or the state is PostgreSQL, whose one-writer rule is per stream):
  this process reads the range itself;
* a ``run`` holds the SQLite state: the request is handed to it (a file in the state's
  ``backfill`` folder, then SIGHUP), it reads the range beside its live polls, and this process
  shows the progress from the state, read-only.

Either way a kill -9 (of this process, or of the run) loses nothing: the same command again
goes on from the backfill stream's cursor.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mimecast_connector._categories import Category
from mimecast_connector._commands import (
    _config_option,
    _fail,
    _load,
    _with_logs,
    on_stop_signals,
    writer_of,
)
from mimecast_connector._errors import ConnectorError, StateError
from mimecast_connector._logging import LogFormat, redact
from mimecast_connector._text import shown
from mimecast_connector.config import Config, TenantConfig
from mimecast_connector.runner import Runner
from mimecast_connector.runner._backfill import (
    DEFAULT_SHARE,
    Backfill,
    lane_of,
    plan,
    request_folder,
)
from mimecast_connector.state import StateStore, StreamState

_err = Console(stderr=True, highlight=False)

#: Seconds between two looks at the state while another process reads the range.
WATCH_EVERY = 0.5
#: Seconds between two progress lines when the output is not a terminal.
LINE_EVERY = 5.0


def parse_moment(text: str, name: str) -> datetime:
    """``2026-10-01`` (midnight UTC) or an ISO 8601 time (UTC unless it says otherwise)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.fromisoformat(text).replace(tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date (2026-10-01) or a time (2026-10-01T12:00:00Z)",
            param_hint=name,
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def categories_of(tenant: TenantConfig, asked: str | None) -> list[Category]:
    """The categories to backfill: those asked for (comma-separated), else the tenant's; the
    SIEM receipt feed has no range to ask for."""
    if asked is None:
        return [c for c in tenant.categories if not c.is_feed]
    out: list[Category] = []
    for word in filter(None, (w.strip() for w in asked.split(","))):
        try:
            category = Category(word)
        except ValueError:
            known = ", ".join(f'"{c.value}"' for c in Category)
            raise click.BadParameter(
                f'"{word}" is not one of {known}', param_hint="--categories"
            ) from None
        if category.is_feed:
            raise click.BadParameter(
                f'"{word}" is the SIEM feed of receipt files: its first poll already reads '
                "every file Mimecast keeps (7 days), so there is no range to backfill",
                param_hint="--categories",
            )
        if category not in tenant.categories:
            raise click.BadParameter(
                f'tenant {tenant.name!r} does not read "{word}" (its categories: '
                f"{', '.join(c.value for c in tenant.categories)})",
                param_hint="--categories",
            )
        if category not in out:
            out.append(category)
    if not out:
        raise click.BadParameter("no category given", param_hint="--categories")
    return out


@dataclass(frozen=True, slots=True)
class Decision:
    """Per category: the job to read (None: nothing), resumed or new, and notes to show."""

    jobs: list[Backfill]
    resumed: set[Category]
    notes: list[str]


def decide(
    tenant: TenantConfig,
    categories: Sequence[Category],
    start: datetime,
    end: datetime | None,
    share: float,
    known: Mapping[str, StreamState],
    now: datetime,
) -> Decision:
    """What to read for each category, from what the state knows (``known``: by category
    name, live and backfill streams of the tenant)."""
    jobs: list[Backfill] = []
    resumed: set[Category] = set()
    notes: list[str] = []
    for category in categories:
        live = known.get(category.value)
        made = plan(
            tenant.name,
            category,
            start,
            end,
            began=live.began if live else None,
            configured_start=tenant.start,
            has_cursor=live is not None and live.cursor is not None,
            now=now,
            share=share,
        )
        notes.extend(made.notes)
        if made.job is None:
            continue
        again: Backfill | None = None
        for name, state in known.items():
            parsed = Backfill.parse(state.marker) if name.startswith(lane_of(category)) else None
            if parsed is None:
                continue
            job, done = parsed
            if (job.start, job.end) == (made.job.start, made.job.end):
                if done:
                    notes.append(f"{category.value}: this range was backfilled already")
                    break
                again = job
            elif not done:
                raise click.UsageError(
                    f"{tenant.name}/{category.value}: a backfill from {_when(job.start)} to "
                    f"{_when(job.end)} is not finished; finish it first (the same command with "
                    "that range goes on where it stopped)"
                )
            elif made.job.start <= job.end and job.start <= made.job.end:
                raise click.UsageError(
                    f"{tenant.name}/{category.value}: {_when(job.start)} to {_when(job.end)} "
                    "was backfilled already, and its ids are no longer all kept: ask for a "
                    "range that does not overlap it"
                )
        else:
            if again is not None:
                resumed.add(category)
            jobs.append(made.job)
    return Decision(jobs, resumed, notes)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        records = int(task.fields.get("records", 0))
        alerts = int(task.fields.get("alerts", 0))
        elapsed = task.elapsed or 0.0
        rate = records / elapsed if elapsed > 0 else 0.0
        return Text(f"{records:,} records  {alerts:,} alerts  {rate:,.0f}/s")


class Shown:
    """The progress of every backfill stream: bars on a terminal, a line every few seconds
    elsewhere (a log file, CI)."""

    def __init__(self, jobs: Sequence[Backfill], console: Console = _err) -> None:
        self._jobs = list(jobs)
        self._console = console
        self._tty = console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            _Rate(),
            TextColumn("{task.fields[reached]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not self._tty,
        )
        self._tasks = {
            job.category: self._progress.add_task(
                f"{job.tenant}/{job.category.value}", total=1000, records=0, alerts=0, reached=""
            )
            for job in self._jobs
        }
        self._began = time.monotonic()
        self._lined = 0.0

    def __enter__(self) -> Shown:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def update(self, streams: Mapping[str, StreamState]) -> None:
        lines = []
        for job in self._jobs:
            state = streams.get(job.lane)
            cursor = state.cursor if state else None
            counters = state.counters if state else {}
            parsed = Backfill.parse(state.marker if state else None)
            done = parsed is not None and parsed[1]
            covered = 1.0 if done else job.covered(cursor)
            records, alerts = counters.get("fetched", 0), counters.get("alerts", 0)
            reached = f"to {cursor:%Y-%m-%d %H:%M}" if cursor else "starting"
            self._progress.update(
                self._tasks[job.category],
                completed=round(covered * 1000),
                records=records,
                alerts=alerts,
                reached="done" if done else reached,
            )
            lines.append(
                f"{job.tenant}/{job.category.value} {covered:.0%} "
                f"({'done' if done else reached}), {records:,} records, {alerts:,} alerts"
            )
        now = time.monotonic()
        if not self._tty and now - self._lined >= LINE_EVERY:
            self._lined = now
            self._console.print(
                shown(f"[{now - self._began:.0f} s] " + "; ".join(lines)), soft_wrap=True
            )


def finished(jobs: Sequence[Backfill], streams: Mapping[str, StreamState]) -> bool:
    for job in jobs:
        state = streams.get(job.lane)
        parsed = Backfill.parse(state.marker if state else None)
        if parsed is None or not parsed[1]:
            return False
    return True


def tenant_streams(rows: Sequence[StreamState], tenant: str) -> dict[str, StreamState]:
    return {s.category: s for s in rows if s.tenant == tenant}


async def read_here(config: Config, tenant: TenantConfig, decision: Decision, shown_: Shown) -> int:
    """Read the jobs in this process: every sink of the configuration, the same state."""
    runner = Runner(config)
    try:
        await runner.start()
    except ConnectorError as exc:
        await runner.aclose()
        raise click.ClickException(redact(str(exc), config.secrets())) from None
    stop = asyncio.Event()
    on_stop_signals(runner, stop)  # as `run`: commit the pages being read, then stop
    try:
        polls = [asyncio.ensure_future(runner.backfill(job)) for job in decision.jobs]
        with shown_:
            while not all(p.done() for p in polls):
                await asyncio.wait(polls, timeout=WATCH_EVERY)
                shown_.update(tenant_streams(await runner.store.streams(), tenant.name))
        results = [p.result() for p in polls]
    finally:
        await runner.aclose()
    failed = [r for r in results if r.error is not None]
    for r in failed:
        _err.print(shown(f"{r.tenant}/{r.category.value}: {r.message}"), soft_wrap=True)
    if failed:
        _err.print("Run the same command again once fixed: it goes on where it stopped.")
        return 1
    if stop.is_set():
        _err.print("stopped; the same command goes on where it stopped")
        return 0
    _err.print("backfill done")
    return 0


def hand_over(config: Config, holder_pid: int, decision: Decision, shown_: Shown) -> int:
    """Give the jobs to the ``run`` holding the SQLite state, then show their progress."""
    assert isinstance(config.state, Path)
    folder = request_folder(config.state)
    folder.mkdir(parents=True, exist_ok=True)
    for job in decision.jobs:
        path = folder / f"{job.tenant}.{job.category.value}.json"
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(job.marker(), "utf-8")
        temporary.replace(path)
    try:
        os.kill(holder_pid, signal.SIGHUP)
    except OSError as exc:
        raise click.ClickException(
            f"could not signal process {holder_pid}: {exc.strerror}"
        ) from None
    _err.print(
        f"handed to the running connector (process {holder_pid}); its progress, from the "
        "state (Ctrl-C stops watching, not the backfill):"
    )
    store = StateStore(config.state, read_only=True)
    try:
        with shown_:
            while True:
                streams = tenant_streams(store.streams(), decision.jobs[0].tenant)
                shown_.update(streams)
                if finished(decision.jobs, streams):
                    break
                time.sleep(WATCH_EVERY)
    except KeyboardInterrupt:
        _err.print("stopped watching; the running connector goes on with the backfill")
        return 0
    finally:
        store.close()
    _err.print("backfill done")
    return 0


def holder_of(config: Config) -> int | None:
    """The pid of the ``run`` on this machine holding the SQLite state, if one does."""
    holder = writer_of(config.state) if isinstance(config.state, Path) else None
    if holder is None:
        return None
    pid, host = holder
    if host != socket.gethostname():
        raise click.ClickException(
            f"the connector on this state runs on {host}: run the backfill there"
        )
    return pid


def read_known(config: Config, tenant: str) -> dict[str, StreamState]:
    """The tenant's streams as the state has them (read-only; empty for a new state)."""
    if isinstance(config.state, Path):
        if not config.state.exists():
            return {}
        store = StateStore(config.state, read_only=True)
        try:
            return tenant_streams(store.streams(), tenant)
        finally:
            store.close()
    return tenant_streams(asyncio.run(_postgres_streams(config)), tenant)


async def _postgres_streams(config: Config) -> list[StreamState]:
    from mimecast_connector.state._postgres import PostgresStore  # lazy: psycopg

    assert not isinstance(config.state, Path)
    store = await PostgresStore.open(config.state.url.get_secret_value(), create=True)
    try:
        return await store.streams()
    finally:
        await store.aclose()


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@click.command()
@_config_option
@click.option("--tenant", "tenant_name", required=True, help="The tenant's name in the config.")
@click.option("--from", "start_text", required=True, help="From: 2026-10-01 or an ISO time (UTC).")
@click.option(
    "--to", "end_text", help="To (inclusive) [default: where the live stream began reading]."
)
@click.option("--categories", help="Comma-separated [default: the tenant's logs].")
@click.option(
    "--share",
    type=click.FloatRange(0, 1, min_open=True),
    default=DEFAULT_SHARE,
    show_default=True,
    help="The share of the tenant's API quota the backfill may take.",
)
@_with_logs
def backfill(
    config_path: Path,
    tenant_name: str,
    start_text: str,
    end_text: str | None,
    categories: str | None,
    share: float,
    log_level: str,
    log_format: LogFormat,
) -> None:
    """Read an old range of one tenant's logs, through the same chain and sinks as `run`."""
    config = _load(config_path, log_level, log_format)
    tenant = next((t for t in config.tenants if t.name == tenant_name), None)
    if tenant is None:
        near = sorted(t.name for t in config.tenants if tenant_name.lower() in t.name.lower())
        hint = f" (did you mean {', '.join(near[:5])}?)" if near else ""
        _fail(f"no tenant {tenant_name!r} in {str(config_path)!r}{hint}")
    start = parse_moment(start_text, "--from")
    end = parse_moment(end_text, "--to") if end_text else None
    if end is not None and end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    chosen = categories_of(tenant, categories)
    if not chosen:
        _fail(f"tenant {tenant_name!r} reads no log that can be backfilled")
    try:
        holder = holder_of(config)
        known = read_known(config, tenant.name)
    except StateError as exc:
        _fail(redact(str(exc), config.secrets()))
    decision = decide(tenant, chosen, start, end, share, known, now_utc())
    for note in decision.notes:
        _err.print(Text.assemble(("note:", "yellow"), " ", shown(note)), soft_wrap=True)
    if not decision.jobs:
        _err.print("nothing to backfill")
        sys.exit(0)
    for job in decision.jobs:
        again = " (going on where it stopped)" if job.category in decision.resumed else ""
        _err.print(
            shown(
                f"backfill {job.tenant}/{job.category.value}: {job.start:%Y-%m-%d %H:%M:%SZ} to "
                f"{job.end:%Y-%m-%d %H:%M:%SZ}, at most {job.share:.0%} of the quota{again}"
            )
        )
    progress = Shown(decision.jobs)
    if holder is not None:
        sys.exit(hand_over(config, holder, decision, progress))
    sys.exit(asyncio.run(read_here(config, tenant, decision, progress)))
