"""Fixtures of the sink tests: a loopback receiver and a clock that sleeps instantly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeClock
from tests.sinks.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started receiver on 127.0.0.1 that answers 200 unless scripted otherwise."""
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
