"""Conformance adapter of the ``webhook`` sink, against the loopback receiver."""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from mimecast_connector.alerts import Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks import Sink, WebhookSink
from tests.fakes import FakeClock
from tests.sinks.adapters import Adapter, AdapterFactory
from tests.sinks.receiver import HANG_UP, Answer, Receiver

CANARY_SECRET = "CANARY-conformance-hmac-7d1e"
CANARY_HEADER = "Bearer CANARY-conformance-header-2b9c"
CANARY_QUERY = "CANARY-conformance-query-5f0a"


class WebhookAdapter(Adapter):
    secrets = (CANARY_SECRET, CANARY_HEADER, CANARY_QUERY)
    faults = frozenset({"busy", "down", "refuse"})
    attempts = 3

    def __init__(self, receiver: Receiver) -> None:
        super().__init__()
        self.receiver = receiver

    def make(self, format: Format) -> Sink:
        return WebhookSink(
            self.receiver.url(f"/hook?token={CANARY_QUERY}"),
            format,
            secret=SecretStr(CANARY_SECRET),
            headers={"Authorization": SecretStr(CANARY_HEADER)},
            retry=RetryPolicy(attempts=self.attempts, deadline=5.0),
            clock=FakeClock(),
        )

    def inject(self, fault: str) -> None:
        answers: dict[str, list[Answer | int]] = {
            "busy": [503, 429],
            "down": [HANG_UP] * self.attempts,
            "refuse": [403],
        }
        self.receiver.script(*answers[fault])

    def units(self) -> list[bytes]:
        return [request.body for request in self.receiver.requests]

    def decoded(self) -> list[Any]:
        return [alert for body in self.units() for alert in json.loads(body)]


ADAPTERS: dict[str, AdapterFactory] = {
    "webhook": lambda request, tmp: WebhookAdapter(request.getfixturevalue("receiver")),
}
