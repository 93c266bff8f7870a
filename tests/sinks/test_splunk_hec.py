"""The ``splunk_hec`` sink against the fake HEC on loopback (``hec_receiver.py``): the envelopes,
gzip and headers, indexer acknowledgement, back-pressure, refusals, splitting, settings and
secrets. Waits run on a FakeClock, so none of them is slept."""

from __future__ import annotations

import gzip
import random
import socket
import ssl
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from mimecast_connector import ConfigError
from mimecast_connector._errors import SinkError, SinkRejectedError, SinkUnavailableError
from mimecast_connector.alerts import TRUNCATED, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.config import load_config
from mimecast_connector.sinks import make_sink as build_sink
from mimecast_connector.sinks._http import HttpSender
from mimecast_connector.sinks._splunk_hec import (
    ACK_PATH,
    SplunkHecSink,
    SplunkHecSinkConfig,
    epoch_text,
)
from tests.fakes import FakeClock
from tests.sinks.hec_receiver import (
    EVENT_PATH,
    HecReceiver,
    busy,
    hec_answer,
    throttled,
)
from tests.sinks.helpers import clicks, expected, mixed
from tests.sinks.receiver import HANG_UP, Answer

TOKEN = "CANARY-hec-token-5e1b9c"
POLICY = RetryPolicy(attempts=4, deadline=60.0, initial=0.5, maximum=30.0, floor=0.05)

MakeSink = Callable[..., SplunkHecSink]


@pytest.fixture
def hec() -> Iterator[HecReceiver]:
    """A fake HEC on 127.0.0.1 taking ``TOKEN``, indexer acknowledgement off."""
    server = HecReceiver(TOKEN)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hec_ack() -> Iterator[HecReceiver]:
    """A fake HEC with indexer acknowledgement on: each ackId true at its first query."""
    server = HecReceiver(TOKEN, ack_enabled=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def make_sink_for(clock: FakeClock) -> AsyncIterator[Callable[..., SplunkHecSink]]:
    """Builds sinks (to the receiver given) on the test's FakeClock; closes them."""
    made: list[SplunkHecSink] = []

    def make(receiver: HecReceiver, **kwargs: Any) -> SplunkHecSink:
        settings: dict[str, Any] = {
            "url": receiver.url(),
            "token": SecretStr(TOKEN),
            "retry": POLICY,
            "clock": clock,
            "rng": random.Random(7),
            **kwargs,
        }
        sink = SplunkHecSink(**settings)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


@pytest.fixture
def make_sink(hec: HecReceiver, make_sink_for: Callable[..., SplunkHecSink]) -> MakeSink:
    return lambda **kwargs: make_sink_for(hec, **kwargs)


@pytest.fixture
def make_ack_sink(hec_ack: HecReceiver, make_sink_for: Callable[..., SplunkHecSink]) -> MakeSink:
    defaults = {"ack": True, "ack_timeout": 10.0, "ack_poll_interval": 1.0}
    return lambda **kwargs: make_sink_for(hec_ack, **{**defaults, **kwargs})


SOURCETYPES = {
    "native": "mimecast:alert",
    "ocsf": "mimecast:alert:ocsf",
    "ecs": "mimecast:alert:ecs",
}


def alert_ids(receiver: HecReceiver) -> list[str]:
    return [envelope["fields"]["alert_id"] for envelope in receiver.events]


def epoch(rfc3339: str) -> float:
    """Seconds since the epoch, by the standard library (not the code under test)."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["native", "ocsf", "ecs"])
async def test_each_alert_is_one_envelope_with_its_event_and_fields(
    make_sink: MakeSink, hec: HecReceiver, format: Format
) -> None:
    """One request; one envelope per alert, in order: its time, host, source, sourcetype,
    index, the alert in the sink's format as ``event``, and id/tenant/category as ``fields``."""
    batch = mixed()
    sink = make_sink(format=format, index="mail", host="collector-1", source="mc")
    assert await sink.deliver(batch) is None
    [request] = hec.event_requests
    assert [list(e) for e in request.envelopes] == [
        ["time", "host", "source", "sourcetype", "index", "event", "fields"]
    ] * len(batch)
    assert [e["event"] for e in request.envelopes] == expected(batch, format)
    for envelope, alert in zip(request.envelopes, batch, strict=True):
        assert envelope["time"] == pytest.approx(epoch(alert.time), abs=1e-6)
        assert (envelope["host"], envelope["source"], envelope["index"]) == (
            "collector-1",
            "mc",
            "mail",
        )
        assert envelope["sourcetype"] == SOURCETYPES[format]
        assert envelope["fields"] == {
            "alert_id": alert.id,
            "tenant": alert.tenant,
            "category": alert.category,
        }


async def test_defaults_name_the_machine_and_leave_the_index_to_the_token(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """Unset, ``host`` is this machine's name, ``source`` the connector's, and no ``index`` is
    sent (the token's default index applies); a set ``sourcetype`` replaces the format's."""
    await make_sink(sourcetype="mimecast:custom").deliver(clicks(1))
    [envelope] = hec.events
    assert envelope["host"] == socket.gethostname()
    assert envelope["source"] == "mimecast-connector"
    assert envelope["sourcetype"] == "mimecast:custom"
    assert "index" not in envelope


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2025-03-04T09:12:45Z", b"1741079565"),
        ("2025-03-04T09:12:45.123Z", b"1741079565.123"),
        ("2025-03-04T09:12:45.007Z", b"1741079565.007"),
        ("2025-03-04T10:12:45.5+01:00", b"1741079565.500"),
        ("2025-03-04T09:12:45", None),
        ("yesterday", None),
    ],
)
def test_the_time_is_epoch_seconds_to_the_millisecond(text: str, want: bytes | None) -> None:
    """``time`` is exact epoch seconds with milliseconds when there are any; a time without
    a zone, or no time, gives none (HEC then uses the time it got the event)."""
    assert epoch_text(text) == want
    if want is not None:
        assert float(want) == pytest.approx(epoch(text), abs=1e-9)


