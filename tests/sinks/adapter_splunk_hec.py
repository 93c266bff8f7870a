"""Conformance adapters of the ``splunk_hec`` sink, against the fake HEC on loopback: one
acknowledged by HEC's answer (``splunk_hec``), one by indexer acknowledgement
(``splunk_hec-ack``, each ackId confirmed at the first query)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from mimecast_connector.alerts import Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks import Sink
from mimecast_connector.sinks._splunk_hec import SplunkHecSink
from tests.fakes import FakeClock
from tests.sinks.adapters import Adapter, AdapterFactory
from tests.sinks.hec_receiver import INVALID_TOKEN, HecReceiver, busy, throttled
from tests.sinks.receiver import HANG_UP, Answer

CANARY_TOKEN = "CANARY-conformance-hec-token-a41f"


class HecAdapter(Adapter):
    secrets = (CANARY_TOKEN,)
    formats: tuple[Format, ...] = ("native", "ocsf", "ecs")
    faults = frozenset({"busy", "down", "refuse"})
    attempts = 3

    def __init__(self, receiver: HecReceiver, *, ack: bool) -> None:
        super().__init__()
        self.receiver = receiver
        self.ack = ack

    def make(self, format: Format) -> Sink:
        assert format in ("native", "ocsf", "ecs")
        return SplunkHecSink(
            self.receiver.url(),
            SecretStr(CANARY_TOKEN),
            format,
            index="mimecast",
            ack=self.ack,
            ack_timeout=30.0,
            ack_poll_interval=1.0,
            retry=RetryPolicy(attempts=self.attempts, deadline=5.0),
            clock=FakeClock(),
        )

    def inject(self, fault: str) -> None:
        answers: dict[str, list[Answer | int]] = {
            "busy": [busy(), throttled()],
            "down": [HANG_UP] * self.attempts,
            "refuse": [INVALID_TOKEN],
        }
        self.receiver.script(*answers[fault])

    def units(self) -> list[bytes]:
        return [r.data or b"" for r in self.receiver.event_requests]

    def decoded(self) -> list[Any]:
        return [envelope["event"] for envelope in self.receiver.events]


def _adapter(request: pytest.FixtureRequest, *, ack: bool) -> HecAdapter:
    receiver = HecReceiver(CANARY_TOKEN, ack_enabled=ack, allowed_indexes={"mimecast"})
    receiver.start()
    request.addfinalizer(receiver.stop)
    return HecAdapter(receiver, ack=ack)


ADAPTERS: dict[str, AdapterFactory] = {
    "splunk_hec": lambda request, tmp: _adapter(request, ack=False),
    "splunk_hec-ack": lambda request, tmp: _adapter(request, ack=True),
}
