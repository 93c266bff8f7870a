"""Conformance adapter of the ``kafka`` sink, and the Kafka cluster its tests produce to.

No Kafka broker runs on this machine; librdkafka (bundled in confluent-kafka's wheels) has one
built in: the *mock cluster* of ``rdkafka_mock.h``, a set of brokers listening on loopback that
speak the Kafka protocol (metadata, idempotent produce, fetch, offsets). confluent-kafka does
not wrap it, so :class:`MockCluster` calls librdkafka's C functions through ctypes, from the
library confluent-kafka itself loaded. The sink under test is configured as for any cluster
(``bootstrap.servers`` = the mock's listeners) and a separate Kafka :class:`Consumer` reads back
what the brokers stored.

What it proves: the records really cross the Kafka protocol to brokers that acknowledge them
(keys, values, partitions, offsets, compressed batches decoded by a consumer); the idempotent
producer's handshake (InitProducerId) happens; broker errors injected into produce and metadata
answers, brokers going down and answers arriving late reach the sink as librdkafka reports them.
What it does not: the mock has one in-memory log per partition (no real replication, so ``acks``
cannot be observed), no SASL (a SASL client gets an authentication error), no TLS, no ACLs or
topic configuration (authorization and size refusals are injected error codes), no broker
restarts losing data.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import pytest

from mimecast_connector.alerts import Format
from mimecast_connector.sinks import Sink
from tests.sinks.adapters import Adapter, AdapterFactory

#: Kafka protocol request types (ApiKey), as the mock's error injection takes them.
PRODUCE = 0
METADATA = 3
INIT_PRODUCER_ID = 22

_void = ctypes.c_void_p


@dataclass(frozen=True)
class Record:
    """One record read back from the mock cluster."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _librdkafka() -> ctypes.CDLL:
    """librdkafka as confluent-kafka loaded it: symbols looked up through its extension module
    find the library the extension links (the wheel's bundled copy)."""
    import confluent_kafka.cimpl

    lib = ctypes.CDLL(confluent_kafka.cimpl.__file__)
    try:
        lib.rd_kafka_mock_cluster_new  # noqa: B018  a look-up, to fail early
    except AttributeError:
        pytest.skip("this librdkafka has no mock cluster (rd_kafka_mock_cluster_new)")
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "rd_kafka_conf_new": (_void, []),
        "rd_kafka_conf_set": (
            ctypes.c_int,
            [_void, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t],
        ),
        "rd_kafka_new": (_void, [ctypes.c_int, _void, ctypes.c_char_p, ctypes.c_size_t]),
        "rd_kafka_destroy": (None, [_void]),
        "rd_kafka_mock_cluster_new": (_void, [_void, ctypes.c_int]),
        "rd_kafka_mock_cluster_destroy": (None, [_void]),
        "rd_kafka_mock_cluster_bootstraps": (ctypes.c_char_p, [_void]),
        "rd_kafka_mock_topic_create": (
            ctypes.c_int,
            [_void, ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
        ),
        "rd_kafka_mock_partition_set_leader": (
            ctypes.c_int,
            [_void, ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32],
        ),
        "rd_kafka_mock_topic_set_error": (None, [_void, ctypes.c_char_p, ctypes.c_int]),
        "rd_kafka_mock_push_request_errors_array": (
            None,
            [_void, ctypes.c_int16, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int)],
        ),
        "rd_kafka_mock_clear_request_errors": (None, [_void, ctypes.c_int16]),
        "rd_kafka_mock_broker_set_down": (ctypes.c_int, [_void, ctypes.c_int32]),
        "rd_kafka_mock_broker_set_up": (ctypes.c_int, [_void, ctypes.c_int32]),
        "rd_kafka_mock_start_request_tracking": (None, [_void]),
        "rd_kafka_mock_get_requests": (
            ctypes.POINTER(_void),
            [_void, ctypes.POINTER(ctypes.c_size_t)],
        ),
        "rd_kafka_mock_request_api_key": (ctypes.c_int16, [_void]),
        "rd_kafka_mock_request_destroy_array": (None, [ctypes.POINTER(_void), ctypes.c_size_t]),
        # Variadic: (mcluster, broker_id, ApiKey, cnt, err, rtt_ms, ...); arguments typed per call.
        "rd_kafka_mock_broker_push_request_error_rtts": (ctypes.c_int, []),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        if argtypes:
            function.argtypes = argtypes
    return lib


