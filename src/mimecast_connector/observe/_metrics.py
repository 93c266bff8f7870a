"""The run's Prometheus metrics, in a registry of its own (never the process-global one).

Every name starts with ``mimecast_connector_``; labels are only ``tenant``, ``category``,
``sink``, ``outcome``, ``reason`` and ``state``, never an id, a path or an address (a sink is
labelled by its kind and place in ``[[sinks]]``: ``webhook[1]``).

Where each number comes from, and how often it is touched:

* **per page committed** (``Committer``, after the state commit): records fetched, alerts,
  dropped by reason, dead-lettered, duplicates suppressed, and the stream's cursor (the lag is
  ``now - cursor``, computed when scraped);
* **per request** (the client, through :class:`TenantCalls`): requests by outcome and their
  latency; rate-limit waits when a call had to wait;
* **per batch** (``Committer``, around each sink's ``deliver``): sink batches, alerts, failures,
  latency and the bytes in flight; **per group**: the state commit's latency;
* **when scraped**: each stream's lag and health state (``_health``), from the run's own
  book, through the source the runner hands to :meth:`Metrics.watch`.

Nothing here runs per record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from mimecast_connector._health import State

# No ``*_created`` series beside each counter: they would double the series of thousands of
# streams, and scrapers do not need them. (prometheus_client's switch is process-wide; this
# process's only registry is ours.)
disable_created_metrics()  # type: ignore[no-untyped-call]

NAMESPACE = "mimecast_connector"
#: Distinct drop reasons labelled at most; any later one is counted as ``other`` (a reason can
#: come from upstream data, such as a receipt's action, and labels must stay few).
MAX_REASONS = 64
#: Seconds, for Mimecast's answers (a page of 500 records takes about a second).
API_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0)
#: Seconds, for a sink's batch and a state commit.
WRITE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

#: A stream as the scrape sees it: tenant, category and health state.
StreamRow = tuple[str, str, State]


def sink_label(index: int, name: str) -> str:
    """A sink's label: its kind (its name up to ``:``) and its place in ``[[sinks]]``, as
    ``webhook[1]``; its name goes no further, since it holds a path or an address."""
    return f"{name.split(':', 1)[0]}[{index}]"


#: The per-stream counters, in the order ``Metrics._stream_counts`` keeps them: the name of
#: the state's counter, the metric's name and its help.
STREAM_COUNTERS = (
    ("fetched", "records_fetched", "Records read from Mimecast, committed (every row of a page)."),
    ("alerts", "alerts", "Alerts delivered to every sink and committed."),
    ("dead_lettered", "records_dead_lettered", "Malformed records written to the dead letters."),
    (
        "duplicates",
        "duplicates_suppressed",
        "Records handled before (the lookback's overlap, a page served twice), not delivered again.",
    ),
)
_COUNTER_INDEX = {name: i for i, (name, _, _) in enumerate(STREAM_COUNTERS)}


class Metrics:
    """Every metric of a run, and the methods that feed them (cheap: a few label look-ups).

    ``clock`` tells the time the lag is measured at (the run's clock).
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self._clock = clock
        self.request_seconds = Histogram(
            f"{NAMESPACE}_api_request_duration_seconds",
            "Seconds from sending a request to Mimecast to its last byte (or its failure).",
            ["category"],
            buckets=API_BUCKETS,
            registry=registry,
        )
        self.rate_limit_waits = Counter(
            f"{NAMESPACE}_rate_limit_waits",
            "Calls that waited for the API user's quota (pacing, or after a 429).",
            ["tenant"],
            registry=registry,
        )
        self.rate_limit_wait_seconds = Counter(
            f"{NAMESPACE}_rate_limit_wait_seconds",
            "Seconds calls waited for the API user's quota.",
            ["tenant"],
            registry=registry,
        )
        self.sink_batches = Counter(
            f"{NAMESPACE}_sink_batches",
            "Batches a sink acknowledged.",
            ["sink"],
            registry=registry,
        )
        self.sink_alerts = Counter(
            f"{NAMESPACE}_sink_alerts",
            "Alerts in the batches a sink acknowledged.",
            ["sink"],
            registry=registry,
        )
        self.sink_failures = Counter(
            f"{NAMESPACE}_sink_failures",
            "Batches a sink did not acknowledge (down, refusing, failing to write).",
            ["sink"],
            registry=registry,
        )
        self.sink_seconds = Histogram(
            f"{NAMESPACE}_sink_delivery_duration_seconds",
            "Seconds a sink took to acknowledge (or fail) one batch.",
            ["sink"],
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        self.sink_in_flight = Gauge(
            f"{NAMESPACE}_sink_in_flight_bytes",
            "Bytes of raw records in the batch a sink is delivering now (0 between batches).",
            ["sink"],
            registry=registry,
        )
        self.commit_seconds = Histogram(
            f"{NAMESPACE}_state_commit_duration_seconds",
            "Seconds one state transaction took (a group of pages of any streams).",
            buckets=WRITE_BUCKETS,
            registry=registry,
        )
        ProcessCollector(namespace=NAMESPACE, registry=registry)
        #: Each stream's cursor (epoch s) as committed: the lag is measured from it.
        self.cursors: dict[tuple[str, str], float] = {}
        # The per-stream counters are plain numbers, made series when scraped
        # (``_StreamCollector``): 12,000 streams would otherwise be ~70,000 labelled children,
        # each with a lock of its own, made in the first seconds of a run (~1.5 CPU-s).
        #: (tenant, category) -> the numbers of ``STREAM_COUNTERS``, in order.
        self.stream_counts: dict[tuple[str, str], list[float]] = {}
        #: (tenant, category, reason) -> records dropped.
        self.dropped: dict[tuple[str, str, str], float] = {}
        #: (tenant, category, outcome) -> requests.
        self.requests: dict[tuple[str, str, str], float] = {}
        self._request_seconds: dict[str, Histogram] = {}
        self._reasons: set[str] = set()
        self._source: Callable[[], Iterable[StreamRow]] = list
        registry.register(_StreamCollector(self))

    def watch(self, source: Callable[[], Iterable[StreamRow]]) -> None:
        """Where the scrape finds the streams configured now and their health states."""
        self._source = source

    def now(self) -> float:
        return self._clock()

    # --- fed by the committer --------------------------------------------------------------

    def committed(
        self, tenant: str, category: str, counts: Mapping[str, int], cursor: float | None
    ) -> None:
        """One page (or piece) committed: its counters, and the stream's cursor if it moved."""
        key = (tenant, category)
        mine = self.stream_counts.get(key)
        if mine is None:
            mine = self.stream_counts[key] = [0.0] * len(STREAM_COUNTERS)
        dropped = self.dropped
        for name, n in counts.items():
            if not n:
                continue
            index = _COUNTER_INDEX.get(name)
            if index is not None:
                mine[index] += n
            elif name == "too_old":
                reason = (tenant, category, "too old")
                dropped[reason] = dropped.get(reason, 0.0) + n
            elif name.startswith("dropped: "):
                reason = (tenant, category, self._reason(name[9:]))
                dropped[reason] = dropped.get(reason, 0.0) + n
        if cursor is not None and cursor > self.cursors.get(key, -1.0):
            self.cursors[key] = cursor

    def _reason(self, reason: str) -> str:
        if reason in self._reasons:
            return reason
        if len(self._reasons) >= MAX_REASONS:
            return "other"
        self._reasons.add(reason)
        return reason

    def sink(self, label: str) -> SinkWatch:
        """The metrics of one sink, ``label`` being its kind and place (``jsonl[0]``)."""
        return SinkWatch(
            self.sink_batches.labels(label),
            self.sink_alerts.labels(label),
            self.sink_failures.labels(label),
            self.sink_seconds.labels(label),
            self.sink_in_flight.labels(label),
        )

    # --- fed by the client -----------------------------------------------------------------

    def calls(self, tenant: str) -> TenantCalls:
        """What one tenant's client reports (``client.CallObserver``)."""
        return TenantCalls(self, tenant)

    def answered(self, tenant: str, category: str, outcome: str, seconds: float) -> None:
        """One request of ``tenant`` ended with ``outcome`` after ``seconds``."""
        key = (tenant, category, outcome)
        self.requests[key] = self.requests.get(key, 0.0) + 1
        histogram = self._request_seconds.get(category)
        if histogram is None:
            histogram = self._request_seconds[category] = self.request_seconds.labels(category)
        histogram.observe(seconds)


class SinkWatch:
    """One sink's batches: ``started`` before ``deliver``, then ``delivered`` or ``failed``."""

    __slots__ = ("_alerts", "_batches", "_failures", "_in_flight", "_seconds")

    def __init__(
        self,
        batches: Counter,
        alerts: Counter,
        failures: Counter,
        seconds: Histogram,
        in_flight: Gauge,
    ) -> None:
        self._batches, self._alerts, self._failures = batches, alerts, failures
        self._seconds, self._in_flight = seconds, in_flight

    def started(self, size: int) -> None:
        self._in_flight.inc(size)

    def delivered(self, alerts: int, seconds: float, size: int) -> None:
        self._in_flight.dec(size)
        self._batches.inc()
        self._alerts.inc(alerts)
        self._seconds.observe(seconds)

    def failed(self, seconds: float, size: int) -> None:
        self._in_flight.dec(size)
        self._failures.inc()
        self._seconds.observe(seconds)


class TenantCalls:
    """One tenant's requests and waits, as its client reports them."""

    __slots__ = ("_metrics", "_tenant", "_waited", "_waits")

    def __init__(self, metrics: Metrics, tenant: str) -> None:
        self._metrics = metrics
        self._tenant = tenant
        # Made at the first wait (most tenants never wait): not 6,000 children at start.
        self._waits: Counter | None = None
        self._waited: Counter | None = None

    def answered(self, category: str, outcome: str, seconds: float) -> None:
        """One request ended with ``outcome`` after ``seconds``."""
        self._metrics.answered(self._tenant, category, outcome, seconds)

    def waited(self, seconds: float) -> None:
        """One call waited ``seconds`` for the quota."""
        if self._waits is None or self._waited is None:
            self._waits = self._metrics.rate_limit_waits.labels(self._tenant)
            self._waited = self._metrics.rate_limit_wait_seconds.labels(self._tenant)
        self._waits.inc()
        self._waited.inc(seconds)


class _StreamCollector:
    """Each configured stream's lag and health state, computed when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        now = metrics.now()
        lag = GaugeMetricFamily(
            f"{NAMESPACE}_stream_lag_seconds",
            "Seconds from the stream's cursor (every record before it delivered) to now.",
            labels=["tenant", "category"],
        )
        health = GaugeMetricFamily(
            f"{NAMESPACE}_stream_health",
            "1 for the stream's health state (configured, authenticated, collecting, degraded, "
            "failing), 0 for the others.",
            labels=["tenant", "category", "state"],
        )
        counters = [
            CounterMetricFamily(f"{NAMESPACE}_{name}", help_, labels=["tenant", "category"])
            for _, name, help_ in STREAM_COUNTERS
        ]
        for (tenant, category), values in metrics.stream_counts.items():
            for family, value in zip(counters, values, strict=True):
                family.add_metric([tenant, category], value)
        dropped = CounterMetricFamily(
            f"{NAMESPACE}_records_dropped",
            "Records that became no alert, by reason (a safe verdict, an unmatched rejection, "
            "too old to tell from one delivered long ago, ...).",
            labels=["tenant", "category", "reason"],
        )
        for labels, value in metrics.dropped.items():
            dropped.add_metric(list(labels), value)
        requests = CounterMetricFamily(
            f"{NAMESPACE}_api_requests",
            "Requests to Mimecast's API by outcome: 2xx, 401, 403, 418, 429, 5xx, timeout, other.",
            labels=["tenant", "category", "outcome"],
        )
        for labels, value in metrics.requests.items():
            requests.add_metric(list(labels), value)
        yield from counters
        yield dropped
        yield requests
        cursors = metrics.cursors
        for tenant, category, state in metrics._source():
            cursor = cursors.get((tenant, category))
            if cursor is not None:
                lag.add_metric([tenant, category], max(0.0, now - cursor))
            for each in State:
                health.add_metric([tenant, category, each.value], 1.0 if each is state else 0.0)
        yield lag
        yield health
