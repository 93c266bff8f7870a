"""Shared set-up of the dashboard's tests: a configuration of some tenants, and a state file
filled through the store's own commits (as a run would have written it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimecast_connector._health import State, StreamHealth
from mimecast_connector.config import Config, load_config
from mimecast_connector.dashboard import Dashboard
from mimecast_connector.observe import MetricsServer
from mimecast_connector.state import Commit, SqliteStore, StateStore, Tallies

TOKEN = "dashboard-token-0123456789"
SECRET = "client-secret-canary-5b1e"
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
HOUR = int(NOW.timestamp()) // 3600
#: A sender address a hostile record could carry.
HOSTILE = '<script>alert("x")</script>@evil.example'


def write_config(
    tmp: Path, tenants: Sequence[str], *, token: str | None = None, metrics: str | None = None
) -> Path:
    """A configuration of ``tenants`` (API 2.0, the four default logs) over ``tmp/state.db``."""
    lines = [f'state = "{tmp / "state.db"}"', f'dead_letter = "{tmp / "dead.jsonl"}"']
    if metrics is not None:
        lines.append(f'metrics = "{metrics}"')
    if token is not None:
        lines.append(f'metrics_token = "{token}"')
    for name in tenants:
        lines += [
            "",
            "[[tenants]]",
            f'name = "{name}"',
            f'client_id = "id-{name}"',
            f'client_secret = "{SECRET}"',
            'base_url = "https://api.services.mimecast.com"',
        ]
    lines += ["", "[[sinks]]", 'type = "jsonl"', f'path = "{tmp / "out.jsonl"}"', ""]
    path = tmp / "config.toml"
    path.write_text("\n".join(lines), "utf-8")
    return path


def health(state: State, reason: str, advice: str = "") -> StreamHealth:
    return StreamHealth(state, reason, advice, NOW.timestamp() - 600)


def fill(path: Path, commits: Sequence[Commit]) -> None:
    """Commit ``commits`` to the state file at ``path`` (made if new), then close it."""
    store = SqliteStore(StateStore(path, writer=True))

    async def write() -> None:
        await store.commit_group(commits, {})
        await store.aclose()

    asyncio.run(write())


def example_commits() -> list[Commit]:
    """acme collecting with alerts (a hostile sender among them), globex failing, and drops."""
    tallies = Tallies(
        "url",
        {
            (HOUR, "URL Protection", "T1598.003"): 5,
            (HOUR - 30, "Malicious", "T1566"): 2,
            (HOUR - 24 * 10, "URL Protection", "T1598.003"): 4,
        },
        {
            (HOUR, "sender"): {HOSTILE: 3, "bad@evil.example": 2},
            (HOUR, "recipient"): {"bob@acme.example": 5},
        },
        HOUR,
    )
    return [
        Commit(
            "acme",
            "url",
            datetime.now(UTC) - timedelta(minutes=2),
            [],
            {"fetched": 20, "alerts": 11, "dropped: clean": 7, "dead_lettered": 2},
            success_at=NOW.timestamp() - 60,
            health=health(State.COLLECTING, "the last poll finished"),
            tallies=tallies,
        ),
        Commit(
            "globex",
            "attachment",
            None,
            [],
            {"dropped: safe": 1},
            health=health(
                State.FAILING,
                "Mimecast refused the credentials (401)",
                "check client_id and client_secret of tenant 'globex'",
            ),
        ),
    ]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = write_config(tmp_path, ["acme", "globex"], token=TOKEN)
    config = load_config(path, {})
    assert isinstance(config.state, Path)
    fill(config.state, example_commits())
    return config


@pytest.fixture
async def server(config: Config) -> AsyncIterator[MetricsServer]:
    """The dashboard on a loopback port, with the token."""
    served = MetricsServer("127.0.0.1", 0, metrics=None, token=TOKEN, dashboard=Dashboard(config))
    await served.start()
    try:
        yield served
    finally:
        await served.aclose()
