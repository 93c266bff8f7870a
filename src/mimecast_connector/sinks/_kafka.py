"""The ``kafka`` sink: each alert one Kafka record, produced with confluent-kafka (librdkafka).

A record's key is the alert's ``id``; its value is the alert in the sink's format (``native``,
``ocsf``, ``ecs`` as one JSON document, ``cef`` as one CEF line), with no line feed. The topic is
``topic``, where ``{tenant}`` and ``{category}`` are replaced by the alert's (so
``mimecast.{tenant}`` gives each tenant its own topic). Topics are never created by the sink:
a typo would otherwise make a topic nobody reads.

The producer is idempotent with ``acks=all``: a record is acknowledged once every in-sync
replica has it, and librdkafka's own retries (within ``delivery_timeout``) never write it twice
nor out of order.

Acknowledged: :meth:`KafkaSink.deliver` produces every alert of the batch, then waits until the
delivery report of every record came back, never longer than ``delivery_timeout`` (librdkafka's
``message.timeout.ms``) plus a few seconds. All without error: the batch is acknowledged. Any
record failed: the batch is not, and the next poll produces all of it again. At least once: the
records that did arrive are then written twice, under the same key, so compaction or consumers
drop the repeats by key. What failed decides the error, from one table (:data:`REFUSALS`,
style.md habit 6):

* a refusal a retry will not change (topic authorization, no such topic, a record too large, a
  refused login, a compression the broker lacks):
  :class:`~mimecast_connector.SinkRejectedError`, saying what to fix;
* anything else (timeouts, brokers down, not enough replicas for longer than the timeout):
  :class:`~mimecast_connector.SinkUnavailableError`, with the last broker error seen.

librdkafka is synchronous C under a Python API: every call that may wait (``flush``, closing)
runs in a worker thread, in slices of at most :data:`SLICE` seconds, so the event loop never
waits on it and a cancelled delivery lets go within a slice. ``produce`` itself only queues; a
full queue (``BufferError``) is waited out, bounded by the same deadline. A fatal producer error
(librdkafka's idempotence state lost) drops the producer; the next batch gets a new one.

librdkafka's log lines go to structlog (at debug, fatal ones at error); its error callbacks are
logged once per kind per batch, at warning. No text from the client reaches a log or an error
before every secret of the sink was cut out of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import ipaddress
import re
import string
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from mimecast_connector._categories import Category
from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import (
    ConfigError,
    SinkError,
    SinkRejectedError,
    SinkUnavailableError,
)
from mimecast_connector._fields import path_text, plain, secret_str, short
from mimecast_connector.alerts import ONE_ENCODERS, Alert, Format
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._limit import within
from mimecast_connector.sinks._registry import SinkKind, SinkSettings

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

INSTALL_HINT = (
    "the kafka sink needs the confluent-kafka package: "
    "pip install 'mimecast-connector[kafka]' (or pip install confluent-kafka)"
)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
Compression = Literal["zstd", "lz4", "snappy", "gzip", "none"]

DEFAULT_TOPIC = "mimecast.alerts"
#: librdkafka waits this long for records to go out together (a batch is flushed anyway).
LINGER_MS = 5
#: The longest one wait on librdkafka lasts before the event loop looks again.
SLICE = 0.25
#: How long past ``delivery_timeout`` the sink waits for the last delivery reports (librdkafka
#: checks its timeouts about once a second) before it gives the producer up.
GRACE = 5.0
#: How long closing waits for records still on their way (a batch not acknowledged).
CLOSE_FLUSH = 5.0
#: librdkafka's queue, bounded (style.md habit 7): a batch larger than this waits for room.
MAX_QUEUED_MESSAGES = 100_000
MAX_QUEUED_KBYTES = 64 * 1024
#: How long librdkafka waits for a topic it does not know to appear before failing its records.
TOPIC_METADATA_WAIT = 30.0

#: Kafka's rule for topic names (``kafka.common.internals.Topic``): at most 249 of these.
MAX_TOPIC = 249
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_TOPIC_TEXT = re.compile(r"^[A-Za-z0-9._-]*$")
#: Tenant names are at most this long (``config``), categories at most the longest one.
_LONGEST = {"tenant": 100, "category": max(len(c.value) for c in Category)}

_HOST = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_BROKER = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]]+):(?P<port>[0-9]{1,5})$")

_log = structlog.get_logger("mimecast_connector.sinks")

_TOPIC_ADVICE = (
    "the topic does not exist: create it (the sink never creates topics), or fix `topic`"
)
#: Bytes of a Kafka record besides its key and value (its framing in a record batch), kept
#: free under ``max_message_bytes`` when an alert is shortened to fit.
RECORD_OVERHEAD = 256
_SIZE_ADVICE = (
    "an alert is larger than the broker takes: raise the topic's max.message.bytes (and "
    "`max_message_bytes` to match)"
)
_LOGIN_ADVICE = (
    "the brokers refused the login: check `username`, `password` and `sasl_mechanism` "
    "(and that the user exists for that mechanism)"
)

#: Errors a retry will not change, by librdkafka's name, and what to do about each (a
#: :class:`~mimecast_connector.SinkRejectedError`); every other error is retried on the next
#: poll (:class:`~mimecast_connector.SinkUnavailableError`).
REFUSALS: dict[str, str] = {
    "TOPIC_AUTHORIZATION_FAILED": "the user may not write to the topic: grant it WRITE and "
    "DESCRIBE on the topic (Kafka ACLs)",
    "CLUSTER_AUTHORIZATION_FAILED": "the user may not use the idempotent producer: grant it "
    "IDEMPOTENT_WRITE on the cluster (needed before Kafka 2.8)",
    "UNKNOWN_TOPIC_OR_PART": _TOPIC_ADVICE,
    "_UNKNOWN_TOPIC": _TOPIC_ADVICE,
    "_UNKNOWN_PARTITION": _TOPIC_ADVICE,
    "TOPIC_EXCEPTION": "the broker refused the topic's name: fix `topic`",
    "MSG_SIZE_TOO_LARGE": _SIZE_ADVICE,
    "RECORD_LIST_TOO_LARGE": _SIZE_ADVICE,
    "INVALID_RECORD": "the broker refused the records (a broker or topic policy): see the "
    "broker's log",
    "POLICY_VIOLATION": "a broker policy refused the records: see the broker's log",
    "UNSUPPORTED_COMPRESSION_TYPE": "the brokers do not take this `compression` (zstd needs "
    "Kafka 2.1): choose lz4 or gzip",
    "UNSUPPORTED_FOR_MESSAGE_FORMAT": "the topic's message format is too old for this "
    "producer: upgrade the topic (log.message.format.version) or the brokers",
    "UNSUPPORTED_VERSION": "the brokers are too old for an idempotent producer (Kafka 0.11 "
    "or later is needed)",
    "INVALID_REQUIRED_ACKS": "the brokers refused acks=all: see the broker's log",
    "SASL_AUTHENTICATION_FAILED": _LOGIN_ADVICE,
    "_AUTHENTICATION": _LOGIN_ADVICE,
    "_INVALID_ARG": "librdkafka refused the settings: check the sink's settings",
}

#: Errors that refuse the whole batch as soon as librdkafka reports them (its error callback):
#: waiting out the timeout would not change them.
_STOP_AT_ONCE = frozenset({"_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED"})


# --- topics ---------------------------------------------------------------------------------


def topic_problem(name: str) -> str | None:
    """Why Kafka would refuse ``name`` as a topic, or None."""
    if name in (".", ".."):
        return "'.' and '..' are not topic names"
    if not _TOPIC.match(name):
        return (
            f"a topic name is 1 to {MAX_TOPIC} letters, digits, '.', '_' and '-' "
            f"(this one has {len(name)} characters)"
        )
    return None


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot name topics, or None: outside ``{tenant}`` and ``{category}``
    (nothing else in braces) only a topic name's characters, and at most 249 characters with
    the longest tenant name and category put in."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        return "has an unmatched '{' or '}' (only {tenant} and {category} may be in braces)"
    longest = 0
    fields = 0
    for text, field, spec, conversion in parts:
        if not _TOPIC_TEXT.match(text):
            return (
                "may hold only letters, digits, '.', '_' and '-' besides {tenant} and "
                "{category} (Kafka's rule for topic names)"
            )
        longest += len(text)
        if field is None:
            continue
        if field not in _LONGEST or spec or conversion:
            return f"may hold only {{tenant}} and {{category}} in braces, not {short('{' + field + '}')}"
        longest += _LONGEST[field]
        fields += 1
    if fields == 0:
        return topic_problem(template)
    if longest > MAX_TOPIC:
        return (
            f"could make topic names of {longest} characters with the longest tenant name "
            f"(100) put in; Kafka allows {MAX_TOPIC}"
        )
    return None


def topic_router(template: str) -> Callable[[Alert], str]:
    """The topic of an alert, decided once per template (style.md habit 3): the template
    itself, or the template filled in, checked once per tenant and category. A name Kafka
    would refuse raises ValueError: the sink refuses the batch rather than rename the topic
    (a renamed topic could merge two tenants' alerts)."""
    if not any(field is not None for _, field, _, _ in string.Formatter().parse(template)):
        return lambda alert: template
    known: dict[tuple[str, str], str] = {}

    def route(alert: Alert) -> str:
        key = (alert.tenant, alert.category)
        topic = known.get(key)
        if topic is None:
            topic = template.format(tenant=alert.tenant, category=alert.category)
            problem = topic_problem(topic)
            if problem is not None:
                raise ValueError(
                    f"`topic` {template!r} gives {short(topic)} for tenant "
                    f"{short(alert.tenant)}: {problem}; nothing of the batch was produced"
                )
            if len(known) < 10_000:  # tenants x categories; bounded all the same
                known[key] = topic
        return topic

    return route


# --- the producer's settings ------------------------------------------------------------------


def producer_config(
    brokers: Sequence[str],
    *,
    security_protocol: SecurityProtocol = "SSL",
    sasl_mechanism: SaslMechanism | None = None,
    username: str | None = None,
    password: SecretStr | None = None,
    ssl_ca_file: str | None = None,
    compression: Compression = "zstd",
    delivery_timeout: float = 120.0,
    max_message_bytes: int = 1_000_000,
    topic_metadata_wait: float = TOPIC_METADATA_WAIT,
    max_queued: int = MAX_QUEUED_MESSAGES,
) -> dict[str, str | int | bool]:
    """librdkafka's configuration of the sink's producer (callbacks aside). It holds the
    password: build it only to hand it to the producer, never to show it."""
    timeout_ms = max(1, round(delivery_timeout * 1000))
    config: dict[str, str | int | bool] = {
        "bootstrap.servers": ",".join(brokers),
        "client.id": "mimecast-connector",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": LINGER_MS,
        "message.timeout.ms": timeout_ms,
        # A request in flight is failed at this time, not librdkafka's default 30 s: the
        # records in it would otherwise outlive ``delivery_timeout``.
        "request.timeout.ms": min(30_000, timeout_ms),
        "message.max.bytes": max_message_bytes,
        "queue.buffering.max.messages": max_queued,
        "queue.buffering.max.kbytes": MAX_QUEUED_KBYTES,
        "allow.auto.create.topics": False,
        "topic.metadata.propagation.max.ms": max(1, round(topic_metadata_wait * 1000)),
        "socket.keepalive.enable": True,
        "log.connection.close": False,
        "security.protocol": security_protocol,
    }
    if ssl_ca_file is not None:
        config["ssl.ca.location"] = ssl_ca_file
    if sasl_mechanism is not None:
        config["sasl.mechanism"] = sasl_mechanism
    if username is not None:
        config["sasl.username"] = username
    if password is not None:
        config["sasl.password"] = password.get_secret_value()
    return config


# --- the sink ---------------------------------------------------------------------------------


class _Reports:
    """One batch's delivery reports, counted as librdkafka hands them over (in a worker
    thread, during ``flush``); read on the event loop after each slice."""

    def __init__(self, count: int) -> None:
        self.pending = count
        self.failed: list[tuple[str | None, KafkaError]] = []

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        self.pending -= 1
        if error is not None:
            self.failed.append((message.topic(), error))


class _ClientLog:
    """What confluent-kafka calls as ``logger``: librdkafka's log lines, into structlog."""

    def __init__(self, sink: KafkaSink) -> None:
        self._sink = sink

    def log(self, level: int, message: str, *args: object) -> None:
        text = self._sink.redact(message % args if args else message)
        if level >= 50:  # FATAL and worse
            _log.error("sink_kafka_client", sink=self._sink.name, text=text)
        else:
            _log.debug("sink_kafka_client", sink=self._sink.name, client_level=level, text=text)


class KafkaSink:
    """Alerts as Kafka records, keyed by id, from one idempotent producer."""

    def __init__(
        self,
        brokers: Sequence[str],
        topic: str = DEFAULT_TOPIC,
        format: Format = "native",
        *,
        security_protocol: SecurityProtocol = "SSL",
        sasl_mechanism: SaslMechanism | None = None,
        username: str | None = None,
        password: SecretStr | None = None,
        ssl_ca_file: str | None = None,
        compression: Compression = "zstd",
        delivery_timeout: float = 120.0,
        max_message_bytes: int = 1_000_000,
        topic_metadata_wait: float = TOPIC_METADATA_WAIT,
        max_queued: int = MAX_QUEUED_MESSAGES,
        clock: Clock | None = None,
    ) -> None:
        if (problem := template_problem(topic)) is not None:
            raise ValueError(f"topic {short(topic)}: {problem}")
        if not brokers:
            raise ValueError("no brokers")
        self._format: Format = format
        self._encode = ONE_ENCODERS[format]
        self._max_message = max_message_bytes
        self._route = topic_router(topic)
        self._delivery_timeout = delivery_timeout
        self._clock: Clock = clock or SystemClock()
        self._password = password
        self._settings: dict[str, Any] = {
            "security_protocol": security_protocol,
            "sasl_mechanism": sasl_mechanism,
            "username": username,
            "password": password,
            "ssl_ca_file": ssl_ca_file,
            "compression": compression,
            "delivery_timeout": delivery_timeout,
            "max_message_bytes": max_message_bytes,
            "topic_metadata_wait": topic_metadata_wait,
            "max_queued": max_queued,
        }
        self._brokers = list(brokers)
        # The name keys the sink in the state store and shows in messages: the first broker
        # and the topic, and a digest of every broker (no user name, no password).
        digest = hashlib.sha256("\n".join([*self._brokers, topic]).encode()).hexdigest()[:8]
        self.name = f"kafka:{self._brokers[0]}/{topic}#{digest}"
        self._producer: Producer | None = None
        self._closed = False
        #: The broker errors seen during the batch on its way: the last one, and the kinds
        #: already logged (each kind is logged once per batch).
        self._last_error: tuple[str, str] | None = None
        self._logged: set[str] = set()
        self._stop: tuple[str, str] | None = None

    def __repr__(self) -> str:
        return f"KafkaSink({self.name!r}, format={self._format!r})"

    @property
    def format(self) -> Format:
        return self._format

    def redact(self, text: str) -> str:
        """``text`` with the password cut out (librdkafka never prints it; this makes sure)."""
        if self._password is not None and (secret := self._password.get_secret_value()):
            return text.replace(secret, "[secret]")
        return text

    # --- the producer -------------------------------------------------------------------------

    def _make_producer(self) -> Producer:
        try:
            from confluent_kafka import KafkaException, Producer
        except ImportError:
            raise SinkRejectedError(INSTALL_HINT, sink=self.name) from None
        config: dict[str, Any] = producer_config(self._brokers, **self._settings)
        config["error_cb"] = self._on_error
        config["logger"] = _ClientLog(self)
        try:
            return Producer(config)
        except (KafkaException, ValueError, TypeError) as exc:
            raise SinkRejectedError(
                f"the Kafka producer cannot be made with these settings: "
                f"{self.redact(_error_text(exc))}",
                sink=self.name,
            ) from None

    def _on_error(self, error: KafkaError) -> None:
        """librdkafka's error callback (in the thread serving ``flush``)."""
        name, text = error.name(), self.redact(error.str())
        self._last_error = (name, text)
        if name in _STOP_AT_ONCE:
            self._stop = (name, text)
        if name not in self._logged:
            self._logged.add(name)
            _log.warning("sink_kafka_error", sink=self.name, error=name, text=text)

    async def _drop_producer(self, flush: float) -> None:
        """Let the producer go: what is still queued gets ``flush`` seconds, then is purged
        (its batch was not acknowledged: it is produced again)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.to_thread(_shut, producer, flush)

    async def start(self, position: str | None) -> str | None:
        """Make the producer (so bad settings show at start); Kafka keeps no position here."""
        if self._producer is None:
            self._producer = self._make_producer()
        return None

    def committed(self, position: str | None) -> None:
        """Nothing to do: the sink has no position."""

    async def aclose(self) -> None:
        self._closed = True
        await self._drop_producer(CLOSE_FLUSH)

    # --- delivering ---------------------------------------------------------------------------

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        if self._closed:
            raise SinkRejectedError("deliver() after aclose()", sink=self.name)
        if not alerts:
            return None
        try:
            records = [(self._route(a), a.id.encode(), self._value(a)) for a in alerts]
        except ValueError as exc:
            raise SinkRejectedError(str(exc), sink=self.name) from None
        if self._producer is None:
            self._producer = self._make_producer()
        producer = self._producer
        self._last_error, self._stop = None, None
        self._logged.clear()
        deadline = self._clock.monotonic() + self._delivery_timeout + GRACE
        reports = _Reports(len(records))
        try:
            await self._produce(producer, records, reports, deadline)
            await self._wait(producer, reports, deadline)
        except SinkError:
            # Records of this batch may still be queued: they must not go out after the batch
            # was reported unacknowledged (and the producer may be broken).
            await self._drop_producer(0.0)
            raise
        except Exception as exc:  # librdkafka's fatal errors, any other failure of the producer
            await self._drop_producer(0.0)
            raise self._fatal(exc, len(records)) from None
        if reports.failed:
            raise self._failure(reports.failed, len(records))
        return None

    def _value(self, alert: Alert) -> bytes:
        """The alert's record value: encoded, or shortened (``sinks._limit``) when it and its
        key would be over ``max_message_bytes``, which librdkafka and the broker refuse."""
        limit = self._max_message - len(alert.id) - RECORD_OVERHEAD
        return within(alert, self._encode, limit, sink=self.name, setting="max_message_bytes")

    async def _produce(
        self,
        producer: Producer,
        records: list[tuple[str, bytes, bytes]],
        reports: _Reports,
        deadline: float,
    ) -> None:
        from confluent_kafka import KafkaException

        for index, (topic, key, value) in enumerate(records):
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=reports)
                    break
                except BufferError:
                    # librdkafka's queue is full: serve delivery reports until there is room.
                    if self._clock.monotonic() >= deadline:
                        raise SinkUnavailableError(
                            f"librdkafka's queue stayed full for {self._delivery_timeout:g} s "
                            f"(record {index + 1} of {len(records)}); the batch is produced "
                            "again on the next poll",
                            sink=self.name,
                        ) from None
                    await asyncio.to_thread(producer.poll, SLICE)
                except KafkaException as exc:  # refused before it was queued
                    error = exc.args[0] if exc.args else None
                    if error is None or not hasattr(error, "name"):
                        raise
                    reports.failed.append((topic, error))
                    raise self._failure(reports.failed, len(records), refused=index + 1) from None

    async def _wait(self, producer: Producer, reports: _Reports, deadline: float) -> None:
        """Wait, in slices on a worker thread, until every report of the batch came back."""
        while reports.pending > 0:
            if self._stop is not None:
                name, text = self._stop
                raise SinkRejectedError(
                    f"{REFUSALS.get(name, 'the brokers refused the producer')} ({name}: "
                    f"{text}); not retried: the same settings would get the same answer",
                    sink=self.name,
                )
            left = deadline - self._clock.monotonic()
            if left <= 0:
                raise SinkUnavailableError(
                    f"{reports.pending} delivery reports did not come back within "
                    f"{self._delivery_timeout:g} s{self._last_seen()}; the producer is "
                    "replaced and the batch is produced again on the next poll",
                    sink=self.name,
                )
            await asyncio.to_thread(producer.flush, min(SLICE, left))

    # --- errors -------------------------------------------------------------------------------

    def _last_seen(self) -> str:
        if self._last_error is None:
            return ""
        name, text = self._last_error
        return f" (last broker error: {name}: {text})"

    def _failure(
        self, failed: list[tuple[str | None, KafkaError]], total: int, refused: int | None = None
    ) -> SinkError:
        """The error of a batch with failed records: a refusal from the table if any record
        got one, else unavailable. ``refused``: the producer refused that record (1-based)
        before sending it, and the rest of the batch was not produced."""
        names: dict[str, int] = {}
        for _, error in failed:
            names[error.name()] = names.get(error.name(), 0) + 1
        counts = ", ".join(f"{n} x {name}" for name, n in names.items())
        for topic, error in failed:
            advice = REFUSALS.get(error.name())
            if advice is None:
                continue
            what = (
                f"record {refused} of {total} refused before it was sent, the rest not produced"
                if refused is not None
                else f"{len(failed)} of {total} records failed: {counts}"
            )
            return SinkRejectedError(
                f"{advice} (topic {short(topic or '?', MAX_TOPIC)}: {error.name()}: "
                f"{self.redact(error.str())}; {what}); not retried: the same records would "
                "get the same answer",
                sink=self.name,
            )
        return SinkUnavailableError(
            f"{len(failed)} of {total} records not acknowledged ({counts}; delivery_timeout "
            f"{self._delivery_timeout:g} s){self._last_seen()}; the batch is produced again "
            "on the next poll (records that did arrive arrive again, under the same key)",
            sink=self.name,
        )

    def _fatal(self, exc: BaseException, total: int) -> SinkError:
        """A failure of the producer itself (librdkafka raises a fatal error from ``flush``,
        sometimes wrapped in a SystemError): the producer is gone; the next batch makes one."""
        error = _kafka_error(exc)
        if error is None:
            return SinkUnavailableError(
                f"the Kafka producer failed ({type(exc).__name__}); it is replaced and the "
                f"batch of {total} is produced again on the next poll",
                sink=self.name,
            )
        name, text = error.name(), self.redact(error.str())
        advice = REFUSALS.get(name)
        if advice is not None:
            return SinkRejectedError(
                f"{advice} (fatal producer error {name}: {text}); not retried: the same "
                "settings would get the same answer",
                sink=self.name,
            )
        return SinkUnavailableError(
            f"the Kafka producer hit a fatal error ({name}: {text}); it is replaced and the "
            f"batch of {total} is produced again on the next poll",
            sink=self.name,
        )


def _kafka_error(exc: BaseException | None) -> KafkaError | None:
    """The KafkaError in ``exc`` or what caused it (confluent-kafka raises a fatal error as a
    KafkaException, which a callback served after it may wrap in a SystemError)."""
    seen = 0
    while exc is not None and seen < 5:
        args = getattr(exc, "args", ())
        if args and hasattr(args[0], "name") and hasattr(args[0], "str"):
            error: KafkaError = args[0]
            return error
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _error_text(exc: BaseException) -> str:
    error = _kafka_error(exc)
    return error.str() if error is not None else f"{type(exc).__name__}: {exc}"


def _shut(producer: Producer, flush: float) -> None:
    """Close ``producer`` (in a worker thread): ``flush`` seconds for what is queued, then the
    rest purged, so closing never waits on a broker."""
    try:
        if flush > 0:
            producer.flush(flush)
        producer.purge(in_queue=True, in_flight=True, blocking=True)
        producer.flush(1.0)
        if len(producer) == 0:
            producer.close()  # flushes without a timeout: only once nothing is left
    except Exception as exc:  # a producer after a fatal error may raise anything
        _log.debug("sink_kafka_close", problem=type(exc).__name__)


# --- settings ---------------------------------------------------------------------------------


def broker_problem(text: str) -> str | None:
    """Why ``text`` is not a broker's ``host:port``, or None."""
    from mimecast_connector.client import is_loopback_host

    found = _BROKER.match(text)
    if found is None:
        return (
            "must be host:port (an IPv6 address in brackets), with no scheme, no "
            "user:password@ and no comma"
        )
    host, port = found["host"], int(found["port"])
    if not 1 <= port <= 65535:
        return "has a port that is not a number between 1 and 65535"
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "has a bracketed host that is not an IPv6 address"
    elif not (_HOST.match(host) or is_loopback_host(host)):
        return "has a host that is not a host name or an IP address"
    return None


class KafkaSinkConfig(SinkSettings):
    """Alerts as Kafka records, one per alert, keyed by id."""

    type: Literal["kafka"]
    brokers: list[str] = Field(min_length=1, max_length=100)
    topic: str = DEFAULT_TOPIC
    format: Format = "native"
    security_protocol: SecurityProtocol = "SSL"
    sasl_mechanism: SaslMechanism | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_ca_file: str | None = None
    compression: Compression = "zstd"
    delivery_timeout: float = Field(120.0, ge=1.0, le=3600.0)
    max_message_bytes: int = Field(1_000_000, ge=1_000, le=100_000_000, strict=True)

    _password = field_validator("password", mode="before")(secret_str)
    _username = field_validator("username", mode="before")(plain)
    _ca = field_validator("ssl_ca_file", mode="before")(path_text)

    @field_validator("brokers")
    @classmethod
    def _brokers(cls, value: list[str]) -> list[str]:
        problems = [
            f"{short(broker)}: {problem}"
            for broker in value
            if (problem := broker_problem(broker)) is not None
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        problem = template_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _security(self) -> Self:
        from mimecast_connector.client import is_loopback_host

        problems: list[str] = []
        sasl = self.security_protocol.startswith("SASL_")
        if self.security_protocol.endswith("PLAINTEXT"):
            remote = [b for b in self.brokers if not is_loopback_host(b.rsplit(":", 1)[0])]
            if remote:
                problems.append(
                    f"security_protocol {self.security_protocol} sends alerts (and a password) "
                    f"unencrypted: it is allowed only when every broker is on this machine "
                    f"(loopback), not {short(remote[0])}; use SSL or SASL_SSL"
                )
        if sasl:
            missing = [
                key
                for key, given in (
                    ("sasl_mechanism", self.sasl_mechanism),
                    ("username", self.username),
                    ("password", self.password),
                )
                if not given
            ]
            if missing:
                problems.append(
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}"
                )
        else:
            given = [
                key
                for key, value in (
                    ("sasl_mechanism", self.sasl_mechanism),
                    ("username", self.username),
                    ("password", self.password),
                )
                if value is not None
            ]
            if given:
                problems.append(
                    f"{', '.join(given)} need security_protocol SASL_SSL (or SASL_PLAINTEXT "
                    "for brokers on this machine)"
                )
        if self.ssl_ca_file is not None and not self.security_protocol.endswith("SSL"):
            problems.append("ssl_ca_file needs security_protocol SSL or SASL_SSL")
        if importlib.util.find_spec("confluent_kafka") is None:
            problems.append(INSTALL_HINT)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secrets(self) -> list[str]:
        return [self.password.get_secret_value()] if self.password is not None else []

    def anchored(self, base_dir: Path) -> Self:
        if self.ssl_ca_file is None or Path(self.ssl_ca_file).expanduser().is_absolute():
            return self
        return self.model_copy(update={"ssl_ca_file": str(base_dir / self.ssl_ca_file)})


def _build(settings: KafkaSinkConfig) -> Sink:
    try:
        import confluent_kafka  # noqa: F401  # the producer is made at start
    except ImportError:
        raise ConfigError([("sinks (type = 'kafka')", INSTALL_HINT)]) from None
    return KafkaSink(
        settings.brokers,
        settings.topic,
        settings.format,
        security_protocol=settings.security_protocol,
        sasl_mechanism=settings.sasl_mechanism,
        username=settings.username,
        password=settings.password,
        ssl_ca_file=str(Path(settings.ssl_ca_file).expanduser()) if settings.ssl_ca_file else None,
        compression=settings.compression,
        delivery_timeout=settings.delivery_timeout,
        max_message_bytes=settings.max_message_bytes,
    )


KIND = SinkKind(
    type="kafka",
    settings=KafkaSinkConfig,
    build=_build,
    protocol="Kafka records (confluent-kafka), one per alert, key = alert `id`, to `topic` "
    "(`{tenant}`, `{category}`); idempotent producer, `acks=all`",
    acknowledged="every record's delivery report came back without error (all in-sync "
    "replicas have it), within `delivery_timeout`",
    guarantee="at least once: a batch with any record failed or timed out is produced again "
    "whole; repeats share the key `id` (compaction or consumers drop them)",
    order=60,
    tested_against="librdkafka's built-in mock cluster (real Kafka protocol on loopback, 3 "
    "brokers, error injection), read back by a Kafka consumer",
)
