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
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

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

    def snapshot(self) -> Callable[[], bytes]:
        """What ``/metrics`` shows, as of now: the registry's metrics and the streams', copied
        here (on the event loop, which changes them), rendered by the function returned (on a
        thread)."""
        counts = [(key, list(values)) for key, values in self.stream_counts.items()]
        dropped = list(self.dropped.items())
        requests = list(self.requests.items())
        rows = list(self._source())
        cursors = dict(self.cursors)
        now = self.now()

        def render() -> bytes:
            streams = _render_streams(now, counts, dropped, requests, rows, cursors)
            return generate_latest(self.registry) + streams

        return render

    def text(self) -> str:
        """``/metrics`` now, rendered here (for tests and tools)."""
        return self.snapshot()().decode()

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


def _value(value: float) -> str:
    """A sample's value as prometheus_client writes it (``3.0``)."""
    return repr(float(value))


def _label(text: str) -> str:
    """A label value escaped for the text format."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_: str) -> str:
    return f"# HELP {name} {help_}\n# TYPE {name} {kind}\n"


def _render_streams(
    now: float,
    counts: list[tuple[tuple[str, str], list[float]]],
    dropped: list[tuple[tuple[str, str, str], float]],
    requests: list[tuple[tuple[str, str, str], float]],
    rows: list[StreamRow],
    cursors: dict[tuple[str, str], float],
) -> bytes:
    """The per-stream families in the text format, from a snapshot (``Metrics.snapshot``):
    written here line by line, since prometheus_client's generic path takes seconds for the
    ~60,000 lines of 12,000 streams. Health: one series a stream, its state's (value 1)."""
    out: list[str] = []
    add = out.append
    # Labels in name order, as prometheus_client writes them.
    streams = {key: f'category="{_label(key[1])}",tenant="{_label(key[0])}"' for key, _ in counts}
    for index, (_, name, help_) in enumerate(STREAM_COUNTERS):
        full = f"{NAMESPACE}_{name}_total"
        add(_family(f"{NAMESPACE}_{name}_total", "counter", help_))
        for key, values in counts:
            add(f"{full}{{{streams[key]}}} {_value(values[index])}\n")
    full = f"{NAMESPACE}_records_dropped_total"
    add(_family(full, "counter", _DROPPED_HELP))
    for (tenant, category, reason), value in dropped:
        add(
            f'{full}{{category="{_label(category)}",reason="{_label(reason)}",'
            f'tenant="{_label(tenant)}"}} {_value(value)}\n'
        )
    full = f"{NAMESPACE}_api_requests_total"
    add(_family(full, "counter", _REQUESTS_HELP))
    for (tenant, category, outcome), value in requests:
        add(
            f'{full}{{category="{_label(category)}",outcome="{_label(outcome)}",'
            f'tenant="{_label(tenant)}"}} {_value(value)}\n'
        )
    lag, health = [], []
    for tenant, category, state in rows:
        where, who = _label(category), _label(tenant)
        cursor = cursors.get((tenant, category))
        if cursor is not None:
            lag.append(
                f'{NAMESPACE}_stream_lag_seconds{{category="{where}",tenant="{who}"}} '
                f"{max(0.0, now - cursor)!r}\n"
            )
        health.append(
            f'{NAMESPACE}_stream_health{{category="{where}",state="{state.value}",'
            f'tenant="{who}"}} 1.0\n'
        )
    add(_family(f"{NAMESPACE}_stream_lag_seconds", "gauge", _LAG_HELP))
    out.extend(lag)
    add(_family(f"{NAMESPACE}_stream_health", "gauge", _HEALTH_HELP))
    out.extend(health)
    return "".join(out).encode()


_DROPPED_HELP = (
    "Records that became no alert, by reason (a safe verdict, an unmatched rejection, "
    "too old to tell from one delivered long ago, ...)."
)
_REQUESTS_HELP = (
    "Requests to Mimecast's API by outcome: 2xx, 401, 403, 418, 429, 5xx, timeout, other."
)
_LAG_HELP = "Seconds from the stream's cursor (every record before it delivered) to now."
_HEALTH_HELP = (
    "1, labelled with the stream's health state (configured, authenticated, collecting, "
    "degraded, failing): one series a stream."
)
