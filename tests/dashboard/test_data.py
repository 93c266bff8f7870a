"""The streams list with 3,000 tenants (12,000 streams): paged, searched and filtered
server-side, the ones that need a person first; and the heat map's tactics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mimecast_connector._health import State
from mimecast_connector.dashboard import Board, Tenant
from mimecast_connector.dashboard._attack import OTHER, tactics_of
from mimecast_connector.dashboard._source import SqliteSource
from mimecast_connector.state import Commit
from tests.dashboard.conftest import NOW, fill, health

CATEGORIES = ("attachment", "impersonation", "url", "rejection")
TENANTS = [f"tenant-{i:04d}" for i in range(3000)]


def state_of(index: int, category: str) -> State:
    """Every 100th tenant's url failing, every 250th's attachment degraded, others collecting."""
    if index % 100 == 7 and category == "url":
        return State.FAILING
    if index % 250 == 3 and category == "attachment":
        return State.DEGRADED
    return State.COLLECTING


@pytest.fixture(scope="module")
def state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("many") / "state.db"
    fill(
        path,
        [
            Commit(
                name,
                category,
                NOW,
                [],
                {"alerts": 1},
                success_at=NOW.timestamp(),
                health=health(state_of(i, category), f"{name} {category}"),
            )
            for i, name in enumerate(TENANTS)
            for category in CATEGORIES
        ],
    )
    return path


@pytest.fixture
async def board(state_file: Path) -> AsyncIterator[Board]:
    source = SqliteSource(state_file)
    try:
        yield Board(source, [Tenant(name, "2.0", CATEGORIES) for name in TENANTS], names={})
    finally:
        await source.aclose()


async def test_pages_of_50_tenants_failing_first(board: Board) -> None:
    """30 tenants have a failing stream and 12 a degraded one: page 1 starts with the failing ones in name order, then the degraded; 60 pages; the last page and a page past the end are the last 50."""
    first = await board.streams_page()
    assert (first["tenants_total"], first["tenants_matched"], first["pages"]) == (3000, 3000, 60)
    names = [t["tenant"] for t in first["tenants"]]
    assert len(names) == 50
    failing = [f"tenant-{i:04d}" for i in range(3000) if i % 100 == 7]
    degraded = [f"tenant-{i:04d}" for i in range(3000) if i % 250 == 3 and i % 100 != 7]
    assert names[:30] == failing
    assert names[30:42] == degraded
    assert first["states"] == {
        "configured": 0,
        "authenticated": 0,
        "collecting": 12000 - 30 - 12,
        "degraded": 12,
        "failing": 30,
    }
    second = await board.streams_page(page=2)
    assert not set(names) & {t["tenant"] for t in second["tenants"]}
    last = await board.streams_page(page=60)
    beyond = await board.streams_page(page=999)
    assert beyond["page"] == 60
    assert [t["tenant"] for t in beyond["tenants"]] == [t["tenant"] for t in last["tenants"]]
    assert last["tenants"][-1]["tenant"] == "tenant-2999"
    assert all(len(t["streams"]) == 4 for t in last["tenants"])


async def test_search_is_a_substring_of_the_name_in_any_case(board: Board) -> None:
    """'TENANT-010' matches tenant-0100 to tenant-0109 (and tenant-0107's failing url puts it first)."""
    found = await board.streams_page(q="TENANT-010")
    assert [t["tenant"] for t in found["tenants"]] == [
        "tenant-0107",
        *(f"tenant-{i:04d}" for i in range(100, 110) if i != 107),
    ]
    assert (found["tenants_matched"], found["pages"]) == (10, 1)
    assert (await board.streams_page(q="nobody"))["tenants"] == []


async def test_the_health_filter_keeps_only_those_streams(board: Board) -> None:
    """'failing,degraded' keeps the 42 tenants with such a stream, each with only those streams; an unknown state is ignored."""
    found = await board.streams_page(states=["failing", "degraded", "bogus"], size=200)
    assert found["tenants_matched"] == 42
    for tenant in found["tenants"]:
        assert {s["state"] for s in tenant["streams"]} <= {"failing", "degraded"}
        assert len(tenant["streams"]) == 1
    only_failing = await board.streams_page(states=["failing"], q="tenant-29")
    assert [t["tenant"] for t in only_failing["tenants"]] == [
        f"tenant-{i:04d}" for i in range(2907, 3000, 100)
    ]


def test_techniques_sit_under_their_tactics() -> None:
    """A sub-technique takes its parent's tactic, a tactic id is its own column, an unknown technique is Other."""
    assert tactics_of("T1598.003") == ("TA0043",)
    assert tactics_of("T1566.001") == ("TA0001",)
    assert tactics_of("TA0005") == ("TA0005",)
    assert "TA0001" in tactics_of("T1078")
    assert tactics_of("T9999") == (OTHER,)
