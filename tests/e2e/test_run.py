"""`run --once` end to end against the simulator: exactly the expected alerts, once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from ocsf.v1_7_0.events import DetectionFinding

from mimecast_connector import Category
from mimecast_connector.alerts import OCSF_VERSION
from mimecast_connector.config import load_config
from mimecast_connector.runner import Runner
from mimecast_connector.runner._backfill import Backfill, plan
from mimecast_connector.simulator import faults
from mimecast_connector.state import StateStore
from tests.e2e.conftest import (
    CATEGORIES,
    NOW,
    START,
    World,
    canonical,
    expected_kept,
    rejection_type,
)


async def run_once(world: World, api: str = "2.0") -> Runner:
    runner = Runner(world.config(api))
    await runner.start()
    try:
        results = await runner.run_once()
    finally:
        await runner.aclose()
    assert [r.error for r in results] == [None] * len(CATEGORIES)
    return runner


@pytest.mark.parametrize("api", ["2.0", "1.0"])
async def test_delivers_exactly_the_expected_alerts_once(world: World, api: str) -> None:
    """Every kept record becomes one alert of the right type; nothing else; a second run adds nothing."""
    await run_once(world, api)
    alerts = world.alerts()
    expected = world.expected()
    got = Counter(canonical(json.loads(json.dumps(a["raw"]))) for a in alerts)
    assert set(got) == set(expected)
    assert all(n == 1 for n in got.values())
    assert len(alerts) == len(expected)
    assert {canonical(a["raw"]): a["alertType"] for a in alerts} == expected
    assert len({a["id"] for a in alerts}) == len(alerts)
    before = (world.tmp / "out/alerts.jsonl").read_bytes()
    await run_once(world, api)
    assert (world.tmp / "out/alerts.jsonl").read_bytes() == before


async def test_raw_is_the_record_exactly_as_received(world: World) -> None:
    """The native `raw` is byte for byte the record Mimecast sent, and every key is present."""
    await run_once(world)
    lines = (world.tmp / "out/alerts.jsonl").read_bytes().splitlines()
    sent = {canonical(r) for records in world.made.values() for r in records}
    for line in lines[:50]:
        alert = json.loads(line)
        assert list(alert) == [
            "id", "tenant", "category", "alertType", "threatId", "threatName", "time", "severity",
            "sender", "recipient", "subject", "messageId", "url", "fileName", "fileHash",
            "identifiers", "action", "route", "senderIp", "rejectionType", "rejectionCode",
            "rejectionInfo", "raw",
        ]  # fmt: skip
        raw_text = line[line.index(b'"raw":') + 6 : -1]
        assert json.loads(raw_text) == alert["raw"]
        assert canonical(alert["raw"]) in sent
        assert alert["time"].endswith("Z")


async def test_ocsf_output_matches_native_and_validates(world: World) -> None:
    """The OCSF sink gets the same alerts, each a valid Detection Finding of the pinned version."""
    await run_once(world)
    native = {a["id"]: a for a in world.alerts()}
    ocsf = world.alerts("out/alerts.ocsf.jsonl")
    assert {f["finding_info"]["uid"] for f in ocsf} == set(native)
    for finding in ocsf:
        DetectionFinding.model_validate(finding)
        alert = native[finding["finding_info"]["uid"]]
        assert finding["metadata"]["version"] == OCSF_VERSION
        assert finding["finding_info"]["title"] == alert["alertType"]
        assert json.loads(finding["raw_data"]) == alert["raw"]


async def test_malformed_records_are_dead_lettered_and_the_page_goes_on(world: World) -> None:
    """Malformed records land in the dead-letter file with a reason; every good record is still delivered."""
    world.sim.inject(faults.Malformed(count=4), category=Category.URL)
    runner = await run_once(world)
    dead = [
        json.loads(line)
        for line in (world.tmp / "state/dead-letter.jsonl").read_text().splitlines()
    ]
    assert len(dead) == 4
    assert all(set(d) == {"tenant", "category", "reason", "raw"} for d in dead)
    assert all(d["reason"].startswith("$") for d in dead)
    assert {canonical(a["raw"]) for a in world.alerts()} == set(world.expected())
    del runner


async def test_counts_add_up_in_the_state(world: World) -> None:
    """Each record is counted once as alert, dropped or dead letter; the re-read overlap only as duplicates."""
    await run_once(world)
    await run_once(world)

    store = StateStore(world.tmp / "state/connector.db")
    try:
        streams = {s.category: s for s in store.streams()}
    finally:
        store.close()
    for category in CATEGORIES:
        c = streams[category.value].counters
        dropped = sum(v for k, v in c.items() if k.startswith("dropped: "))
        made = world.made[category]
        distinct = len({canonical(r) for r in made})  # byte-identical twins are one record
        # The second run re-reads the lookback window before the checkpoint: every record
        # fetched beyond the distinct ones is counted as a duplicate, and only as that.
        assert c["fetched"] > len(made)
        assert c["fetched"] - c["duplicates"] == distinct
        assert c.get("alerts", 0) + dropped + c.get("dead_lettered", 0) == distinct
        unmatched = {k: v for k, v in c.items() if k.startswith("unmatched: ")}
        if category is Category.REJECTION:
            # Each rejection no phrase matches is dropped once, and counted by its description.
            texts = {canonical(r): r for r in made if rejection_type(r) is None}
            by_description = Counter(r["description"] for r in texts.values())
            assert c["dropped: unmatched rejection"] == len(texts) > 0
            assert unmatched == {f"unmatched: {k}": n for k, n in by_description.items()}
        else:
            assert not unmatched
        assert streams[category.value].cursor is not None
        assert streams[category.value].last_success is not None


async def test_after_a_long_outage_the_window_reaches_back_to_the_checkpoint(world: World) -> None:
    """With no `start` set, a poll three days after the last one still opens at cursor - lookback."""
    from datetime import timedelta

    from tests.fakes import FakeClock

    config = world.config()
    config = config.model_copy(
        update={"tenants": [config.tenants[0].model_copy(update={"start": None})]}
    )
    clock = FakeClock(start=NOW.timestamp())
    runner = Runner(config, clock=clock)
    await runner.start()
    try:
        await runner.run_once()
        cursor = await runner.store.cursor("acme", "url")
        assert cursor is not None
        clock.advance(timedelta(days=3).total_seconds())
        later = datetime.fromtimestamp(clock.time(), UTC)
        start, end = await runner.window(config.tenants[0], Category.URL, later)
    finally:
        await runner.aclose()
    assert start == cursor - config.lookback
    assert end == later


async def test_a_future_dated_record_does_not_push_the_cursor_past_now(world: World) -> None:
    """A record dated a year ahead is delivered, the cursor stops at now, and later records still arrive."""
    from datetime import timedelta

    future = world.tenant.generate(
        Category.URL,
        count=1,
        start=NOW + timedelta(days=365),
        end=NOW + timedelta(days=365, seconds=1),
    )
    world.made[Category.URL] += future
    runner = await run_once(world)
    del runner
    store = StateStore(world.tmp / "state/connector.db")
    try:
        cursor = store.cursor("acme", "url")
    finally:
        store.close()
    assert cursor is not None
    assert cursor <= datetime.now(UTC)
    later = world.tenant.generate(
        Category.URL,
        count=20,
        start=datetime.now(UTC) - timedelta(seconds=30),
        end=datetime.now(UTC),
    )
    world.made[Category.URL] += later
    await run_once(world)
    assert {canonical(a["raw"]) for a in world.alerts()} == set(world.expected())


async def test_an_unexpected_exception_in_a_sink_is_reported_not_fatal(world: World) -> None:
    """A sink raising something outside the error tree fails its streams with InternalError; the run goes on."""
    from collections.abc import Sequence

    from mimecast_connector import InternalError
    from mimecast_connector.alerts import Alert, Format

    class Broken:
        name = "broken"
        format: Format = "native"

        async def start(self, position: str | None) -> str | None:
            return None

        async def deliver(self, alerts: Sequence[Alert]) -> str | None:
            raise RuntimeError("boom")

        def committed(self, position: str | None) -> None:
            return None

        async def aclose(self) -> None:
            return None

    runner = Runner(world.config(), sinks=[Broken()])
    await runner.start()
    try:
        results = await runner.run_once()
    finally:
        await runner.aclose()
    assert {type(r.error) for r in results} == {InternalError}
    assert all("RuntimeError: boom" in r.message for r in results)


@pytest.mark.parametrize("api", ["2.0", "1.0"])
async def test_rejections_become_the_six_sophos_alert_types_and_ours(
    world: World, api: str
) -> None:
    """Rejection rows are typed by their text, whatever its drift; all six Sophos alert types
    arrive; an alert carries the sender, recipient, IP, the rejection's kind, code and text."""
    await run_once(world, api)
    rejections = [a for a in world.alerts() if a["category"] == "rejection"]
    made = {canonical(r): r for r in world.made[Category.REJECTION]}
    assert {a["alertType"] for a in rejections} >= {
        "IP Temporarily Blacklisted",
        "Submitter failed to authenticate",
        "Anti-Spoofing policy - Inbound not allowed",
        "Invalid Recipient",
        "Exceeding outbound thread limit",
        "Message bounced due to Content Examination Policy",
    }
    severities = {}
    for alert in rejections:
        record = made[canonical(alert["raw"])]
        assert alert["alertType"] == rejection_type(record)
        assert (alert["sender"], alert["recipient"]) == (record["fromAddress"], record["toAddress"])
        assert alert["senderIp"] == record["ipAddress"]
        assert alert["rejectionType"] == record["description"]
        assert alert["rejectionCode"] == str(record["type"])
        assert alert["rejectionInfo"] == record["info"]
        assert alert["subject"] is None
        assert alert["messageId"] is None
        severities[alert["alertType"]] = alert["severity"]
    assert severities["Anti-Spoofing policy - Inbound not allowed"] == "high"
    assert severities["Submitter failed to authenticate"] == "high"
    assert severities["Invalid Recipient"] == "low"
    # alert-rules.md section 4, the Sophos rows
    threats = {a["alertType"]: a["threatId"] for a in rejections}
    assert threats["Invalid Recipient"] == "TA0005"
    assert threats["IP Temporarily Blacklisted"] == "TA0001"
    assert threats["Anti-Spoofing policy - Inbound not allowed"] == "T1598.003"


