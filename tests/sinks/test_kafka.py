"""The kafka sink against librdkafka's mock cluster (see ``adapter_kafka``): records produced
over the Kafka protocol and read back by a consumer, refusals, outages, back-pressure, the
event loop, secrets; and its settings.

The mock cluster runs in real time (librdkafka's timers are its own), so the tests that wait
for a timeout use delivery timeouts of a second or two.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
import traceback
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from mimecast_connector import ConfigError
from mimecast_connector._errors import SinkError, SinkRejectedError, SinkUnavailableError
from mimecast_connector.alerts import TRUNCATED, Format
from mimecast_connector.config import load_config
from mimecast_connector.sinks import make_sink as build_sink
from mimecast_connector.sinks._kafka import (
    CLOSE_FLUSH,
    GRACE,
    INSTALL_HINT,
    KIND,
    RECORD_OVERHEAD,
    REFUSALS,
    SLICE,
    Compression,
    KafkaSink,
    KafkaSinkConfig,
    _ClientLog,
    producer_config,
)
from tests.fakes import FakeClock
from tests.sinks.adapter_kafka import INIT_PRODUCER_ID, PRODUCE, MockCluster, Record
from tests.sinks.helpers import alert_id, clicks, expected, mixed

pytest.importorskip("confluent_kafka", reason="the kafka sink's extra is not installed")

from confluent_kafka import KafkaError

TOPIC = "alerts"
CANARY = "CANARY-kafka-password-6e1f"

MakeSink = Callable[..., Awaitable[KafkaSink]]


@pytest.fixture
def cluster() -> Iterator[MockCluster]:
    """A 3-broker mock cluster with topic ``alerts`` of 3 partitions."""
    made = MockCluster(3)
    made.create_topic(TOPIC, partitions=3)
    yield made
    made.close()


@pytest.fixture
async def make_sink(cluster: MockCluster) -> AsyncIterator[MakeSink]:
    """Builds started sinks producing to ``cluster`` (plain text: it is on loopback); closes them."""
    made: list[KafkaSink] = []

    async def make(**kwargs: Any) -> KafkaSink:
        settings: dict[str, Any] = {
            "brokers": cluster.brokers,
            "topic": TOPIC,
            "security_protocol": "PLAINTEXT",
            "delivery_timeout": 10.0,
            **kwargs,
        }
        sink = KafkaSink(**settings)
        made.append(sink)
        await sink.start(None)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


def by_key(records: list[Record]) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for record in records:
        found.setdefault((record.key or b"").decode(), []).append(record)
    return found


def free_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- records on the wire ----------------------------------------------------------------------


@pytest.mark.parametrize("format", ["native", "ocsf", "ecs", "cef"])
async def test_every_alert_arrives_once_keyed_by_its_id(
    make_sink: MakeSink, cluster: MockCluster, format: Format
) -> None:
    """One record per alert, read back by a consumer: key = alert id, value = the alert alone in
    the sink's format (no line feed), each exactly once, acknowledged only then."""
    batch = mixed()
    sink = await make_sink(format=format)
    assert await sink.deliver(batch) is None
    records = cluster.read(TOPIC)
    found = by_key(records)
    assert sorted(found) == sorted(a.id for a in batch)
    assert all(len(copies) == 1 for copies in found.values())
    for alert, want in zip(batch, expected(batch, format), strict=True):
        value = found[alert.id][0].value or b""
        assert not value.endswith(b"\n")
        got = value.decode() if format == "cef" else json.loads(value)
        assert got == want
        assert alert_id(got, format) == alert.id


