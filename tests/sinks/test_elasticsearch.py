"""The elasticsearch sink against the fake cluster (tests/sinks/es_receiver.py): the bulk
request, exactly once across a crash, per-item retries, poison alerts and the dead-letter file,
credentials, splitting, the index template, and the settings. Retry waits run on a FakeClock."""

from __future__ import annotations

import base64
import gzip
import json
import random
import shutil
import ssl
import subprocess
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from mimecast_connector import ConfigError
from mimecast_connector._errors import (
    SinkRejectedError,
    SinkStorageError,
    SinkUnavailableError,
)
from mimecast_connector.alerts import TRUNCATED, Alert, Format, to_ecs
from mimecast_connector.client import RetryPolicy
from mimecast_connector.config import load_config
from mimecast_connector.sinks import make_sink as build_sink
from mimecast_connector.sinks._elasticsearch import (
    FILTER_PATH,
    REASON_CAP,
    ElasticsearchSink,
    ElasticsearchSinkConfig,
)
from tests.fakes import FakeClock
from tests.sinks.es_receiver import EsReceiver
from tests.sinks.helpers import alert_id, clicks, expected, mixed
from tests.sinks.receiver import Answer

KEY = "S2V5SWQ6a2V5LXNlY3JldC1mb3ItdGVzdHM="
POLICY = RetryPolicy(attempts=3, deadline=60.0, initial=0.5, maximum=2.0, floor=0.05)

MakeSink = Callable[..., ElasticsearchSink]


@pytest.fixture
def fake() -> Iterator[EsReceiver]:
    """A started fake cluster that wants ``ApiKey KEY``."""
    server = EsReceiver(auth=f"ApiKey {KEY}")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def make_sink(fake: EsReceiver, clock: FakeClock) -> AsyncIterator[MakeSink]:
    """Builds started sinks for ``fake`` (API key, FakeClock, POLICY); closes them."""
    made: list[ElasticsearchSink] = []

    def make(**kwargs: Any) -> ElasticsearchSink:
        settings: dict[str, Any] = {
            "url": fake.url(),
            "api_key": SecretStr(KEY),
            "retry": POLICY,
            "clock": clock,
            "rng": random.Random(7),
            **kwargs,
        }
        sink = ElasticsearchSink(**settings)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def actions(body: bytes) -> list[tuple[dict[str, Any], Any]]:
    """A bulk body read independently of the fake: (action, document) pairs."""
    assert body.endswith(b"\n")
    lines = body[:-1].split(b"\n")
    assert len(lines) % 2 == 0
    return [(json.loads(lines[i]), json.loads(lines[i + 1])) for i in range(0, len(lines), 2)]


def line_of(alert: Alert) -> bytes:
    """One alert's two lines of a bulk body (ECS), written here, not by the sink."""
    action = {"create": {"_index": "mimecast-alerts", "_id": alert.id}}
    return (json.dumps(action) + "\n" + json.dumps(to_ecs(alert)) + "\n").encode()


def bulk_ids(fake: EsReceiver) -> list[list[str]]:
    return [[i for _, i in bulk.actions] for bulk in fake.bulks]


def statuses(fake: EsReceiver, n: int) -> list[int]:
    return [item["create"]["status"] for item in fake.bulks[n].answer["items"]]


# --- the request ---------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["ecs", "native", "ocsf"])
async def test_each_alert_is_a_create_with_its_id_then_its_document(
    make_sink: MakeSink, fake: EsReceiver, format: Format
) -> None:
    """One POST to ``/_bulk``: per alert, ``create`` into the index with ``_id`` = alert id,
    then the alert in the sink's format; the body ends with a line feed."""
    batch = mixed()
    assert await make_sink(format=format).deliver(batch) is None
    [request] = fake.requests
    assert request.method == "POST"
    assert urlsplit(request.path).path == "/_bulk"
    pairs = actions(request.body)
    assert [a for a, _ in pairs] == [
        {"create": {"_index": "mimecast-alerts", "_id": a.id}} for a in batch
    ]
    assert [d for _, d in pairs] == expected(batch, format)
    assert [alert_id(d, format) for _, d in pairs] == [a.id for a in batch]
    assert fake.ids("mimecast-alerts") == [a.id for a in batch]


