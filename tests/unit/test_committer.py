"""Group commit (``runner._committer``): groups across streams, bounded memory, order per stream."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import cast

import msgspec
import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.config import TenantConfig, load_config
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain, Runner, _committer
from mimecast_connector.runner._chain import Handled
from mimecast_connector.runner._committer import Committer, Lane
from mimecast_connector.sinks import JsonlSink
from mimecast_connector.state import Commit, SqliteStore, StateStore, Store
from tests.fakes import FakeClock
from tests.properties.fake_api import FakeMimecast
from tests.properties.test_checkpoint_model import (
    T0,
    VERDICTS,
    canonical,
    kept,
    make_record,
    write_config,
)
from tests.unit import samples


class GatedSink:
    """A jsonl sink whose deliveries wait for ``gate``; counts deliveries and alerts."""

    def __init__(self, inner: JsonlSink, gate: asyncio.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.batches: list[int] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def format(self) -> Format:
        return self.inner.format

    async def start(self, position: str | None) -> str | None:
        return await self.inner.start(position)

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        await self.gate.wait()
        self.batches.append(len(alerts))
        return await self.inner.deliver(alerts)

    def committed(self, position: str | None) -> None:
        self.inner.committed(position)

    async def aclose(self) -> None:
        await self.inner.aclose()


def fill(api: FakeMimecast) -> list[bytes]:
    """Ten records of every category (one stream each), every one an alert."""
    made = []
    for category in LOG_CATEGORIES:
        verdict = VERDICTS[category][0]
        for n in range(10):
            epoch = T0 - 600 + 7 * n
            raw = make_record(category, n, epoch, verdict, "+0000")
            assert kept(category, json.loads(raw))
            api.add(category, raw, epoch)
            made.append(raw)
    return made


async def test_pages_held_in_memory_are_bounded_while_a_sink_is_stuck(tmp_path: Path) -> None:
    """With the sink stuck and a bound of 2 pages held, four streams of 5 pages each ask for no more than 2 pages; once the sink moves, everything is delivered once."""
    api = FakeMimecast()
    made = fill(api)
    gate = asyncio.Event()
    sink = GatedSink(JsonlSink(str(tmp_path / "out" / "alerts.jsonl")), gate)
    runner = Runner(
        write_config(tmp_path),  # pages of 2 records
        clock=FakeClock(start=float(T0)),
        sinks=[sink],
        transport=lambda tenant: api.transport(),
        max_pages_held=2,
    )
    await runner.start()
    try:
        polls = asyncio.ensure_future(runner.run_once())
        await asyncio.sleep(0.3)
        assert len(api.requests) == 2, "pages were read past the bound while the sink was stuck"
        gate.set()
        results = await asyncio.wait_for(polls, 10)
    finally:
        await runner.aclose()
    assert [r.error for r in results] == [None] * len(LOG_CATEGORIES)
    lines = (tmp_path / "out" / "alerts.jsonl").read_bytes().splitlines()
    assert Counter(canonical(json.loads(line)["raw"]) for line in lines) == Counter(
        canonical(json.loads(raw)) for raw in made
    )


async def test_pages_of_several_streams_share_groups(tmp_path: Path) -> None:
    """Four streams read at once: their pages are committed in fewer groups than pages, every alert once."""
    api = FakeMimecast()
    made = fill(api)
    gate = asyncio.Event()
    gate.set()
    sink = GatedSink(JsonlSink(str(tmp_path / "out" / "alerts.jsonl")), gate)
    runner = Runner(
        write_config(tmp_path),
        clock=FakeClock(start=float(T0)),
        sinks=[sink],
        transport=lambda tenant: api.transport(),
    )
    await runner.start()
    try:
        results = await runner.run_once()
    finally:
        await runner.aclose()
    assert [r.error for r in results] == [None] * len(LOG_CATEGORIES)
    pages = sum(r.pages for r in results)
    assert pages == 5 * len(LOG_CATEGORIES)
    assert len(sink.batches) < pages, sink.batches
    assert sum(sink.batches) == len(made)


async def test_a_stream_waiting_on_its_quota_holds_no_page_permit(tmp_path: Path) -> None:
    """One tenant's API user is throttled for 2 s, with only 3 page permits in the run: the other tenant's four streams finish at once instead of waiting behind it."""
    lines = ['state = "state.db"', 'dead_letter = "dead.jsonl"']
    for name in ("acme", "beta"):
        lines += [
            "[[tenants]]",
            f'name = "{name}"',
            'base_url = "https://api.example.test"',
            f'client_id = "{name}-id"',
            f'client_secret = "{name}-secret"',
        ]
    lines += ["[[sinks]]", 'type = "jsonl"', 'path = "out.jsonl"']
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    apis = {"acme": FakeMimecast(), "beta": FakeMimecast()}
    runner = Runner(
        load_config(path, {}), transport=lambda t: apis[t.name].transport(), max_pages_held=3
    )
    await runner.start()
    try:
        runner.clients["acme"].limiter.block(2.0)  # acme's API user was told to wait 2 s
        began = time.monotonic()

        async def timed(tenant: TenantConfig, category: Category) -> tuple[str, float]:
            result = await runner.poll(tenant, category)
            assert result.error is None
            return tenant.name, time.monotonic() - began

        finished = await asyncio.gather(*(timed(t, c) for t, c in runner.streams()))
    finally:
        await runner.aclose()
    beta = [seconds for name, seconds in finished if name == "beta"]
    acme = [seconds for name, seconds in finished if name == "acme"]
    assert min(acme) >= 1.9, "the premise: acme waited on its quota"
    assert max(beta) < 1.0, beta


class RecordingStore:
    """Just what the committer calls of a store: nothing delivered before; each commit noted."""

    def __init__(self) -> None:
        self.groups: list[int] = []

    async def already_delivered(
        self,
        tenant: str,
        category: str,
        records: Iterable[tuple[str, float]],
        dead: Iterable[str] = (),
    ) -> set[str]:
        return set()

    async def commit_group(self, commits: Sequence[Commit], positions: Mapping[str, str]) -> None:
        self.groups.append(len(commits))


async def test_pages_without_records_wait_the_quiet_gap_those_with_records_do_not() -> None:
    """With ``quiet_gap`` (``run_forever`` sets it): pages that found nothing new, coming right
    after a commit, wait the quiet gap and go in one group; a page with records after a commit
    waits only ``MIN_COMMIT_GAP``."""
    store = RecordingStore()
    committer = Committer(cast(Store, store), [], None)
    committer.quiet_gap = 1.0
    committer.start()

    def page(n: int, handled: Handled) -> Awaitable[asyncio.Future[dict[str, int]]]:
        lane = Lane(f"tenant-{n}", "url")
        return committer.submit(lane, handled, cursor=None, horizon=-math.inf, prune_before=None)

    try:
        await asyncio.wait_for(await page(0, Handled()), 2.0)  # after a quiet spell: at once
        quiet = [await page(n, Handled()) for n in range(1, 6)]
        await asyncio.sleep(0.4)  # far past MIN_COMMIT_GAP
        assert store.groups == [1], "quiet pages wait for company"
        await asyncio.wait_for(asyncio.gather(*quiet), 5.0)
        assert store.groups == [1, 5]
        began = time.monotonic()
        with_records = await page(9, Handled(ids=[("a1", 1.0e9)]))
        await asyncio.wait_for(with_records, 5.0)
        assert time.monotonic() - began < 0.5, "a page with records waits the short gap"
        assert store.groups == [1, 5, 1]
    finally:
        await committer.aclose()


async def test_commits_under_load_share_groups_and_a_page_after_quiet_commits_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a long gap between groups: a page after a quiet spell commits at once; the pages that follow a commit wait for the gap and go in one group."""
    monkeypatch.setattr(_committer, "MIN_COMMIT_GAP", 5.0)
    store = RecordingStore()
    committer = Committer(cast(Store, store), [], None)
    committer.start()

    def page(n: int) -> Awaitable[asyncio.Future[dict[str, int]]]:
        lane = Lane(f"tenant-{n}", "url")
        return committer.submit(lane, Handled(), cursor=None, horizon=-math.inf, prune_before=None)

    try:
        first = await page(0)
        await asyncio.wait_for(first, 2.0)  # no commit before it: no wait
        assert store.groups == [1]
        later = [await page(n) for n in range(1, 6)]
        await asyncio.sleep(1.0)
        assert store.groups == [1], "pages right after a commit wait for the gap"
        assert not any(done.done() for done in later)
    finally:
        await committer.aclose()
    monkeypatch.setattr(_committer, "MIN_COMMIT_GAP", 0.2)
    store.groups.clear()
    committer = Committer(cast(Store, store), [], None)
    committer.start()
    try:
        await asyncio.wait_for(await page(0), 2.0)
        later = [await page(n) for n in range(1, 6)]
        await asyncio.wait_for(asyncio.gather(*later), 5.0)
        assert store.groups == [1, 5], "the waiting pages went in one group"
    finally:
        await committer.aclose()