async def test_a_rejection_window_cut_after_its_first_pages_is_read_again_in_full(
    world: World,
) -> None:
    """The rejection log pages newest first: a 403 after two pages leaves the cursor where it
    was, and the next poll reads the whole window again, delivering the rest once."""
    world.sim.inject(faults.Slow(0), category=Category.REJECTION, times=2)
    world.sim.inject(faults.HttpStatus(403), category=Category.REJECTION)
    runner = Runner(world.config())
    await runner.start()
    try:
        first = {r.category: r for r in await runner.run_once()}
        assert first[Category.REJECTION].error is not None
        assert "Monitoring / Rejections / Read" in first[Category.REJECTION].message
        assert first[Category.REJECTION].alerts > 0  # its first two pages went out
        assert await runner.store.cursor("acme", "rejection") is None
        second = {r.category: r for r in await runner.run_once()}
    finally:
        await runner.aclose()
    assert second[Category.REJECTION].error is None
    assert (
        second[Category.REJECTION].counts["duplicates"]
        == first[Category.REJECTION].counts["fetched"]
    )
    got = Counter(canonical(a["raw"]) for a in world.alerts())
    assert set(got) == set(world.expected())
    assert all(n == 1 for n in got.values())
    requests = [r for r in world.sim.requests if r.category is Category.REJECTION and r.json]
    openings = [
        r.json["data"][0] for r in requests if "pageToken" not in r.json["meta"]["pagination"]
    ]
    assert [o["start"] for o in openings[-2:]] == [
        openings[-2]["start"]
    ] * 2  # read again from the start
    assert all(o["admin"] is True and "oldestFirst" not in o for o in openings)


