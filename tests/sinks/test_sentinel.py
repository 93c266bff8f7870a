"""The sentinel sink against the fake Entra ID and Logs Ingestion endpoints on loopback: the
request, the token's life, the answers, the 1 MB cut, at least once, secrets, and settings.
Retry waits and token lifetimes run on a FakeClock, so nothing is slept."""

from __future__ import annotations

import gzip
import json
import random
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from mimecast_connector._errors import SinkError, SinkRejectedError, SinkUnavailableError
from mimecast_connector.alerts import ARRAY_ENCODERS, TRUNCATED, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.config import load_config
from mimecast_connector.sinks import make_sink as build_sink
from mimecast_connector.sinks._sentinel import (
    API_LIMIT,
    DEFAULT_MAX_BODY,
    SentinelSink,
    SentinelSinkConfig,
)
from tests.fakes import FakeClock
from tests.sinks.azure_receiver import (
    CLIENT_ID,
    DCR,
    SCOPE,
    STREAM,
    TENANT,
    THROUGH,
    AzureReceiver,
)
from tests.sinks.helpers import clicks, expected, mixed
from tests.sinks.receiver import HANG_UP, Answer

SECRET = "CANARY-sentinel-client-secret-6b1f"
POLICY = RetryPolicy(attempts=4, deadline=60.0, initial=0.5, maximum=30.0, floor=0.05)
INGEST_PATH = f"/dataCollectionRules/{DCR}/streams/{STREAM}?api-version=2023-01-01"

MakeSink = Callable[..., SentinelSink]


@pytest.fixture
def azure(clock: FakeClock) -> Iterator[AzureReceiver]:
    """The fake Entra ID and Logs Ingestion endpoints, on the test's FakeClock."""
    server = AzureReceiver(clock, client_secret=SECRET)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def make_sink(azure: AzureReceiver, clock: FakeClock) -> AsyncIterator[MakeSink]:
    """Builds sinks sending to ``azure`` (authority and DCE) on the test's clock; closes them."""
    made: list[SentinelSink] = []

    def make(**kwargs: Any) -> SentinelSink:
        settings: dict[str, Any] = {
            "dce": azure.base,
            "dcr_immutable_id": DCR,
            "stream": STREAM,
            "tenant_id": TENANT,
            "client_id": CLIENT_ID,
            "client_secret": SecretStr(SECRET),
            "authority": azure.base,
            "retry": POLICY,
            "clock": clock,
            "rng": random.Random(7),
            **kwargs,
        }
        sink = SentinelSink(**settings)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def ids_of(records: list[Any]) -> list[str]:
    return [record["id"] for record in records]


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["native", "ocsf", "ecs"])
async def test_the_body_is_a_json_array_of_the_batch(
    make_sink: MakeSink, azure: AzureReceiver, format: Format
) -> None:
    """One POST to the DCR stream with api-version 2023-01-01 whose records are the batch in the sink's format."""
    batch = mixed()
    assert await make_sink(format=format).deliver(batch) is None
    [upload] = azure.uploads
    assert (upload.method, upload.path) == ("POST", INGEST_PATH)
    assert azure.records == expected(batch, format)


async def test_the_body_is_gzipped_json_with_a_bearer_token(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """By default the body is gzip of the JSON array, said so in the headers, with the issued token and a request id."""
    batch = mixed()
    await make_sink().deliver(batch)
    [upload] = azure.uploads
    assert upload.headers["content-type"] == "application/json"
    assert upload.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(upload.body)) == expected(batch, "native")
    assert len(upload.body) < len(azure.accepted[0])
    assert azure.bearers() == list(azure.tokens)
    uuid.UUID(upload.headers["x-ms-client-request-id"])


