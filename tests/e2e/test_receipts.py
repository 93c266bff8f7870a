"""The receipt feed end to end: SIEM batch files from the simulator, both API versions.

Expected alerts are worked out from the events the simulator generated, with the rejection
phrases written out independently (``conftest.rejection_type``): a receipt is an alert when its
action is a rejection and one of its texts (2.0: ``rejectionInfo``, ``virusFound``,
``receiptErrors``; 1.0 rows carry ``rejectionInfo`` as ``RejInfo`` and ``receiptErrors`` as
``Error``) holds a phrase.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mimecast_connector.config import load_config
from mimecast_connector.runner import Runner
from mimecast_connector.simulator import SimTenant, Simulator, faults
from tests.e2e.conftest import texts_type

NOW = datetime.now(UTC).replace(microsecond=0)
# Events end 35 minutes before now: the simulator publishes a file at the end of its period
# (15 minutes on API 2.0, 30 on 1.0), so every expected event is in a published file.


def action(event: dict[str, Any]) -> str:
    return str(event.get("action") or event.get("subtype") or event.get("subType") or "")


def expected(events: list[dict[str, Any]], api: str) -> Counter[tuple[str, str, int]]:
    """(alertType, recipient, second) of every receipt that must become an alert."""
    out: Counter[tuple[str, str, int]] = Counter()
    for event in events:
        if action(event).lower() != "rej":
            continue
        fields = (
            ("rejectionInfo", "virusFound", "receiptErrors")
            if api == "2.0"
            else ("rejectionInfo", "receiptErrors")
        )
        kind = texts_type([event.get(name) for name in fields])
        if kind is not None:
            out[(kind, str(event["recipients"]), int(event["timestamp"]) // 1000)] += 1
    return out


@dataclass
class Feed:
    sim: Simulator
    tenant: SimTenant
    events: list[dict[str, Any]]
    tmp: Path

    def config(self, api: str, *, poll_interval: str = "60s") -> Path:
        t = self.tenant
        if api == "2.0":
            creds = f'client_id = "{t.client_id}"\nclient_secret = "{t.client_secret}"'
        else:
            creds = (
                f'app_id = "{t.app_id}"\napp_key = "{t.app_key}"\n'
                f'access_key = "{t.access_key}"\nsecret_key = "{t.secret_key}"'
            )
        path = self.tmp / "config.toml"
        path.write_text(
            f'state = "state.db"\ndead_letter = "dead-letter.jsonl"\n\n'
            f'[[tenants]]\nname = "acme"\napi = "{api}"\nbase_url = "{self.sim.url}"\n{creds}\n'
            f'start = "{(NOW - timedelta(hours=8)).isoformat()}"\ncategories = ["receipt"]\n'
            f'poll_interval = "{poll_interval}"\n\n'
            '[[sinks]]\ntype = "jsonl"\npath = "alerts.jsonl"\n',
            "utf-8",
        )
        return path

    def alerts(self) -> list[dict[str, Any]]:
        path = self.tmp / "alerts.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()]

    def delivered(self) -> Counter[tuple[str, str, int]]:
        return Counter(
            (
                a["alertType"],
                a["recipient"],
                int(datetime.fromisoformat(a["time"]).timestamp()),
            )
            for a in self.alerts()
        )

    def dead(self) -> list[dict[str, Any]]:
        path = self.tmp / "dead-letter.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture
def feed(tmp_path: Path) -> Iterator[Feed]:
    with Simulator(seed=31) as sim:
        tenant = sim.add_tenant("acme")
        events = tenant.generate_receipts(
            4000, start=NOW - timedelta(hours=6), end=NOW - timedelta(minutes=35), file_size=300
        )
        yield Feed(sim, tenant, events, tmp_path)


async def poll_until_caught_up(feed: Feed, api: str, runs: int = 6) -> list[dict[str, int]]:
    counts = []
    for _ in range(runs):
        runner = Runner(load_config(feed.config(api), {}))
        await runner.start()
        try:
            (result,) = await runner.run_once()
            marker = json.loads(await runner.store.marker("acme", "receipt") or "{}")
        finally:
            await runner.aclose()
        assert result.error is None, result.message
        counts.append(result.counts)
        if marker.get("caught_up"):
            break
    return counts


@pytest.mark.parametrize("api", ["2.0", "1.0"])
async def test_receipt_rejections_become_alerts_exactly_once(feed: Feed, api: str) -> None:
    """Every rejection with a known text is one alert; accepted receipts and 1.0 delivery and
    process rows are counted, never alerts; a further poll adds nothing."""
    counts = await poll_until_caught_up(feed, api)
    want = expected(feed.events, api)
    assert sum(want.values()) > 50
    assert feed.delivered() == want
    assert len({a["id"] for a in feed.alerts()}) == len(feed.alerts())
    total = Counter[str]()
    for c in counts:
        total.update(c)
    accepted = sum(1 for e in feed.events if action(e) == "Acc")
    assert total["dropped: accepted"] == accepted
    if api == "1.0":
        assert total["dropped: delivery row"] > 0
        assert total["dropped: process row"] > 0
        # A delivery row never alerts, even the customer's own server refusing a recipient.
        assert all(a["raw"].get("Act") == "Rej" for a in feed.alerts())
    before = (feed.tmp / "alerts.jsonl").read_bytes()
    again = await poll_until_caught_up(feed, api, runs=1)
    assert again[0]["alerts"] == 0
    assert (feed.tmp / "alerts.jsonl").read_bytes() == before
    for alert in feed.alerts()[:20]:
        assert alert["category"] == "receipt"
        assert alert["rejectionInfo"] or alert["rejectionType"]


async def test_a_link_that_expires_mid_run_is_listed_again_and_nothing_repeats(feed: Feed) -> None:
    """The next file download answers 403 (link expired): the page is listed again with fresh
    links and the file is read where it was; every alert arrives once."""
    feed.sim.inject(faults.ExpiredLink(), siem="download", times=2)
    counts = await poll_until_caught_up(feed, "2.0")
    assert feed.delivered() == expected(feed.events, "2.0")
    # Each event read once: the file listed again was not read twice.
    assert sum(c["fetched"] for c in counts) == len(feed.events)
    expired = [
        r for r in feed.sim.requests if r.path.startswith("/siem-files/") and r.status == 403
    ]
    assert len(expired) == 2


@pytest.mark.parametrize(
    ("api", "fault", "reason"),
    [
        ("2.0", faults.TruncatedFile(keep_fraction=0.5), "truncated"),
        ("2.0", faults.NotGzip(), "not gzip"),
        ("1.0", faults.TruncatedFile(keep_fraction=0.0, content=True), "truncated"),
        ("1.0", faults.TruncatedFile(keep_fraction=0.5), "zip"),
    ],
    ids=["2.0-cut", "2.0-not-gzip", "1.0-cut-json", "1.0-cut-zip"],
)
async def test_a_bad_file_is_dead_lettered_whole_and_the_feed_goes_on(
    feed: Feed, api: str, fault: faults.Fault, reason: str
) -> None:
    """A file cut short or not gzip is dead-lettered once, with its name and the reason; every
    other file is read; nothing is delivered twice."""
    feed.sim.inject(fault, siem="download" if api == "2.0" else "get-siem-logs")
    await poll_until_caught_up(feed, api)
    dead = feed.dead()
    assert len(dead) == 1, dead
    assert reason in dead[0]["reason"]
    assert dead[0]["category"] == "receipt"
    assert dead[0]["raw"]["file"] in dead[0]["reason"]
    want, got = expected(feed.events, api), feed.delivered()
    assert not got - want  # nothing unexpected, nothing twice
    missing = sum((want - got).values())
    assert missing < sum(want.values()) / 4  # at most the bad file's rejections are missing


def _command(config: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config),
            "--log-level", "error", *extra]  # fmt: skip


@pytest.mark.parametrize("api", ["2.0", "1.0"])
def test_kill_9_inside_batch_files_loses_and_repeats_nothing(tmp_path: Path, api: str) -> None:
    """`run` is SIGKILLed again and again while it reads large batch files; each restart goes
    on from its last committed piece. In the end every alert is in the jsonl file once."""
    rng = random.Random(11)
    with Simulator(seed=5) as sim:
        tenant = sim.add_tenant("acme")
        # Files of 50,000 lines: 50 pieces each, read in a good part of a second, so a file spans
        # many commit groups (at 6,000 lines a fast moment read whole files between two looks at
        # the marker, and no kill landed part-way).
        events = tenant.generate_receipts(
            150_000, start=NOW - timedelta(minutes=95), end=NOW - timedelta(minutes=35),
            file_size=50_000,
        )  # fmt: skip
        feed = Feed(sim, tenant, events, tmp_path)
        config = feed.config(api, poll_interval="1s")
        kills = inside = 0
        state = tmp_path / "state.db"
        log = (tmp_path / "run.log").open("ab")
        with log:
            for _ in range(10):
                if inside >= 3 or _marker(state).get("caught_up"):
                    break
                child = subprocess.Popen(_command(config), stdout=subprocess.DEVNULL, stderr=log)  # noqa: S603
                before = _marker(state)
                deadline = time.monotonic() + 20
                while child.poll() is None and time.monotonic() < deadline:
                    reached = _marker(state)
                    if reached.get("caught_up"):
                        break
                    if reached != before and reached.get("line", 0) > 0 and not reached["done"]:
                        # A file is part-way committed: kill now, or a moment later.
                        time.sleep(rng.uniform(0, 0.05))
                        inside += 1
                        break
                    time.sleep(0.005)
                if child.poll() is None:
                    child.send_signal(signal.SIGKILL)
                    kills += 1
                child.wait(timeout=30)
            for _ in range(10):
                done = subprocess.run(_command(config, "--once"), capture_output=True, timeout=300)  # noqa: S603
                assert done.returncode == 0, done.stderr.decode()[-2000:]
                if _marker(state).get("caught_up"):
                    break
        assert inside >= 2  # SIGKILLs with a file part-way read (3 asked; load may allow fewer)
        ids = Counter(a["id"] for a in feed.alerts())
        assert [i for i, n in ids.items() if n > 1] == []
        assert feed.delivered() == expected(events, api)


def _marker(path: Path) -> dict[str, Any]:
    """The receipt stream's committed marker ({} before the first commit)."""
    import sqlite3

    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            row = db.execute("SELECT marker FROM streams WHERE category = 'receipt'").fetchone()
    except sqlite3.OperationalError:  # created but no tables yet, or busy
        return {}
    return json.loads(row[0]) if row and row[0] else {}


