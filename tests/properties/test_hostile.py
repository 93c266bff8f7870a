"""Hostile records and response bodies, end to end through the client and the chain.

Records: each hostile record is served between two good ones in one page by an in-memory
Mimecast (an ``httpx.MockTransport``) to a real Runner. It must be dead-lettered with a reason
naming the field, or, when it is a legitimate record that merely looks odd, delivered intact;
either way the good records of its page are delivered and the stream does not fail.

Bodies: a response that is not the documented JSON, too large, or nested too deeply ends the
call with a clear ``UpstreamFormatError``, in bounded time, and, for the gigantic body, in
memory near the size cap rather than the body's size.
"""

from __future__ import annotations

import json
import re
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from mimecast_connector import Category
from mimecast_connector._errors import UnavailableError, UpstreamFormatError
from mimecast_connector.client import ClientOptions, MimecastClient, OAuth2ClientCredentials
from mimecast_connector.config import load_config
from mimecast_connector.runner import Runner, StreamResult
from tests.fakes import FakeClock
from tests.properties.fake_api import FakeMimecast
from tests.unit.samples import ATTACHMENT_LINE, IMPERSONATION_LINE, URL_CLICK_LINE

T0 = 1_764_000_000
BOUND = 10.0  # seconds any one case may take; far below any CI timeout
SAMPLES = {
    Category.ATTACHMENT: ATTACHMENT_LINE,
    Category.IMPERSONATION: IMPERSONATION_LINE,
    Category.URL: URL_CLICK_LINE,
}


def when(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def good(category: Category, serial: int, epoch: int) -> bytes:
    record = json.loads(SAMPLES[category])
    record[category.time_field] = when(epoch)
    if category is Category.IMPERSONATION:
        record["id"] = f"MTOKEN:good{serial}"
    elif category is Category.ATTACHMENT:
        record["fileName"] = f"good-{serial}.xlsm"
    else:
        record["url"] = f"https://good.example.net/{serial}"
    return json.dumps(record, separators=(",", ":")).encode()


def changed(category: Category, **fields: Any) -> bytes:
    """The category's sample, dated T0 - 50, with ``fields`` set (a value of ... removes it)."""
    record = json.loads(SAMPLES[category])
    record[category.time_field] = when(T0 - 50)
    for name, value in fields.items():
        if value is ...:
            record.pop(name, None)
        else:
            record[name] = value
    return json.dumps(record, separators=(",", ":")).encode()


def spliced(category: Category, field: str, raw_value: bytes) -> bytes:
    """The category's sample with ``field`` set to ``raw_value`` as it is (any bytes)."""
    record = json.loads(SAMPLES[category])
    record[category.time_field] = when(T0 - 50)
    record.pop(field, None)
    text = json.dumps(record, separators=(",", ":")).encode()
    return text[:-1] + b',"' + field.encode() + b'":' + raw_value + b"}"


@dataclass
class Outcome:
    results: list[StreamResult]
    alerts: list[dict[str, Any]]
    dead: list[dict[str, Any]]
    seconds: float


async def serve(tmp_path: Path, category: Category, hostile: bytes) -> Outcome:
    """One run_once over a page of: a good record, ``hostile``, a good record."""
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        'state = "state/connector.db"\ndead_letter = "state/dead-letter.jsonl"\n'
        'lookback = "10m"\n\n'
        '[[tenants]]\nname = "acme"\nbase_url = "https://api.example.test"\n'
        f'client_id = "hostile-client"\nclient_secret = "hostile-secret"\n'
        f'categories = ["{category.value}"]\n'
        f'start = "{datetime.fromtimestamp(T0 - 3600, UTC).isoformat()}"\n\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.jsonl"\n',
        "utf-8",
    )
    config = load_config(config_path, {})
    api = FakeMimecast()
    api.add(category, good(category, 1, T0 - 100), T0 - 100)
    api.add(category, hostile, T0 - 50)
    api.add(category, good(category, 2, T0 - 10), T0 - 10)
    runner = Runner(config, clock=FakeClock(start=float(T0)), transport=lambda t: api.transport())
    started = time.monotonic()
    await runner.start()
    try:
        results = await runner.run_once()
    finally:
        await runner.aclose()
    seconds = time.monotonic() - started

    return Outcome(
        results,
        read_lines(tmp_path / "out" / "alerts.jsonl"),
        read_lines(tmp_path / "state" / "dead-letter.jsonl"),
        seconds,
    )