async def test_the_producer_is_idempotent_on_the_wire(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """The brokers see the idempotent producer's handshake (InitProducerId) before its produce."""
    cluster.track_requests()
    await (await make_sink()).deliver(clicks(2))
    assert {INIT_PRODUCER_ID, PRODUCE} <= cluster.api_keys()


async def test_each_compression_arrives_readable(make_sink: MakeSink, cluster: MockCluster) -> None:
    """Every ``compression`` the settings offer is in the wheel's librdkafka: a consumer reads
    back each sink's records (the five sinks produce at once, to topics of their own)."""
    choices = typing.get_args(Compression)
    batches = {choice: clicks(2, start=10 * n) for n, choice in enumerate(choices)}
    sinks = {}
    for choice in choices:
        cluster.create_topic(f"compressed-{choice}")
        sinks[choice] = await make_sink(topic=f"compressed-{choice}", compression=choice)
    await asyncio.gather(*(sinks[c].deliver(batches[c]) for c in choices))
    for choice in choices:
        got = sorted(by_key(cluster.read(f"compressed-{choice}")))
        assert got == sorted(a.id for a in batches[choice]), choice


def test_the_producer_settings_are_safe_and_bounded() -> None:
    """acks=all, idempotence, the chosen compression, a small linger, ``delivery_timeout`` as the
    message timeout (no request outliving it), bounded queues, no topic auto-creation."""
    config = producer_config(
        ["k1.example.com:9093", "k2.example.com:9093"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username="mimecast",
        password=SecretStr(CANARY),
        ssl_ca_file="/etc/ssl/kafka-ca.pem",
        delivery_timeout=20.0,
    )
    assert config["bootstrap.servers"] == "k1.example.com:9093,k2.example.com:9093"
    assert (config["acks"], config["enable.idempotence"]) == ("all", True)
    assert config["compression.type"] == "zstd"
    assert 0 < int(config["linger.ms"]) <= 50
    assert config["message.timeout.ms"] == 20_000
    assert int(config["request.timeout.ms"]) <= 20_000
    assert config["allow.auto.create.topics"] is False
    assert int(config["queue.buffering.max.messages"]) <= 100_000
    assert int(config["queue.buffering.max.kbytes"]) <= 1024 * 1024
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (config["sasl.username"], config["sasl.password"]) == ("mimecast", CANARY)
    assert config["ssl.ca.location"] == "/etc/ssl/kafka-ca.pem"


async def test_topics_follow_the_template(make_sink: MakeSink, cluster: MockCluster) -> None:
    """``topic = "mimecast.{tenant}.{category}"``: each alert goes to its tenant's and category's
    topic, and only there."""
    batch = mixed()
    categories = sorted({a.category for a in batch})
    for category in categories:
        cluster.create_topic(f"mimecast.acme.{category}")
    await (await make_sink(topic="mimecast.{tenant}.{category}")).deliver(batch)
    for category in categories:
        got = sorted(by_key(cluster.read(f"mimecast.acme.{category}")))
        assert got == sorted(a.id for a in batch if a.category == category)
    assert cluster.read(TOPIC) == []


async def test_a_topic_name_kafka_refuses_stops_the_batch_before_anything_is_produced(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """A tenant whose name makes an invalid topic is refused with the rule and the tenant, and no
    record of the batch is produced (refused, not renamed: renaming could merge two tenants)."""
    cluster.create_topic("mimecast.acme")
    good, bad = clicks(2)
    bad = msgspec.structs.replace(bad, tenant="acme corp")
    sink = await make_sink(topic="mimecast.{tenant}")
    cluster.track_requests()
    with pytest.raises(SinkRejectedError) as caught:
        await sink.deliver([good, bad])
    assert "'acme corp'" in str(caught.value)
    assert "letters, digits" in str(caught.value)
    assert PRODUCE not in cluster.api_keys()
    assert cluster.read("mimecast.acme") == []


async def test_retriable_broker_errors_are_retried_and_each_alert_lands_once(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """Three produce answers of "not enough replicas" are retried by librdkafka within the
    timeout: the batch is acknowledged, every alert stored once (idempotence: no repeat)."""
    cluster.push_errors(PRODUCE, *[KafkaError.NOT_ENOUGH_REPLICAS] * 3)
    batch = clicks(6)
    assert await (await make_sink()).deliver(batch) is None
    found = by_key(cluster.read(TOPIC))
    assert sorted(found) == sorted(a.id for a in batch)
    assert all(len(copies) == 1 for copies in found.values())


# --- refusals ---------------------------------------------------------------------------------


async def test_a_missing_topic_is_refused_with_what_to_do(make_sink: MakeSink) -> None:
    """A topic that does not exist is not created: the batch is refused, naming the topic and
    saying to create it, once librdkafka stopped waiting for it to appear."""
    sink = await make_sink(topic="no-such-topic", topic_metadata_wait=0.5)
    with pytest.raises(SinkRejectedError) as caught:
        await sink.deliver(clicks(2))
    message = str(caught.value)
    assert "'no-such-topic'" in message
    assert "does not exist: create it" in message
    assert not caught.value.retryable


@pytest.mark.parametrize("where", ["metadata", "produce"])
async def test_an_unauthorized_topic_is_refused(
    make_sink: MakeSink, cluster: MockCluster, where: str
) -> None:
    """Topic authorization failed (in the metadata answer, or the produce answer): refused at
    once, saying which ACL to grant; not retried."""
    sink = await make_sink()
    if where == "metadata":
        cluster.topic_error(TOPIC, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    else:
        cluster.push_errors(PRODUCE, *[KafkaError.TOPIC_AUTHORIZATION_FAILED] * 3)
    started = time.monotonic()
    with pytest.raises(SinkRejectedError, match="grant it WRITE and DESCRIBE") as caught:
        await sink.deliver(clicks(3))
    assert time.monotonic() - started < 5.0
    assert "TOPIC_AUTHORIZATION_FAILED" in str(caught.value)


async def test_a_record_the_broker_finds_too_large_is_refused(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """A produce answered "message too large" is a refusal that names the topic setting to raise."""
    cluster.push_errors(PRODUCE, *[KafkaError.MSG_SIZE_TOO_LARGE] * 3)
    with pytest.raises(SinkRejectedError, match=r"max\.message\.bytes"):
        await (await make_sink()).deliver(clicks(1))


async def test_an_alert_over_max_message_bytes_is_sent_shortened(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """An alert whose record would be over ``max_message_bytes`` (a 2 MB URL; librdkafka and
    the broker refuse such a record, and the refusal stopped delivery for every tenant) is
    produced cut to fit, marked, its record replaced by a note of its size; the others of the
    batch as they are. The log names the alert, not its text."""
    batch = clicks(3)
    batch[2] = msgspec.structs.replace(batch[2], url="https://evil.example/" + "y" * 2_000_000)
    sink = await make_sink(format="native")
    with capture_logs() as logs:
        assert await sink.deliver(batch) is None
    found = {k: v[0].value or b"" for k, v in by_key(cluster.read(TOPIC)).items()}
    assert sorted(found) == sorted(a.id for a in batch)
    assert [json.loads(found[a.id]) for a in batch[:2]] == expected(batch[:2], "native")
    shortened = json.loads(found[batch[2].id])
    assert len(found[batch[2].id]) + len(batch[2].id) <= 1_000_000 - RECORD_OVERHEAD
    assert shortened["raw"] == {"truncated": True, "bytes": len(batch[2].raw)}
    assert shortened["url"].startswith("https://evil.example/yyy")
    assert shortened["url"].endswith(TRUNCATED)
    assert shortened["id"] == batch[2].id
    [log] = [entry for entry in logs if entry["event"] == "alert_shortened"]
    assert log["alert"] == batch[2].id
    assert "evil.example" not in repr(logs)


async def test_a_record_over_max_message_bytes_even_shortened_is_refused_before_it_is_sent(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """An alert that cannot fit ``max_message_bytes`` even with its texts cut (an OCSF finding
    in 1,000 bytes) is refused before anything is produced: nothing of the batch reaches a
    broker unacknowledged-but-kept."""
    batch = clicks(3)
    with pytest.raises(SinkRejectedError, match="max_message_bytes"):
        await (await make_sink(max_message_bytes=1000, format="ocsf")).deliver(batch)
    assert cluster.read(TOPIC) == []


async def test_a_refused_login_stops_the_batch_at_once(cluster: MockCluster) -> None:
    """A SASL login the brokers refuse (the mock has no SASL at all) is a refusal within
    seconds, not a wait for the 30 s delivery timeout, saying what to check."""
    sink = KafkaSink(
        cluster.brokers,
        TOPIC,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        username="mimecast",
        password=SecretStr(CANARY),
        delivery_timeout=30.0,
    )
    await sink.start(None)
    started = time.monotonic()
    try:
        with pytest.raises(SinkRejectedError, match="refused the login: check `username`"):
            await sink.deliver(clicks(1))
    finally:
        await sink.aclose()
    assert time.monotonic() - started < 10.0


async def test_a_fatal_producer_error_replaces_the_producer(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """A fatal idempotence error (no IDEMPOTENT_WRITE right) refuses the batch saying so; the
    broken producer is dropped, and the next batch, with a new producer, is acknowledged."""
    cluster.push_errors(INIT_PRODUCER_ID, KafkaError.CLUSTER_AUTHORIZATION_FAILED)
    sink = await make_sink()
    with pytest.raises(SinkRejectedError, match="IDEMPOTENT_WRITE"):
        await sink.deliver(clicks(2))
    batch = clicks(2, start=2)
    assert await sink.deliver(batch) is None
    assert sorted(by_key(cluster.read(TOPIC))) == sorted(a.id for a in batch)


# --- outages ----------------------------------------------------------------------------------


async def test_brokers_down_is_not_acknowledged_within_the_bound(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """Every broker down: not acknowledged after about ``delivery_timeout`` (and never more than
    it plus the grace), a retryable error naming the timeout; nothing was stored, and once the
    brokers are back the same batch is stored whole."""
    batch = clicks(3)
    sink = await make_sink(delivery_timeout=1.0)
    cluster.down()
    started = time.monotonic()
    with pytest.raises(SinkUnavailableError) as caught:
        await sink.deliver(batch)
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed <= 1.0 + GRACE
    assert caught.value.retryable
    assert "3 of 3 records not acknowledged (3 x _MSG_TIMED_OUT" in str(caught.value)
    cluster.up()
    assert cluster.read(TOPIC) == []
    await (await make_sink()).deliver(batch)  # the next poll (a fresh connection: no backoff)
    assert sorted(by_key(cluster.read(TOPIC))) == sorted(a.id for a in batch)


async def test_an_unreachable_bootstrap_is_not_acknowledged_within_the_bound() -> None:
    """A bootstrap server nobody listens on: not acknowledged within the bound, and the error
    says what the client saw (connection refused)."""
    sink = KafkaSink(
        [f"127.0.0.1:{free_port()}"], TOPIC, security_protocol="PLAINTEXT", delivery_timeout=1.0
    )
    await sink.start(None)
    started = time.monotonic()
    try:
        with pytest.raises(SinkUnavailableError) as caught:
            await sink.deliver(clicks(2))
    finally:
        await sink.aclose()
    assert time.monotonic() - started <= 1.0 + GRACE
    assert "_MSG_TIMED_OUT" in str(caught.value)
    assert "Connection refused" in str(caught.value)


async def test_a_partly_stored_batch_is_not_acknowledged(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """One partition's leader answers too late: the records for the other partitions are stored,
    but the batch is not acknowledged; sent again, every alert is there (at least once, same keys)."""
    batch = clicks(12)
    for partition in range(3):
        cluster.set_leader(TOPIC, partition, partition + 1)
    assert [cluster.leader(TOPIC, partition) for partition in range(3)] == [1, 2, 3]
    cluster.answer_late(2, PRODUCE, KafkaError.REQUEST_TIMED_OUT, 2500)
    sink = await make_sink(delivery_timeout=1.5)
    with pytest.raises(SinkUnavailableError, match=r"of 12 records not acknowledged"):
        await sink.deliver(batch)
    stored = by_key(cluster.read(TOPIC))
    assert 0 < len(stored) < len(batch)
    await (await make_sink()).deliver(batch)
    found = by_key(cluster.read(TOPIC))
    assert sorted(found) == sorted(a.id for a in batch)
    assert {len(copies) for copies in found.values()} <= {1, 2}


async def test_reports_that_never_come_are_not_waited_for_past_the_bound(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """If delivery reports do not come back within ``delivery_timeout`` plus the grace (on the
    injected clock), the batch is not acknowledged and the producer replaced; the next batch
    is acknowledged."""

    class Leaping(FakeClock):
        def monotonic(self) -> float:
            self.mono += 60.0  # every look at the clock is a minute later
            return self.mono

    sink = await make_sink(clock=Leaping())
    with pytest.raises(SinkUnavailableError, match="did not come back within 10 s"):
        await sink.deliver(clicks(2))
    sink._clock = FakeClock()
    assert await sink.deliver(clicks(1)) is None


# --- back-pressure and the event loop ---------------------------------------------------------


async def test_a_full_queue_is_waited_out(make_sink: MakeSink, cluster: MockCluster) -> None:
    """With room for 2 records in librdkafka's queue, a batch of 10 waits for room instead of
    failing: acknowledged, every alert stored once."""
    batch = clicks(10)
    assert await (await make_sink(max_queued=2)).deliver(batch) is None
    found = by_key(cluster.read(TOPIC))
    assert sorted(found) == sorted(a.id for a in batch)
    assert all(len(copies) == 1 for copies in found.values())


async def test_the_event_loop_runs_while_kafka_is_waited_for(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """While a delivery waits 1 s on brokers that are down, other tasks keep running: a 10 ms
    ticker ticks most of its ticks (librdkafka's waits are on a worker thread)."""
    sink = await make_sink(delivery_timeout=1.0)
    cluster.down()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(clicks(2))
    elapsed = time.monotonic() - started
    task.cancel()
    assert ticks >= elapsed / 0.01 / 4, (ticks, elapsed)


async def test_a_cancelled_delivery_lets_go_within_a_slice_and_close_is_bounded(
    make_sink: MakeSink, cluster: MockCluster
) -> None:
    """A delivery cancelled while it waits ends within one wait slice; closing then waits at most
    its flush time; and a closed sink refuses to deliver."""
    sink = await make_sink(delivery_timeout=1.0)
    cluster.down()
    task = asyncio.create_task(sink.deliver(clicks(2)))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started <= SLICE + 0.5
    started = time.monotonic()
    await sink.aclose()
    assert time.monotonic() - started <= CLOSE_FLUSH + 2.0
    with pytest.raises(SinkRejectedError, match="after aclose"):
        await sink.deliver(clicks(1))


async def test_an_empty_batch_touches_no_broker(make_sink: MakeSink, cluster: MockCluster) -> None:
    """An empty batch is acknowledged without a produce request."""
    sink = await make_sink()
    cluster.track_requests()
    assert await sink.deliver([]) is None
    assert PRODUCE not in cluster.api_keys()


# --- secrets ----------------------------------------------------------------------------------


async def test_no_secret_reaches_errors_reprs_or_logs(cluster: MockCluster) -> None:
    """The canary password goes to librdkafka, but into no name, repr, error, traceback or log
    line: not through a refused login, a timeout, nor a client message that quoted it."""
    settings = KafkaSinkConfig.model_validate(
        {
            "type": "kafka",
            "brokers": cluster.brokers,
            "topic": TOPIC,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "username": "mimecast",
            "password": CANARY,
            "delivery_timeout": 1.0,
        }
    )
    assert settings.secrets() == [CANARY]
    sink = build_sink(settings)
    assert isinstance(sink, KafkaSink)
    unreachable = KafkaSink(
        [f"127.0.0.1:{free_port()}"],
        TOPIC,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        username="mimecast",
        password=SecretStr(CANARY),
        delivery_timeout=1.0,
    )
    errors: list[SinkError] = []
    with capture_logs() as logs:
        for each in (sink, unreachable):
            await each.start(None)
            with pytest.raises(SinkError) as caught:
                await each.deliver(mixed())
            errors.append(caught.value)
        for each in (sink, unreachable):
            await each.aclose()
        # librdkafka does not quote passwords; should a client message ever, it is cut out.
        echo = KafkaSink(
            cluster.brokers, TOPIC, security_protocol="PLAINTEXT", password=SecretStr(CANARY)
        )
        echo._on_error(KafkaError(KafkaError._TRANSPORT, f"echo {CANARY}"))
        _ClientLog(echo).log(50, "%s [%s] %s", "FAIL", "rdkafka#producer-1", f"echo {CANARY}")
        echoed = echo._last_seen()
    assert [type(e) for e in errors] == [SinkRejectedError, SinkUnavailableError]
    assert logs
    texts = [sink.name, repr(sink), unreachable.name, repr(unreachable), repr(settings), echoed]
    texts.append(repr(logs))
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert [t for t in texts if CANARY in t] == []
    assert "echo [secret]" in echoed
    assert [e["event"] for e in logs if "echo [secret]" in str(e)] == [
        "sink_kafka_error",
        "sink_kafka_client",
    ]


# --- settings ---------------------------------------------------------------------------------

TENANT = '[[tenants]]\nname = "acme"\nclient_id = "i"\nclient_secret = "s"\n'


def load_sink(tmp_path: Path, table: str, environ: dict[str, str] | None = None) -> KafkaSinkConfig:
    path = tmp_path / "c.toml"
    path.write_text(TENANT + '[[sinks]]\ntype = "kafka"\n' + table)
    [settings] = load_config(path, environ=environ or {}).sinks
    assert isinstance(settings, KafkaSinkConfig)
    return settings


def test_the_defaults(tmp_path: Path) -> None:
    """Only ``brokers`` is needed: topic mimecast.alerts, native, TLS, zstd, 120 s, 1 MB."""
    settings = load_sink(tmp_path, 'brokers = ["kafka-1.example.com:9093"]\n')
    assert settings.topic == "mimecast.alerts"
    assert settings.format == "native"
    assert settings.security_protocol == "SSL"
    assert settings.compression == "zstd"
    assert settings.delivery_timeout == 120.0
    assert settings.max_message_bytes == 1_000_000
    assert settings.secrets() == []
    assert isinstance(build_sink(settings), KafkaSink)


def test_the_password_comes_from_the_environment_and_never_shows(tmp_path: Path) -> None:
    """``password = "env:NAME"`` is read from the environment, listed for redaction, hidden in repr."""
    settings = load_sink(
        tmp_path,
        'brokers = ["kafka-1.example.com:9093"]\nsecurity_protocol = "SASL_SSL"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\nusername = "mimecast"\npassword = "env:KAFKA_PW"\n',
        {"KAFKA_PW": CANARY},
    )
    assert settings.password is not None
    assert settings.password.get_secret_value() == CANARY
    assert settings.secrets() == [CANARY]
    assert CANARY not in repr(settings)


def test_plain_text_is_allowed_for_loopback_brokers(tmp_path: Path) -> None:
    """PLAINTEXT (and SASL_PLAINTEXT) is accepted when every broker is on this machine."""
    settings = load_sink(
        tmp_path,
        'brokers = ["127.0.0.1:9092", "localhost:9093", "[::1]:9094"]\nsecurity_protocol = "PLAINTEXT"\n',
    )
    assert settings.security_protocol == "PLAINTEXT"


def test_a_relative_ca_file_is_read_from_the_configuration_folder(tmp_path: Path) -> None:
    """``ssl_ca_file`` relative to the configuration file's folder, like every other path."""
    settings = load_sink(tmp_path, 'brokers = ["k.example.com:9093"]\nssl_ca_file = "ca.pem"\n')
    assert settings.ssl_ca_file == str(tmp_path / "ca.pem")


async def test_a_ca_file_that_cannot_be_read_stops_the_sink_at_start(tmp_path: Path) -> None:
    """A CA file librdkafka cannot load is a refusal at start (not at the first batch), saying so."""
    sink = KafkaSink(["k.example.com:9093"], ssl_ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(SinkRejectedError, match=r"ssl\.ca\.location"):
        await sink.start(None)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ("brokers = []", "is an empty array: it needs at least 1"),
        ('brokers = ["kafka://k.example.com:9092"]', "must be host:port"),
        ('brokers = ["user:pw@k.example.com:9092"]', "must be host:port"),
        ('brokers = ["k.example.com"]', "must be host:port"),
        ('brokers = ["k1.example.com:9092,k2.example.com:9092"]', "must be host:port"),
        ('brokers = ["k.example.com:99999"]', "between 1 and 65535"),
        ('brokers = ["k_1.example.com:9092"]', "not a host name"),
        ('brokers = ["[fe80::1::2]:9092"]', "not an IPv6 address"),
        ('brokers = ["k.example.com:9093"]\ntopic = "mimecast alerts"', "letters, digits"),
        ('brokers = ["k.example.com:9093"]\ntopic = ".."', "'.' and '..'"),
        ('brokers = ["k.example.com:9093"]\ntopic = "' + "t" * 250 + '"', "1 to 249"),
        ('brokers = ["k.example.com:9093"]\ntopic = "mimecast.{tenant"', "unmatched"),
        (
            'brokers = ["k.example.com:9093"]\ntopic = "mimecast.{stream}"',
            "only {tenant} and {category}",
        ),
        (
            'brokers = ["k.example.com:9093"]\ntopic = "mimecast.{tenant:>9}"',
            "only {tenant} and {category}",
        ),
        (
            'brokers = ["k.example.com:9093"]\ntopic = "' + "t" * 150 + '.{tenant}"',
            "Kafka allows 249",
        ),
        ('brokers = ["k.example.com:9092"]\nsecurity_protocol = "PLAINTEXT"', "unencrypted"),
        (
            'brokers = ["k.example.com:9093"]\nsecurity_protocol = "SASL_SSL"',
            "needs sasl_mechanism, username, password",
        ),
        (
            'brokers = ["k.example.com:9093"]\nusername = "u"\npassword = "p"',
            "need security_protocol SASL_SSL",
        ),
        (
            'brokers = ["127.0.0.1:9092"]\nsecurity_protocol = "PLAINTEXT"\nssl_ca_file = "ca.pem"',
            "ssl_ca_file needs",
        ),
        ('brokers = ["k.example.com:9093"]\ncompression = "brotli"', "compression"),
        (
            'brokers = ["k.example.com:9093"]\ndelivery_timeout = 0',
            "0 is out of range: it must be from 1 to 3600",
        ),
        (
            'brokers = ["k.example.com:9093"]\nmax_message_bytes = 10',
            "10 is out of range: it must be from 1000 to 100000000",
        ),
        ('brokers = ["k.example.com:9093"]\nacks = "1"', "unknown key"),
    ],
)
def test_settings_that_cannot_work_are_refused(tmp_path: Path, table: str, problem: str) -> None:
    """Each setting that could not work is refused when the configuration is read, saying why."""
    with pytest.raises(ConfigError) as caught:
        load_sink(tmp_path, table + "\n")
    assert problem in str(caught.value)


def test_every_refusal_is_an_error_librdkafka_has() -> None:
    """The refusal table's names are librdkafka's (a typo would make a refusal a retry loop)."""
    assert [name for name in REFUSALS if not hasattr(KafkaError, name)] == []


def test_without_confluent_kafka_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without confluent-kafka, reading the configuration and building the sink both say
    ``pip install 'mimecast-connector[kafka]'``."""
    settings = load_sink(tmp_path, 'brokers = ["k.example.com:9093"]\n')
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # what an absent package looks like
    with pytest.raises(ConfigError) as caught:
        load_sink(tmp_path, 'brokers = ["k.example.com:9093"]\n')
    assert "pip install 'mimecast-connector[kafka]'" in str(caught.value)
    with pytest.raises(ConfigError) as built:
        KIND.build(settings)
    assert INSTALL_HINT in str(built.value)
