"""A fleet worker's health of the streams the other workers poll: read from the shared store."""

from __future__ import annotations

from pathlib import Path

from mimecast_connector._health import State, StreamHealth
from mimecast_connector.config import load_config
from mimecast_connector.runner import Runner
from mimecast_connector.state._postgres import PostgresStore
from tests.pg import fresh_schema


async def test_a_fleet_worker_reports_the_health_another_worker_stored(tmp_path: Path) -> None:
    """What another worker stored becomes this worker's health (metrics, /readyz) at its next refresh; a single process would keep its own."""
    async with fresh_schema() as url:
        path = tmp_path / "config.toml"
        path.write_text(
            f'state = "{url}"\n\n[[tenants]]\nname = "acme"\nbase_url = "http://127.0.0.1:9"\n'
            'client_id = "id"\nclient_secret = "secret-value"\ncategories = ["url"]\n\n'
            '[[sinks]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n',
            "utf-8",
        )
        runner = Runner(load_config(path, {}), sinks=[])
        await runner.start()
        other = await PostgresStore.open(url)
        try:
            assert runner.health("acme", "url").state is State.CONFIGURED
            failing = StreamHealth(State.FAILING, "refused", "check client_id", 1_700_000_000.0)
            await other.set_health("acme", "url", failing)
            await runner.refresh_health()  # too soon after start: not read again yet
            assert runner.health("acme", "url").state is State.CONFIGURED
            runner.health_refresh = 0.0
            await runner.refresh_health()
            assert runner.health("acme", "url") == failing
            assert runner.not_ready() == ["acme/url: failing (refused)"]
        finally:
            await other.aclose()
            await runner.aclose()
