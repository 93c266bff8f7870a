"""The conformance suite: what every sink must do, run against every kind of sink.

Each kind is driven through an adapter that builds the sink and reads back what it delivered
(the lines of the file or of standard output, the bodies the receiver got), so one test states
one property for all of them. A new sink kind joins with a module ``adapter_<type>.py`` (see
``adapters.py``; a test holds them to the registry).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError
from mimecast_connector.alerts import FORMATS, Format
from mimecast_connector.sinks import SINK_KINDS
from tests.sinks.adapters import Adapter, collected
from tests.sinks.helpers import alert_id, clicks, expected, mixed

ADAPTERS = collected()


def test_every_kind_of_sink_in_the_registry_has_an_adapter() -> None:
    """A new kind of sink cannot skip the suite: each registered ``type`` has an adapter here
    (``<type>`` or ``<type>-<variant>``), and each adapter is of a registered kind."""
    assert {name.split("-")[0] for name in ADAPTERS} == set(SINK_KINDS)


@pytest.fixture(params=sorted(ADAPTERS))
async def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Adapter]:
    """One adapter per sink kind; every sink it opened is closed afterwards."""
    made = ADAPTERS[request.param](request, tmp_path)
    yield made
    for sink in made.opened:
        await sink.aclose()


async def test_every_alert_of_a_batch_is_delivered_in_order(adapter: Adapter) -> None:
    """Two batches in a row arrive whole: every alert once, in the order given."""
    sink = await adapter.open()
    first, second = mixed(), clicks(3)
    for batch in (first, second):
        sink.committed(await sink.deliver(batch))
    assert [alert["id"] for alert in adapter.decoded()] == [a.id for a in first + second]


@pytest.mark.parametrize("format", sorted(FORMATS))
async def test_each_format_round_trips_the_alerts(adapter: Adapter, format: Format) -> None:
    """Alerts arrive as the sink's format says, ids intact (``id`` / ``finding_info.uid``)."""
    if format not in adapter.formats:
        pytest.skip(f"this kind of sink does not carry {format}")
    sink = await adapter.open(format)
    assert sink.format == format
    batch = mixed()
    sink.committed(await sink.deliver(batch))
    got = adapter.decoded()
    assert [alert_id(alert, format) for alert in got] == [a.id for a in batch]
    assert got == expected(batch, format)


async def test_an_empty_batch_is_acknowledged_and_delivers_nothing(adapter: Adapter) -> None:
    """An empty batch returns without error and writes or sends nothing; the next one arrives."""
    sink = await adapter.open()
    sink.committed(await sink.deliver([]))
    assert adapter.units() == []
    batch = clicks(2)
    sink.committed(await sink.deliver(batch))
    assert [alert["id"] for alert in adapter.decoded()] == [a.id for a in batch]


async def test_the_name_is_stable_and_no_secret_shows(adapter: Adapter) -> None:
    """Sinks built from the same settings share one name; no configured secret is in name or repr."""
    one, two = await adapter.open(), await adapter.open()
    assert one.name
    assert one.name == two.name
    for text in (one.name, repr(one)):
        assert not [secret for secret in adapter.secrets if secret in text], text


async def test_a_restart_at_the_committed_position_loses_nothing(adapter: Adapter) -> None:
    """Restarted at its committed position, a sink loses no alert, and repeats none if it has positions."""
    before, lost = clicks(2), clicks(2, start=2)
    first = await adapter.open()
    position = await first.deliver(before)
    first.committed(position)
    await first.deliver(lost)  # the process dies here: this batch is never committed
    await first.aclose()
    again = await adapter.open(position=position)
    again.committed(await again.deliver(lost))
    ids = [alert["id"] for alert in adapter.decoded()]
    want = [a.id for a in before + lost]
    assert list(dict.fromkeys(ids)) == want
    if position is not None:
        assert ids == want


def _can(adapter: Adapter, fault: str) -> None:
    if fault not in adapter.faults:
        pytest.skip(f"this kind's destination cannot be {fault}")


async def test_a_busy_destination_is_waited_out(adapter: Adapter) -> None:
    """Back-pressure (429, 5xx) is retried, not an error: the batch is acknowledged and every
    alert arrives (repeats only where the kind is at least once)."""
    _can(adapter, "busy")
    sink = await adapter.open()
    adapter.inject("busy")
    batch = clicks(3)
    sink.committed(await sink.deliver(batch))
    ids = [alert["id"] for alert in adapter.decoded()]
    assert list(dict.fromkeys(ids)) == [a.id for a in batch]


async def test_a_destination_that_is_down_is_not_acknowledged(adapter: Adapter) -> None:
    """A destination that does not answer leaves the batch unacknowledged (retried later, not
    dropped), within the sink's bounded retries; once it is back, the same batch arrives whole."""
    _can(adapter, "down")
    sink = await adapter.open()
    batch = clicks(3)
    adapter.inject("down")
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(batch)
    sink.committed(await sink.deliver(batch))  # the runner's next poll sends it again
    ids = [alert["id"] for alert in adapter.decoded()]
    assert list(dict.fromkeys(ids)) == [a.id for a in batch]


async def test_a_refusal_for_good_is_not_retried(adapter: Adapter) -> None:
    """A refusal that retrying cannot change (a bad credential, a bad request) stops the sink
    with a configuration error instead of a retry loop."""
    _can(adapter, "refuse")
    sink = await adapter.open()
    adapter.inject("refuse")
    with pytest.raises(SinkRejectedError):
        await sink.deliver(clicks(1))