async def test_without_gzip_the_body_is_plain_json(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """``gzip=False`` sends the JSON array as it is, with no Content-Encoding."""
    await make_sink(gzip=False).deliver(mixed())
    [upload] = azure.uploads
    assert "content-encoding" not in upload.headers
    assert upload.body == azure.accepted[0]


async def test_the_token_comes_from_the_client_credentials_flow(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """The token request is a form POST to ``{authority}/{tenant}/oauth2/v2.0/token`` with the four fields."""
    await make_sink().deliver(clicks(1))
    token_request = azure.requests[0]
    assert (token_request.method, token_request.path) == (
        "POST",
        f"/{TENANT}/oauth2/v2.0/token",
    )
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert azure.token_requests == [
        {
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": SCOPE,
            "grant_type": "client_credentials",
        }
    ]


async def test_an_empty_batch_sends_nothing(make_sink: MakeSink, azure: AzureReceiver) -> None:
    """An empty batch is acknowledged without a token request or an upload."""
    assert await make_sink().deliver([]) is None
    assert azure.requests == []


# --- the token's life ----------------------------------------------------------------------


async def test_one_token_serves_many_batches(make_sink: MakeSink, azure: AzureReceiver) -> None:
    """Five batches within the token's life: one token request, and every upload carries that token."""
    sink = make_sink()
    for i in range(5):
        await sink.deliver(clicks(1, start=i))
    assert len(azure.token_requests) == 1
    [token] = azure.tokens
    assert azure.bearers() == [token] * 5


async def test_the_token_is_renewed_five_minutes_before_it_expires(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """A 3599 s token is still used 3298 s on, and replaced before the upload at 3300 s: no upload is refused."""
    sink = make_sink()
    await sink.deliver(clicks(1))
    clock.advance(3599 - 300 - 1)
    await sink.deliver(clicks(1, start=1))
    assert len(azure.token_requests) == 1
    clock.advance(2)
    await sink.deliver(clicks(1, start=2))
    assert len(azure.token_requests) == 2
    first, second = azure.tokens
    assert azure.bearers() == [first, first, second]
    assert ids_of(azure.records) == [a.id for a in clicks(3)]


async def test_a_short_lived_token_is_renewed_at_half_its_life(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """A token that lives 120 s is renewed after 60 s, not 5 minutes before its end (which has passed)."""
    azure.expires_in = 120
    sink = make_sink()
    await sink.deliver(clicks(1))
    clock.advance(59)
    await sink.deliver(clicks(1, start=1))
    clock.advance(2)
    await sink.deliver(clicks(1, start=2))
    first, second = azure.tokens
    assert azure.bearers() == [first, first, second]


async def test_expires_in_as_a_string_is_read(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """An ``expires_in`` sent as a string of digits (Entra ID's v1 style) sets the token's life too."""
    azure.tokens["opaque-token"] = clock.time() + 600
    body = {"token_type": "Bearer", "expires_in": "600", "access_token": "opaque-token"}
    azure.script_token(Answer(200, body=json.dumps(body).encode()))
    sink = make_sink()
    await sink.deliver(clicks(1))
    clock.advance(299)
    await sink.deliver(clicks(1, start=1))
    clock.advance(2)
    await sink.deliver(clicks(1, start=2))
    assert azure.bearers()[:2] == ["opaque-token"] * 2
    assert azure.bearers()[2] != "opaque-token"


async def test_a_refused_token_is_replaced_once(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """A 401 for a token still in its life (revoked) fetches a new one and sends the body again, unslept."""
    sink = make_sink()
    await sink.deliver(clicks(1))
    azure.revoke()
    await sink.deliver(clicks(1, start=1))
    assert azure.statuses == [204, 401, 204]
    assert len(azure.token_requests) == 2
    first, second = azure.bearers()[1], azure.bearers()[2]
    assert first != second
    assert second in azure.tokens
    assert ids_of(azure.records) == [a.id for a in clicks(2)]
    assert clock.sleeps == []


async def test_a_401_with_a_fresh_token_is_a_refusal(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """401 again after the new token: a refusal saying to check the tenant, after two uploads and no wait."""
    azure.script(401, 401, 401)
    sink = make_sink()
    with pytest.raises(SinkRejectedError, match="tenant_id") as caught:
        await sink.deliver(clicks(1))
    assert len(azure.uploads) == 2
    assert len(azure.token_requests) == 2
    assert clock.sleeps == []
    assert not caught.value.retryable
    assert caught.value.sink == sink.name


@pytest.mark.parametrize(
    ("settings", "code", "advice"),
    [
        ({"client_secret": SecretStr("wrong")}, "invalid_client, AADSTS7000215", "Value"),
        ({"client_id": "00000000-0000-4000-8000-000000000000"}, "AADSTS700016", "client_id"),
        ({"tenant_id": "00000000-0000-4000-8000-000000000001"}, "AADSTS90002", "tenant"),
        ({"scope": "https://monitor.azure.us//.default"}, "AADSTS70011", "scope"),
    ],
)
async def test_refused_credentials_are_a_refusal_naming_the_cause(
    make_sink: MakeSink,
    azure: AzureReceiver,
    clock: FakeClock,
    settings: dict[str, Any],
    code: str,
    advice: str,
) -> None:
    """Entra ID's refusal stops the sink with its error code and advice; nothing is uploaded or retried."""
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink(**settings).deliver(clicks(1))
    assert code in str(caught.value)
    assert advice in str(caught.value)
    assert len(azure.token_requests) == 1
    assert azure.uploads == []
    assert clock.sleeps == []


async def test_a_busy_token_endpoint_is_retried(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """A 503 from the token endpoint is retried after a backoff wait, then the batch goes."""
    azure.script_token(503)
    await make_sink().deliver(clicks(1))
    assert len(azure.token_requests) == 2
    assert len(clock.sleeps) == 1
    assert len(azure.accepted) == 1


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>sign in</html>", "not JSON"),
        (b'{"token_type": "Bearer", "access_token": "t"}', "no expires_in"),
        (b'{"expires_in": 3599}', "no access_token"),
        (b'{"access_token": "a b", "expires_in": 3599}', "cannot go in a header"),
        (b'{"access_token": "t", "expires_in": 3599, "token_type": "pop"}', "not Bearer"),
    ],
)
async def test_a_token_answer_without_a_usable_token_is_a_refusal(
    make_sink: MakeSink, azure: AzureReceiver, body: bytes, why: str
) -> None:
    """A 200 from the token endpoint without a usable bearer token is a refusal naming `authority`, not an upload."""
    azure.script_token(Answer(200, body=body))
    with pytest.raises(SinkRejectedError, match="authority") as caught:
        await make_sink().deliver(clicks(1))
    assert why in str(caught.value)
    assert azure.uploads == []


# --- the endpoint's answers ----------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 202])
async def test_only_204_acknowledges(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock, status: int
) -> None:
    """Another 2xx is not the Logs Ingestion API: a refusal, not an acknowledgement, and not retried."""
    azure.script(status)
    with pytest.raises(SinkRejectedError, match="answers 204"):
        await make_sink().deliver(clicks(1))
    assert len(azure.uploads) == 1
    assert clock.sleeps == []


async def test_a_429_waits_out_retry_after(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """A 429 with ``Retry-After: 7`` waits exactly 7 s, then the same body is accepted once."""
    azure.script(Answer(429, {"Retry-After": "7"}))
    batch = mixed()
    await make_sink().deliver(batch)
    assert clock.sleeps == [7.0]
    first, second = azure.uploads
    assert first.body == second.body
    assert ids_of(azure.records) == [a.id for a in batch]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_is_retried_then_acknowledged(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock, status: int
) -> None:
    """A 5xx is retried after one backoff wait within the policy's first step."""
    azure.script(status)
    await make_sink().deliver(clicks(1))
    [wait] = clock.sleeps
    assert POLICY.floor <= wait <= POLICY.initial
    assert len(azure.accepted) == 1


async def test_a_persistent_503_is_not_acknowledged(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """503 on every try: a retryable error after ``attempts`` uploads, nothing accepted."""
    azure.script(*[503] * 10)
    with pytest.raises(SinkUnavailableError, match="after 4 tries") as caught:
        await make_sink().deliver(clicks(1))
    assert caught.value.retryable
    assert len(azure.uploads) == 4
    assert azure.accepted == []


async def test_a_403_names_the_role_to_give(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """403: a refusal naming the role Monitoring Metrics Publisher, with no new token and no retry."""
    azure.forbidden = True
    with pytest.raises(SinkRejectedError, match="Monitoring Metrics Publisher") as caught:
        await make_sink().deliver(clicks(1))
    assert "HTTP 403" in str(caught.value)
    assert len(azure.uploads) == 1
    assert len(azure.token_requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("settings", "status", "key"),
    [
        ({"dcr_immutable_id": "dcr-" + "0" * 32}, 404, "dcr_immutable_id"),
        ({"stream": "Custom-Other_CL"}, 400, "`stream`"),
    ],
)
async def test_a_wrong_dcr_or_stream_is_a_refusal_naming_it(
    make_sink: MakeSink, azure: AzureReceiver, settings: dict[str, Any], status: int, key: str
) -> None:
    """The endpoint's 404 (no such DCR) or 400 (no such stream) stops the sink naming the setting."""
    with pytest.raises(SinkRejectedError, match=f"HTTP {status}") as caught:
        await make_sink(**settings).deliver(clicks(1))
    assert key in str(caught.value)
    assert len(azure.uploads) == 1


# --- the 1 MB cut --------------------------------------------------------------------------


async def test_a_batch_over_max_body_bytes_is_split(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """A batch over ``max_body_bytes`` goes as several bodies, each within the cap before gzip, in order."""
    batch = clicks(10)
    cap = len(ARRAY_ENCODERS["native"](batch[:3])) + 2
    await make_sink(max_body_bytes=cap).deliver(batch)
    assert len(azure.accepted) >= 4
    assert all(len(body) <= cap for body in azure.accepted)
    assert ids_of(azure.records) == [a.id for a in batch]


async def test_the_default_cut_keeps_every_body_under_1_mb(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """A 2 MB batch with the defaults goes in bodies of at most 990,000 bytes, none refused with 413."""
    batch = clicks(1500)
    assert len(ARRAY_ENCODERS["native"](batch)) > 2 * API_LIMIT
    await make_sink().deliver(batch)
    assert len(azure.accepted) == len(azure.uploads) >= 3
    assert all(len(body) <= DEFAULT_MAX_BODY for body in azure.accepted)
    assert ids_of(azure.records) == [a.id for a in batch]


@pytest.mark.parametrize("compress", [True, False])
async def test_a_413_halves_the_body_until_it_fits(
    make_sink: MakeSink, azure: AzureReceiver, compress: bool
) -> None:
    """An endpoint whose limit is three alerts answers 413 to bigger bodies; halves go until all fit, each once."""
    batch = clicks(10)
    azure.limit = len(ARRAY_ENCODERS["native"](batch[:3])) + 2
    await make_sink(gzip=compress).deliver(batch)
    assert len(azure.uploads) > len(azure.accepted) >= 4
    assert all(len(body) <= azure.limit for body in azure.accepted)
    assert ids_of(azure.records) == [a.id for a in batch]


async def test_one_record_over_the_limit_is_refused_not_dropped(
    make_sink: MakeSink, azure: AzureReceiver, clock: FakeClock
) -> None:
    """A record that alone gets 413 stops the sink naming the alert: not acknowledged, nothing skipped."""
    batch = clicks(2)
    azure.limit = len(ARRAY_ENCODERS["native"](batch[:1])) - 1
    with pytest.raises(SinkRejectedError, match="HTTP 413") as caught:
        await make_sink().deliver(batch)
    assert batch[0].id in str(caught.value)
    assert azure.accepted == []
    assert clock.sleeps == []


async def test_one_record_over_the_apis_megabyte_is_sent_shortened(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """An alert over the 1 MB the API takes in a call (a 2 MB URL) can never be sent as it is:
    it goes shortened to fit, marked, its record a note of its size (``sinks._limit``), and
    the batch's other alert as it is; the endpoint refused nothing."""
    batch = clicks(2)
    batch[0] = msgspec.structs.replace(batch[0], url="https://evil.example/" + "z" * 2_000_000)
    await make_sink().deliver(batch)
    assert len(azure.uploads) == len(azure.accepted) == 2
    assert all(len(body) <= API_LIMIT for body in azure.accepted)
    assert ids_of(azure.records) == [a.id for a in batch]
    shortened = azure.records[0]
    assert shortened["raw"] == {"truncated": True, "bytes": len(batch[0].raw)}
    assert shortened["url"].endswith(TRUNCATED)


# --- at least once -------------------------------------------------------------------------


async def test_a_batch_is_resent_whole_when_a_body_is_not_acknowledged(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """A batch whose second body is never answered is not acknowledged; sent again, every record arrives, the first body's twice with the same ids."""
    batch = clicks(6)
    cap = len(ARRAY_ENCODERS["native"](batch[:3])) + 2
    sink = make_sink(max_body_bytes=cap)
    azure.script(THROUGH, *[HANG_UP] * POLICY.attempts)
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(batch)
    await sink.deliver(batch)  # the runner's next poll
    ids = ids_of(azure.records)
    assert ids == [a.id for a in batch[:3] + batch]
    assert list(dict.fromkeys(ids)) == [a.id for a in batch]


# --- secrets -------------------------------------------------------------------------------


def echo(status: int, *words: str) -> Answer:
    """An answer quoting ``words`` back, as a careless or hostile endpoint might."""
    text = " ".join(words)
    return Answer(status, {"X-Echo": text}, json.dumps({"error": text}).encode())


async def test_no_secret_or_token_reaches_names_reprs_errors_or_logs(
    make_sink: MakeSink, azure: AzureReceiver
) -> None:
    """The client secret and issued tokens reach the endpoints, but no name, repr, error or log, even when echoed."""
    sink = make_sink(retry=RetryPolicy(attempts=2, deadline=60.0))
    errors: list[SinkError] = []
    with capture_logs() as logs:
        await sink.deliver(clicks(1))
        [first] = azure.tokens
        azure.script(echo(503, SECRET, first), echo(403, SECRET, first))
        with pytest.raises(SinkError) as caught:
            await sink.deliver(clicks(1))
        errors.append(caught.value)
        azure.script(echo(401, SECRET, first), echo(401, SECRET, first))
        with pytest.raises(SinkError) as caught:
            await sink.deliver(clicks(1))
        errors.append(caught.value)
        tokens = list(azure.tokens)
        azure.revoke()
        azure.script_token(
            Answer(401, body=json.dumps({"error": f"invalid_client {SECRET} {tokens}"}).encode())
        )
        with pytest.raises(SinkError) as caught:
            await sink.deliver(clicks(1))
        errors.append(caught.value)
        azure.script(*[HANG_UP] * 2)
        with pytest.raises(SinkError) as caught:
            await sink.deliver(clicks(1))
        errors.append(caught.value)
    assert [type(e) for e in errors] == [
        SinkRejectedError,
        SinkRejectedError,
        SinkRejectedError,
        SinkUnavailableError,
    ]
    assert logs  # the retries were logged
    # The canaries were really in play: the endpoints got them.
    assert {form["client_secret"] for form in azure.token_requests} == {SECRET}
    assert set(tokens) <= set(azure.bearers())
    canaries = [SECRET, *tokens]
    texts = [sink.name, repr(sink), repr(logs)]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    leaks = [(c, t) for c in canaries for t in texts if c in t]
    assert leaks == []


# --- settings ------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "type": "sentinel",
    "dce": "https://mimecast-dce-a1b2.westeurope-1.ingest.monitor.azure.com/",
    "dcr_immutable_id": DCR,
    "stream": STREAM,
    "tenant_id": TENANT,
    "client_id": CLIENT_ID,
    "client_secret": SECRET,
}


async def test_the_settings_have_their_defaults_and_build_the_sink() -> None:
    """The required keys alone give the documented defaults; the factory builds a SentinelSink without the secret in sight."""
    settings = SentinelSinkConfig.model_validate(GOOD)
    assert settings.dce == "https://mimecast-dce-a1b2.westeurope-1.ingest.monitor.azure.com"
    assert settings.authority == "https://login.microsoftonline.com"
    assert settings.scope == "https://monitor.azure.com//.default"
    assert (settings.format, settings.max_body_bytes, settings.gzip) == ("native", 990_000, True)
    assert settings.secrets() == [SECRET]
    sink = build_sink(settings)
    assert isinstance(sink, SentinelSink)
    assert sink.name.startswith("sentinel:https://mimecast-dce-a1b2.westeurope-1.ingest.")
    assert SECRET not in repr(settings) + repr(sink) + sink.name
    await sink.aclose()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dce", "http://dce.example.com", "must use https"),
        ("dce", "https://dce.example.com/?x=1", "no query"),
        ("authority", "https://user:pw@login.example.com", "user:password"),
        ("dcr_immutable_id", "mimecast-dcr", "immutableId"),
        ("dcr_immutable_id", "dcr-123", "32 hex digits"),
        ("stream", "MimecastAlerts_CL", "'Custom-'"),
        ("stream", "Custom-Mimecast/../x", "'Custom-'"),
        ("tenant_id", "common", "cannot sign in"),
        ("tenant_id", "acme/../x", "Directory (tenant) ID"),
        ("client_id", "mimecast-app", "Application (client) ID"),
        ("client_secret", "", "must not be empty"),
        ("scope", "https://monitor.azure.com", "/.default"),
        ("format", "cef", "Input should be"),
        ("max_body_bytes", API_LIMIT + 1, "less than or equal to 1000000"),
        ("max_body_bytes", "990000", "valid integer"),
        ("gzip", "yes", "valid boolean"),
        ("colour", "blue", "Extra inputs"),
    ],
)
def test_a_bad_setting_is_named(key: str, value: Any, message: str) -> None:
    """Each bad value is refused at the edge under its key, saying what it must be, never showing the secret."""
    with pytest.raises(ValidationError) as caught:
        SentinelSinkConfig.model_validate({**GOOD, key: value})
    [error] = caught.value.errors()
    assert error["loc"][0] == key
    assert message in error["msg"]
    assert SECRET not in str(caught.value)


def test_a_tenant_may_be_a_verified_domain() -> None:
    """``tenant_id`` takes a verified domain as well as a GUID."""
    settings = SentinelSinkConfig.model_validate({**GOOD, "tenant_id": "contoso.onmicrosoft.com"})
    assert settings.tenant_id == "contoso.onmicrosoft.com"


async def test_a_sinks_table_builds_a_sentinel_sink(tmp_path: Path) -> None:
    """A ``[[sinks]]`` table of type sentinel loads (its secret from the environment) and builds the sink."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[[tenants]]\nname = "t"\nclient_id = "i"\nclient_secret = "s"\n'
        f'[[sinks]]\ntype = "sentinel"\ndce = "{GOOD["dce"]}"\n'
        f'dcr_immutable_id = "{DCR}"\nstream = "{STREAM}"\ntenant_id = "{TENANT}"\n'
        f'client_id = "{CLIENT_ID}"\nclient_secret = "env:AZURE_SECRET"\nformat = "ocsf"\n'
    )
    loaded = load_config(config, environ={"AZURE_SECRET": SECRET})
    [settings] = loaded.sinks
    assert isinstance(settings, SentinelSinkConfig)
    assert settings.client_secret.get_secret_value() == SECRET
    assert settings.format == "ocsf"
    sink = build_sink(settings)
    assert isinstance(sink, SentinelSink)
    await sink.aclose()