class KeepingStore:
    """Just what the committer calls of a store: ``known`` ids were handled before; every
    group's commits kept."""

    def __init__(self, known: Iterable[str] = ()) -> None:
        self.known = set(known)
        self.groups: list[list[Commit]] = []

    async def already_delivered(
        self,
        tenant: str,
        category: str,
        records: Iterable[tuple[str, float]],
        dead: Iterable[str] = (),
    ) -> set[str]:
        return {i for i, _ in records if i in self.known} | (set(dead) & self.known)

    async def commit_group(self, commits: Sequence[Commit], positions: Mapping[str, str]) -> None:
        self.groups.append(list(commits))


async def test_rows_skipped_without_ids_count_as_fetched_and_dropped() -> None:
    """A page's rows counted and forgotten without ids (``Handled.skipped``) are fetched, and dropped by their reason, not negative duplicates; ids known before are still the only duplicates."""
    store = KeepingStore(known={"c"})
    committer = Committer(cast(Store, store), [], None)
    committer.start()
    three = [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    pages = [
        Handled(
            ids=three[:2],
            dropped=[("a", "url clean"), ("b", "url clean")],
            skipped={"receipt delivered": 5, "receipt processed": 2},
        ),
        Handled(skipped={"receipt delivered": 4}),  # nothing but skipped rows
        Handled(ids=three, dropped=[(i, "url clean") for i, _ in three], skipped={"x": 1}),
    ]
    try:
        done = [
            await committer.submit(
                Lane(f"tenant-{n}", "siem"), page, cursor=None, horizon=-math.inf, prune_before=None
            )
            for n, page in enumerate(pages)
        ]
        counted = await asyncio.wait_for(asyncio.gather(*done), 5.0)
    finally:
        await committer.aclose()
    expected = [
        {"fetched": 9, "duplicates": 0, "alerts": 0, "dead_lettered": 0, "dropped: url clean": 2,
         "dropped: receipt delivered": 5, "dropped: receipt processed": 2},
        {"fetched": 4, "duplicates": 0, "alerts": 0, "dead_lettered": 0,
         "dropped: receipt delivered": 4},
        {"fetched": 4, "duplicates": 1, "alerts": 0, "dead_lettered": 0, "dropped: url clean": 2,
         "dropped: x": 1},
    ]  # fmt: skip
    assert counted == expected
    committed = [dict(c.counts) for group in store.groups for c in group]
    assert committed == expected


class SwitchedSink:
    """A sink that delivers, or fails while ``down``; the ids it delivered are kept."""

    name = "switched"
    format: Format = "native"

    def __init__(self) -> None:
        self.down = False
        self.delivered: list[str] = []

    async def start(self, position: str | None) -> str | None:
        return None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        if self.down:
            raise RuntimeError("the sink is down")
        self.delivered.extend(a.id for a in alerts)
        return str(len(self.delivered))

    def committed(self, position: str | None) -> None:
        pass

    async def aclose(self) -> None:
        pass


def click_page(n: int) -> Handled:
    """A page of one URL-click alert (message id ``<p{n}@example.com>``)."""
    record = {**json.loads(samples.URL_CLICK_LINE), "messageId": f"<p{n}@example.com>"}
    handled = Chain("acme", Category.URL, load_table()).process(
        [msgspec.Raw(json.dumps(record).encode())], 0.0
    )
    assert len(handled.alerts) == 1
    return handled


async def test_a_pages_marker_commits_with_it_once_its_alerts_are_delivered(
    tmp_path: Path,
) -> None:
    """``submit(marker=...)`` commits the marker in the page's transaction: not while the sink fails (the old marker and no id stay), then with the page's id and counters; a page without one leaves it."""
    store = SqliteStore(StateStore(tmp_path / "state.db", writer=True))
    sink = SwitchedSink()
    committer = Committer(store, [sink], None)
    committer.start()

    async def submit(lane: Lane, page: Handled, marker: str | None) -> dict[str, int]:
        done = await committer.submit(
            lane, page, cursor=None, horizon=-math.inf, prune_before=None, marker=marker
        )
        return await asyncio.wait_for(done, 5.0)

    first, second = click_page(1), click_page(2)
    [(first_id, _)] = first.ids
    [(second_id, _)] = second.ids
    try:
        assert (await submit(Lane("acme", "url"), first, "m-1"))["alerts"] == 1
        assert await store.marker("acme", "url") == "m-1"
        sink.down = True
        with pytest.raises(RuntimeError, match="the sink is down"):
            await submit(Lane("acme", "url"), second, "m-2")
        assert await store.marker("acme", "url") == "m-1"
        assert await store.already_delivered("acme", "url", second.ids) == set()
        sink.down = False
        lane = Lane("acme", "url")
        assert (await submit(lane, second, "m-2"))["alerts"] == 1
        assert await store.marker("acme", "url") == "m-2"
        assert await store.already_delivered("acme", "url", second.ids) == {second_id}
        assert (await submit(lane, Handled(), None))["fetched"] == 0
        assert await store.marker("acme", "url") == "m-2"
        [stream] = await store.streams()
        assert (stream.marker, stream.counters["alerts"]) == ("m-2", 2)
    finally:
        await committer.aclose()
        await store.aclose()
    assert sink.delivered == [first_id, second_id]