def test_a_huge_batch_file_is_read_in_flat_memory(tmp_path: Path) -> None:
    """A batch file of 1,500,000 receipts (about 1 GB of NDJSON) is read by a `run --once`
    whose peak RSS stays that of a small run: nothing holds the file."""
    with Simulator(seed=9) as sim:
        tenant = sim.add_tenant("acme")
        events = tenant.generate_receipts(
            200, start=NOW - timedelta(hours=2), end=NOW - timedelta(minutes=35), file_size=100
        )
        feed = Feed(sim, tenant, events, tmp_path)
        config = feed.config("2.0")
        small = _peak_rss(_command(config, "--once"), tmp_path / "small.log")
        (tmp_path / "state.db").unlink()
        (tmp_path / "alerts.jsonl").unlink(missing_ok=True)
        sim.inject(faults.HugeFile(rows=1_500_000), siem="download")
        huge = _peak_rss(_command(config, "--once"), tmp_path / "huge.log")
    assert _fetched(tmp_path / "state.db") >= 1_500_000  # the huge file was read, all of it
    assert huge < small + 40, (small, huge)


def _fetched(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT value FROM counters WHERE category = 'receipt' AND name = 'fetched'"
        ).fetchone()
    return int(row[0]) if row else 0


def _peak_rss(command: list[str], log: Path) -> float:
    """Run ``command`` to its end; its peak RSS in MiB."""
    with log.open("wb") as errors:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)  # noqa: S603
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0, log.read_text("utf-8", "replace")[-2000:]
    return usage.ru_maxrss / 1024


