"""The commands users run all day: ``run``, ``check``, ``status``, and the ``demo``.

Exit statuses: 0 success; 1 a run or check in which something failed (the summary names each
failure and what to do); 2 a configuration or state problem found before anything ran.
Human output goes to stderr, so that a ``jsonl`` sink may write alerts to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import signal
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text
from typing_extensions import override

from mimecast_connector._categories import Category
from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import (
    ConfigError,
    ConnectorError,
    ForbiddenError,
    InternalError,
    StateError,
)
from mimecast_connector._health import NEVER_POLLED, StreamHealth, derived
from mimecast_connector._heap import brief, resettle, settle
from mimecast_connector._logging import LogFormat, configure_logging, redact
from mimecast_connector._text import shown, visible
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.client import HttpPool, MimecastClient
from mimecast_connector.client._siem import check_feed
from mimecast_connector.config import (
    Config,
    PostgresState,
    TenantConfig,
    load_config,
    reload_config,
)
from mimecast_connector.config._config import listen_address
from mimecast_connector.dashboard import Dashboard
from mimecast_connector.observe import MetricsServer
from mimecast_connector.runner import Runner, StreamResult, make_auth, make_sinks
from mimecast_connector.runner._backfill import Backfill, is_backfill
from mimecast_connector.state import StateStore, StreamState, WriterLock

if TYPE_CHECKING:
    from mimecast_connector.simulator import SimTenant

_err = Console(stderr=True, highlight=False)
_log = structlog.get_logger("mimecast_connector.commands")


def _fail(message: str, status: int = 2) -> NoReturn:
    _err.print(Text.assemble(("error:", "bold red"), " ", shown(message)), soft_wrap=True)
    sys.exit(status)


def _load(path: Path, level: str, log_format: LogFormat) -> Config:
    try:
        config = load_config(path, os.environ)
    except ConfigError as exc:
        _err.print(
            Text.assemble(
                ("error:", "bold red"),
                f" {visible(str(path))}: {len(exc.problems)} problem(s) in the configuration:",
            ),
            soft_wrap=True,
        )
        for key, message in exc.problems:
            _err.print(shown(f"  {key + ': ' if key else ''}{message}"), soft_wrap=True)
        sys.exit(2)
    configure_logging(level=level, format=log_format, secrets=config.secrets())
    return config


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "-"


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The TOML configuration file.",
)
_log_options = [
    click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default="info",
        show_default=True,
    ),
    click.option(
        "--log-format", type=click.Choice(["json", "console"]), default="json", show_default=True
    ),
]


def _with_logs(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_log_options):
        f = option(f)
    return f


#: Streams a ``run --once`` summary shows one row each; a larger run is summed up, and only
#: its failed streams are listed (at most ``FAILURES_SHOWN`` of them, then how many more).
TABLE_ROWS = 60
FAILURES_SHOWN = 50


def summarize(results: Sequence[StreamResult], console: Console = _err) -> int:
    """Print what a ``run --once`` did; return the exit status (1 if any stream failed).

    Up to ``TABLE_ROWS`` streams get a row each; beyond that, one line of totals (a table of
    thousands of rows helps nobody, and costs seconds to draw) and the failures.
    """
    failures = [r for r in results if r.error is not None]
    if len(results) <= TABLE_ROWS:
        console.print(_table(results))
    else:
        alerts = sum(r.alerts for r in results)
        pages = sum(r.pages for r in results)
        duplicates = sum(r.counts.get("duplicates", 0) for r in results)
        dead = sum(r.counts.get("dead_lettered", 0) for r in results)
        console.print(
            f"mimecast-connector run --once: {len(results)} streams, "
            f"{len(results) - len(failures)} ok, {len(failures)} failed; {pages} pages, "
            f"{alerts} new alerts, {duplicates} duplicates, {dead} dead-lettered"
        )
    for r in failures[:FAILURES_SHOWN]:
        console.print(
            Text.assemble(shown(f"{r.tenant}/{r.category.value}:", "red"), " ", shown(r.message)),
            soft_wrap=True,
        )
    if len(failures) > FAILURES_SHOWN:
        console.print(
            f"... and {len(failures) - FAILURES_SHOWN} more failed streams: "
            "`mimecast-connector status` shows each stream's last error"
        )
    return 1 if failures else 0


def _table(results: Sequence[StreamResult]) -> Table:
    table = Table(title="mimecast-connector run --once", title_justify="left")
    for column in (
        "tenant",
        "category",
        "pages",
        "new alerts",
        "duplicates",
        "dead-lettered",
        "result",
    ):
        table.add_column(column)
    for r in results:
        table.add_row(
            shown(r.tenant),
            shown(r.category.value),
            str(r.pages),
            str(r.alerts),
            str(r.counts.get("duplicates", 0)),
            str(r.counts.get("dead_lettered", 0)),
            "ok" if r.error is None else shown(f"FAILED ({r.error.fault} fault)"),
        )
    return table


async def _run(
    config: Config,
    once: bool,
    path: Path | None = None,
    logs: tuple[str, LogFormat] = ("info", "json"),
) -> int:
    runner = Runner(config)
    try:
        await runner.start()
    except ConnectorError as exc:
        await runner.aclose()
        _fail(redact(str(exc), config.secrets()))
    except Exception as exc:  # a local resource, or a bug: say so, never a traceback
        await runner.aclose()
        _fail(redact(f"could not start: {InternalError(exc)}", config.secrets()), status=1)
    metrics = await _metrics_server(runner, config)
    reload = None if path is None else _reloader(runner, path, logs)
    if not once:
        settle()  # a long run: the start's heap out of the collector's view (``_heap``)
    try:
        return await serve(runner, once, reload=reload)
    finally:
        if metrics is not None:
            await metrics.aclose()
        await runner.aclose()


async def _metrics_server(runner: Runner, config: Config) -> MetricsServer | None:
    """The started runner's /metrics, /healthz and /readyz, if ``metrics`` says where."""
    if config.metrics is None:
        return None
    host, port = listen_address(config.metrics)
    token = config.metrics_token
    server = MetricsServer(
        host,
        port,
        metrics=runner.metrics.snapshot,
        not_ready=runner.not_ready,
        total=lambda: len(runner.streams()),
        refresh=runner.refresh_health,
        token=None if token is None else token.get_secret_value(),
        dashboard=Dashboard(config),  # the dashboard's page at / (``dashboard``)
    )
    try:
        await server.start()
    except OSError as exc:
        await runner.aclose()
        _fail(
            f"metrics: cannot listen on {config.metrics} ({exc.strerror or exc}): choose "
            "another address, or stop the process that holds it"
        )
    return server