_DEAD_HEAD = re.compile(
    rb'\{"tenant":("(?:[^"\\]|\\.)*"),"category":("(?:[^"\\]|\\.)*"),'
    rb'"reason":("(?:[^"\\]|\\.)*"),"raw":'
)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of ``path``. A line too deep for ``json`` (a dead letter of a deeply
    nested record) is read by its head: tenant, category and reason, ``raw`` left as bytes."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except RecursionError:
            head = _DEAD_HEAD.match(line)
            assert head is not None, line[:200]
            tenant, category, reason = (json.loads(part) for part in head.groups())
            out.append({"tenant": tenant, "category": category, "reason": reason, "raw": line})
    return out


def assert_page_went_on(outcome: Outcome, category: Category) -> None:
    """No stream failed, the two good records were delivered, in bounded time."""
    assert outcome.seconds < BOUND
    assert [r.error for r in outcome.results] == [None]
    delivered = {json.dumps(a["raw"], sort_keys=True) for a in outcome.alerts}
    for serial, epoch in ((1, T0 - 100), (2, T0 - 10)):
        record = json.loads(good(category, serial, epoch))
        assert json.dumps(record, sort_keys=True) in delivered


DEEP = b"[" * 10_000 + b"]" * 10_000
MEGABYTE = "x" * (1024 * 1024)

# (id, category, hostile record, expected reason fragment)
DEAD_LETTERED: list[tuple[str, Category, bytes, str]] = [
    ("wrong-type-url", Category.URL, changed(Category.URL, url=12345), "$.url: expected str"),
    (
        "wrong-type-hits",
        Category.IMPERSONATION,
        changed(Category.IMPERSONATION, hits="two"),
        "$.hits: expected int",
    ),
    (
        "wrong-type-date",
        Category.ATTACHMENT,
        changed(Category.ATTACHMENT, date=1741079565),
        "$.date: expected str",
    ),
    (
        "wrong-type-tagged",
        Category.IMPERSONATION,
        changed(Category.IMPERSONATION, taggedMalicious="yes"),
        "$.taggedMalicious: expected bool",
    ),
    (
        "missing-scan-result",
        Category.URL,
        changed(Category.URL, scanResult=...),
        "$.scanResult: required field missing",
    ),
    (
        "missing-id",
        Category.IMPERSONATION,
        changed(Category.IMPERSONATION, id=...),
        "$.id: required field missing",
    ),
    (
        "missing-time",
        Category.ATTACHMENT,
        changed(Category.ATTACHMENT, date=...),
        "$.date: required field missing",
    ),
    (
        "february-30",
        Category.URL,
        changed(Category.URL, date="2025-02-30T10:00:00+0000"),
        "$.date: not a valid time",
    ),
    (
        "hour-25",
        Category.ATTACHMENT,
        changed(Category.ATTACHMENT, date="2025-03-04T25:00:00Z"),
        "$.date: not a valid time",
    ),
    (
        "no-offset",
        Category.IMPERSONATION,
        changed(Category.IMPERSONATION, eventTime="2025-03-04T10:00:00"),
        "$.eventTime: not a valid time",
    ),
    (
        "megabyte-date",
        Category.URL,
        changed(Category.URL, date=MEGABYTE),
        "$.date: not a valid time",
    ),
    ("not-an-object", Category.URL, b'["date","2025-03-04T10:00:00Z"]', "$: expected object"),
    (
        "lone-surrogate",
        Category.URL,
        spliced(Category.URL, "subject", b'"\\ud800"'),
        "lone UTF-16 surrogate",
    ),
]


