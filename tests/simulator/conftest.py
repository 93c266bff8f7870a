"""Fixtures for the simulator's tests: a started simulator on hand-driven clocks, a tenant, HTTP.

The wall clock starts at 2025-03-04T10:00:00Z (the date of the spec's §12 examples) and only
moves when a test says so; so does the monotonic clock behind token expiry and rate limits.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mimecast_connector.simulator import SimTenant, Simulator
from tests.fakes import FakeClock
from tests.simulator._helpers import NOW


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=NOW.timestamp())


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Simulator]:
    with Simulator(seed=7, clock=clock.monotonic, wall_clock=clock.time) as simulator:
        yield simulator


@pytest.fixture
def acme(sim: Simulator) -> SimTenant:
    return sim.add_tenant("acme")


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=5.0) as client:
        yield client
