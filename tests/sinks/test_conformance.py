"""The conformance suite: what every sink must do, run against every kind of sink.

Each kind is driven through an adapter that builds the sink and reads back what it delivered
(the lines of the file or of standard output, the bodies the receiver got), so one test states
one property for all of them. A new sink kind joins by adding an adapter to ``ADAPTERS`` (a test holds it to the registry).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mimecast_connector.alerts import Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks import SINK_KINDS, JsonlSink, Sink, WebhookSink
from tests.fakes import FakeClock
from tests.sinks.helpers import alert_id, clicks, expected, mixed
from tests.sinks.receiver import Receiver

CANARY_SECRET = "CANARY-conformance-hmac-7d1e"
CANARY_HEADER = "Bearer CANARY-conformance-header-2b9c"
CANARY_QUERY = "CANARY-conformance-query-5f0a"


class Adapter:
    """Builds one kind of sink and reads back, in arrival order, what it delivered."""

    #: Secret values the kind is configured with; none may show in its name or repr.
    secrets: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.opened: list[Sink] = []

    def make(self, format: Format) -> Sink:
        raise NotImplementedError

    def units(self) -> list[bytes]:
        """What arrived, one unit per line written (jsonl) or per request body (webhook)."""
        raise NotImplementedError

    def decoded(self) -> list[Any]:
        """Every alert delivered, decoded from JSON, in order."""
        return [json.loads(unit) for unit in self.units()]

    async def open(self, format: Format = "native", position: str | None = None) -> Sink:
        sink = self.make(format)
        self.opened.append(sink)
        await sink.start(position)
        return sink


class FileAdapter(Adapter):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def make(self, format: Format) -> Sink:
        return JsonlSink(str(self.path), format)

    def units(self) -> list[bytes]:
        return self.path.read_bytes().splitlines(keepends=True) if self.path.exists() else []


class StdoutAdapter(Adapter):
    def __init__(self) -> None:
        super().__init__()
        self.buffer = io.BytesIO()

    def make(self, format: Format) -> Sink:
        return JsonlSink("-", format, stdout=self.buffer)

    def units(self) -> list[bytes]:
        return self.buffer.getvalue().splitlines(keepends=True)


class WebhookAdapter(Adapter):
    secrets = (CANARY_SECRET, CANARY_HEADER, CANARY_QUERY)

    def __init__(self, receiver: Receiver) -> None:
        super().__init__()
        self.receiver = receiver

    def make(self, format: Format) -> Sink:
        return WebhookSink(
            self.receiver.url(f"/hook?token={CANARY_QUERY}"),
            format,
            secret=SecretStr(CANARY_SECRET),
            headers={"Authorization": SecretStr(CANARY_HEADER)},
            retry=RetryPolicy(attempts=2, deadline=5.0),
            clock=FakeClock(),
        )

    def units(self) -> list[bytes]:
        return [request.body for request in self.receiver.requests]

    def decoded(self) -> list[Any]:
        return [alert for body in self.units() for alert in json.loads(body)]


ADAPTERS: dict[str, Callable[[pytest.FixtureRequest, Path], Adapter]] = {
    "jsonl-file": lambda request, tmp: FileAdapter(tmp / "out" / "alerts.jsonl"),
    "jsonl-stdout": lambda request, tmp: StdoutAdapter(),
    "webhook": lambda request, tmp: WebhookAdapter(request.getfixturevalue("receiver")),
}


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


@pytest.mark.parametrize("format", ["native", "ocsf"])
async def test_each_format_round_trips_the_alerts(adapter: Adapter, format: Format) -> None:
    """Alerts arrive as the sink's format says, ids intact (``id`` / ``finding_info.uid``)."""
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