async def test_a_streams_began_is_asked_of_the_store_until_it_is_known(world: World) -> None:
    """``began`` never changes once stored, so a live poll asks the store for it only while it
    is unknown (on PostgreSQL each ask is a round trip): once read, later polls use what they
    read."""
    runner = Runner(world.config())
    await runner.start()
    asked: list[tuple[str, str]] = []
    store = runner.store
    real = store.began

    async def began(tenant: str, category: str) -> datetime | None:
        asked.append((tenant, category))
        return await real(tenant, category)

    store.began = began  # type: ignore[method-assign]
    try:
        await runner.run_once()
        first = len(asked)
        assert first == len(runner.config.tenants[0].categories)  # one each: none was known
        stored = await real("acme", "url")
        assert stored is not None
        await runner.run_once()
        # Asked once more, and known from then on (the first polls' own commits set it, but
        # a backfill may have set it first: what the store kept is what counts).
        assert len(asked) == 2 * first
        await runner.run_once()
        assert len(asked) == 2 * first
        assert await real("acme", "url") == stored
    finally:
        await runner.aclose()
    assert len(world.alerts()) == len(world.expected())


def backfill_of_a_new_stream() -> Backfill:
    """The URL backfill `backfill --from` two days back plans for a stream never polled: up to
    now, since the stream has no ``began`` yet."""
    now = datetime.now(UTC).replace(microsecond=0)
    job = plan(
        "acme", Category.URL, NOW - timedelta(days=2), None,
        began=None, configured_start=None, has_cursor=False, now=now,
    ).job  # fmt: skip
    assert job is not None
    assert job.end == now - timedelta(seconds=1)
    return job


