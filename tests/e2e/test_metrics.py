"""`/metrics`, `/healthz` and `/readyz` scraped over HTTP from a real `mimecast-connector run`
(not --once) against the simulator, the numbers checked against what was delivered; the
token; `status --json`; the configuration rules of `metrics`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from mimecast_connector import Category
from mimecast_connector._cli import main
from mimecast_connector._errors import ConfigError, SinkUnavailableError
from mimecast_connector.alerts import Alert, Format
from mimecast_connector.config import load_config
from mimecast_connector.runner import Runner, make_sinks
from mimecast_connector.simulator import faults
from tests.e2e.conftest import COUNTS, World

TOKEN = "scrape-token-5b0f9e2a7c41"
STREAMS = [c.value for c in COUNTS]


def fetch(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)  # noqa: S310 - a loopback http URL of the test's
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def until(condition: object, what: str, seconds: float = 30.0) -> None:
    """Ask ``condition()`` every 50 ms until it is true, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def by(
    scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[str, float]:
    """The samples of ``name`` for tenant acme, by category."""
    return {
        dict(labels)["category"]: value
        for (sample, labels), value in scraped.items()
        if sample == name and dict(labels).get("tenant") == "acme"
    }


@pytest.fixture
def running(world: World) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`run` with metrics on a free loopback port, its token from the environment; yields the
    process, its base URL and its log file; stopped with SIGTERM at the end."""
    config = world.write_config()
    text = config.read_text("utf-8")
    text = text.replace(
        "page_size = 100\n",
        'page_size = 100\nmetrics = "127.0.0.1:0"\nmetrics_token = "env:MC_METRICS_TOKEN"\n',
    ).replace("\nstart = ", '\npoll_interval = "1s"\nstart = ', 1)
    config.write_text(text, "utf-8")
    # The first URL page is answered late: that stream is not ready while the test first asks.
    world.sim.inject(faults.Slow(3.0), tenant="acme", category=Category.URL)
    log = world.tmp / "run.log"
    with log.open("wb") as out:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config)],
            stdout=out,
            stderr=out,
            env={**os.environ, "MC_METRICS_TOKEN": TOKEN},
        )
    try:
        port: list[int] = []

        def listening() -> bool:
            assert child.poll() is None, log.read_text()
            for line in log.read_text().splitlines():
                if '"metrics_serving"' in line:
                    port.append(json.loads(line)["port"])
                    return True
            return False

        until(listening, "the metrics server")
        yield child, f"http://127.0.0.1:{port[0]}", log
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def test_a_running_connector_serves_metrics_that_match_what_it_delivered(
    world: World, running: tuple[subprocess.Popen[bytes], str, Path]
) -> None:
    """Scraped from a live `run`: /readyz 503 while a stream has not finished, then 200; alerts per category = the jsonl lines; fetched = alerts + dropped + dead-lettered + duplicates; lag small; 2xx requests; sinks, commits and health as they are; the token required and never in the log."""
    child, base, log = running
    status, body = fetch(f"{base}/readyz", TOKEN)
    assert status == 503, body
    assert "acme/url: " in body
    assert fetch(f"{base}/healthz") == (200, "ok\n")
    assert fetch(f"{base}/metrics")[0] == 401
    assert fetch(f"{base}/metrics", "not-" + TOKEN)[0] == 401
    expected = len(world.expected())
    until(lambda: len(world.alerts()) >= expected, "every alert to be delivered")
    until(lambda: fetch(f"{base}/readyz", TOKEN)[0] == 200, "readiness")
    status, text = fetch(f"{base}/metrics", TOKEN)
    assert status == 200
    scraped = samples(text)
    delivered = Counter(alert["category"] for alert in world.alerts())
    assert sum(delivered.values()) == expected
    alerts = by(scraped, "mimecast_connector_alerts_total")
    fetched = by(scraped, "mimecast_connector_records_fetched_total")
    dead = by(scraped, "mimecast_connector_records_dead_lettered_total")
    duplicates = by(scraped, "mimecast_connector_duplicates_suppressed_total")
    dropped: Counter[str] = Counter()
    for (sample, labels), value in scraped.items():
        if sample == "mimecast_connector_records_dropped_total":
            dropped[dict(labels)["category"]] += int(value)
    for category in STREAMS:
        assert alerts[category] == delivered[category], category
        assert fetched[category] >= COUNTS[Category(category)] >= alerts[category]
        assert fetched[category] == (
            alerts[category] + dropped[category] + dead[category] + duplicates[category]
        ), category
    lag = by(scraped, "mimecast_connector_stream_lag_seconds")
    assert sorted(lag) == sorted(STREAMS)
    assert all(0 <= seconds < 30 for seconds in lag.values()), lag
    requests = {
        (dict(labels)["category"], dict(labels)["outcome"]): value
        for (sample, labels), value in scraped.items()
        if sample == "mimecast_connector_api_requests_total"
    }
    assert all(requests[(category, "2xx")] > 0 for category in STREAMS), requests
    assert {outcome for _, outcome in requests} == {"2xx"}
    sink = ("sink", "jsonl[0]")
    assert scraped[("mimecast_connector_sink_alerts_total", (sink,))] == expected
    assert scraped[("mimecast_connector_sink_batches_total", (sink,))] >= 1
    assert scraped[("mimecast_connector_sink_failures_total", (sink,))] == 0
    assert scraped[("mimecast_connector_sink_in_flight_bytes", (sink,))] == 0
    assert scraped[("mimecast_connector_state_commit_duration_seconds_count", ())] >= 1
    states = {
        (dict(labels)["category"], dict(labels)["state"])
        for (sample, labels), value in scraped.items()
        if sample == "mimecast_connector_stream_health" and value == 1
    }
    assert states == {(category, "collecting") for category in STREAMS}
    assert ("mimecast_connector_process_resident_memory_bytes", ()) in scraped
    for (sample, labels), _ in scraped.items():
        assert sample.startswith("mimecast_connector_"), sample
        assert {name for name, _ in labels} <= {
            "tenant", "category", "sink", "outcome", "reason", "state", "le"
        }, (sample, labels)  # fmt: skip
    # The dashboard, on the same port, behind the same token.
    assert fetch(f"{base}/api/streams")[0] == 401
    status, page = fetch(f"{base}/", TOKEN)
    assert status == 200, page
    assert "<html" in page.lower()
    status, listed = fetch(f"{base}/api/streams", TOKEN)
    assert status == 200, listed
    assert "acme" in listed
    assert child.poll() is None
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=30)
    assert TOKEN not in log.read_text()


def test_status_json_gives_every_stream_its_health_lag_and_counts(world: World) -> None:
    """`status --json` after `run --once`: one document with the documented keys; a working tenant's streams collecting with their counts and lag, a refused one failing with what to do; no secret in it."""
    config = world.write_config(
        extra_tenant=(
            f'[[tenants]]\nname = "broken"\nbase_url = "{world.sim.url}"\n'
            f'client_id = "{world.tenant.client_id}"\nclient_secret = "wrong-secret-123456"\n'
            'categories = ["url"]\n'
        )
    )
    ran = CliRunner().invoke(main, ["run", "--config", str(config), "--once"])
    assert ran.exit_code == 1, ran.output
    shown = CliRunner().invoke(main, ["status", "--config", str(config), "--json"])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert set(document) == {"state", "generated_at", "streams", "backfills"}
    assert document["backfills"] == []
    streams = {(s["tenant"], s["category"]): s for s in document["streams"]}
    assert list(streams) == [("acme", c) for c in STREAMS] + [("broken", "url")]
    delivered = Counter(alert["category"] for alert in world.alerts())
    for category in STREAMS:
        stream = streams[("acme", category)]
        assert set(stream) == {
            "tenant", "category", "api", "health", "checkpoint", "lag_seconds", "last_success",
            "last_error", "last_error_at", "counts", "dropped", "unmatched_rejections", "feed",
        }  # fmt: skip
        assert set(stream["health"]) == {"state", "reason", "advice", "since"}
        assert stream["health"]["state"] == "collecting"
        assert stream["health"]["advice"] is None
        assert stream["counts"]["alerts"] == delivered[category]
        assert stream["counts"]["fetched"] == COUNTS[Category(category)]
        assert stream["counts"]["dropped"] == sum(stream["dropped"].values())
        assert 0 <= stream["lag_seconds"] < 120
        assert stream["checkpoint"].endswith("Z")
        assert stream["last_error"] is None
        assert stream["feed"] is None
    broken = streams[("broken", "url")]
    assert broken["health"]["state"] == "failing"
    assert "client_id and client_secret of tenant 'broken'" in broken["health"]["advice"]
    assert broken["checkpoint"] is None
    assert broken["lag_seconds"] is None
    assert broken["last_error"]
    assert "wrong-secret-123456" not in shown.output
    assert world.tenant.client_secret not in shown.output


def test_metrics_off_loopback_needs_a_token(world: World) -> None:
    """A non-loopback address without metrics_token is a configuration problem naming the key (exit 2); with a token of 16 characters or more it loads; a short token is refused without being quoted."""
    config = world.write_config()
    base = config.read_text("utf-8")
    config.write_text(
        base.replace("page_size = 100\n", 'page_size = 100\nmetrics = "0.0.0.0:9464"\n')
    )
    with pytest.raises(ConfigError) as refused:
        load_config(config, {})
    [(key, message)] = refused.value.problems
    assert key == "metrics_token"
    assert "not a loopback address" in message
    code = CliRunner().invoke(main, ["run", "--config", str(config), "--once"])
    assert code.exit_code == 2
    assert "metrics_token" in code.output
    config.write_text(
        base.replace(
            "page_size = 100\n",
            'page_size = 100\nmetrics = "[::]:9464"\nmetrics_token = "env:SCRAPE"\n',
        )
    )
    loaded = load_config(config, {"SCRAPE": TOKEN})
    assert loaded.metrics == "[::]:9464"
    assert TOKEN in loaded.secrets()
    assert TOKEN not in repr(loaded)
    with pytest.raises(ConfigError) as short:
        load_config(config, {"SCRAPE": "tiny-token"})
    assert "tiny-token" not in str(short.value)
    assert [key for key, _ in short.value.problems] == ["metrics_token"]
    for wrong in ('"nowhere"', '"example.com:80"', '"127.0.0.1:70000"', '"::1:9464"'):
        config.write_text(
            base.replace("page_size = 100\n", f"page_size = 100\nmetrics = {wrong}\n")
        )
        with pytest.raises(ConfigError) as bad:
            load_config(config, {})
        assert [key for key, _ in bad.value.problems] == ["metrics"], wrong
    config.write_text(
        base.replace("page_size = 100\n", 'page_size = 100\nmetrics = "localhost:0"\n')
    )
    assert load_config(config, {}).metrics_token is None


class FlakySink:
    """A sink that is down for its first batch, then takes every batch."""

    name = "flaky:somewhere"
    format: Format = "native"

    def __init__(self) -> None:
        self.calls = 0

    async def start(self, position: str | None) -> str | None:
        return None

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        self.calls += 1
        if self.calls == 1:
            raise SinkUnavailableError("down for a moment", sink=self.name)
        return None

    def committed(self, position: str | None) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_waits_refusals_and_sink_failures_are_counted(world: World) -> None:
    """In process: a 429 is one `429` request and one rate-limit wait of its reset; a sink down for a batch is one sink failure, then its batches count; every request has its latency observed; the sink label names no address."""
    config = world.config()
    world.sim.inject(faults.RateLimited(reset_ms=200), tenant="acme", category=Category.URL)
    flaky = FlakySink()
    runner = Runner(config, sinks=[*make_sinks(config), flaky])
    await runner.start()
    try:
        tenant = config.tenants[0]
        first = await runner.poll(tenant, Category.URL)
        assert first.error is not None  # the sink was down
        second = await runner.poll(tenant, Category.URL)
        assert second.error is None
    finally:
        await runner.aclose()
    scraped = samples(runner.metrics.text())
    outcomes = {
        dict(labels)["outcome"]: value
        for (sample, labels), value in scraped.items()
        if sample == "mimecast_connector_api_requests_total"
    }
    assert outcomes["429"] == 1
    assert outcomes["2xx"] >= 2
    waits = scraped[("mimecast_connector_rate_limit_waits_total", (("tenant", "acme"),))]
    waited = scraped[("mimecast_connector_rate_limit_wait_seconds_total", (("tenant", "acme"),))]
    assert waits >= 1
    assert 0.15 <= waited < 5
    latency = scraped[
        ("mimecast_connector_api_request_duration_seconds_count", (("category", "url"),))
    ]
    assert latency == sum(outcomes.values())
    sink = ("sink", "flaky[2]")
    assert scraped[("mimecast_connector_sink_failures_total", (sink,))] == 1
    assert scraped[("mimecast_connector_sink_batches_total", (sink,))] >= 1
    delivered = Counter(alert["category"] for alert in world.alerts())
    assert scraped[("mimecast_connector_sink_alerts_total", (sink,))] == delivered["url"]
    # The jsonl sink acknowledged the first batch too (cut back, since it was not committed,
    # and written again): it counts both.
    jsonl = scraped[("mimecast_connector_sink_alerts_total", (("sink", "jsonl[0]"),))]
    assert jsonl > delivered["url"]
    assert not any("somewhere" in str(labels) for _, labels in scraped)