@pytest.mark.parametrize(
    ("category", "hostile", "reason"),
    [case[1:] for case in DEAD_LETTERED],
    ids=[case[0] for case in DEAD_LETTERED],
)
async def test_a_malformed_record_is_dead_lettered_alone(
    tmp_path: Path, category: Category, hostile: bytes, reason: str
) -> None:
    """A malformed record goes to the dead-letter file with its reason; the rest of its page is delivered."""
    outcome = await serve(tmp_path, category, hostile)
    assert_page_went_on(outcome, category)
    assert len(outcome.alerts) == 2
    assert len(outcome.dead) == 1
    dead = outcome.dead[0]
    assert (dead["tenant"], dead["category"]) == ("acme", category.value)
    assert reason in dead["reason"], dead["reason"]
    assert len(dead["reason"]) < 300  # a megabyte of input makes no megabyte of reason
    assert dead["raw"] == json.loads(hostile)


# (id, category, record): odd but legitimate; delivered with every character intact
DELIVERED: list[tuple[str, Category, bytes]] = [
    (
        "escaped-control-characters",
        Category.URL,
        changed(Category.URL, subject="".join(map(chr, range(32))) + "\x7f\u2028\u202e"),
    ),
    ("megabyte-subject", Category.ATTACHMENT, changed(Category.ATTACHMENT, subject=MEGABYTE)),
    (
        "deep-but-decodable",
        Category.URL,
        spliced(Category.URL, "tagMap", b"[" * 500 + b"]" * 500),
    ),
    ("unknown-fields", Category.IMPERSONATION, changed(Category.IMPERSONATION, newField={"a": 1})),
]


@pytest.mark.parametrize(
    ("category", "record"),
    [case[1:] for case in DELIVERED],
    ids=[case[0] for case in DELIVERED],
)
async def test_an_odd_but_valid_record_is_delivered_intact(
    tmp_path: Path, category: Category, record: bytes
) -> None:
    """A record with escaped control characters, a megabyte string or unknown fields is an alert, byte for byte."""
    outcome = await serve(tmp_path, category, record)
    assert_page_went_on(outcome, category)
    assert outcome.dead == []
    assert len(outcome.alerts) == 3
    assert json.loads(record) in [a["raw"] for a in outcome.alerts]


# (id, category, hostile record, known limitation or ""): must not stop its page
POISON: list[tuple[str, Category, bytes, str]] = [
    (
        "raw-control-characters",
        Category.URL,
        spliced(Category.URL, "subject", b'"tab\there\x01\x1f"'),
        "",
    ),
    (
        "nested-10000-deep-in-an-unread-field",
        Category.URL,
        spliced(Category.URL, "tagMap", DEEP),
        "",
    ),
    (
        "date-overflowing-utc",
        Category.URL,
        changed(Category.URL, date="9999-12-31T23:59:59-01:00"),
        "",
    ),
]


@pytest.mark.parametrize(
    ("category", "hostile"),
    [
        pytest.param(
            *case[1:3], marks=[pytest.mark.xfail(strict=True, reason=case[3])] if case[3] else []
        )
        for case in POISON
    ],
    ids=[case[0] for case in POISON],
)
async def test_one_poisonous_record_does_not_stop_its_stream(
    tmp_path: Path, category: Category, hostile: bytes
) -> None:
    """A record no decoder accepts is dead-lettered (or delivered) alone; its page and stream go on."""
    outcome = await serve(tmp_path, category, hostile)
    assert_page_went_on(outcome, category)
    assert len(outcome.alerts) + len(outcome.dead) == 3
    for dead in outcome.dead:
        assert dead["reason"].startswith("$")


# --- bodies --------------------------------------------------------------------------------

CHUNK = 64 * 1024


async def endless(total: int, head: bytes = b'{"data":[{"clickLogs":[') -> AsyncIterator[bytes]:
    """``total`` bytes of a page that never closes, produced as they are read."""
    yield head
    sent = len(head)
    while sent < total:
        yield bytes(CHUNK)  # a new chunk each time, as a network read would be
        sent += CHUNK


def token_or(
    answer: Callable[[], httpx.Response],
) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        return answer()

    return handle


async def read_window(
    handler: Callable[[httpx.Request], httpx.Response], **options: Any
) -> tuple[BaseException | None, float, int]:
    """Read one window; the error, the seconds it took and the traced memory peak (bytes)."""
    clock = FakeClock(start=float(T0))
    client = MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=OAuth2ClientCredentials("cid", SecretStr("secret"), clock=clock),
        options=ClientOptions(**options),
        transport=httpx.MockTransport(handler),
        clock=clock,
    )
    end = datetime.fromtimestamp(T0, UTC)
    error: BaseException | None = None
    tracemalloc.start()
    started = time.monotonic()
    try:
        async for _ in client.pages(Category.URL, end - timedelta(hours=1), end):
            pass
    except Exception as exc:
        error = exc
    finally:
        seconds = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        await client.aclose()
    return error, seconds, peak


