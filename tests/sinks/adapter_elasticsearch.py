"""Conformance adapters of the ``elasticsearch`` sink, against the fake cluster on loopback:
one with an API key, one with a user and password, gzip bodies and a small body cap."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from pydantic import SecretStr

from mimecast_connector.alerts import Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks import Sink
from mimecast_connector.sinks._elasticsearch import ElasticsearchSink
from tests.fakes import FakeClock
from tests.sinks.adapters import Adapter, AdapterFactory
from tests.sinks.es_receiver import EsReceiver
from tests.sinks.receiver import HANG_UP

CANARY_KEY = "Q0FOQVJZLWNvbmZvcm1hbmNlLWVzLWtleS04ZTJm"
CANARY_PASSWORD = "CANARY-conformance-es-password-4a1d"
USER = "mimecast-writer"


class ElasticsearchAdapter(Adapter):
    formats: tuple[Format, ...] = ("native", "ocsf", "ecs")
    faults = frozenset({"busy", "down", "refuse"})
    attempts = 3

    def __init__(self, fake: EsReceiver, *, basic: bool) -> None:
        super().__init__()
        self.fake = fake
        self.basic = basic
        self.secrets = (CANARY_PASSWORD,) if basic else (CANARY_KEY,)

    def make(self, format: Format) -> Sink:
        assert format in ("native", "ocsf", "ecs")
        credentials: dict[str, Any] = (
            {"username": USER, "password": SecretStr(CANARY_PASSWORD)}
            if self.basic
            else {"api_key": SecretStr(CANARY_KEY)}
        )
        return ElasticsearchSink(
            self.fake.url(),
            format,
            gzip=self.basic,
            max_body_bytes=8 * 1024 if self.basic else 10 * 1024 * 1024,
            retry=RetryPolicy(attempts=self.attempts, deadline=5.0),
            clock=FakeClock(),
            **credentials,
        )

    def inject(self, fault: str) -> None:
        if fault == "busy":
            self.fake.script(503)  # the request as a whole, then every item of the next one
            self.fake.busy_items(1)
        elif fault == "down":
            self.fake.script(*[HANG_UP] * self.attempts)
        else:
            self.fake.auth = "ApiKey revoked"

    def units(self) -> list[bytes]:
        """The documents the index holds, in the order they were stored."""
        return self.fake.sources()

    def decoded(self) -> list[Any]:
        return [json.loads(unit) for unit in self.units()]


def _fake(request: pytest.FixtureRequest, *, basic: bool) -> ElasticsearchAdapter:
    auth = (
        "Basic " + base64.b64encode(f"{USER}:{CANARY_PASSWORD}".encode()).decode()
        if basic
        else f"ApiKey {CANARY_KEY}"
    )
    fake = EsReceiver(auth=auth)
    fake.start()
    request.addfinalizer(fake.stop)
    return ElasticsearchAdapter(fake, basic=basic)


ADAPTERS: dict[str, AdapterFactory] = {
    "elasticsearch": lambda request, tmp: _fake(request, basic=False),
    "elasticsearch-basic-gzip": lambda request, tmp: _fake(request, basic=True),
}