def _invoke(*args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from mimecast_connector._cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize("api", ["2.0", "1.0"])
def test_check_names_the_siem_role_and_status_shows_where_the_feed_is(feed: Feed, api: str) -> None:
    """`check` reads the first page of the feed; without the SIEM permission it fails naming
    it (and Enhanced Logging); `status` shows the newest event reached and whether the feed is
    caught up."""
    config = feed.config(api)
    code, out = _invoke("check", "--config", str(config))
    assert code == 0, out
    code, out = _invoke("run", "--config", str(config), "--once")
    assert code == 0, out
    code, out = _invoke("status", "--config", str(config))
    assert code == 0, out
    block = out.split("acme / receipt")[1]
    assert "reached        20" in block
    assert "(caught up)" in block or "(catching up)" in block
    assert f"alerts {len(feed.alerts())}," in block
    locked = feed.sim.add_tenant("locked", siem=False)
    feed.tenant = locked
    code, out = _invoke("check", "--config", str(feed.config(api)))
    assert code == 1
    assert "receipt" in out
    assert ("Threat and Security Events (SIEM)" if api == "2.0" else "Gateway / Tracking") in out


@pytest.mark.parametrize("api", ["2.0", "1.0"])
async def test_a_batch_published_late_is_read_after_the_feed_caught_up(
    feed: Feed, api: str
) -> None:
    """Events of an hour ago published only now join the feed at its end: the next poll of a
    caught-up feed delivers their rejections, once, and nothing before them again."""
    await poll_until_caught_up(feed, api)
    before = feed.delivered()
    late = feed.tenant.publish_late_receipts(400, age=3600)
    counts = await poll_until_caught_up(feed, api)
    assert feed.delivered() - before == expected(late, api)
    assert sum(expected(late, api).values()) > 0
    assert sum(c["alerts"] for c in counts) == sum(expected(late, api).values())
