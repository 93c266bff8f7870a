"""Every health state of a stream and the moves between them, against the simulator: what the
runner knows, what the store keeps for ``status``, what the metrics show, and the request ids
the log lines carry."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
from click.testing import CliRunner

from mimecast_connector import Category
from mimecast_connector._cli import main
from mimecast_connector._health import State
from mimecast_connector._logging import configure_logging
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.client import ClientOptions, RetryPolicy
from mimecast_connector.config import Config, load_config
from mimecast_connector.runner import Runner, make_sinks
from mimecast_connector.simulator import faults
from mimecast_connector.state import StateStore
from tests.e2e.conftest import World
from tests.fakes import sqlite_path

#: Two tries a call, milliseconds apart: a fault outlasts a call at once.
QUICK = ClientOptions(
    page_size=100, retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.02, floor=0.0)
)


def only(world: World, *categories: str, secret: str | None = None, api: str = "2.0") -> Config:
    """The world's configuration, reading only ``categories``, with another client secret."""
    path = world.write_config(api)
    text = path.read_text("utf-8")
    names = ", ".join(f'"{c}"' for c in categories)
    text = text.replace("\nstart = ", f"\ncategories = [{names}]\nstart = ", 1)
    if secret is not None:
        text = text.replace(world.tenant.client_secret, secret)
    path.write_text(text, "utf-8")
    return load_config(path, {})


def stored(config: Config) -> dict[tuple[str, str], Any]:
    """Every stream's health as the store keeps it, read as ``status`` reads it."""
    store = StateStore(sqlite_path(config), read_only=True)
    try:
        return {(s.tenant, s.category): s.health for s in store.streams()}
    finally:
        store.close()


def health_gauge(runner: Runner) -> dict[tuple[str, str], str]:
    """The state each stream's ``mimecast_connector_stream_health`` gauge has at 1."""
    out: dict[tuple[str, str], str] = {}
    for line in runner.metrics.text().splitlines():
        if line.startswith("mimecast_connector_stream_health{") and line.endswith(" 1.0"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["tenant"].strip('"'), labels["category"].strip('"'))
            out[key] = labels["state"].strip('"')
    return out


async def test_refused_credentials_make_the_stream_failing_naming_the_keys(world: World) -> None:
    """A client secret Mimecast refuses: the stream is failing, in the runner, the store, the metrics and `status --json`, with advice naming client_id and client_secret; the secret is nowhere."""
    wrong = "definitely-not-the-secret-0000"
    config = only(world, "url", secret=wrong)
    runner = Runner(config, client_options=QUICK)
    await runner.start()
    try:
        tenant = config.tenants[0]
        assert runner.health("acme", "url").state is State.CONFIGURED
        result = await runner.poll(tenant, Category.URL)
        assert result.error is not None
        health = runner.health("acme", "url")
        assert health.state is State.FAILING
        assert "check client_id and client_secret of tenant 'acme'" in health.advice
        assert stored(config) == {("acme", "url"): health}
        assert health_gauge(runner) == {("acme", "url"): "failing"}
        assert runner.not_ready() == [f"acme/url: failing ({health.reason})"]
        scraped = runner.metrics.text()
        assert (
            'mimecast_connector_api_requests_total{category="url",outcome="401",tenant="acme"}'
            in scraped
        )
    finally:
        await runner.aclose()
    result_json = CliRunner().invoke(
        main, ["status", "--config", str(world.tmp / "config.toml"), "--json"]
    )
    assert result_json.exit_code == 0, result_json.output
    assert wrong not in result_json.output
    [stream] = json.loads(result_json.output)["streams"]
    assert stream["health"]["state"] == "failing"
    assert "client_id and client_secret" in stream["health"]["advice"]


async def test_an_upstream_storm_degrades_the_stream_until_a_poll_gets_through(
    world: World,
) -> None:
    """503s past the retry budget: degraded, its since kept through a second failed poll, the reason and the log lines naming Mimecast's request ids; then a poll that gets through is collecting, and the store says the same at each step."""
    config = only(world, "url")
    world.sim.inject(faults.HttpStatus(503), tenant="acme", category=Category.URL, times=4)
    logs = io.StringIO()
    configure_logging(format="json", stream=logs, secrets=config.secrets())
    runner = Runner(config, client_options=QUICK)
    await runner.start()
    try:
        tenant = config.tenants[0]
        first = await runner.poll(tenant, Category.URL)
        assert first.error is not None
        degraded = runner.health("acme", "url")
        assert degraded.state is State.DEGRADED
        assert "Mimecast kept failing" in degraded.reason
        assert stored(config)[("acme", "url")] == degraded
        assert not runner.not_ready()  # degraded for less than three intervals: still ready
        second = await runner.poll(tenant, Category.URL)
        assert second.error is not None
        again = runner.health("acme", "url")
        assert (again.state, again.since) == (State.DEGRADED, degraded.since)
        assert stored(config)[("acme", "url")] == again
        third = await runner.poll(tenant, Category.URL)
        assert third.error is None
        collecting = runner.health("acme", "url")
        assert collecting.state is State.COLLECTING
        assert stored(config)[("acme", "url")] == collecting
        assert health_gauge(runner) == {("acme", "url"): "collecting"}
    finally:
        await runner.aclose()
        structlog.reset_defaults()
    answered = [r.request_id for r in world.sim.requests if r.status == 503]
    assert len(answered) == 4
    assert all(answered)
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    retries = [line for line in lines if line["event"] == "retrying"]
    failed = [line for line in lines if line["event"] == "poll_failed"]
    assert [r["request_id"] for r in retries] == [answered[0], answered[2]]
    assert [f["request_id"] for f in failed] == [answered[1], answered[3]]
    for line in retries + failed:
        assert (line["tenant"], line["category"]) == ("acme", "url")
    assert f"request id {answered[1]}" in failed[0]["error"]