def _reloader(
    runner: Runner, path: Path, logs: tuple[str, LogFormat]
) -> Callable[[], Awaitable[None]]:
    """What ``SIGHUP`` (and ``mimecast-connector reload``) does: read the configuration again
    and hand its tenants to the runner; a broken tenant file keeps that tenant as it was, and
    a broken main file changes nothing. Every problem is logged with its file and key."""

    async def reload() -> None:
        try:
            found = await asyncio.to_thread(reload_config, path, os.environ)
        except ConfigError as exc:
            for key, message in exc.problems:
                _log.error("reload_refused", key=key, problem=message, reason="nothing changed")
            return
        for label, problems in found.broken.items():
            for key, message in problems:
                _log.error(
                    "tenant_file_broken",
                    file=label,
                    key=key,
                    problem=message,
                    reason="this tenant goes on as it was; fix the file and reload again",
                )
        done = runner.reload(found.config, found.broken)
        resettle()  # tenants added and removed: the heap to freeze is another
        configure_logging(level=logs[0], format=logs[1], secrets=runner.secrets)
        await runner.take_backfills()  # `backfill` asks this way too
        _log.info(
            "reloaded",
            added=len(done.added),
            removed=len(done.removed),
            changed=len(done.changed),
            restart_for=done.restart_for or None,
        )

    return reload


def _on_hangup(reload: Callable[[], Awaitable[None]]) -> None:
    """Run ``reload`` on each SIGHUP; one at a time (a signal during one runs it once more)."""
    busy = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def once_more() -> None:
        async with busy:
            await reload()

    def hangup() -> None:
        task = asyncio.ensure_future(once_more())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup)


