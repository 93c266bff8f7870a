"""The cursor trusts only what it has seen: servers that page in the wrong order, or ignore the
window, lose nothing and duplicate nothing (issue 7, defect 6).

Each test serves one tenant's URL log from the in-memory fake API, breaks a window part-way
(a page that is not JSON), then lets the next polls run clean, and compares the output with the
records served, by their raw JSON.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mimecast_connector import Category
from mimecast_connector._cli import main
from mimecast_connector.config import load_config
from mimecast_connector.runner import Runner, StreamResult
from mimecast_connector.runner._runner import PRUNE_MARGIN, PRUNE_STEP
from tests.fakes import FakeClock
from tests.properties.fake_api import FakeMimecast, Order
from tests.properties.test_checkpoint_model import (
    LOOKBACK,
    T0,
    canonical,
    make_record,
    write_config,
)

URL = Category.URL
PAGE = 5  # records a page: small, yet a shuffle shows on the first page


def fill(api: FakeMimecast, count: int, newest: int, spacing: int = 7) -> list[bytes]:
    """``count`` URL alerts, one every ``spacing`` seconds, the newest at ``newest``."""
    made = []
    for n in range(count):
        epoch = newest - spacing * (count - 1 - n)
        raw = make_record(URL, n, epoch, "malicious", "+0000")
        api.add(URL, raw, epoch)
        made.append(raw)
    return made


def url_requests(api: FakeMimecast) -> int:
    return sum(1 for r in api.requests if r.category is URL)


def broken_at(api: FakeMimecast, request: int) -> None:
    """The ``request``-th URL log request (counting from now) is answered with a body that is
    not JSON; every other is served as usual."""
    target = url_requests(api) + request

    def override(category: Category) -> bytes | AsyncIterator[bytes] | None:
        hit = category is URL and url_requests(api) == target
        return b"<html>proxy error</html>" if hit else None

    api.body_override = override


def output(folder: Path) -> Counter[str]:
    path = folder / "out" / "alerts.jsonl"
    lines = path.read_bytes().split(b"\n") if path.exists() else []
    return Counter(canonical(json.loads(line)["raw"]) for line in lines if line)


def url_result(results: list[StreamResult]) -> StreamResult:
    return next(r for r in results if r.category is URL)


@pytest.mark.parametrize("order", ["newest", "shuffled"])
async def test_a_window_broken_part_way_in_any_order_is_read_again_in_full(
    tmp_path: Path, order: Order
) -> None:
    """A server paging newest first or shuffled, failing on the fourth page: the cursor does not move, and the next poll delivers every record exactly once."""
    api = FakeMimecast(order=order)
    clock = FakeClock(start=float(T0))
    made = fill(api, 40, T0 - 5, spacing=60)  # 40 minutes: more than the lookback
    config = write_config(tmp_path, page_size=PAGE)
    runner = Runner(config, clock=clock, transport=lambda t: api.transport())
    await runner.start()
    try:
        broken_at(api, 4)
        first = url_result(await runner.run_once())
        assert first.error is not None, "the premise: the window broke part-way"
        assert first.pages == 3
        assert first.alerts == 3 * PAGE
        assert await runner.store.cursor("acme", URL.value) is None, (
            "the cursor moved on unproven order"
        )
        api.body_override = None
        clock.advance(30)
        second = url_result(await runner.run_once())
        assert second.error is None
    finally:
        await runner.aclose()
    assert output(tmp_path) == Counter(canonical(json.loads(raw)) for raw in made)


async def test_oldest_first_pages_move_the_cursor_page_by_page(tmp_path: Path) -> None:
    """A server paging oldest first as asked: each committed page moves the cursor to its newest record, so a broken window resumes where it broke."""
    api = FakeMimecast(order="asked")
    clock = FakeClock(start=float(T0))
    made = fill(api, 20, T0 - 5)
    runner = Runner(write_config(tmp_path), clock=clock, transport=lambda t: api.transport())
    await runner.start()
    try:
        broken_at(api, 4)
        assert url_result(await runner.run_once()).error is not None
        cursor = await runner.store.cursor("acme", URL.value)
        assert cursor is not None
        # Three pages of two records were committed: the cursor is the sixth record's time.
        assert cursor.timestamp() == T0 - 5 - 7 * (20 - 6)
        api.body_override = None
        assert url_result(await runner.run_once()).error is None
        end = await runner.store.cursor("acme", URL.value)
    finally:
        await runner.aclose()
    assert end is not None
    assert end.timestamp() == T0, "a window read in full ends at its end"
    assert output(tmp_path) == Counter(canonical(json.loads(raw)) for raw in made)


async def test_a_server_ignoring_the_window_never_delivers_a_record_twice(tmp_path: Path) -> None:
    """A server that sends every record whatever `from` says: over polls long after the ids were pruned, each record is delivered once; once its id is forgotten it is counted as too old."""
    api = FakeMimecast(ignore_window=True)
    clock = FakeClock(start=float(T0))
    made = fill(api, 6, T0 - 5)
    runner = Runner(write_config(tmp_path), clock=clock, transport=lambda t: api.transport())
    await runner.start()
    try:
        first = url_result(await runner.run_once())
        assert first.error is None
        assert first.alerts == 6
        counts: Counter[str] = Counter()
        for _ in range(4):
            # Far beyond the lookback and the id memory: every id is pruned by now.
            clock.advance(LOOKBACK + 3 * 3600)
            result = url_result(await runner.run_once())
            assert result.error is None
            counts.update(result.counts)
        store_counts = next(
            s.counters for s in await runner.store.streams() if s.category == URL.value
        )
    finally:
        await runner.aclose()
    assert output(tmp_path) == Counter(canonical(json.loads(raw)) for raw in made)
    assert counts["alerts"] == 0
    # The first late poll still reaches them (duplicates) and then prunes their ids, so the three
    # after it cannot tell the records from new ones and count them as too old instead.
    assert counts["duplicates"] == 6
    assert counts["too_old"] == 3 * 6
    assert counts["outside_window"] == 3 * 6
    assert store_counts["too_old"] == 3 * 6
    shown = CliRunner().invoke(main, ["status", "--config", str(tmp_path / "config.toml")])
    assert shown.exit_code == 0, shown.output
    assert "outside window 18 (" in shown.output
    assert "of them 18 older than the ids kept, not delivered" in shown.output


async def test_records_outside_the_window_never_move_the_cursor(tmp_path: Path) -> None:
    """Records dated after the window's end (a server ignoring `to`) are delivered and counted, but the cursor of a broken window stays where the proven order left it."""
    api = FakeMimecast(ignore_window=True)
    clock = FakeClock(start=float(T0))
    made = fill(api, 4, T0 - 100)
    future = make_record(URL, 99, T0 + 86_400, "malicious", "+0000")
    api.add(URL, future, T0 + 86_400)
    made.append(future)
    runner = Runner(write_config(tmp_path), clock=clock, transport=lambda t: api.transport())
    await runner.start()
    try:
        broken_at(api, 3)  # pages: (r0, r1), (r2, r3), then the future record's page breaks
        result = url_result(await runner.run_once())
        assert result.error is not None
        cursor = await runner.store.cursor("acme", URL.value)
        api.body_override = None
        done = url_result(await runner.run_once())
    finally:
        await runner.aclose()
    assert cursor is not None
    assert cursor.timestamp() == T0 - 100
    assert done.error is None
    assert done.counts["outside_window"] == 1
    assert output(tmp_path) == Counter(canonical(json.loads(raw)) for raw in made)