async def test_a_backfill_handed_over_during_a_streams_first_poll_reads_nothing_twice(
    world: World,
) -> None:
    """A tenant just added and backfilled at once: the backfill (planned before the stream
    was ever polled, so up to now) arrives while the stream's first live poll, whose window
    reaches 24 h back, is reading. The backfill waits for that poll, then stops before where
    it began: every alert once, none twice."""
    config = world.config()
    tenant = config.tenants[0].model_copy(update={"start": None})  # the first window: 24 h
    config = config.model_copy(update={"tenants": [tenant]})
    job = backfill_of_a_new_stream()
    world.sim.inject(faults.Slow(0.5), category=Category.URL, times=2)
    runner = Runner(config)
    await runner.start()
    try:
        # As run_forever starts a poll: marked polling, then run.
        runner._polling.add(("acme", Category.URL))

        async def live() -> None:
            try:
                await runner.poll(tenant, Category.URL)
            finally:
                runner._polling.discard(("acme", Category.URL))
                runner._poll_ended.set()

        polling = asyncio.create_task(live())
        await asyncio.sleep(0.2)  # the poll has its window and waits for its first page
        result = await runner.backfill(job)
        await polling
    finally:
        await runner.aclose()
    assert result.error is None, result.message
    ids = [alert["id"] for alert in world.alerts() if alert["category"] == "url"]
    assert len(ids) == len(set(ids)), "an alert delivered twice"
    expected = [r for r in world.made[Category.URL] if expected_kept(Category.URL, r)]
    assert len(ids) == len(expected)


async def test_in_a_fleet_a_first_poll_and_a_backfill_in_another_process_read_nothing_twice(
    world: World,
) -> None:
    """PostgreSQL: the backfill runs in its own process, so nothing there waits for a live
    poll. A stream's first live poll sets ``began`` before it reads (the store keeps the first
    one set) and goes by what the store kept; the backfill does the same from its side. Here
    the live poll sets it first, the backfill then stops before it: every alert once."""
    from tests.e2e.receiver import Receiver
    from tests.pg import fresh_schema

    job = backfill_of_a_new_stream()
    receiver = Receiver()
    receiver.start()
    try:
        async with fresh_schema() as url:
            sinks = f'[[sinks]]\ntype = "webhook"\nurl = "{receiver.url()}"\n'
            text = world.write_config(sinks=sinks).read_text("utf-8")
            text = text.replace('state = "state/connector.db"', f'state = "{url}"')
            text = text.replace(f'start = "{START.isoformat()}"', "")  # the first window: 24 h
            fleet = world.tmp / "fleet.toml"
            fleet.write_text(text, "utf-8")
            config = load_config(fleet, {})
            tenant = config.tenants[0]
            assert config.fleet
            assert tenant.start is None
            world.sim.inject(faults.Slow(0.5), category=Category.URL, times=2)
            live, backfill = Runner(config), Runner(config)  # two processes, as far as they know
            await live.start()
            await backfill.start()
            try:
                polling = asyncio.create_task(live.poll(tenant, Category.URL))
                await asyncio.sleep(0.2)  # the poll has its window and waits for its first page
                result = await backfill.backfill(job)
                await polling
            finally:
                await backfill.aclose()
                await live.aclose()
    finally:
        receiver.stop()
    assert result.error is None, result.message
    ids = [a["id"] for r in receiver.requests for a in json.loads(r.body) if a["category"] == "url"]
    assert len(ids) == len(set(ids)), "an alert delivered twice"
    expected = [r for r in world.made[Category.URL] if expected_kept(Category.URL, r)]
    assert len(ids) == len(expected)