def on_stop_signals(runner: Runner, stop: asyncio.Event) -> None:
    """SIGINT or SIGTERM: start no more polls, let those in flight commit what they read
    (``Runner.drain_timeout`` at most), close the sinks, exit 0. A second one exits at once:
    safe too, since a run killed anywhere resumes from its last commit."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            _err.print(f"{signal.Signals(signum).name} again: exiting at once")
            os._exit(128 + signum)
        _err.print(
            f"{signal.Signals(signum).name}: stopping; committing the pages being read (up to "
            f"{runner.drain_timeout:.0f} s); send it again to exit at once"
        )
        runner.drain()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


def _stopped(message: str) -> None:
    _err.print(Text.assemble(("stopped:", "bold red"), " ", shown(message)), soft_wrap=True)


async def serve(
    runner: Runner,
    once: bool,
    stop: asyncio.Event | None = None,
    reload: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Run a started ``runner`` once or until ``stop`` (SIGINT/SIGTERM); return the exit status.
    ``reload`` runs on each SIGHUP (one at a time).

    Only a requested stop ends with 0: a run halted by a sink or the state store, a stream task
    that died, or anything unexpected here says why and ends with 1, so that a supervisor
    restarts it.
    """
    try:
        if stop is None:
            stop = asyncio.Event()
            on_stop_signals(runner, stop)
        if once:
            return summarize(await runner.run_once())
        if reload is not None:
            _on_hangup(reload)
        if isinstance(runner.config.state, PostgresState):
            from mimecast_connector.runner._fleet import Fleet  # lazy: procrastinate, psycopg

            _err.print(
                Text.assemble(
                    f"fleet worker: sharing {len(runner.streams())} stream(s) with every "
                    "worker on ",
                    shown(str(runner.config.state)),
                    "; Ctrl-C to stop",
                )
            )
            await Fleet(runner, runner.config.state.url.get_secret_value()).run(stop)
        else:
            _err.print(f"polling {len(runner.streams())} stream(s); Ctrl-C to stop")
            await runner.take_backfills()  # any a request or a killed run left
            await runner.run_forever(stop)
    except Exception as exc:
        message = redact(str(InternalError(exc)), runner.secrets)
        _stopped(message)
        return 1
    if runner.halted is not None:
        _stopped(redact(str(runner.halted), runner.secrets))
        if isinstance(runner.halted, StateError):
            _err.print("Nothing more was committed; follow the advice above before starting again.")
        else:
            _err.print("Fix it, then start again: nothing was committed past the refused batch.")
        return 1
    if runner.died is not None:
        _stopped(runner.died)
        _err.print("This is a bug: please report it. A restart resumes at the last checkpoint.")
        return 1
    return 0


@click.command()
@_config_option
@click.option("--once", is_flag=True, help="Poll every stream once up to now, then exit.")
@_with_logs
def run(config_path: Path, once: bool, log_level: str, log_format: LogFormat) -> None:
    """Poll every tenant and category, deliver alerts, commit checkpoints."""
    with brief() if once else contextlib.nullcontext():  # a one-shot run (``_heap``)
        config = _load(config_path, log_level, log_format)
        if once and config.fleet:
            _fail(
                "`run --once` polls every stream itself, and `state` is PostgreSQL, whose "
                "workers share the streams (no two may poll one at once): run without --once, "
                "as many workers as you like"
            )
        # A reload signal before the run is ready for it (starting, or --once) is ignored, not
        # fatal: SIGHUP's default action would end the process.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        status = asyncio.run(_run(config, once, config_path, (log_level, log_format)))
    sys.exit(status)


@click.command()
@_config_option
def reload(config_path: Path) -> None:
    """Make the `run` using this configuration's state read its tenants again (SIGHUP)."""
    config = _load(config_path, "warning", "console")
    if not isinstance(config.state, Path):
        _fail(
            "`reload` finds the one process that holds a SQLite state file; the workers of a "
            f"fleet (state {config.state}) are many: send SIGHUP to each "
            "(`kill -HUP <pid>`, or your service manager's reload)",
            1,
        )
    holder = writer_of(config.state)
    if holder is None:
        note = WriterLock(config.state).path
        _fail(f"no connector is running on {str(config.state)!r} (nothing holds {str(note)!r})", 1)
    pid, host = holder
    if host != socket.gethostname():
        _fail(f"the connector on {str(config.state)!r} runs on {host}: reload it there", 1)
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        _fail(f"could not signal process {pid}: {exc.strerror}", 1)
    _err.print(
        f"asked process {pid} to reload; its log says what changed "
        "(`reloaded`, `tenant_file_broken`, `reload_refused`)"
    )


