"""The per-stream families are written by hand (``Metrics.snapshot``): what Prometheus' own
parser reads back from them is what was counted, hostile label values included."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from mimecast_connector._health import State
from mimecast_connector.observe import Metrics


def parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_what_the_parser_reads_back_is_what_was_counted() -> None:
    metrics = Metrics(clock=lambda: 1_000.0)
    hostile = 'a "quoted"\\ reason\nwith a newline'
    metrics.committed(
        "acme",
        "url",
        {"fetched": 7, "alerts": 3, "duplicates": 2, "dropped: safe": 1, f"dropped: {hostile}": 1},
        900.0,
    )
    metrics.committed("acme", "url", {"fetched": 1, "alerts": 1}, None)
    metrics.committed("beta.co", "attachment", {"fetched": 2, "dead_lettered": 2}, 990.5)
    metrics.answered("acme", "url", "2xx", 0.1)
    metrics.answered("acme", "url", "2xx", 0.2)
    metrics.answered("beta.co", "attachment", "429", 0.3)
    metrics.watch(
        lambda: [
            ("acme", "url", State.COLLECTING),
            ("beta.co", "attachment", State.FAILING),
            ("gamma", "url", State.CONFIGURED),
        ]
    )
    got = parsed(metrics.text())
    acme = (("category", "url"), ("tenant", "acme"))
    beta = (("category", "attachment"), ("tenant", "beta.co"))
    assert got[("mimecast_connector_records_fetched_total", acme)] == 8
    assert got[("mimecast_connector_alerts_total", acme)] == 4
    assert got[("mimecast_connector_duplicates_suppressed_total", acme)] == 2
    assert got[("mimecast_connector_records_dead_lettered_total", beta)] == 2
    assert got[("mimecast_connector_records_dead_lettered_total", acme)] == 0
    dropped = {
        dict(labels)["reason"]: value
        for (name, labels), value in got.items()
        if name == "mimecast_connector_records_dropped_total"
    }
    assert dropped == {"safe": 1, hostile: 1}
    requests = {
        (dict(labels)["tenant"], dict(labels)["outcome"]): value
        for (name, labels), value in got.items()
        if name == "mimecast_connector_api_requests_total"
    }
    assert requests == {("acme", "2xx"): 2, ("beta.co", "429"): 1}
    assert got[("mimecast_connector_stream_lag_seconds", acme)] == 100.0
    assert got[("mimecast_connector_stream_lag_seconds", beta)] == 9.5
    health = {
        (dict(labels)["tenant"], dict(labels)["state"]): value
        for (name, labels), value in got.items()
        if name == "mimecast_connector_stream_health"
    }
    # One series a stream, its state's: 12,000 streams are 12,000 lines, not 60,000.
    assert health == {
        ("acme", "collecting"): 1,
        ("beta.co", "failing"): 1,
        ("gamma", "configured"): 1,
    }
    # The registry's own metrics come with them.
    assert ("mimecast_connector_state_commit_duration_seconds_count", ()) in got


def test_a_snapshot_is_not_changed_by_what_is_counted_after_it() -> None:
    """The text is rendered on a thread while the loop goes on counting: it shows the moment
    of the snapshot."""
    metrics = Metrics(clock=lambda: 0.0)
    metrics.committed("acme", "url", {"fetched": 1}, None)
    render = metrics.snapshot()
    metrics.committed("acme", "url", {"fetched": 5}, None)
    metrics.committed("zeta", "url", {"fetched": 5}, None)
    got = parsed(render().decode())
    fetched = {
        dict(labels)["tenant"]: value
        for (name, labels), value in got.items()
        if name == "mimecast_connector_records_fetched_total"
    }
    assert fetched == {"acme": 1}
