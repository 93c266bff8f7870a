"""``mimecast-connector dashboard``: the dashboard in a process of its own, beside a ``run``
or a fleet, reading the same state read-only."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from mimecast_connector._commands import _config_option, _fail, _load
from mimecast_connector._errors import ConfigError, StateError
from mimecast_connector._logging import configure_logging, redact
from mimecast_connector.client import is_loopback_host
from mimecast_connector.config import Config
from mimecast_connector.config._config import MIN_TOKEN, listen_address
from mimecast_connector.dashboard import Dashboard, open_source
from mimecast_connector.observe import MetricsServer


@click.command()
@_config_option
@click.option(
    "--listen",
    default="127.0.0.1:8787",
    show_default=True,
    help="host:port to serve on; an address other than loopback needs a token.",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A file holding the token the page asks for [default: the configuration's "
    "metrics_token, if any].",
)
def dashboard(config_path: Path, listen: str, token_file: Path | None) -> None:
    """Serve a read-only web page of every tenant's streams, alerts and ATT&CK heat map."""
    config = _load(config_path, "warning", "console")
    try:
        host, port = listen_address(listen)
    except ValueError as exc:
        raise click.BadParameter(f"{listen!r}: {exc}", param_hint="--listen") from None
    token = _token(config, token_file)
    if token is not None:
        configure_logging(level="warning", format="console", secrets=[*config.secrets(), token])
    if token is None and not is_loopback_host(host):
        _fail(
            f"--listen {listen}: not a loopback address, and no token. The dashboard shows "
            "every tenant's state, so off loopback it asks for a token: set metrics_token in "
            f"the configuration, or give --token-file FILE (a file holding at least {MIN_TOKEN} "
            "characters); or listen on 127.0.0.1."
        )
    asyncio.run(_serve(config, host, port, token))


def _token(config: Config, path: Path | None) -> str | None:
    if path is None:
        return None if config.metrics_token is None else config.metrics_token.get_secret_value()
    try:
        token = path.read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"--token-file {str(path)!r}: cannot read it ({exc}): give a readable text file")
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        _fail(
            f"--token-file {str(path)!r}: the token must be at least {MIN_TOKEN} characters, "
            "with no spaces (its length and content are not shown)"
        )
    return token


async def _serve(config: Config, host: str, port: int, token: str | None) -> None:
    secrets = [*config.secrets(), *([token] if token else [])]
    try:
        source = await open_source(config.state_target)
    except StateError as exc:
        _fail(redact(str(exc), secrets))
    try:
        pages = Dashboard(config, source=source)
    except ConfigError as exc:
        await source.aclose()
        _fail("; ".join(f"{key}: {message}" for key, message in exc.problems))
    server = MetricsServer(host, port, metrics=None, token=token, dashboard=pages)
    try:
        bound = await server.start()
    except OSError as exc:
        await pages.aclose()
        _fail(
            f"--listen {host}:{port}: cannot listen there ({exc.strerror or exc}): choose "
            "another address or port, or stop the process that holds it"
        )
    shown_host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    click.echo(
        f"dashboard: http://{shown_host}:{bound[1]}/ (state {config.state}; "
        f"{'token required' if token else 'no token'}; Ctrl-C stops it)",
        err=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await server.aclose()  # closes the dashboard and its read of the state
    click.echo("dashboard stopped", err=True)