async def test_the_body_is_gzipped_with_the_token_and_one_channel(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """Each request is gzip (``Content-Encoding``), says ``Authorization: Splunk <token>`` and
    one ``X-Splunk-Request-Channel`` UUID for the life of the sink; another sink has its own."""
    one, two = make_sink(), make_sink()
    await one.deliver(clicks(1))
    await one.deliver(clicks(1, start=1))
    await two.deliver(clicks(1, start=2))
    first, second, third = hec.event_requests
    for request in (first, second, third):
        assert request.headers["content-encoding"] == "gzip"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["authorization"] == f"Splunk {TOKEN}"
        assert request.body[:2] == b"\x1f\x8b"
        assert gzip.decompress(request.body) == request.data
        assert uuid.UUID(request.headers["x-splunk-request-channel"])
    channels = [r.headers["x-splunk-request-channel"] for r in (first, second, third)]
    assert channels[0] == channels[1] == one.channel
    assert channels[2] == two.channel != one.channel


async def test_envelopes_are_concatenated_not_an_array(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """The body is JSON objects one after another, as HEC's event endpoint batches them."""
    await make_sink().deliver(clicks(3))
    [request] = hec.event_requests
    assert request.data is not None
    assert request.data.startswith(b'{"time":')
    assert request.data.count(b'}{"time":') == 2


async def test_an_empty_batch_sends_nothing(make_sink: MakeSink, hec: HecReceiver) -> None:
    """An empty batch is acknowledged at once, with no request."""
    assert await make_sink().deliver([]) is None
    assert hec.requests == []


# --- acknowledgement -----------------------------------------------------------------------


async def test_without_ack_the_answer_code_0_acknowledges(
    make_sink: MakeSink, hec: HecReceiver, clock: FakeClock
) -> None:
    """With ``ack = false`` HEC's ``200 {"code": 0}`` acknowledges: no ack query, no wait."""
    assert await make_sink().deliver(mixed()) is None
    assert [r.path for r in hec.requests] == [EVENT_PATH]
    assert clock.sleeps == []


async def test_with_ack_the_batch_waits_until_every_ack_id_is_true(
    make_ack_sink: MakeSink, hec_ack: HecReceiver, clock: FakeClock
) -> None:
    """``ack = true``: deliver returns only after the ack endpoint reported every request's
    ackId true (here at the third query, one poll interval apart), asked on the sink's channel."""
    hec_ack.ack_after = 3
    batch = clicks(4)
    sink = make_ack_sink(max_body_bytes=2 * 1700)
    assert await sink.deliver(batch) is None
    assert len(hec_ack.event_requests) == 2
    assert hec_ack.ack_queries == [[0, 1], [0, 1], [0, 1]]
    assert clock.sleeps == [1.0, 1.0, 1.0]
    queries = [r for r in hec_ack.requests if r.path == ACK_PATH]
    assert {r.query["channel"][0] for r in queries} == {sink.channel}
    assert alert_ids(hec_ack) == [a.id for a in batch]


async def test_a_batch_never_confirmed_is_resent_then_not_acknowledged(
    make_ack_sink: MakeSink, hec_ack: HecReceiver, clock: FakeClock
) -> None:
    """Acks that never come: after ``ack_timeout`` the request is sent again (a new ackId),
    and ``ack_timeout`` after that the batch is not acknowledged (SinkUnavailableError)."""
    hec_ack.ack_after = None
    batch = clicks(2)
    sink = make_ack_sink()
    with capture_logs() as logs, pytest.raises(SinkUnavailableError) as caught:
        await sink.deliver(batch)
    first, again = hec_ack.event_requests
    assert first.data == again.data
    assert [r.answer and r.answer["ackId"] for r in (first, again)] == [0, 1]
    assert hec_ack.ack_queries[0] == [0]
    assert hec_ack.ack_queries[-1] == [0, 1]  # the first send may still be confirmed
    assert sum(clock.sleeps) == 20.0
    assert caught.value.retryable
    assert "did not confirm 1 of 1 requests" in str(caught.value)
    assert [e["event"] for e in logs] == ["sink_resending_unconfirmed"]


async def test_only_the_unconfirmed_request_is_resent(
    make_ack_sink: MakeSink, hec_ack: HecReceiver
) -> None:
    """Of three requests, the one whose ack never comes is sent again, alone, and its resend's
    confirmation acknowledges the batch."""
    hec_ack.never_ack = {1}
    batch = clicks(3)
    assert await make_ack_sink(max_body_bytes=1700).deliver(batch) is None
    sent = hec_ack.event_requests
    assert len(sent) == 4
    assert sent[3].data == sent[1].data
    assert alert_ids(hec_ack) == [batch[0].id, batch[1].id, batch[2].id, batch[1].id]


async def test_a_late_confirmation_of_the_first_send_counts(
    make_ack_sink: MakeSink, hec_ack: HecReceiver, clock: FakeClock
) -> None:
    """A request resent after ``ack_timeout`` is done when its first ackId is confirmed, even
    if the resend's is not yet."""
    hec_ack.ack_after = 4  # id 0: true at its 4th query, 1 s after the resend
    sink = make_ack_sink(ack_timeout=3.0)
    assert await sink.deliver(clicks(1)) is None
    assert len(hec_ack.event_requests) == 2
    assert hec_ack.ack_queries == [[0], [0], [0], [0, 1]]
    assert clock.sleeps == [1.0] * 4


async def test_ack_on_a_token_without_indexer_acknowledgement_is_refused(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """``ack = true`` and an answer without ``ackId`` (the token does not acknowledge) is a
    refusal saying to enable it on the token or set ``ack = false``, not a silent success."""
    with pytest.raises(SinkRejectedError, match="indexer acknowledgement is off") as caught:
        await make_sink(ack=True).deliver(clicks(1))
    assert "`ack = false`" in str(caught.value)


async def test_an_ack_query_answered_ack_disabled_is_refused(
    make_ack_sink: MakeSink, hec_ack: HecReceiver
) -> None:
    """The ack endpoint's 400 code 14 ("ACK is disabled") is a refusal naming both fixes."""
    hec_ack.script(hec_answer(400, 14, "ACK is disabled"), path=ACK_PATH)
    with pytest.raises(SinkRejectedError) as caught:
        await make_ack_sink().deliver(clicks(1))
    assert "HTTP 400, code 14" in str(caught.value)
    assert "set `ack = false`, or enable indexer acknowledgement on the token" in str(caught.value)


async def test_a_busy_ack_endpoint_is_waited_out(
    make_ack_sink: MakeSink, hec_ack: HecReceiver, clock: FakeClock
) -> None:
    """A 503 code 9 on the ack query with ``Retry-After: 4`` is waited out, then asked again."""
    hec_ack.script(busy("4"), path=ACK_PATH)
    assert await make_ack_sink().deliver(clicks(1)) is None
    assert clock.sleeps == [1.0, 4.0]
    assert hec_ack.ack_queries == [[0]]  # the busy query was scripted, not counted


async def test_an_ack_answer_that_is_not_hec_is_refused(
    make_ack_sink: MakeSink, hec_ack: HecReceiver
) -> None:
    """A 200 from the ack endpoint that is not ``{"acks": {...}}`` is not read as a yes."""
    hec_ack.script(Answer(200, body=b"<html>welcome</html>"), path=ACK_PATH)
    with pytest.raises(SinkRejectedError, match="not HEC's"):
        await make_ack_sink().deliver(clicks(1))


async def test_many_ack_ids_are_asked_in_bounded_queries(
    make_ack_sink: MakeSink, hec_ack: HecReceiver
) -> None:
    """No ack query asks for more than the cap: five ids with a cap of two take three queries."""
    assert await make_ack_sink(max_body_bytes=1024, ack_query_max=2).deliver(clicks(5)) is None
    assert hec_ack.ack_queries == [[0, 1], [2, 3], [4]]


# --- back-pressure -------------------------------------------------------------------------


async def test_server_busy_and_429_are_waited_out(
    make_sink: MakeSink, hec: HecReceiver, clock: FakeClock
) -> None:
    """503 code 9 (a backoff wait) then 429 with ``Retry-After: 3`` (3 s), then the batch is
    taken once and acknowledged."""
    hec.script(busy(), throttled("3"))
    batch = clicks(2)
    assert await make_sink().deliver(batch) is None
    assert len(hec.requests) == 3
    backoff, hinted = clock.sleeps
    assert POLICY.floor <= backoff <= POLICY.initial
    assert hinted == 3.0
    assert alert_ids(hec) == [a.id for a in batch]


async def test_busy_with_retry_after_waits_exactly_that(
    make_sink: MakeSink, hec: HecReceiver, clock: FakeClock
) -> None:
    """503 code 9 with ``Retry-After: 7`` waits 7 s, and does not use up an attempt."""
    hec.script(*[busy("7")] * 5)
    assert await make_sink().deliver(clicks(1)) is None
    assert clock.sleeps == [7.0] * 5


async def test_a_hec_that_stays_busy_leaves_the_batch_unacknowledged(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """503 code 9 on every try: ``attempts`` requests, then a retryable SinkUnavailableError."""
    hec.script(*[busy()] * 10)
    with pytest.raises(SinkUnavailableError, match="after 4 tries \\(HTTP 503\\)"):
        await make_sink().deliver(clicks(1))
    assert len(hec.requests) == 4
    assert hec.events == []


async def test_a_dropped_connection_is_retried(
    make_sink: MakeSink, hec: HecReceiver, clock: FakeClock
) -> None:
    """HEC hanging up without an answer gets the batch again, which is then taken."""
    hec.script(HANG_UP)
    assert await make_sink().deliver(clicks(1)) is None
    assert len(hec.event_requests) == 1
    assert len(clock.sleeps) == 1


# --- refusals ------------------------------------------------------------------------------


def _refused(caught: pytest.ExceptionInfo[SinkRejectedError], hec: HecReceiver) -> str:
    assert len(hec.requests) == 1
    assert not caught.value.retryable
    assert "not retried" in str(caught.value)
    return str(caught.value)


async def test_an_invalid_token_is_refused_with_what_to_fix(
    make_sink: MakeSink, hec: HecReceiver, clock: FakeClock
) -> None:
    """A token HEC does not know: 403 code 4, refused at once, saying to check ``token``."""
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink(token=SecretStr("not-the-token")).deliver(clicks(1))
    text = _refused(caught, hec)
    assert "HTTP 403, code 4" in text
    assert "the HEC token is invalid or disabled; check `token`" in text
    assert clock.sleeps == []


async def test_a_disabled_token_is_refused(make_sink: MakeSink, hec: HecReceiver) -> None:
    """A disabled token: 403 code 1, refused, saying to enable it or use another."""
    hec.disabled = True
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink().deliver(clicks(1))
    assert "the HEC token is disabled" in _refused(caught, hec)


async def test_an_index_the_token_may_not_write_is_refused(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """400 code 7 (incorrect index) names ``index`` and the token's allowed indexes."""
    hec.allowed_indexes = {"main"}
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink(index="mail").deliver(clicks(1))
    assert "may not write to `index`" in _refused(caught, hec)


async def test_a_url_without_hec_is_refused(
    make_sink_for: Callable[..., SplunkHecSink], hec: HecReceiver
) -> None:
    """A 404 (HEC is not at that URL) says to set ``url`` to HEC's base URL."""
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink_for(hec, url=hec.url() + "/splunk").deliver(clicks(1))
    assert "no HTTP Event Collector at `url`" in _refused(caught, hec)


async def test_a_413_halves_the_request_and_lowers_the_cap(
    make_sink: MakeSink, hec: HecReceiver, clock: FakeClock
) -> None:
    """HEC's limit below ``max_body_bytes`` (Splunk's max_content_length, a proxy's): the
    refused request goes again in halves, no wait, every alert once in order; a warning says to
    lower ``max_body_bytes``, and the next batch fits at once."""
    hec.max_content_length = 4000
    sink = make_sink()
    with capture_logs() as logs:
        assert await sink.deliver(clicks(6)) is None
    refused = [r for r in hec.requests if r not in hec.event_requests]
    assert refused  # 10 KB, then halves of 5 KB
    assert all(r.data is None for r in refused)  # refused before it was read
    assert alert_ids(hec) == [a.id for a in clicks(6)]
    assert clock.sleeps == []
    warnings = [e for e in logs if e["event"] == "sink_body_too_large"]
    assert all("lower max_body_bytes" in w["advice"] for w in warnings)
    assert warnings[-1]["max_body_bytes"] <= hec.max_content_length  # the cap for the run
    before = len(hec.requests)
    assert await sink.deliver(clicks(6, start=6)) is None
    assert all(r in hec.event_requests for r in hec.requests[before:])
    assert alert_ids(hec)[6:] == [a.id for a in clicks(6, start=6)]


async def test_one_alert_over_hecs_limit_is_sent_shortened(
    make_ack_sink: MakeSink, hec_ack: HecReceiver
) -> None:
    """An alert that alone gets 413 (a 300,000-character URL; HEC takes 64 KB) goes again
    shortened to half the refused size until HEC takes it: its id, the URL cut and marked, the
    record a note of its size; the alerts beside it whole; with ``ack = true`` each request
    HEC took is confirmed, the split ones included."""
    huge = msgspec.structs.replace(clicks(1)[0], url="https://evil.example/" + "u" * 300_000)
    batch = [*clicks(2, start=1), huge]
    hec_ack.max_content_length = 64_000
    with capture_logs() as logs:
        assert await make_ack_sink().deliver(batch) is None
    assert sorted(alert_ids(hec_ack)) == sorted(a.id for a in batch)
    [event] = [e["event"] for e in hec_ack.events if e["fields"]["alert_id"] == huge.id]
    assert event["id"] == huge.id
    assert event["url"].startswith("https://evil.example/uuu")
    assert event["url"].endswith(TRUNCATED)
    assert event["raw"] == {"truncated": True, "bytes": len(huge.raw)}
    others = [e["event"] for e in hec_ack.events if e["fields"]["alert_id"] != huge.id]
    assert [e["url"] for e in others] == [a.url for a in batch[:2]]
    asked = {i for query in hec_ack.ack_queries for i in query}
    taken = [r for r in hec_ack.event_requests if r.answer and r.answer.get("code") == 0]
    assert asked == {r.answer["ackId"] for r in taken if r.answer}
    shortened = [e for e in logs if e["event"] == "alert_shortened"]
    assert shortened
    assert {e["alert"] for e in shortened} == {huge.id}
    assert "uuuu" not in repr(logs)


async def test_an_alert_over_hecs_limit_even_shortened_is_refused(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """HEC takes 300 bytes: even the alert's own fields are over, so a refusal naming the
    alert and HEC's limit (not dropped, not sent again for ever)."""
    batch = clicks(1)
    hec.max_content_length = 300
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink().deliver(batch)
    text = str(caught.value)
    assert f"alert {batch[0].id} is" in text
    assert "max_content_length" in text
    assert len(hec.requests) < 20
    assert alert_ids(hec) == []


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (hec_answer(401, 2, "Token is required"), "HEC got no token; set `token`"),
        (hec_answer(401, 3, "Invalid authorization"), "set `token` to the token value alone"),
        (hec_answer(400, 6, "Invalid data format", **{"invalid-event-number": 2}), "event 2"),
        (hec_answer(400, 10, "Data channel is missing"), "wants a data channel"),
        (Answer(403), "the HEC token is invalid or disabled"),
        (Answer(400, body=b"Bad Request"), "HTTP 400)"),
    ],
)
async def test_each_hec_refusal_says_what_it_means(
    make_sink: MakeSink, hec: HecReceiver, answer: Answer, words: str
) -> None:
    """HEC's 4xx codes map to a refusal that names the code and what to do; an answer
    without a code is still refused, by its status."""
    hec.script(answer)
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink().deliver(clicks(1))
    assert words in _refused(caught, hec)


async def test_a_200_that_is_not_hec_is_refused(make_sink: MakeSink, hec: HecReceiver) -> None:
    """A 200 without HEC's ``{"code": 0}`` (a proxy's page) does not acknowledge the batch."""
    hec.script(Answer(200, body=b"<html>ok</html>"))
    with pytest.raises(SinkRejectedError, match="not HEC's"):
        await make_sink().deliver(clicks(1))


# --- splitting -----------------------------------------------------------------------------


async def test_a_large_batch_is_split_under_max_body_bytes(
    make_sink: MakeSink, hec: HecReceiver
) -> None:
    """Over ``max_body_bytes`` (before compression) a batch goes as several requests, each
    within the cap (and within a HEC whose limit is the cap), every alert once, in order."""
    batch = clicks(10)
    cap = 3 * 1670 + 100
    hec.max_content_length = cap
    assert await make_sink(max_body_bytes=cap).deliver(batch) is None
    sent = hec.event_requests
    assert len(sent) >= 4
    for request in sent:
        assert request.data is not None
        assert len(request.data) <= cap
        assert len(request.body) < len(request.data)
    assert alert_ids(hec) == [a.id for a in batch]


async def test_an_alert_over_the_cap_is_sent_alone(make_sink: MakeSink, hec: HecReceiver) -> None:
    """Alerts each larger than ``max_body_bytes`` go one per request, none dropped."""
    batch = clicks(2)
    assert await make_sink(max_body_bytes=1024).deliver(batch) is None
    assert [[e["fields"]["alert_id"] for e in r.envelopes] for r in hec.event_requests] == [
        [batch[0].id],
        [batch[1].id],
    ]


# --- secrets -------------------------------------------------------------------------------


def echo(status: int, code: int) -> Answer:
    """An answer quoting the token back, as a careless proxy might."""
    answer = hec_answer(status, code, f"you sent Splunk {TOKEN}")
    return Answer(status, {**answer.headers, "X-Echo": TOKEN}, answer.body)


async def test_the_token_never_reaches_names_reprs_errors_or_logs(
    make_sink_for: Callable[..., SplunkHecSink], hec_ack: HecReceiver
) -> None:
    """The canary token reaches HEC, but no name, repr, error, traceback or log line, even
    when HEC's answers quote it back."""
    sink = make_sink_for(
        hec_ack,
        ack=True,
        ack_timeout=2.0,
        ack_poll_interval=1.0,
        retry=RetryPolicy(attempts=2, deadline=60.0),
    )
    errors: list[SinkError] = []
    with capture_logs() as logs:
        hec_ack.script(echo(503, 9), echo(403, 4))
        hec_ack.ack_after = None
        for _ in range(2):
            with pytest.raises(SinkError) as caught:
                await sink.deliver(mixed())
            errors.append(caught.value)
        hec_ack.script(echo(503, 9), echo(503, 9), path=ACK_PATH)
        hec_ack.ack_after = 1
        with pytest.raises(SinkError) as caught:
            await sink.deliver(mixed())
        errors.append(caught.value)
    assert [type(e) for e in errors] == [
        SinkRejectedError,
        SinkUnavailableError,
        SinkUnavailableError,
    ]
    assert logs
    assert hec_ack.requests[0].headers["authorization"] == f"Splunk {TOKEN}"
    settings = SplunkHecSinkConfig(type="splunk_hec", url=hec_ack.url(), token=TOKEN)
    texts = [sink.name, repr(sink), repr(logs), repr(settings), str(settings)]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert [t for t in texts if TOKEN in t] == []


def test_a_bad_token_value_is_refused_without_showing_it() -> None:
    """A token with a space in it is refused, and the error does not repeat it."""
    with pytest.raises(ValidationError) as caught:
        SplunkHecSinkConfig(
            type="splunk_hec", url="https://splunk.example.com:8088", token=f"{TOKEN} x"
        )
    assert TOKEN not in str(caught.value)
    assert "visible ASCII without spaces" in str(caught.value)


# --- settings ------------------------------------------------------------------------------

TOML = """
[[tenants]]
name = "acme"
client_id = "i"
client_secret = "s"

[[sinks]]
type = "splunk_hec"
url = "https://splunk.example.com:8088"
token = "env:HEC_TOKEN"
"""


def _config(tmp_path: Path, extra: str = "", environ: dict[str, str] | None = None) -> Any:
    path = tmp_path / "c.toml"
    path.write_text(TOML + extra)
    return load_config(path, environ={"HEC_TOKEN": TOKEN} if environ is None else environ)


def test_a_sinks_table_loads_with_its_defaults(tmp_path: Path) -> None:
    """``type = "splunk_hec"`` loads with the documented defaults, the token resolved and
    listed for redaction, and builds a SplunkHecSink."""
    config = _config(tmp_path)
    [settings] = config.sinks
    assert isinstance(settings, SplunkHecSinkConfig)
    assert settings.token.get_secret_value() == TOKEN
    assert settings.model_dump(exclude={"type", "url", "token"}) == {
        "format": "native",
        "index": None,
        "source": "mimecast-connector",
        "sourcetype": None,
        "host": None,
        "ack": False,
        "ack_timeout": 300.0,
        "ack_poll_interval": 2.0,
        "max_body_bytes": 1_000_000,
        "verify_tls": True,
    }
    assert settings.secrets() == [TOKEN]
    assert isinstance(build_sink(settings), SplunkHecSink)


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://splunk.example.com:8088", "https://splunk.example.com:8088"),
        ("https://splunk.example.com:8088/", "https://splunk.example.com:8088"),
        ("https://splunk.example.com:8088/services/collector", "https://splunk.example.com:8088"),
        (
            "https://splunk.example.com:8088/services/collector/event",
            "https://splunk.example.com:8088",
        ),
        ("https://proxy.example.com/splunk/", "https://proxy.example.com/splunk"),
        ("http://127.0.0.1:8088", "http://127.0.0.1:8088"),
    ],
)
def test_the_url_is_hecs_base_url(url: str, base: str) -> None:
    """``url`` is HEC's base URL; a trailing ``/services/collector[/event]`` is taken off."""
    settings = SplunkHecSinkConfig(type="splunk_hec", url=url, token=TOKEN)
    assert settings.url == base


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://splunk.example.com:8088", "must use https"),
        ("https://splunk.example.com:8088/?token=abc", "must not have a query"),
        ("https://splunk.example.com:8088/services/collector/raw", "HEC's base URL"),
        ("https://user:pw@splunk.example.com:8088", "user:password@"),
    ],
)
def test_a_url_that_is_not_a_base_url_is_refused(url: str, words: str) -> None:
    """Plain http off loopback, a query (tokens go in ``token``), the raw endpoint and user
    info are refused, each saying why."""
    with pytest.raises(ValidationError, match=words):
        SplunkHecSinkConfig(type="splunk_hec", url=url, token=TOKEN)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"ack_timeout": 0}, "greater than or equal to 1"),
        ({"ack_timeout": "2h"}, "less than or equal to 3600"),
        ({"ack_timeout": True}, "must be a duration"),
        ({"ack_timeout": "soon"}, "is not a duration"),
        ({"ack_timeout": 5, "ack_poll_interval": 5}, "shorter than ack_timeout"),
        ({"max_body_bytes": 100}, "greater than or equal to 1024"),
        ({"format": "cef"}, "'native', 'ocsf' or 'ecs'"),
        ({"index": "Main"}, "a Splunk index name"),
        ({"index": "_internal"}, "a Splunk index name"),
        ({"sourcetype": ""}, "must not be empty"),
        ({"host": "a\nb"}, "control characters"),
        ({"verify_tls": "a\x00b"}, "NUL"),
        ({"verify_tls": "false"}, "without quotes"),
        ({"colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_settings_out_of_bounds_are_refused(settings: dict[str, Any], words: str) -> None:
    """Durations within bounds (text or seconds, never a boolean), a poll shorter than the
    timeout, a body cap of 1 KiB at least, a JSON format, a Splunk index name, one-line labels,
    ``verify_tls`` a boolean or a path (not "false" in quotes), no unknown key."""
    with pytest.raises(ValidationError, match=words):
        SplunkHecSinkConfig(
            type="splunk_hec", url="https://splunk.example.com:8088", token=TOKEN, **settings
        )


def test_durations_read_as_text_and_a_splunk_prefix_is_dropped() -> None:
    """``ack_timeout = "5m"`` is 300 s, ``ack_poll_interval = "500ms"`` 0.5 s, and a token
    pasted as ``Splunk <token>`` keeps only the token."""
    settings = SplunkHecSinkConfig(
        type="splunk_hec",
        url="https://splunk.example.com:8088",
        token=f"Splunk {TOKEN}",
        ack_timeout="5m",
        ack_poll_interval="500ms",
    )
    assert (settings.ack_timeout, settings.ack_poll_interval) == (300.0, 0.5)
    assert settings.token.get_secret_value() == TOKEN


def test_a_missing_token_names_the_key(tmp_path: Path) -> None:
    """An unset ``env:`` token is a configuration error at its key, not at start."""
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.token: environment variable HEC_TOKEN"):
        _config(tmp_path, environ={})


def test_a_relative_ca_file_is_relative_to_the_configuration(tmp_path: Path) -> None:
    """``verify_tls = "ca.pem"`` means the file beside the configuration, not the cwd."""
    config = _config(tmp_path, 'verify_tls = "certs/ca.pem"\n')
    assert config.sinks[0].verify_tls == str(tmp_path / "certs" / "ca.pem")


async def test_a_ca_file_that_cannot_be_read_stops_the_sink_at_start(tmp_path: Path) -> None:
    """A ``verify_tls`` CA file that is missing (or not PEM) is a refusal at start, naming the
    key; nothing is sent."""
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    for name in ("missing.pem", "bad.pem"):
        sink = SplunkHecSink(
            "https://127.0.0.1:9", SecretStr(TOKEN), verify_tls=str(tmp_path / name)
        )
        with pytest.raises(SinkRejectedError, match="the CA file of `verify_tls`"):
            await sink.start(None)
        with pytest.raises(SinkRejectedError, match="the CA file of `verify_tls`"):
            await sink.deliver(clicks(1))
        await sink.aclose()


async def test_verify_tls_trusts_the_ca_file_given(
    tls_files: tuple[Path, ssl.SSLContext],
    make_sink_for: Callable[..., SplunkHecSink],
    clock: FakeClock,
) -> None:
    """Over HTTPS, a HEC certificate signed by the ``verify_tls`` CA is trusted; the system's
    CAs do not trust it, so the default refuses the batch at once (retrying cannot change a
    certificate; the run stops, as for syslog over TLS) and says what to do."""
    ca, context = tls_files
    server = HecReceiver(TOKEN, tls=context)
    server.start()
    try:
        trusting = make_sink_for(server, verify_tls=str(ca))
        await trusting.start(None)
        assert await trusting.deliver(clicks(1)) is None
        assert len(server.event_requests) == 1
        default = make_sink_for(server, retry=RetryPolicy(attempts=5, deadline=60.0))
        with pytest.raises(SinkRejectedError) as refused:
            await default.deliver(clicks(1))
        message = str(refused.value)
        for words in ("certificate of HEC failed verification", "`verify_tls`", "restart"):
            assert words in message, message
        assert clock.sleeps == []  # no backoff: one try
        assert len(server.event_requests) == 1
    finally:
        server.stop()


async def test_a_sink_with_no_ca_setting_says_to_fix_the_certificate(
    tls_files: tuple[Path, ssl.SSLContext], clock: FakeClock
) -> None:
    """The rule is the HTTP sinks' own (``sinks._http``): a sink with no CA setting (sentinel,
    whose receiver is Azure) to a server whose certificate its CAs do not trust is refused at
    once, and the message says where its trust comes from instead of naming a key it does not
    have."""
    _, context = tls_files
    server = HecReceiver(TOKEN, tls=context)
    server.start()
    sender = HttpSender("sentinel:test", retry=POLICY, clock=clock, peer="Azure Monitor")
    try:
        with pytest.raises(SinkRejectedError) as refused:
            await sender.send("POST", f"{server.url()}/hook", body=b"[]", headers={})
    finally:
        await sender.aclose()
        server.stop()
    message = str(refused.value)
    assert "certificate of Azure Monitor failed verification" in message, message
    assert "certifi's bundle" in message, message
    assert "verify_tls" not in message, message
    assert clock.sleeps == []