async def _check(config: Config) -> int:
    status = 0
    secrets = config.secrets()
    http = HttpPool()
    try:
        for tenant in config.tenants:
            status = max(status, await _check_tenant(tenant, secrets, http, SystemClock()))
    finally:
        await http.aclose()
    return status


async def _check_tenant(
    tenant: TenantConfig, secrets: Sequence[str], http: HttpPool, clock: Clock
) -> int:
    """Authenticate as ``tenant`` and read one page of each of its categories: 0 ok, 1 not."""
    auth = make_auth(tenant, clock)
    client = MimecastClient(
        tenant=tenant.name, base_url=tenant.url, auth=auth, secrets=secrets, http=http
    )
    failed = 0
    try:
        # Every category is read, so that one run of `check` names every missing role.
        for category in tenant.categories:
            try:
                if category.is_feed:
                    await check_feed(client, tenant.api)
                else:
                    await client.check(category)
            except ConnectorError as exc:
                failed = 1
                where = f"{tenant.name}/{category.value} (API {tenant.api})"
                _err.print(
                    Text.assemble(("FAILED", "red"), "  ", shown(f"{where}: {exc}")),
                    soft_wrap=True,
                )
                if not isinstance(exc, ForbiddenError):
                    break  # credentials, network, host: every other category would fail alike
    finally:
        await client.aclose()
    if failed:
        return 1
    _err.print(
        Text.assemble(
            ("ok", "green"), "      ", shown(f"{tenant.name} (API {tenant.api}, {tenant.url})")
        )
    )
    return 0


@click.command()
@_config_option
@_with_logs
def check(config_path: Path, log_level: str, log_format: LogFormat) -> None:
    """Validate the configuration and authenticate each tenant once."""
    config = _load(config_path, log_level, log_format)
    _err.print(
        shown(
            f"configuration {config_path}: ok "
            f"({len(config.tenants)} tenant(s), {len(config.sinks)} sink(s))"
        )
    )
    sys.exit(asyncio.run(_check(config)))


def _read_streams(config: Config) -> list[StreamState]:
    """Every stream the state knows, read without writing anything."""
    if isinstance(config.state, Path):
        store = StateStore(config.state, read_only=True)
        try:
            return store.streams()
        finally:
            store.close()
    return asyncio.run(_read_postgres(config.state.url.get_secret_value()))


async def _read_postgres(url: str) -> list[StreamState]:
    from mimecast_connector.state._postgres import (
        PostgresStore,
    )  # lazy: psycopg only for PostgreSQL

    store = await PostgresStore.open(url, create=False)
    try:
        return await store.streams()
    finally:
        await store.aclose()


