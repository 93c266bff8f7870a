"""Conformance adapters of the ``sentinel`` sink, against the fake Entra ID and Logs Ingestion
endpoints: gzip bodies (the default), and plain ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr

from mimecast_connector.alerts import Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks import Sink
from mimecast_connector.sinks._sentinel import SentinelSink
from tests.fakes import FakeClock
from tests.sinks.adapters import Adapter, AdapterFactory
from tests.sinks.azure_receiver import CLIENT_ID, DCR, STREAM, TENANT, AzureReceiver
from tests.sinks.receiver import HANG_UP, Answer

CANARY_SECRET = "CANARY-conformance-client-secret-8e5d"


class SentinelAdapter(Adapter):
    secrets = (CANARY_SECRET,)
    formats: tuple[Format, ...] = ("native", "ocsf", "ecs")
    faults = frozenset({"busy", "down", "refuse"})
    attempts = 3

    def __init__(self, azure: AzureReceiver, *, gzip: bool) -> None:
        super().__init__()
        self.azure = azure
        self.gzip = gzip

    def make(self, format: Format) -> Sink:
        return SentinelSink(
            self.azure.base,
            DCR,
            STREAM,
            tenant_id=TENANT,
            client_id=CLIENT_ID,
            client_secret=SecretStr(CANARY_SECRET),
            format=format,
            authority=self.azure.base,
            gzip=self.gzip,
            retry=RetryPolicy(attempts=self.attempts, deadline=5.0),
            clock=self.azure.clock,
        )

    def inject(self, fault: str) -> None:
        """``busy``: a 429 with ``Retry-After`` then a 503; ``down``: hang-ups on every try;
        ``refuse``: the app registration loses its role on the DCR (403)."""
        if fault == "refuse":
            self.azure.forbidden = True
            return
        answers: dict[str, list[Answer | int]] = {
            "busy": [Answer(429, {"Retry-After": "1"}), 503],
            "down": [HANG_UP] * self.attempts,
        }
        self.azure.script(*answers[fault])

    def units(self) -> list[bytes]:
        return list(self.azure.accepted)

    def decoded(self) -> list[Any]:
        return [record for body in self.units() for record in json.loads(body)]


def _adapter(request: pytest.FixtureRequest, *, gzip: bool) -> SentinelAdapter:
    azure = AzureReceiver(FakeClock(), client_secret=CANARY_SECRET)
    azure.start()
    request.addfinalizer(azure.stop)
    return SentinelAdapter(azure, gzip=gzip)


ADAPTERS: dict[str, AdapterFactory] = {
    "sentinel": lambda request, tmp: _adapter(request, gzip=True),
    "sentinel-plain": lambda request, tmp: _adapter(request, gzip=False),
}