NOT_THE_JSON: list[tuple[str, bytes]] = [
    ("html", b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>"),
    ("empty", b""),
    ("truncated", b'{"meta":{"status":200},"data":[{"clickLogs":[{"date":"2025-03'),
    ("nested-100000-deep-array", b"[" * 100_000 + b"]" * 100_000),
    ("nested-100000-deep-meta", b'{"meta":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001),
    ("nested-100000-deep-data", b'{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("nested-100000-deep-unclosed", b'{"data":[{"clickLogs":[' + b'{"a":' * 100_000),
    ("wrong-shape", b'{"data":{"clickLogs":"none"},"fail":[]}'),
]


@pytest.mark.parametrize("body", [c[1] for c in NOT_THE_JSON], ids=[c[0] for c in NOT_THE_JSON])
async def test_a_body_that_is_not_the_documented_json_is_an_upstream_format_error(
    body: bytes,
) -> None:
    """A 200 whose body is not the page JSON (HTML, empty, truncated, 100,000 deep) is UpstreamFormatError, fast."""
    error, seconds, _ = await read_window(token_or(lambda: httpx.Response(200, content=body)))
    assert isinstance(error, UpstreamFormatError), repr(error)
    assert "not the JSON the API documents" in str(error)
    assert seconds < BOUND


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
async def test_a_gigantic_body_stops_at_the_cap_in_memory_near_the_cap(declared: bool) -> None:
    """A 64 MiB body against a 1 MiB cap is UpstreamFormatError, with traced memory near the cap."""
    cap = 1024 * 1024
    total = 64 * 1024 * 1024

    def answer() -> httpx.Response:
        headers = {"Content-Length": str(total)} if declared else {}
        return httpx.Response(200, headers=headers, content=endless(total))

    error, seconds, peak = await read_window(token_or(answer), max_body_bytes=cap)
    assert isinstance(error, UpstreamFormatError), repr(error)
    assert "larger than the cap" in str(error)
    assert seconds < BOUND
    assert peak < 4 * cap, f"traced peak {peak} bytes for a {cap}-byte cap"


async def test_a_gigantic_error_body_is_read_only_for_its_message() -> None:
    """A 503 with a 64 MiB body is retried and ends as UnavailableError, never holding the body."""

    def answer() -> httpx.Response:
        return httpx.Response(503, content=endless(64 * 1024 * 1024, head=b'{"fail":['))

    error, seconds, peak = await read_window(token_or(answer))
    assert isinstance(error, UnavailableError), repr(error)
    assert seconds < BOUND
    assert peak < 4 * 1024 * 1024, f"traced peak {peak} bytes"


async def test_a_body_that_is_not_json_fails_the_stream_and_keeps_the_cursor(
    tmp_path: Path,
) -> None:
    """Through the runner, a non-JSON page is the stream's UpstreamFormatError; nothing is delivered or committed."""
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[[tenants]]\nname = "acme"\nbase_url = "https://api.example.test"\n'
        'client_id = "c"\nclient_secret = "s"\ncategories = ["url"]\n\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.jsonl"\n',
        "utf-8",
    )
    api = FakeMimecast()
    api.add(Category.URL, good(Category.URL, 1, T0 - 100), T0 - 100)
    api.body_override = lambda category: b"<html>gateway timeout</html>"
    runner = Runner(
        load_config(config_path, {}),
        clock=FakeClock(start=float(T0)),
        transport=lambda t: api.transport(),
    )
    await runner.start()
    try:
        (result,) = await runner.run_once()
        assert isinstance(result.error, UpstreamFormatError)
        assert result.error.retryable
        assert await runner.store.cursor("acme", "url") is None
        api.body_override = None
        (result,) = await runner.run_once()
        assert result.error is None
        assert result.alerts == 1
    finally:
        await runner.aclose()