@click.command()
@_config_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print one JSON document (stable keys; see the README) instead of text.",
)
def status(config_path: Path, as_json: bool) -> None:
    """Show each tenant and category: health, lag, checkpoint, last success and error, counts."""
    config = _load(config_path, "warning", "console")
    try:
        streams = {(s.tenant, s.category): s for s in _read_streams(config)}
    except StateError as exc:
        _fail(redact(str(exc), config.secrets()))
    now = datetime.now(UTC)
    if as_json:
        document = {
            "state": str(config.state),
            "generated_at": _iso(now),
            "streams": [
                _stream_document(tenant, category, streams.get((tenant.name, category.value)), now)
                for tenant in config.tenants
                for category in tenant.categories
            ],
            "backfills": [
                _backfill_document(s) for s in streams.values() if is_backfill(s.category)
            ],
        }
        # Every text in it was redacted when stored; once more here, value by value.
        secrets = config.secrets()
        text = json.dumps(_redacted(document, secrets), indent=2, ensure_ascii=False)
        click.echo(text)
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(shown(f"state: {config.state}"))
    for tenant in config.tenants:
        for category in tenant.categories:
            s = streams.get((tenant.name, category.value))
            out.print()
            out.print(
                Text.assemble(
                    shown(f"{tenant.name} / {category.value}", "bold"), f" (API {tenant.api})"
                )
            )
            health = _stream_health(s)
            since = f" since {_when(_at(health.since))}" if health.since is not None else ""
            out.print(shown(f"  health         {health.state}{since} ({health.reason})"))
            if health.advice:
                out.print(shown(f"  what to do     {health.advice}"))
            if s is None:
                continue
            c = s.counters
            dropped = _prefixed(c, "dropped: ")
            if category.is_feed:
                # A feed's position is its marker; its cursor is the newest event handled.
                out.print(f"  reached        {_when(s.cursor)} ({_feed_state(s.marker)})")
            else:
                out.print(f"  checkpoint     {_when(s.cursor)}")
            if s.cursor is not None:
                out.print(f"  lag            {_duration(_lag(s.cursor, now))}")
            out.print(f"  last success   {_when(s.last_success)}")
            out.print(
                f"  counts         fetched {c.get('fetched', 0)}, alerts {c.get('alerts', 0)}, "
                f"dropped {sum(dropped.values())}, dead-lettered {c.get('dead_lettered', 0)}, "
                f"duplicates suppressed {c.get('duplicates', 0)}"
            )
            for reason, n in dropped.items():
                out.print(shown(f"  dropped        {n} ({reason})"))
            unmatched = sorted(_prefixed(c, "unmatched: ").items(), key=lambda kv: -kv[1])
            for text, n in unmatched:
                out.print(shown(f"    unmatched    {n} ({text})"))
            if unmatched:
                out.print(
                    shown(
                        "    (rejections whose text matched no phrase: add a [[rejections]] row "
                        "to the mapping file to alert on one, or set "
                        "keep_unmatched_rejections = true)"
                    )
                )
            if c.get("outside_window"):
                # Only a server that ignores the window it was asked for sends these.
                out.print(
                    f"  outside window {c['outside_window']} (dated outside the window asked "
                    f"for; of them {c.get('too_old', 0)} older than the ids kept, not delivered)"
                )
            if s.last_error:
                out.print(shown(f"  last error     {_when(s.last_error_at)}: {s.last_error}"))
    for s in streams.values():
        if is_backfill(s.category):
            b = _backfill_document(s)
            out.print()
            out.print(shown(f"{s.tenant} / {s.category} (backfill)", "bold"))
            out.print(
                shown(
                    f"  {'done' if b['done'] else 'under way'}: {b['from']} to {b['to']}, "
                    f"{b['covered']:.0%} covered, fetched {b['fetched']}, alerts {b['alerts']}"
                )
            )
            if s.last_error:
                out.print(shown(f"  last error     {_when(s.last_error_at)}: {s.last_error}"))


def _backfill_document(s: StreamState) -> dict[str, Any]:
    """One backfill stream in ``status`` (``runner._backfill``): its range and how far."""
    parsed = Backfill.parse(s.marker)
    job, done = parsed if parsed is not None else (None, False)
    return {
        "tenant": s.tenant,
        "stream": s.category,
        "from": _iso(job.start if job else None),
        "to": _iso(job.end if job else None),
        "done": done,
        "covered": 1.0 if done else (job.covered(s.cursor) if job else 0.0),
        "fetched": s.counters.get("fetched", 0),
        "alerts": s.counters.get("alerts", 0),
    }


def _stream_health(s: StreamState | None) -> StreamHealth:
    """What the store says of the stream's health, or what its other columns tell (a state
    written by an earlier release), or never polled."""
    if s is None:
        return NEVER_POLLED
    return s.health or derived(
        None if s.last_success is None else s.last_success.timestamp(),
        None if s.last_error_at is None else s.last_error_at.timestamp(),
        s.last_error,
    )


def _stream_document(
    tenant: TenantConfig, category: Category, s: StreamState | None, now: datetime
) -> dict[str, object]:
    """One stream in ``status --json`` (the README lists the keys)."""
    health = _stream_health(s)
    counters: Mapping[str, int] = s.counters if s is not None else {}
    dropped = _prefixed(counters, "dropped: ")
    cursor = s.cursor if s is not None else None
    return {
        "tenant": tenant.name,
        "category": category.value,
        "api": tenant.api,
        "health": {
            "state": health.state.value,
            "reason": health.reason,
            "advice": health.advice or None,
            "since": _iso(_at(health.since)),
        },
        "checkpoint": _iso(cursor),
        "lag_seconds": None if cursor is None else round(_lag(cursor, now), 3),
        "last_success": _iso(s.last_success if s is not None else None),
        "last_error": s.last_error if s is not None else None,
        "last_error_at": _iso(s.last_error_at if s is not None else None),
        "counts": {
            "fetched": counters.get("fetched", 0),
            "alerts": counters.get("alerts", 0),
            "dropped": sum(dropped.values()),
            "dead_lettered": counters.get("dead_lettered", 0),
            "duplicates": counters.get("duplicates", 0),
            "outside_window": counters.get("outside_window", 0),
            "too_old": counters.get("too_old", 0),
        },
        "dropped": dropped,
        "unmatched_rejections": _prefixed(counters, "unmatched: "),
        "feed": _feed_state(s.marker if s is not None else None) if category.is_feed else None,
    }


