"""The webhook sink against a scripted receiver on loopback: the request, retries, refusals,
splitting, redirects, and secrets. Retry waits run on a FakeClock, so none of them is slept."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import random
import ssl
import time
import traceback
from base64 import b64encode
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from mimecast_connector._errors import SinkError, SinkRejectedError, SinkUnavailableError
from mimecast_connector.alerts import ARRAY_ENCODERS, TRUNCATED, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.config import load_config
from mimecast_connector.sinks import WebhookSink, retry_after, signature
from mimecast_connector.sinks._webhook import WebhookSinkConfig
from tests.fakes import FakeClock
from tests.sinks.helpers import clicks, expected, mixed
from tests.sinks.receiver import HANG_UP, Answer, Receiver

SECRET = "CANARY-webhook-hmac-secret-41c7"
POLICY = RetryPolicy(attempts=4, deadline=60.0, initial=0.5, maximum=30.0, floor=0.05)

MakeSink = Callable[..., WebhookSink]


@pytest.fixture
async def make_sink(receiver: Receiver, clock: FakeClock) -> AsyncIterator[MakeSink]:
    """Builds sinks posting to ``receiver`` at ``/hook`` on the test's FakeClock; closes them."""
    made: list[WebhookSink] = []

    def make(**kwargs: Any) -> WebhookSink:
        settings: dict[str, Any] = {
            "url": receiver.url(),
            "retry": POLICY,
            "clock": clock,
            "rng": random.Random(7),
            **kwargs,
        }
        sink = WebhookSink(**settings)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def ids_in(body: bytes) -> list[str]:
    return [alert["id"] for alert in json.loads(body)]


