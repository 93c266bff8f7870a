"""The ``mimecast-connector`` command line: one click group, one function a command.

This is the outermost room: it parses arguments, builds the objects the other rooms need and
turns their errors into messages and exit statuses. Nothing else in the package imports it.
"""

from __future__ import annotations

import signal
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mimecast_connector._backfill_cmd import backfill
from mimecast_connector._commands import COMMANDS
from mimecast_connector._text import visible
from mimecast_connector.client import is_loopback_host
from mimecast_connector.dashboard._command import dashboard

if TYPE_CHECKING:
    from mimecast_connector.simulator import Simulator


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mimecast-connector")
def main() -> None:
    """Mimecast TTP alerts, typed and mapped to MITRE ATT&CK."""


for _command in (*COMMANDS, backfill, dashboard):
    main.add_command(_command)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="Port to listen on; 0 picks a free one.",
)
@click.option("--seed", type=int, help="Seed for generated records [default: the scenario's].")
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario TOML file [default: one 'demo' tenant, a day of history, live records].",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Live records per second for every tenant (overrides the scenario).",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound port to this file once listening.",
)
def simulate(
    host: str,
    port: int,
    seed: int | None,
    scenario: Path | None,
    rate: float | None,
    port_file: Path | None,
) -> None:
    """Serve a local Mimecast TTP API simulator until Ctrl-C or SIGTERM."""
    if not is_loopback_host(host):
        raise click.BadParameter(
            f"{host!r} is not a loopback address. The simulator's credentials are public, so it "
            "only listens on 127.0.0.0/8, ::1 or localhost.",
            param_hint="--host",
        )
    from mimecast_connector.simulator import ScenarioError, Simulator  # the tests' room

    try:
        if scenario is None:
            demo = resources.files("mimecast_connector.simulator") / "scenarios" / "demo.toml"
            with resources.as_file(demo) as path:
                sim = Simulator.from_scenario(path, seed=seed, live_rate=rate)
        else:
            sim = Simulator.from_scenario(scenario, seed=seed, live_rate=rate)
        url = sim.start(host, port)
    except ScenarioError as exc:
        raise click.ClickException(visible(str(exc))) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in _STOP_SIGNALS}
    try:
        if port_file is not None:
            temporary = port_file.with_name(f".{port_file.name}.tmp")
            temporary.write_text(f"{url.rsplit(':', 1)[1]}\n")
            temporary.replace(port_file)  # readers never see a half-written file
        click.echo(_banner(sim, url))
        while not stop.wait(0.5):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sim.stop()
    click.echo("simulator stopped")


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _banner(sim: Simulator, url: str) -> str:
    """What a person needs to point a client at the simulator, ready to copy."""
    lines = [
        f"Mimecast API simulator listening on {url} (seed {sim.seed}; Ctrl-C to stop)",
        "The credentials below are public: the simulator listens on loopback only.",
    ]
    for tenant in sim.tenants.values():
        roles = ", ".join(sorted(tenant.roles))
        lines += [
            "",
            f"tenant {tenant.name}  (roles: {roles})",
            f"  API 2.0  client_id      {tenant.client_id}",
            f"           client_secret  {tenant.client_secret}",
            f"  API 1.0  app_id         {tenant.app_id}",
            f"           app_key        {tenant.app_key}",
            f"           access_key     {tenant.access_key}",
            f"           secret_key     {tenant.secret_key}",
        ]
    first = next(iter(sim.tenants.values()))
    form = f"client_id={first.client_id}&client_secret={first.client_secret}"
    body = '{"meta":{"pagination":{"pageSize":5}},"data":[{"oldestFirst":false}]}'
    lines += [
        "",
        f"Try it (tenant {first.name}):",
        f"  TOKEN=$(curl -s {url}/oauth/token -d 'grant_type=client_credentials&{form}' \\",
        "    | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'  curl -s {url}/api/ttp/url/get-logs -H "Authorization: Bearer $TOKEN" \\',
        f"    -H 'Content-Type: application/json' -d '{body}'",
    ]
    return "\n".join(visible(line) for line in lines)  # scenario names reach the terminal