def _redacted(value: object, secrets: Sequence[str]) -> object:
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _redacted(v, secrets) for k, v in value.items()}
    return value


def _at(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _lag(cursor: datetime, now: datetime) -> float:
    """Seconds from the cursor (everything before it delivered) to now; never negative."""
    return max(0.0, (now - cursor).total_seconds())


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _feed_state(marker: str | None) -> str:
    """How far a receipt feed is, from its marker: caught up, or where it is in a file."""
    try:
        where = json.loads(marker or "{}")
    except ValueError:
        where = {}
    if not isinstance(where, dict) or not where:
        return "not started"
    if where.get("caught_up"):
        return "caught up"
    if where.get("file") and not where.get("done"):
        return f"reading a batch file, {where.get('line', 0)} lines in"
    return "catching up"


def _prefixed(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    """The counters named ``prefix`` + something, by that something."""
    return {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)}


# --- the demo ---------------------------------------------------------------------------------


class SummarySink:
    """A sink that only counts, for the demo's live table."""

    name = "demo-summary"
    format: Format = "native"

    def __init__(self) -> None:
        self.by_type: Counter[tuple[str, str, str, str]] = Counter()
        self.total = 0
        self.last: Alert | None = None

    async def start(self, position: str | None) -> str | None:
        return None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        for alert in alerts:
            self.by_type[(alert.category, alert.alertType, alert.threatId, alert.threatName)] += 1
        self.total += len(alerts)
        if alerts:
            self.last = alerts[-1]
        return None

    def committed(self, position: str | None) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def line(self, elapsed: float, runner: DemoRunner, out: Path) -> str:
        """One line for a log or a pipe: time, polls, records, alerts by category, where."""
        by_category: Counter[str] = Counter()
        for (category, *_), n in self.by_type.items():
            by_category[category] += n
        shown_categories = ", ".join(f"{c} {n}" for c, n in by_category.most_common())
        failed = f" ({runner.failed} failed)" if runner.failed else ""
        return (
            f"demo {elapsed:.0f}s: {runner.polls} polls{failed}, {runner.fetched} records "
            f"fetched, {self.total} alerts"
            + (f" ({shown_categories})" if shown_categories else "")
            + f", written to {out}/alerts.*"
        )

    def table(self, started: datetime) -> Table:
        elapsed = (datetime.now(UTC) - started).total_seconds()
        table = Table(
            title=f"demo: {self.total} alerts delivered in {elapsed:.0f}s (Ctrl-C to stop)",
            title_justify="left",
        )
        for column in ("category", "alertType", "ATT&CK", "technique", "alerts"):
            table.add_column(column)
        for (category, alert_type, threat_id, threat_name), n in self.by_type.most_common():
            table.add_row(category, shown(alert_type), shown(threat_id), shown(threat_name), str(n))
        if self.last is not None:
            last = self.last
            about = f": {last.subject}" if last.subject else ""
            table.caption = shown(
                f"latest: [{last.severity}] {last.alertType} -> {last.recipient}{about}"
            )
        return table


class DemoRunner(Runner):
    """The demo's runner: counts its polls, those that failed, and the records they fetched,
    for the summary lines printed when the output is not a terminal."""

    polls = 0
    failed = 0
    fetched = 0

    @override
    async def poll(
        self,
        tenant: TenantConfig,
        category: Category,
        *,
        lease: int | None = None,
        position: tuple[datetime | None, float | None] | None = None,
    ) -> StreamResult:
        result = await super().poll(tenant, category, lease=lease, position=position)
        self.polls += 1
        self.failed += result.error is not None
        self.fetched += result.counts.get("fetched", 0)
        return result


async def _show_live(summary: SummarySink, started: datetime, stop: asyncio.Event) -> None:
    """A terminal: the table, redrawn twice a second until ``stop``."""
    with Live(summary.table(started), console=_err, refresh_per_second=2) as live:
        while not stop.is_set():
            live.update(summary.table(started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
        live.update(summary.table(started))


async def _show_lines(
    summary: SummarySink, runner: DemoRunner, out: Path, every: float, stop: asyncio.Event
) -> None:
    """Not a terminal (a pipe, a file, CI): one summary line every ``every`` seconds, and one
    more as ``stop`` is set. A redrawn table would show nothing there until the end."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
        _err.print(shown(summary.line(loop.time() - began, runner, out)), soft_wrap=True)


def write_demo_config(out: Path, base_url: str, tenant: SimTenant) -> Path:
    """The demo's configuration file, pointing at the simulator."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.toml"
    path.write_text(
        f"""# Written by `mimecast-connector demo`: the connector against the built-in simulator.
state = "state.db"
dead_letter = "dead-letter.jsonl"
lookback = "10m"

[[tenants]]
name = "{tenant.name}"
api = "2.0"
base_url = "{base_url}"
client_id = "{tenant.client_id}"
client_secret = "{tenant.client_secret}"
poll_interval = "3s"

[[sinks]]
type = "jsonl"
path = "alerts.jsonl"
format = "native"

[[sinks]]
type = "jsonl"
path = "alerts.ocsf.jsonl"
format = "ocsf"

[[sinks]]
type = "jsonl"
path = "alerts.ecs.jsonl"
format = "ecs"

[[sinks]]
type = "jsonl"
path = "alerts.cef"
format = "cef"
""",
        "utf-8",
    )
    return path


async def _demo(out: Path, duration: float | None, rate: float, every: float = 5.0) -> int:
    from mimecast_connector.simulator import Simulator  # the demo's room, entered only here

    sim = Simulator(seed=7)
    tenant = sim.add_tenant("demo")
    now = datetime.now(UTC)
    for category, n in (
        (Category.ATTACHMENT, 120),
        (Category.IMPERSONATION, 60),
        (Category.URL, 300),
        (Category.REJECTION, 200),
    ):
        tenant.generate(category, count=n, start=now - timedelta(hours=6), end=now)
    sim.start()
    tenant.start_live(rate_per_second=rate)
    try:
        config = load_config(write_demo_config(out, sim.url, tenant), {})
        configure_logging(level="warning", format="console", secrets=config.secrets())
        summary = SummarySink()
        runner = DemoRunner(config, sinks=[*make_sinks(config), summary])
        await runner.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        started = datetime.now(UTC)
        _err.print(
            shown(
                f"simulator at {sim.url}; alerts go to {out}/alerts.jsonl (native), "
                "alerts.ocsf.jsonl (OCSF), alerts.ecs.jsonl (ECS) and alerts.cef (CEF lines)"
            ),
            soft_wrap=True,
        )
        try:
            task = asyncio.create_task(runner.run_forever(stop))
            if _err.is_terminal:
                await _show_live(summary, started, stop)
                await task
            else:
                await _show_lines(summary, runner, out, every, stop)
                await task
                _err.print(summary.table(started))
        finally:
            await runner.aclose()
        _err.line()
        _err.print(
            shown(
                f"stopped. `mimecast-connector status --config {out}/config.toml` "
                "shows the checkpoints."
            ),
            soft_wrap=True,
        )
        return 0
    finally:
        tenant.stop_live()
        sim.stop()


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo-out"),
    show_default=True,
)
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: Ctrl-C)."
)
@click.option(
    "--rate", type=float, default=2.0, show_default=True, help="New simulated events per second."
)
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="When the output is not a terminal: seconds between summary lines.",
)
def demo(out: Path, duration: float | None, rate: float, every: float) -> None:
    """Run the connector against the built-in simulator, with a live summary (a line every
    few seconds when the output is not a terminal)."""
    sys.exit(asyncio.run(_demo(out, duration, rate, every)))


def writer_of(state: Path) -> tuple[int, str] | None:
    """The pid and host of the process that holds the one-writer lock of the SQLite state
    ``state`` now, from the note it wrote; None if none does."""
    match = re.match(r"process (\d+) on (\S+) ", _lock_holder(WriterLock(state).path) or "")
    return None if match is None else (int(match.group(1)), match.group(2))


def _lock_holder(note: Path) -> str | None:
    """What the one-writer lock's note says, if a process holds that lock now; None if none
    does (a note left by a process that was killed names a pid that may be anybody's now)."""
    try:
        fd = os.open(note, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 512, 0).decode("utf-8", "replace")  # held: its holder wrote it
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


COMMANDS = (run, check, status, reload, demo)