class MockCluster:
    """A librdkafka mock cluster of ``brokers`` brokers (ids 1 to n) on loopback."""

    def __init__(self, brokers: int = 3) -> None:
        self._lib = lib = _librdkafka()
        errors = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # The cluster needs a client handle of its own for its bookkeeping; it never connects.
        for key, value in ((b"log_level", b"0"), (b"bootstrap.servers", b"127.0.0.1:1")):
            lib.rd_kafka_conf_set(conf, key, value, errors, len(errors))
        self._handle = lib.rd_kafka_new(0, conf, errors, len(errors))
        assert self._handle, errors.value
        self._cluster = lib.rd_kafka_mock_cluster_new(self._handle, brokers)
        assert self._cluster, "rd_kafka_mock_cluster_new failed"
        self.bootstraps: str = lib.rd_kafka_mock_cluster_bootstraps(self._cluster).decode()
        self.brokers = self.bootstraps.split(",")

    def close(self) -> None:
        if self._cluster:
            self._lib.rd_kafka_mock_cluster_destroy(self._cluster)
            self._lib.rd_kafka_destroy(self._handle)
            self._cluster = self._handle = None

    # --- shaping the cluster ------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = 1, replicas: int = 3) -> None:
        code = self._lib.rd_kafka_mock_topic_create(
            self._cluster, name.encode(), partitions, replicas
        )
        assert code == 0, code

    def set_leader(self, topic: str, partition: int, broker: int) -> None:
        """Make ``broker`` lead ``partition`` (the mock carries this out within about a second)."""
        code = self._lib.rd_kafka_mock_partition_set_leader(
            self._cluster, topic.encode(), partition, broker
        )
        assert code == 0, code

    def leader(self, topic: str, partition: int) -> int:
        """The id of the broker that leads ``partition`` of ``topic`` (from a metadata answer;
        the mock's own "set leader" call can take a second to be carried out)."""
        from confluent_kafka import Consumer

        consumer = Consumer(
            {"bootstrap.servers": self.bootstraps, "group.id": "metadata", "logger": _Quiet()}
        )
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            leader: int = metadata.topics[topic].partitions[partition].leader
            return leader
        finally:
            consumer.close()

    def topic_error(self, topic: str, code: int) -> None:
        """Metadata answers for ``topic`` carry ``code`` from now on."""
        self._lib.rd_kafka_mock_topic_set_error(self._cluster, topic.encode(), code)

    def push_errors(self, api_key: int, *codes: int) -> None:
        """The next ``len(codes)`` requests of type ``api_key`` (to any broker) fail with
        ``codes``, in turn (``-195``, transport, makes the broker drop the connection)."""
        array = (ctypes.c_int * len(codes))(*codes)
        self._lib.rd_kafka_mock_push_request_errors_array(self._cluster, api_key, len(codes), array)

    def clear_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._cluster, api_key)

    def answer_late(self, broker: int, api_key: int, code: int, delay_ms: int) -> None:
        """The next request of type ``api_key`` to ``broker`` is answered ``code`` after
        ``delay_ms`` (a broker that does not answer in time); later ones as usual."""
        result = self._lib.rd_kafka_mock_broker_push_request_error_rtts(
            _void(self._cluster),
            ctypes.c_int32(broker),
            ctypes.c_int16(api_key),
            ctypes.c_size_t(1),
            ctypes.c_int(code),
            ctypes.c_int(delay_ms),
        )
        assert result == 0, result

    def down(self, broker: int = -1) -> None:
        """Disconnect ``broker`` (-1: all) and refuse its connections."""
        assert self._lib.rd_kafka_mock_broker_set_down(self._cluster, broker) == 0

    def up(self, broker: int = -1) -> None:
        assert self._lib.rd_kafka_mock_broker_set_up(self._cluster, broker) == 0

    def track_requests(self) -> None:
        self._lib.rd_kafka_mock_start_request_tracking(self._cluster)

    def api_keys(self) -> set[int]:
        """The types of the requests the brokers got since :meth:`track_requests`."""
        count = ctypes.c_size_t()
        requests = self._lib.rd_kafka_mock_get_requests(self._cluster, ctypes.byref(count))
        try:
            return {
                int(self._lib.rd_kafka_mock_request_api_key(requests[i]))
                for i in range(count.value)
            }
        finally:
            self._lib.rd_kafka_mock_request_destroy_array(requests, count)

    # --- reading back -------------------------------------------------------------------------

    def read(self, topic: str, timeout: float = 10.0) -> list[Record]:
        """Every record of ``topic``, partition by partition in offset order, read by a Kafka
        consumer up to each partition's high watermark."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstraps,
                "group.id": "readback",
                "enable.auto.commit": False,
                "logger": _Quiet(),
            }
        )
        try:
            partitions = sorted(
                consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
            )
            ends = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in partitions
            }
            wanted = {p for p, end in ends.items() if end > 0}
            if not wanted:
                return []
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in wanted])
            got: dict[int, list[Record]] = {p: [] for p in wanted}
            for _ in range(int(timeout / 0.1)):
                for message in consumer.consume(1000, timeout=0.1):
                    assert message.error() is None, message.error()
                    partition, offset = message.partition(), message.offset()
                    assert partition is not None
                    assert offset is not None
                    got[partition].append(
                        Record(topic, partition, offset, message.key(), message.value())
                    )
                if all(len(got[p]) >= ends[p] for p in wanted):
                    break
            else:
                raise AssertionError(f"read {got} of {ends} in {timeout} s")
            return [record for p in sorted(got) for record in got[p]]
        finally:
            consumer.close()


class _Quiet:
    """A logger for the read-back consumer: librdkafka's lines are not the test's business."""

    def log(self, level: int, message: str, *args: object) -> None:
        pass


class KafkaAdapter(Adapter):
    """The sink producing to a one-partition topic of a mock cluster (so arrival order is the
    order read back), with a short delivery timeout."""

    faults = frozenset({"busy", "down", "refuse"})
    formats: tuple[Format, ...] = ("native", "ocsf", "ecs")
    topic = "conformance"
    delivery_timeout = 3.0

    def __init__(self, cluster: MockCluster) -> None:
        super().__init__()
        self.cluster = cluster
        cluster.create_topic(self.topic, partitions=1)

    def make(self, format: Format) -> Sink:
        from mimecast_connector.sinks._kafka import KafkaSink

        return KafkaSink(
            self.cluster.brokers,
            self.topic,
            format,
            security_protocol="PLAINTEXT",
            delivery_timeout=self.delivery_timeout,
        )

    def inject(self, fault: str) -> None:
        from confluent_kafka import KafkaError

        if fault == "busy":  # retriable answers librdkafka retries within the timeout
            self.cluster.push_errors(
                PRODUCE, KafkaError.NOT_ENOUGH_REPLICAS, KafkaError.LEADER_NOT_AVAILABLE
            )
        elif fault == "down":  # the leader answers the next produce too late, then recovers
            self.cluster.answer_late(
                self.cluster.leader(self.topic, 0),
                PRODUCE,
                KafkaError.REQUEST_TIMED_OUT,
                int(self.delivery_timeout * 1000) + 500,
            )
        else:
            self.cluster.push_errors(PRODUCE, KafkaError.TOPIC_AUTHORIZATION_FAILED)

    def units(self) -> list[bytes]:
        return [record.value or b"" for record in self.cluster.read(self.topic)]


def _kafka_adapter(request: pytest.FixtureRequest) -> KafkaAdapter:
    pytest.importorskip("confluent_kafka", reason="the kafka sink's extra is not installed")
    cluster = MockCluster()
    request.addfinalizer(cluster.close)
    return KafkaAdapter(cluster)


ADAPTERS: dict[str, AdapterFactory] = {
    "kafka": lambda request, tmp: _kafka_adapter(request),
}