async def test_the_default_format_is_ecs_with_its_timestamp(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """Without a format, documents are ECS, each with ``@timestamp`` (what a data stream needs)."""
    sink = make_sink()
    assert sink.format == "ecs"
    await sink.deliver(clicks(2))
    assert all("@timestamp" in json.loads(doc) for doc in fake.sources())


async def test_only_what_opensearch_also_takes_is_sent(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """Plain ``application/x-ndjson``, ``Accept: application/json``, no Elastic-8-only
    ``compatible-with`` media type, and no query parameter but ``filter_path``."""
    await make_sink().deliver(clicks(1))
    [request] = fake.requests
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.headers["accept"] == "application/json"
    assert "compatible-with" not in repr(request.headers)
    assert parse_qs(urlsplit(request.path).query) == {"filter_path": [FILTER_PATH]}


async def test_gzip_bodies_carry_the_same_bulk(make_sink: MakeSink, fake: EsReceiver) -> None:
    """With ``gzip``, the body is gzip (``Content-Encoding: gzip``) of the same NDJSON."""
    batch = mixed()
    await make_sink(gzip=True).deliver(batch)
    await make_sink().deliver(batch)
    zipped, plain = fake.requests
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(zipped.body) == plain.body
    assert fake.ids() == [a.id for a in batch]


async def test_tenant_and_category_fill_the_index_name(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """``index = "mc-{tenant}-{category}"`` sends each alert to its tenant's and category's index."""
    batch = mixed()
    await make_sink(index="mc-{tenant}-{category}").deliver(batch)
    stored = [(index, i) for index, i in fake.order]
    assert stored == [(f"mc-{a.tenant.lower()}-{a.category}", a.id) for a in batch]
    assert len({index for index, _ in stored}) == 4


async def test_an_unfiltered_answer_is_read_the_same(clock: FakeClock) -> None:
    """A cluster that ignores ``filter_path`` (whole items, ``_shards`` and all) is read alike:
    acknowledged, and a repeat answered 409 acknowledged too."""
    fake = EsReceiver(honour_filter_path=False)
    fake.start()
    try:
        sink = ElasticsearchSink(fake.url(), clock=clock)
        batch = clicks(3)
        await sink.deliver(batch)
        await sink.deliver(batch)
        await sink.aclose()
    finally:
        fake.stop()
    assert "_shards" in fake.bulks[0].answer["items"][0]["create"]
    assert fake.ids() == [a.id for a in batch]
    assert [i["create"]["status"] for i in fake.bulks[1].answer["items"]] == [409] * 3


async def test_an_empty_batch_sends_nothing(make_sink: MakeSink, fake: EsReceiver) -> None:
    """An empty batch is acknowledged without a request (not even the index template)."""
    assert await make_sink(install_template=True).deliver([]) is None
    assert fake.requests == []


# --- exactly once --------------------------------------------------------------------------


async def test_a_batch_sent_again_after_a_crash_is_indexed_once(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """Delivered, never committed, delivered again by a restarted sink: the index holds each
    alert once, the second answer is all 409, and that is an acknowledgement."""
    batch = mixed()
    first = make_sink()
    await first.start(None)
    await first.deliver(batch)  # the process dies before the checkpoint moves
    await first.aclose()
    again = make_sink()
    await again.start(None)
    assert await again.deliver(batch) is None
    assert fake.ids() == [a.id for a in batch]
    assert statuses(fake, 0) == [201] * len(batch)
    assert statuses(fake, 1) == [409] * len(batch)


async def test_a_half_indexed_batch_sent_again_is_whole_once(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """Items still busy past the retries leave the batch unacknowledged with the rest indexed;
    sent again, the rest answers 409 and the busy ones 201: each alert once."""
    batch = clicks(4)
    fake.fail_items(batch[2].id, *[503] * POLICY.attempts)
    sink = make_sink()
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(batch)
    assert fake.ids() == [batch[i].id for i in (0, 1, 3)]
    await sink.deliver(batch)
    assert sorted(fake.ids()) == sorted(a.id for a in batch)
    assert len(fake.ids()) == 4
    assert statuses(fake, len(fake.bulks) - 1) == [409, 409, 201, 409]


# --- per-item retries ----------------------------------------------------------------------


async def test_items_answered_429_or_503_alone_are_sent_again(
    make_sink: MakeSink, fake: EsReceiver, clock: FakeClock
) -> None:
    """Items answered 429 and 503 go again, only they, after one backoff wait; then the
    batch is acknowledged with every alert indexed once."""
    batch = clicks(5)
    fake.fail_items(batch[1].id, 429)
    fake.fail_items(batch[3].id, 503)
    with capture_logs() as logs:
        assert await make_sink().deliver(batch) is None
    assert bulk_ids(fake) == [[a.id for a in batch], [batch[1].id, batch[3].id]]
    [wait] = clock.sleeps
    assert POLICY.floor <= wait <= POLICY.initial
    assert sorted(fake.ids()) == sorted(a.id for a in batch)
    assert [e["event"] for e in logs] == ["sink_retrying_items"]
    assert logs[0]["items"] == 2


async def test_items_busy_past_the_retry_policy_leave_the_batch_unacknowledged(
    make_sink: MakeSink, fake: EsReceiver, clock: FakeClock
) -> None:
    """An item answered 429 on every try: ``attempts`` requests, waits between, then a
    retryable error that counts the alerts not acknowledged; the others are indexed."""
    batch = clicks(3)
    fake.fail_items(batch[0].id, *[429] * 10)
    sink = make_sink()
    with pytest.raises(SinkUnavailableError) as caught:
        await sink.deliver(batch)
    assert len(fake.bulks) == POLICY.attempts
    assert len(clock.sleeps) == POLICY.attempts - 1
    assert caught.value.retryable
    assert "1 of 3 alerts not acknowledged after 3 tries" in str(caught.value)
    assert "es_rejected_execution_exception" in str(caught.value)
    assert fake.ids() == [batch[1].id, batch[2].id]


async def test_the_deadline_bounds_item_retries(make_sink: MakeSink, fake: EsReceiver) -> None:
    """With many attempts allowed, item retries stop before the waits would pass the deadline."""
    policy = RetryPolicy(attempts=100, deadline=3.0, initial=1.0, maximum=1.0, floor=1.0)
    batch = clicks(2)
    fake.fail_items(batch[0].id, *[503] * 50)
    with pytest.raises(SinkUnavailableError):
        await make_sink(retry=policy).deliver(batch)
    assert len(fake.bulks) == 4


async def test_a_busy_cluster_as_a_whole_is_waited_out(
    make_sink: MakeSink, fake: EsReceiver, clock: FakeClock
) -> None:
    """A whole-request 429 with ``Retry-After: 2`` is waited out exactly, then acknowledged."""
    fake.script(Answer(429, {"Retry-After": "2"}, b'{"error":"busy","status":429}'))
    assert await make_sink().deliver(clicks(2)) is None
    assert clock.sleeps == [2.0]
    assert len(fake.ids()) == 2


# --- poison alerts and the dead-letter file ------------------------------------------------


def dead_letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


async def test_a_mapping_error_is_dead_lettered_and_the_rest_acknowledged(
    make_sink: MakeSink, fake: EsReceiver, tmp_path: Path, clock: FakeClock
) -> None:
    """A 400 mapping error is written to ``dead_letter`` with the alert's id, index, the
    error's type and reason and the document as sent; the other alerts are indexed and the
    batch is acknowledged, unretried."""
    batch = mixed()
    poison = batch[2]
    fake.poison(poison.id)
    path = tmp_path / "dead.jsonl"
    sink = make_sink(dead_letter=path)
    await sink.start(None)
    with capture_logs() as logs:
        assert await sink.deliver(batch) is None
    assert fake.ids() == [a.id for a in batch if a is not poison]
    assert len(fake.bulks) == 1
    assert clock.sleeps == []
    [line] = dead_letters(path)
    assert line["id"] == poison.id
    assert line["index"] == "mimecast-alerts"
    assert (line["tenant"], line["category"]) == (poison.tenant, poison.category)
    assert line["status"] == 400
    assert line["error"].startswith("document_parsing_exception: [1:42] failed to parse field")
    assert poison.id in line["error"]
    assert line["document"] == expected([poison], "ecs")[0]
    assert line["sink"] == sink.name
    assert [e["event"] for e in logs] == ["sink_dead_lettered"]
    assert logs[0]["ids"] == [poison.id]
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


async def test_without_dead_letter_a_mapping_error_refuses_the_batch(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """With no ``dead_letter``, a mapping error stops the sink, naming the alert, the error
    and the setting; the other alerts are indexed (a retry will find them there)."""
    batch = clicks(3)
    fake.poison(batch[1].id)
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink().deliver(batch)
    text = str(caught.value)
    assert batch[1].id in text
    assert "document_parsing_exception" in text
    assert "dead_letter" in text
    assert fake.ids() == [batch[0].id, batch[2].id]


async def test_dead_letters_are_written_only_once_the_batch_is_acknowledged(
    make_sink: MakeSink, fake: EsReceiver, tmp_path: Path
) -> None:
    """A batch that ends unacknowledged writes no dead letter (it is sent again and would set
    its poison aside twice); the send that is acknowledged writes it, once."""
    batch = clicks(3)
    fake.poison(batch[0].id)
    fake.fail_items(batch[1].id, *[503] * POLICY.attempts)
    path = tmp_path / "dead.jsonl"
    sink = make_sink(dead_letter=path)
    await sink.start(None)
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(batch)
    assert path.read_bytes() == b""
    await sink.deliver(batch)
    assert [d["id"] for d in dead_letters(path)] == [batch[0].id]


async def test_dead_letters_append_each_on_its_own_line(
    make_sink: MakeSink, fake: EsReceiver, tmp_path: Path
) -> None:
    """Dead letters of later batches are appended; a line cut short by an earlier failed
    write is ended first, so every whole line still reads as JSON."""
    path = tmp_path / "dead.jsonl"
    sink = make_sink(dead_letter=path)
    await sink.start(None)
    first, second = clicks(1), clicks(1, start=1)
    fake.poison(first[0].id)
    fake.poison(second[0].id)
    await sink.deliver(first)
    with path.open("ab") as out:
        out.write(b'{"cut short')
    await sink.deliver(second)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["id"] == first[0].id
    assert lines[1] == b'{"cut short'
    assert json.loads(lines[2])["id"] == second[0].id


async def test_a_long_reason_is_cut(make_sink: MakeSink, fake: EsReceiver, tmp_path: Path) -> None:
    """A reason of 5000 characters is cut to the cap in the dead-letter line."""
    batch = clicks(1)
    fake.poison(batch[0].id, reason="x" * 5000)
    path = tmp_path / "dead.jsonl"
    await make_sink(dead_letter=path).deliver(batch)
    [line] = dead_letters(path)
    assert len(line["error"]) <= REASON_CAP + 3
    assert line["error"].endswith("...")


@pytest.mark.parametrize(
    ("status", "type"),
    [
        (400, "index_closed_exception"),
        (404, "index_not_found_exception"),
        (403, "security_exception"),
    ],
)
async def test_an_item_refused_for_its_index_is_a_refusal_not_poison(
    make_sink: MakeSink, fake: EsReceiver, tmp_path: Path, status: int, type: str
) -> None:
    """An item error about the index or the privileges (every alert would get it) stops the
    sink naming the status and type; nothing is dead-lettered, nothing retried."""
    batch = clicks(2)
    fake.poison(batch[0].id, type=type, reason="about the index", status=status)
    path = tmp_path / "dead.jsonl"
    sink = make_sink(dead_letter=path)
    await sink.start(None)
    with pytest.raises(SinkRejectedError) as caught:
        await sink.deliver(batch)
    assert f"HTTP {status} ({type}: about the index)" in str(caught.value)
    assert path.read_bytes() == b""
    assert len(fake.bulks) == 1


async def test_a_native_document_into_a_data_stream_is_refused_by_the_cluster(
    make_sink: MakeSink, fake: EsReceiver, tmp_path: Path
) -> None:
    """Why settings refuse ``data_stream`` without ECS: a data stream refuses a document with
    no ``@timestamp`` (here: dead-lettered), and takes the same alert as ECS."""
    fake.data_streams.add("logs-mimecast-default")
    batch = clicks(1)
    path = tmp_path / "dead.jsonl"
    await make_sink(index="logs-mimecast-default", format="native", dead_letter=path).deliver(batch)
    assert "@timestamp] is missing" in dead_letters(path)[0]["error"]
    await make_sink(index="logs-mimecast-default", data_stream=True).deliver(batch)
    assert fake.ids("logs-mimecast-default") == [batch[0].id]


async def test_an_unwritable_dead_letter_file_is_refused_at_start(
    make_sink: MakeSink, tmp_path: Path
) -> None:
    """A ``dead_letter`` in a folder that does not exist stops the sink at start, not at the
    first poison alert."""
    sink = make_sink(dead_letter=tmp_path / "missing" / "dead.jsonl")
    with pytest.raises(SinkRejectedError, match="dead_letter"):
        await sink.start(None)


async def test_a_failed_dead_letter_write_leaves_the_batch_unacknowledged(
    make_sink: MakeSink, fake: EsReceiver, tmp_path: Path
) -> None:
    """A dead-letter file that cannot be written (its folder removed) is a storage error:
    the batch is not acknowledged, so its poison is not lost."""
    folder = tmp_path / "dl"
    folder.mkdir()
    sink = make_sink(dead_letter=folder / "dead.jsonl")
    await sink.start(None)
    (folder / "dead.jsonl").unlink()
    folder.rmdir()
    batch = clicks(2)
    fake.poison(batch[0].id)
    with pytest.raises(SinkStorageError, match="was removed"):
        await sink.deliver(batch)


# --- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credentials", "header"),
    [
        ({"api_key": SecretStr(KEY)}, f"ApiKey {KEY}"),
        (
            {"api_key": SecretStr("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")},
            "ApiKey " + base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw").decode(),
        ),
        (
            {"username": "writer", "password": SecretStr("pa55:word")},
            "Basic " + base64.b64encode(b"writer:pa55:word").decode(),
        ),
    ],
)
async def test_the_authorization_header(
    make_sink: MakeSink, fake: EsReceiver, credentials: dict[str, Any], header: str
) -> None:
    """``ApiKey`` with the encoded key as given (an ``id:key`` pair encoded), or ``Basic``."""
    fake.auth = header
    await make_sink(**({"api_key": None} | credentials)).deliver(clicks(1))
    assert fake.requests[0].headers["authorization"] == header
    assert len(fake.ids()) == 1


async def test_no_credentials_send_no_authorization(make_sink: MakeSink, fake: EsReceiver) -> None:
    """A sink without credentials (loopback only) sends no ``Authorization`` header."""
    fake.auth = None
    await make_sink(api_key=None).deliver(clicks(1))
    assert "authorization" not in fake.requests[0].headers


@pytest.mark.parametrize(
    ("credentials", "named"),
    [
        ({"api_key": SecretStr("d3Jvbmc=")}, "check api_key"),
        ({"username": "u", "password": SecretStr("wrong")}, "check username and password"),
    ],
)
async def test_refused_credentials_stop_the_sink_naming_them(
    make_sink: MakeSink,
    fake: EsReceiver,
    clock: FakeClock,
    credentials: dict[str, Any],
    named: str,
) -> None:
    """401: a refusal at once (one request, no wait) that says which credential to check."""
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink(**({"api_key": None} | credentials)).deliver(clicks(1))
    assert named in str(caught.value)
    assert "HTTP 401 (security_exception" in str(caught.value)
    assert len(fake.requests) == 1
    assert clock.sleeps == []


async def test_a_forbidden_request_names_the_privilege(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """403: a refusal naming the privilege the key needs."""
    fake.script(403)
    with pytest.raises(SinkRejectedError, match="create_doc"):
        await make_sink().deliver(clicks(1))


CANARY_ID_KEY = "CANARYid:CANARY-es-api-key-5d21"
CANARY_ENCODED = base64.b64encode(CANARY_ID_KEY.encode()).decode()
CANARY_PASSWORD = "CANARY-es-password-93ab"
CANARY_BASIC = base64.b64encode(f"writer:{CANARY_PASSWORD}".encode()).decode()


def echo(status: int, words: str) -> Answer:
    """An answer quoting ``words`` back, as a careless proxy might."""
    body = json.dumps({"error": {"type": "security_exception", "reason": words}, "status": status})
    return Answer(status, {"X-Echo": words}, body.encode())


@pytest.mark.parametrize(
    ("credentials", "header", "canaries"),
    [
        (
            {"api_key": SecretStr(CANARY_ID_KEY)},
            f"ApiKey {CANARY_ENCODED}",
            (CANARY_ID_KEY, "CANARY-es-api-key-5d21", CANARY_ENCODED),
        ),
        (
            {"username": "writer", "password": SecretStr(CANARY_PASSWORD)},
            f"Basic {CANARY_BASIC}",
            (CANARY_PASSWORD, CANARY_BASIC),
        ),
    ],
)
async def test_no_secret_reaches_names_reprs_errors_logs_or_dead_letters(
    make_sink: MakeSink,
    fake: EsReceiver,
    tmp_path: Path,
    credentials: dict[str, Any],
    header: str,
    canaries: tuple[str, ...],
) -> None:
    """The key or password reaches the cluster, but no name, repr, error, log line or dead
    letter, even when the cluster quotes back what it was sent (in an item's reason, a 503's
    and a 401's body)."""
    words = " ".join((header, *canaries))
    path = tmp_path / "dead.jsonl"
    fake.auth = header
    sink = make_sink(**({"api_key": None, "dead_letter": path} | credentials))
    await sink.start(None)
    batch = clicks(2)
    fake.poison(batch[0].id, reason=words)
    fake.fail_items(batch[1].id, 503)
    with capture_logs() as logs:
        await sink.deliver(batch)  # a retry and a dead letter, both quoting the canaries
        fake.script(echo(503, words), echo(401, words))
        with pytest.raises(SinkRejectedError) as caught:
            await sink.deliver(clicks(1, start=5))
    assert [r.headers["authorization"] for r in fake.requests] == [header] * 4
    assert [e["event"] for e in logs] == [
        "sink_retrying_items",
        "sink_dead_lettered",
        "sink_retrying",
    ]
    assert "***" in path.read_text()  # the reason was there, scrubbed
    error = caught.value
    texts = [sink.name, repr(sink), repr(logs), path.read_text(), str(error), repr(error)]
    texts.append("".join(traceback.format_exception(error)))
    leaks = [(c, t) for c in canaries for t in texts if c in t]
    assert leaks == []


# --- TLS ---------------------------------------------------------------------------------

OPENSSL = shutil.which("openssl")


def own_ca(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA of the test's own (as Elasticsearch 8 makes at install) and a server context with
    a certificate it signed for 127.0.0.1."""
    assert OPENSSL is not None
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
    steps = [
        f"req -x509 {ec} -keyout ca.key -out ca.pem -subj /CN=test-cluster-ca",
        f"req {ec} -keyout es.key -out es.csr -subj /CN=127.0.0.1",
        "x509 -req -in es.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out es.pem -days 2 "
        "-extfile san.cnf",
    ]
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for step in steps:  # fixed arguments, no input from outside the test
        subprocess.run(  # noqa: S603
            [OPENSSL, *step.split()], cwd=folder, check=True, capture_output=True, timeout=60
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "es.pem", folder / "es.key")
    return folder / "ca.pem", context


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command makes the test CA")
async def test_a_cluster_with_its_own_ca_is_trusted_through_verify_tls(
    tmp_path: Path, clock: FakeClock
) -> None:
    """``verify_tls`` = the cluster's CA file: delivered over HTTPS; with the system's CAs
    (``true``) the same cluster is not trusted: nothing is delivered, and the run is stopped
    with what to set (not retried: the certificate would fail the same way)."""
    ca, context = own_ca(tmp_path)
    fake = EsReceiver(tls=context)
    fake.start()
    try:
        trusting = ElasticsearchSink(fake.url(), verify_tls=str(ca), retry=POLICY, clock=clock)
        await trusting.start(None)
        await trusting.deliver(clicks(1))
        await trusting.aclose()
        assert len(fake.ids()) == 1
        strict = ElasticsearchSink(fake.url(), retry=POLICY, clock=clock)
        with pytest.raises(
            SinkRejectedError, match=r"certificate of the cluster failed .*`verify_tls`"
        ):
            await strict.deliver(clicks(1, start=1))
        await strict.aclose()
    finally:
        fake.stop()
    assert fake.url().startswith("https://")
    assert len(fake.ids()) == 1


async def test_a_ca_file_that_is_no_ca_is_refused_at_start(tmp_path: Path) -> None:
    """A ``verify_tls`` path that is not a PEM CA file stops the sink at start, naming it."""
    (tmp_path / "ca.pem").write_text("not a certificate")
    sink = ElasticsearchSink("https://es.example.com", verify_tls=str(tmp_path / "ca.pem"))
    with pytest.raises(SinkRejectedError, match="CA file of `verify_tls`"):
        await sink.start(None)
    await sink.aclose()


# --- splitting -----------------------------------------------------------------------------


async def test_a_large_batch_is_split_under_the_cap(make_sink: MakeSink, fake: EsReceiver) -> None:
    """A batch over ``max_body_bytes`` goes as several bulk requests, each within the cap,
    the alerts in order, each once."""
    batch = clicks(12)
    cap = 3 * max(len(line_of(a)) for a in batch) + 10
    await make_sink(max_body_bytes=cap).deliver(batch)
    assert len(fake.requests) >= 4
    for request in fake.requests:
        assert len(request.body) <= cap
    assert [i for ids in bulk_ids(fake) for i in ids] == [a.id for a in batch]
    assert fake.ids() == [a.id for a in batch]


async def test_413_halves_the_request_and_lowers_the_cap(
    make_sink: MakeSink, fake: EsReceiver, clock: FakeClock
) -> None:
    """A 413 (the cluster's limit is below ``max_body_bytes``) splits the request in halves
    until it fits, no wait, every alert once in order; the next batch fits at once."""
    batch = clicks(8)
    fake.max_content_length = int(2.5 * len(line_of(batch[0])))
    sink = make_sink()
    with capture_logs() as logs:
        await sink.deliver(batch)
    refused = [r for r in fake.requests if len(r.body) > fake.max_content_length]
    assert len(refused) >= 2
    assert fake.ids() == [a.id for a in batch]
    assert clock.sleeps == []
    assert "sink_body_too_large" in [e["event"] for e in logs]
    before = len(fake.requests)
    await sink.deliver(clicks(4, start=8))
    assert all(len(r.body) <= fake.max_content_length for r in fake.requests[before:])


async def test_one_alert_over_the_clusters_limit_is_indexed_shortened(
    make_sink: MakeSink, fake: EsReceiver, clock: FakeClock
) -> None:
    """An alert that alone gets 413 (a 300,000-character URL, a cluster that takes 64 KB)
    goes again shortened to half the refused size, then half of that, until it fits: indexed
    under its own id, the URL cut and marked, the record a note of its size; the alert beside
    it whole; a warning with the id and sizes, not the URL."""
    huge = msgspec.structs.replace(clicks(1)[0], url="https://evil.example/" + "u" * 300_000)
    other = clicks(1, start=1)[0]
    fake.max_content_length = 64_000
    with capture_logs() as logs:
        await make_sink(format="native").deliver([huge, other])
    assert sorted(fake.ids()) == sorted([huge.id, other.id])
    stored = dict(zip(fake.ids(), map(json.loads, fake.sources()), strict=True))
    assert stored[other.id]["url"] == other.url
    document = stored[huge.id]
    assert document["id"] == huge.id
    assert document["url"].startswith("https://evil.example/uuu")
    assert document["url"].endswith(TRUNCATED)
    assert document["raw"] == {"truncated": True, "bytes": len(huge.raw)}
    assert clock.sleeps == []
    shortened = [e for e in logs if e["event"] == "alert_shortened"]
    assert shortened
    assert {e["alert"] for e in shortened} == {huge.id}
    assert "uuuu" not in repr(logs)


async def test_one_alert_over_the_clusters_limit_even_shortened_is_refused(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """A cluster that takes 100 bytes: even the alert's own fields are over, so a refusal
    naming the alert and the limit to raise (not dropped, not sent again for ever)."""
    batch = clicks(1)
    fake.max_content_length = 100
    with pytest.raises(SinkRejectedError) as caught:
        await make_sink().deliver(batch)
    assert batch[0].id in str(caught.value)
    assert "http.max_content_length" in str(caught.value)
    assert len(fake.requests) < 20
    assert fake.ids() == []


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, {"Content-Type": "text/html"}, b"<html>Kibana</html>"),
        Answer(200, {}, b'{"errors":false,"items":[]}'),
        Answer(200, {}, b'{"errors":false,"items":[{"create":{"_id":"other","status":201}}]}'),
    ],
)
async def test_an_answer_that_is_no_bulk_answer_is_not_acknowledged(
    make_sink: MakeSink, fake: EsReceiver, answer: Answer
) -> None:
    """A 200 that is not a bulk answer for these alerts (HTML, too few items, other ids)
    acknowledges nothing: a refusal that says to check the url."""
    fake.script(answer)
    with pytest.raises(SinkRejectedError, match="not an Elasticsearch bulk answer"):
        await make_sink().deliver(clicks(1))


# --- the index template --------------------------------------------------------------------


async def test_the_index_template_is_put_before_the_first_bulk(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """With ``install_template``, one PUT of a composable template for the index (``@timestamp``
    a date, the raw record unindexed) precedes the first bulk request; later batches do not
    repeat it."""
    sink = make_sink(install_template=True)
    await sink.deliver(clicks(1))
    await sink.deliver(clicks(1, start=1))
    assert [(r.method, urlsplit(r.path).path) for r in fake.requests] == [
        ("PUT", "/_index_template/mimecast-connector-mimecast-alerts"),
        ("POST", "/_bulk"),
        ("POST", "/_bulk"),
    ]
    assert fake.requests[0].headers["content-type"] == "application/json"
    template = fake.templates["mimecast-connector-mimecast-alerts"]
    assert template["index_patterns"] == ["mimecast-alerts"]
    properties = template["template"]["mappings"]["properties"]
    assert properties["@timestamp"] == {"type": "date"}
    assert properties["event"]["properties"]["original"]["index"] is False
    assert "data_stream" not in template


async def test_a_data_stream_template_makes_the_index_a_data_stream(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """With ``data_stream``, the template says so (the fake then holds documents to
    ``@timestamp``), and templated names become a pattern."""
    await make_sink(index="mimecast-{category}", data_stream=True, install_template=True).deliver(
        mixed()
    )
    template = fake.templates["mimecast-connector-mimecast-all"]
    assert template["index_patterns"] == ["mimecast-*"]
    assert template["data_stream"] == {}
    assert len(fake.ids()) == len(mixed())


async def test_a_refused_template_stops_before_any_alert_is_sent(
    make_sink: MakeSink, fake: EsReceiver
) -> None:
    """A template the key may not install (403) is a refusal naming ``install_template``; no
    bulk request is sent."""
    fake.script(403)
    with pytest.raises(SinkRejectedError, match="install_template"):
        await make_sink(install_template=True).deliver(clicks(1))
    assert [r.method for r in fake.requests] == ["PUT"]


# --- settings ------------------------------------------------------------------------------

TENANT = '[[tenants]]\nname = "acme"\nclient_id = "i"\nclient_secret = "s"\n'


def config_of(tmp_path: Path, sink: str, environ: dict[str, str] | None = None) -> Any:
    path = tmp_path / "c.toml"
    path.write_text(TENANT + '[[sinks]]\ntype = "elasticsearch"\n' + sink)
    return load_config(path, environ=environ or {})


def test_settings_load_with_their_defaults_and_build_the_sink(tmp_path: Path) -> None:
    """A minimal table: ECS into ``mimecast-alerts``, 10 MiB bodies, TLS verified, no gzip,
    template or dead letters; the key read from the environment, listed for redaction."""
    loaded = config_of(
        tmp_path,
        'url = "https://es.example.com:9200"\napi_key = "env:ES_KEY"\n',
        {"ES_KEY": KEY},
    )
    [settings] = loaded.sinks
    assert isinstance(settings, ElasticsearchSinkConfig)
    assert (settings.index, settings.format, settings.max_body_bytes) == (
        "mimecast-alerts",
        "ecs",
        10 * 1024 * 1024,
    )
    assert (settings.verify_tls, settings.gzip, settings.install_template) == (True, False, False)
    assert settings.dead_letter is None
    assert settings.data_stream is False
    assert KEY in settings.secrets()
    assert KEY in loaded.secrets()
    sink = build_sink(settings)
    assert isinstance(sink, ElasticsearchSink)
    assert sink.name.startswith("elasticsearch:https://es.example.com:9200#")


def test_a_relative_dead_letter_is_anchored_and_checked_for_clashes(tmp_path: Path) -> None:
    """``dead_letter`` and a ``verify_tls`` CA file are relative to the configuration's
    folder, and the dead-letter file may not be the same file as another one the connector
    writes."""
    url = 'url = "https://es.example.com"\nusername = "w"\npassword = "p4ss"\n'
    table = url + 'dead_letter = "out/es-dead.jsonl"\nverify_tls = "certs/ca.pem"\n'
    [settings] = config_of(tmp_path, table).sinks
    assert settings.dead_letter == str(tmp_path / "out/es-dead.jsonl")
    assert settings.verify_tls == str(tmp_path / "certs/ca.pem")
    assert "w:p4ss" in settings.secrets()
    with pytest.raises(ConfigError, match="same file"):
        config_of(tmp_path, url + 'dead_letter = "state/dead-letter.jsonl"\n')


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ('api_key = "k3y"\nusername = "u"\npassword = "p"\n', "not both"),
        ('username = "u"\n', "go together"),
        ('password = "CANARY-lonely-pass"\n', "go together"),
        ("", "allowed only on loopback"),
        ('api_key = "k3y"\ndata_stream = true\nformat = "native"\n', "data stream needs"),
        ('api_key = "k3y"\nformat = "cef"\n', "format"),
        ('api_key = "k3y"\nindex = "Alerts"\n', "lowercase"),
        ('api_key = "k3y"\nindex = "alerts#1"\n', "must not contain"),
        ('api_key = "k3y"\nindex = "_alerts"\n', "must begin with"),
        ('api_key = "k3y"\nindex = "{tenant}-alerts"\n', "must begin with"),
        ('api_key = "k3y"\nindex = "a-{customer}"\n', "{tenant} and {category}"),
        ('api_key = "k3y"\nindex = "a-{tenant"\n', "unmatched"),
        ('api_key = "k3y"\nindex = "' + "a" * 200 + '-{tenant}"\n', "255 bytes"),
        ('api_key = "k3y"\nmax_body_bytes = 1000\n', "max_body_bytes"),
        ('api_key = "CANARY\\nline"\n', "HTTP header"),
        ('username = "a:b"\npassword = "p"\n', "colon"),
        ('api_key = "k3y"\nverify_tls = "false"\n', "without quotes"),
    ],
)
def test_bad_settings_are_refused_at_load(tmp_path: Path, table: str, says: str) -> None:
    """Exclusive credentials, a data stream without ECS, index names Elasticsearch would
    refuse, a tiny body cap: refused when the file is read, saying why, no secret shown."""
    with pytest.raises(ConfigError) as caught:
        config_of(tmp_path, 'url = "https://es.example.com"\n' + table)
    assert says in str(caught.value)
    assert "sinks[0]" in str(caught.value)
    assert "CANARY" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://es.example.com:9200", "https"),
        ("https://es.example.com:9200/?token=x", "query"),
        ("https://user:pw@es.example.com", "user:password"),
    ],
)
def test_bad_urls_are_refused(url: str, says: str) -> None:
    """Plain http beyond loopback, a query (the sink appends ``/_bulk``), user info: refused."""
    with pytest.raises(ValidationError, match=says):
        ElasticsearchSinkConfig(type="elasticsearch", url=url, api_key=SecretStr("k3y"))


async def test_a_proxy_path_is_kept(clock: FakeClock) -> None:
    """A url with a path (a proxy's prefix; a trailing slash or not) is where ``/_bulk`` and
    the template go under."""
    fake = EsReceiver(prefix="/es")
    fake.start()
    try:
        sink = ElasticsearchSink(fake.url() + "/", install_template=True, clock=clock)
        await sink.deliver(clicks(1))
        await sink.aclose()
    finally:
        fake.stop()
    assert [urlsplit(r.path).path for r in fake.requests] == [
        "/es/_index_template/mimecast-connector-mimecast-alerts",
        "/es/_bulk",
    ]
    assert len(fake.ids()) == 1