async def test_an_expired_api_1_binding_is_failing_with_what_to_regenerate(world: World) -> None:
    """HTTP 418 on API 1.0: failing, the advice naming access_key and secret_key; counted as a 418 request."""
    config = only(world, "attachment", api="1.0")
    world.sim.inject(faults.BindingExpired(), tenant="acme", category=Category.ATTACHMENT)
    runner = Runner(config, client_options=QUICK)
    await runner.start()
    try:
        result = await runner.poll(config.tenants[0], Category.ATTACHMENT)
        assert result.error is not None
        health = runner.health("acme", "attachment")
        assert health.state is State.FAILING
        assert "generate new access_key and secret_key for tenant 'acme'" in health.advice
        assert stored(config)[("acme", "attachment")] == health
        scraped = runner.metrics.text()
        assert (
            'mimecast_connector_api_requests_total{category="attachment",outcome="418",'
            'tenant="acme"} 1.0' in scraped
        )
    finally:
        await runner.aclose()


class HeldSink:
    """A sink that holds its first batch until the test lets it go."""

    name = "held"
    format: Format = "native"

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def start(self, position: str | None) -> str | None:
        return None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        self.holding.set()
        await self.release.wait()
        return None

    def committed(self, position: str | None) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_first_poll_goes_configured_then_authenticated_then_collecting(
    world: World,
) -> None:
    """Before any poll: configured (not ready); once Mimecast answered and the first page waits on a sink: authenticated (the store has it with that page's commit, not before: no write of its own); once the poll ends: collecting and ready, in the store too."""
    config = only(world, "url", "attachment")
    held = HeldSink()
    runner = Runner(config, sinks=[*make_sinks(config), held], client_options=QUICK)
    await runner.start()
    try:
        tenant = config.tenants[0]
        assert runner.health("acme", "url").state is State.CONFIGURED
        assert len(runner.not_ready()) == 2
        assert stored(config) == {}
        poll = asyncio.create_task(runner.poll(tenant, Category.URL))
        await asyncio.wait_for(held.holding.wait(), 30)
        assert runner.health("acme", "url").state is State.AUTHENTICATED
        assert ("acme", "url") not in stored(config)  # nothing of it committed yet
        assert health_gauge(runner)[("acme", "url")] == "authenticated"
        held.release.set()
        result = await asyncio.wait_for(poll, 30)
        assert result.error is None
        assert runner.health("acme", "url").state is State.COLLECTING
        assert stored(config)[("acme", "url")].state is State.COLLECTING
        assert runner.not_ready() == ["acme/attachment: configured (never polled yet)"]
    finally:
        await runner.aclose()


def test_status_text_shows_the_health_and_the_lag(world: World, tmp_path: Path) -> None:
    """After `run --once`, `status` shows each stream's health, what to do when failing, and its lag."""
    config = world.write_config(
        extra_tenant=(
            f'[[tenants]]\nname = "broken"\nbase_url = "{world.sim.url}"\n'
            f'client_id = "{world.tenant.client_id}"\nclient_secret = "wrong-secret-123456"\n'
            'categories = ["url"]\n'
        )
    )
    ran = CliRunner().invoke(main, ["run", "--config", str(config), "--once"])
    assert ran.exit_code == 1, ran.output
    shown = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    blocks = shown.output.split("\n\n")
    acme_url = next(b for b in blocks if b.startswith("acme / url"))
    assert "  health         collecting since " in acme_url
    assert "  lag            " in acme_url
    broken = next(b for b in blocks if b.startswith("broken / url"))
    assert "  health         failing since " in broken
    assert (
        "  what to do     Mimecast refused the credentials: check client_id and client_secret of tenant 'broken'"
        in broken
    )
    assert "wrong-secret-123456" not in shown.output