def hmac_hex(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of ``body``, computed here rather than by the code under test."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["native", "ocsf"])
async def test_the_body_is_one_json_array_of_the_batch(
    make_sink: MakeSink, receiver: Receiver, format: Format
) -> None:
    """One POST to the configured path whose body is the batch, in order, in the sink's format."""
    batch = mixed()
    assert await make_sink(format=format).deliver(batch) is None
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert json.loads(request.body) == expected(batch, format)


async def test_batches_share_one_keep_alive_connection(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """Five batches answered with a body travel on one connection: the answer is read, so its connection is reused."""
    receiver.script(*(Answer(200, body=b'{"ok": true}') for _ in range(5)))
    sink = make_sink()
    for _ in range(5):
        await sink.deliver(clicks(1))
    assert len(receiver.requests) == 5
    assert receiver.connections == 1


async def test_the_content_type_is_json(make_sink: MakeSink, receiver: Receiver) -> None:
    """The request says ``Content-Type: application/json``."""
    await make_sink().deliver(clicks(1))
    assert receiver.requests[0].headers["content-type"] == "application/json"


async def test_the_signature_is_the_hmac_of_the_exact_body(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """``X-Signature-256`` is ``sha256=`` + hex HMAC-SHA256 of the bytes received, keyed by the secret."""
    await make_sink(secret=SecretStr(SECRET)).deliver(mixed())
    [request] = receiver.requests
    sent = request.headers["x-signature-256"]
    assert sent.startswith("sha256=")
    assert hmac.compare_digest(sent.removeprefix("sha256="), hmac_hex(SECRET, request.body))
    assert signature(SECRET, request.body) == sent


async def test_there_is_no_signature_without_a_secret(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """A sink with no secret sends no ``X-Signature-256`` header at all."""
    await make_sink().deliver(clicks(1))
    assert "x-signature-256" not in receiver.requests[0].headers


async def test_configured_headers_are_sent(make_sink: MakeSink, receiver: Receiver) -> None:
    """Every configured header arrives with its secret value revealed, on every request."""
    headers = {"Authorization": SecretStr("Bearer t0ken"), "X-Tenant": SecretStr("blue")}
    receiver.script(500)
    await make_sink(headers=headers).deliver(clicks(1))
    assert len(receiver.requests) == 2
    for request in receiver.requests:
        assert request.headers["authorization"] == "Bearer t0ken"
        assert request.headers["x-tenant"] == "blue"


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 408])
async def test_a_transient_status_is_retried_then_acknowledged(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock, status: int
) -> None:
    """A 5xx or 408 is retried after one backoff wait within the policy's first step, then acked."""
    receiver.script(status)
    with capture_logs() as logs:
        assert await make_sink(secret=SecretStr(SECRET)).deliver(mixed()) is None
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["x-signature-256"] == second.headers["x-signature-256"]
    [wait] = clock.sleeps
    assert POLICY.floor <= wait <= POLICY.initial
    assert [(e["event"], e["problem"]) for e in logs] == [("sink_retrying", f"HTTP {status}")]


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_in_seconds_is_waited_out(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock, status: int
) -> None:
    """A 429 (or 503) with ``Retry-After: 3`` waits exactly 3 s, then the batch is acknowledged."""
    receiver.script(Answer(status, {"Retry-After": "3"}))
    assert await make_sink().deliver(clicks(1)) is None
    assert clock.sleeps == [3.0]
    assert len(receiver.requests) == 2


async def test_retry_after_as_an_http_date_is_waited_out(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """A ``Retry-After`` HTTP date 30 s ahead waits about 30 s (whole seconds), not a backoff."""
    clock = FakeClock(start=time.time())
    when = datetime.fromtimestamp(int(time.time()) + 30, UTC)
    receiver.script(Answer(429, {"Retry-After": email.utils.format_datetime(when, usegmt=True)}))
    assert await make_sink(clock=clock).deliver(clicks(1)) is None
    [wait] = clock.sleeps
    assert 28.5 <= wait <= 30.0


async def test_retry_after_as_an_http_date_is_measured_on_the_injected_clock(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """A ``Retry-After`` date 30 s after the sink's clock's ``time()`` waits 30 s."""
    when = datetime.fromtimestamp(clock.time() + 30, UTC)
    receiver.script(Answer(429, {"Retry-After": email.utils.format_datetime(when, usegmt=True)}))
    await make_sink().deliver(clicks(1))
    assert clock.sleeps == [30.0]


async def test_a_malformed_retry_after_falls_back_to_backoff(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """A ``Retry-After`` that is no number and no date (here ``²``) means a backoff wait, not a crash."""
    receiver.script(Answer(429, {"Retry-After": "\u00b2"}))
    assert await make_sink().deliver(clicks(1)) is None
    [wait] = clock.sleeps
    assert POLICY.floor <= wait <= POLICY.initial


async def test_a_retry_after_beyond_the_deadline_gives_up_without_waiting(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """A ``Retry-After`` longer than the deadline left fails the batch at once, unslept."""
    receiver.script(Answer(429, {"Retry-After": "120"}))
    with pytest.raises(SinkUnavailableError, match="after 1 tries \\(HTTP 429\\)"):
        await make_sink(retry=RetryPolicy(attempts=5, deadline=60.0)).deliver(clicks(1))
    assert clock.sleeps == []
    assert len(receiver.requests) == 1


async def test_waiting_out_429s_does_not_use_attempts(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """With ``attempts=2``, three 429s with ``Retry-After: 1`` inside the deadline end in an ack."""
    receiver.script(*[Answer(429, {"Retry-After": "1"})] * 3)
    await make_sink(retry=RetryPolicy(attempts=2, deadline=60.0)).deliver(clicks(1))
    assert clock.sleeps == [1.0, 1.0, 1.0]


async def test_a_persistent_503_is_unavailable_after_the_attempts(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """503 on every try: ``attempts`` requests, growing but capped waits between, then a retryable error."""
    policy = RetryPolicy(attempts=4, deadline=60.0, initial=0.5, maximum=1.0, floor=0.05)
    receiver.script(*[503] * 10)
    sink = make_sink(retry=policy)
    with pytest.raises(SinkUnavailableError) as caught:
        await sink.deliver(clicks(1))
    assert len(receiver.requests) == 4
    assert len(clock.sleeps) == 3
    for n, wait in enumerate(clock.sleeps, start=1):
        assert policy.floor <= wait <= min(policy.maximum, policy.initial * 2 ** (n - 1))
    assert caught.value.retryable
    assert caught.value.sink == sink.name
    assert "not acknowledged after 4 tries (HTTP 503)" in str(caught.value)


async def test_the_deadline_bounds_the_total_wait(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """With many attempts allowed, retries stop before the waits would pass the deadline."""
    policy = RetryPolicy(attempts=100, deadline=3.0, initial=1.0, maximum=1.0, floor=1.0)
    receiver.script(*[500] * 10)
    with pytest.raises(SinkUnavailableError):
        await make_sink(retry=policy).deliver(clicks(1))
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert len(receiver.requests) == 4


async def test_a_connection_closed_without_answer_is_retried(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """A receiver that hangs up without answering gets the batch again, which is then acked."""
    receiver.script(HANG_UP)
    assert await make_sink().deliver(clicks(1)) is None
    assert len(receiver.requests) == 2
    assert len(clock.sleeps) == 1


async def test_hang_ups_on_every_try_are_unavailable(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """Hang-ups on every try end in a retryable error that names the transport problem."""
    receiver.script(*[HANG_UP] * 4)
    with pytest.raises(SinkUnavailableError, match="after 4 tries \\(RemoteProtocolError\\)"):
        await make_sink().deliver(clicks(1))
    assert len(receiver.requests) == 4


async def test_an_answer_slower_than_the_timeout_is_retried(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock
) -> None:
    """An answer that comes after the read timeout counts as a failure; the retry is acked."""
    receiver.script(Answer(200, delay=5.0))
    started = time.monotonic()
    assert await make_sink(timeout=httpx.Timeout(0.25)).deliver(clicks(1)) is None
    assert time.monotonic() - started < 3.0
    assert len(receiver.requests) == 2
    assert len(clock.sleeps) == 1


# --- refusals and redirects ----------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_a_refusal_is_not_retried(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock, status: int
) -> None:
    """A 4xx other than 408/429 (and 413, below) is a SinkRejectedError at once: one request, no wait, status named."""
    receiver.script(status)
    sink = make_sink()
    with pytest.raises(SinkRejectedError) as caught:
        await sink.deliver(clicks(1))
    assert len(receiver.requests) == 1
    assert clock.sleeps == []
    assert not caught.value.retryable
    assert caught.value.sink == sink.name
    assert f"HTTP {status}" in str(caught.value)
    assert "not retried" in str(caught.value)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirect_is_not_followed_but_refused(
    make_sink: MakeSink, receiver: Receiver, clock: FakeClock, status: int
) -> None:
    """A redirect is not followed: nothing goes to its Location, and the batch is refused, unretried."""
    receiver.script(Answer(status, {"Location": receiver.url("/elsewhere")}))
    with pytest.raises(SinkRejectedError, match=f"HTTP {status}"):
        await make_sink().deliver(clicks(1))
    assert [r.path for r in receiver.requests] == ["/hook"]
    assert clock.sleeps == []


async def test_a_2xx_is_acknowledged_whatever_its_body(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """A 200 whose body does not match its Content-Encoding still acknowledges the batch."""
    receiver.script(Answer(200, {"Content-Encoding": "gzip"}, b"not gzip"))
    assert await make_sink().deliver(clicks(1)) is None
    assert len(receiver.requests) == 1


# --- splitting -----------------------------------------------------------------------------


async def test_a_large_batch_is_split_under_the_cap(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """A batch over ``max_body_bytes`` goes as several signed arrays, each within the cap, in order."""
    batch = clicks(10)
    cap = 3 * len(ARRAY_ENCODERS["native"](batch[:1])) + 2
    assert await make_sink(secret=SecretStr(SECRET), max_body_bytes=cap).deliver(batch) is None
    assert len(receiver.requests) >= 4
    for request in receiver.requests:
        assert len(request.body) <= cap
        assert request.headers["x-signature-256"] == "sha256=" + hmac_hex(SECRET, request.body)
    assert [i for r in receiver.requests for i in ids_in(r.body)] == [a.id for a in batch]


async def test_an_alert_over_the_cap_is_sent_alone(make_sink: MakeSink, receiver: Receiver) -> None:
    """Alerts each larger than ``max_body_bytes`` are sent one per request, none dropped."""
    batch = clicks(2)
    assert await make_sink(max_body_bytes=100).deliver(batch) is None
    assert [ids_in(r.body) for r in receiver.requests] == [[batch[0].id], [batch[1].id]]


async def test_a_413_halves_the_body_and_lowers_the_cap(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """A receiver behind a proxy that takes less than ``max_body_bytes`` answers 413: the body is
    halved, each half signed and sent, and later bodies of the run stay under the lowered cap
    (a warning says to lower ``max_body_bytes``); every alert once, in order."""
    batch = clicks(8)
    sink = make_sink(secret=SecretStr(SECRET))
    receiver.script(413)
    with capture_logs() as logs:
        assert await sink.deliver(batch) is None
        assert await sink.deliver(clicks(8, start=8)) is None
    first = len(receiver.requests[0].body)
    accepted = receiver.requests[1:]
    assert [i for r in accepted for i in ids_in(r.body)] == [
        *[a.id for a in batch],
        *[a.id for a in clicks(8, start=8)],
    ]
    assert all(len(r.body) <= first // 2 for r in accepted)
    for request in receiver.requests:
        assert request.headers["x-signature-256"] == "sha256=" + hmac_hex(SECRET, request.body)
    [log] = [entry for entry in logs if entry["event"] == "sink_body_too_large"]
    assert log["max_body_bytes"] == first // 2


async def test_one_alert_refused_alone_with_413_is_sent_shortened(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """An alert that alone gets 413 (a 300,000-character URL) goes again shortened to half the
    refused size, marked, its record a note of its size; refused again, to half of that."""
    alert = msgspec.structs.replace(clicks(1)[0], url="https://evil.example/" + "u" * 300_000)
    receiver.script(413, 413)
    assert await make_sink().deliver([alert]) is None
    sizes = [len(r.body) for r in receiver.requests]
    assert len(sizes) == 3
    assert sizes[1] <= sizes[0] // 2
    assert sizes[2] <= sizes[1] // 2
    [got] = json.loads(receiver.requests[2].body)
    assert got["id"] == alert.id
    assert got["url"].endswith(TRUNCATED)
    assert got["raw"] == {"truncated": True, "bytes": len(alert.raw)}


async def test_an_alert_the_receiver_refuses_even_shortened_stops_the_sink(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """A receiver that answers 413 to every body: the alert is shortened until even its own
    fields are too long, then the batch is refused naming the alert (not dropped, not sent
    again for ever)."""
    batch = clicks(1)
    receiver.script(*[413] * 40)
    with pytest.raises(SinkRejectedError, match=f"alert {batch[0].id} is .*HTTP 413"):
        await make_sink().deliver(batch)
    assert len(receiver.requests) < 20


# --- secrets -------------------------------------------------------------------------------

CANARY_SECRET = "CANARY-hmac-3e8f1a"
CANARY_HEADER = "CANARY-api-key-9b2d04"
CANARY_QUERY = "CANARY-query-token-77ac"
CANARY_USER = "CANARY-userinfo-pass-c0de"
CANARIES = (CANARY_SECRET, CANARY_HEADER, CANARY_QUERY, CANARY_USER)


def echo(status: int) -> Answer:
    """An answer quoting every canary back, as a careless or hostile receiver might."""
    words = " ".join(CANARIES)
    return Answer(status, {"X-Echo": words}, f'{{"error": "you sent {words}"}}'.encode())


async def test_no_secret_reaches_errors_reprs_or_logs(
    make_sink: MakeSink, receiver: Receiver
) -> None:
    """Canary secret, header and URL credentials reach the receiver, but no name, repr, error or log."""
    url = f"http://user:{CANARY_USER}@127.0.0.1:{receiver.port}/hook?token={CANARY_QUERY}"
    sink = make_sink(
        url=url,
        secret=SecretStr(CANARY_SECRET),
        headers={"X-Api-Key": SecretStr(CANARY_HEADER)},
        retry=RetryPolicy(attempts=2, deadline=60.0),
    )
    receiver.script(echo(503), echo(400), *[HANG_UP] * 2)
    errors: list[SinkError] = []
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(SinkError) as caught:
                await sink.deliver(mixed())
            errors.append(caught.value)
    assert [type(e) for e in errors] == [SinkRejectedError, SinkUnavailableError]
    assert logs  # the retries were logged
    # The canaries were really in play: the receiver got them.
    first = receiver.requests[0]
    assert first.headers["x-api-key"] == CANARY_HEADER
    assert first.headers["x-signature-256"] == signature(CANARY_SECRET, first.body)
    assert CANARY_QUERY in first.path
    assert (
        first.headers["authorization"]
        == "Basic " + b64encode(f"user:{CANARY_USER}".encode()).decode()
    )
    texts = [sink.name, repr(sink), repr(logs)]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    leaks = [(c, t) for c in CANARIES for t in texts if c in t]
    assert leaks == []


# --- retry_after ---------------------------------------------------------------------------

NOW = 1_764_000_000.0


def http_date(seconds_from_now: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(NOW + seconds_from_now, UTC), True)


@pytest.mark.parametrize(
    ("value", "wait"),
    [
        (None, 7.0),
        ("3", 3.0),
        (" 3 ", 3.0),
        ("301", 300.0),
        ("1.5", 7.0),
        ("-5", 7.0),
        ("soon", 7.0),
        ("", 7.0),
        (http_date(45), 45.0),
        (http_date(-45), 0.0),
        (http_date(3600), 300.0),
    ],
)
def test_retry_after_reads_seconds_or_a_date_capped_at_300(value: str | None, wait: float) -> None:
    """``retry_after`` takes delta seconds or an HTTP date, caps at 300 s, else the default."""
    assert retry_after(value, NOW, 7.0) == wait


async def test_verify_tls_trusts_the_ca_file_given(
    tls_files: tuple[Path, ssl.SSLContext], clock: FakeClock
) -> None:
    """A receiver whose certificate a private CA signed (an in-house SOAR): trusted through
    ``verify_tls`` = that CA's file; with the default (certifi's public CAs) the batch is
    refused at once, naming the setting, and nothing arrives."""
    ca, context = tls_files
    server = Receiver(tls=context)
    server.start()
    try:
        trusting = WebhookSink(server.url(), verify_tls=str(ca), retry=POLICY, clock=clock)
        await trusting.start(None)
        assert await trusting.deliver(clicks(2)) is None
        await trusting.aclose()
        default = WebhookSink(server.url(), retry=POLICY, clock=clock)
        with pytest.raises(SinkRejectedError, match=r"failed verification .*`verify_tls`"):
            await default.deliver(clicks(1, start=2))
        await default.aclose()
    finally:
        server.stop()
    assert server.url().startswith("https://")
    assert [len(json.loads(r.body)) for r in server.requests] == [2]
    assert clock.sleeps == []


async def test_a_ca_file_that_cannot_be_used_stops_the_webhook_at_start(tmp_path: Path) -> None:
    """A ``verify_tls`` file that is missing or not PEM: refused at start, naming the setting."""
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    for name in ("missing.pem", "bad.pem"):
        sink = WebhookSink("https://127.0.0.1:9/hook", verify_tls=str(tmp_path / name))
        with pytest.raises(SinkRejectedError, match="the CA file of `verify_tls`"):
            await sink.start(None)
        await sink.aclose()


def test_verify_tls_is_read_relative_to_the_configuration(tmp_path: Path) -> None:
    """``verify_tls = "certs/ca.pem"`` is the file beside the configuration, not the cwd's."""
    path = tmp_path / "config.toml"
    path.write_text(
        '[[tenants]]\nname = "acme"\nclient_id = "id"\nclient_secret = "secret-123456"\n\n'
        '[[sinks]]\ntype = "webhook"\nurl = "https://soar.example.com/hook"\n'
        'verify_tls = "certs/ca.pem"\n',
        "utf-8",
    )
    sink = load_config(path, {}).sinks[0]
    assert isinstance(sink, WebhookSinkConfig)
    assert sink.verify_tls == str(tmp_path / "certs" / "ca.pem")