async def test_raising_the_lookback_never_delivers_what_the_old_one_forgot(tmp_path: Path) -> None:
    """Lookback raised from 10 minutes to 2 hours (as the README advises for lagging logs): the longer window re-reads records whose ids were pruned under the old one, and delivers none of them twice (they are too old to tell apart)."""
    api = FakeMimecast(order="asked")
    clock = FakeClock(start=float(T0))
    made = fill(api, 100, T0 - 5, spacing=60)  # 100 minutes of records
    config = tmp_path / "config.toml"
    for lookback in ("10m", "2h"):
        write_config(tmp_path, page_size=50)
        config.write_text(
            config.read_text().replace('lookback = "10m"', f'lookback = "{lookback}"')
        )
        runner = Runner(load_config(config, {}), clock=clock, transport=lambda t: api.transport())
        await runner.start()
        try:
            result = url_result(await runner.run_once())
        finally:
            await runner.aclose()
        assert result.error is None
        clock.advance(120)
    assert result.counts["too_old"] > 0, "the premise: the longer window reached forgotten ids"
    assert output(tmp_path) == Counter(canonical(json.loads(raw)) for raw in made)


@pytest.mark.parametrize("count", [10, 13, 15])  # all after the tenant's start (T0 - 2 h)
async def test_a_shuffled_window_that_looks_ordered_at_first_loses_nothing(
    tmp_path: Path, count: int
) -> None:
    """A shuffling server with pages of two, whose first page happens to climb: the cursor moves on trust, yet no record of that same window is lost as too old (ids are pruned only at a window's end)."""
    api = FakeMimecast(order="shuffled")
    clock = FakeClock(start=float(T0))
    made = fill(api, count, T0 - 5, spacing=500)  # spread over more than the id memory
    runner = Runner(
        write_config(tmp_path, page_size=2), clock=clock, transport=lambda t: api.transport()
    )
    await runner.start()
    try:
        for _ in range(3):
            assert url_result(await runner.run_once()).error is None
            clock.advance(60)
    finally:
        await runner.aclose()
    assert output(tmp_path) == Counter(canonical(json.loads(raw)) for raw in made)


async def test_ids_are_pruned_once_the_prune_point_moved_a_prune_step(tmp_path: Path) -> None:
    """Polls a minute apart: the first prunes (``kept_from`` = its window's end less the
    lookback and margin), the next ones within ``PRUNE_STEP`` of it leave the ids and
    ``kept_from`` as they were (no statements spent on it), the first one a step later prunes
    again; every record is delivered once throughout."""
    api = FakeMimecast()
    clock = FakeClock(start=float(T0))
    made = fill(api, 4, T0 - 5)
    runner = Runner(write_config(tmp_path), clock=clock, transport=lambda t: api.transport())
    await runner.start()
    kept: list[float | None] = []
    try:
        for _ in range(12):
            assert url_result(await runner.run_once()).error is None
            kept.append((await runner.store.position("acme", URL.value))[1])
            clock.advance(60)
    finally:
        await runner.aclose()
    keep = (runner.config.lookback + PRUNE_MARGIN).total_seconds()
    step = PRUNE_STEP.total_seconds()
    assert kept[0] == T0 - keep
    assert kept[1 : int(step // 60)] == [T0 - keep] * (int(step // 60) - 1)
    assert kept[int(step // 60)] == T0 + step - keep
    assert output(tmp_path) == Counter(canonical(json.loads(raw)) for raw in made)
