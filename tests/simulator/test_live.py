"""Live mode: a background stream of new records that starts, stops and repeats by seed."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.simulator import SimTenant, Simulator
from tests.fakes import FakeClock
from tests.simulator._helpers import NOW, stamp


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for live records"
        time.sleep(0.02)


def counts(tenant: SimTenant) -> dict[Category, int]:
    return {c: len(tenant.records(c)) for c in LOG_CATEGORIES}


def test_live_mode_adds_records_of_every_category_dated_now(acme: SimTenant) -> None:
    """While live, records of all three categories keep arriving, dated by the wall clock."""
    acme.start_live(rate_per_second=400)
    try:
        wait_until(lambda: min(counts(acme).values()) >= 2)
    finally:
        acme.stop_live()
    for category in LOG_CATEGORIES:
        assert {r[category.time_field] for r in acme.records(category)} == {stamp(NOW)}


def test_stop_live_stops_the_stream(acme: SimTenant) -> None:
    """After ``stop_live`` no more records arrive and ``live`` is False."""
    acme.start_live(rate_per_second=400)
    assert acme.live
    wait_until(lambda: sum(counts(acme).values()) >= 5)
    acme.stop_live()
    assert not acme.live
    before = counts(acme)
    time.sleep(0.2)
    assert counts(acme) == before


def test_live_content_repeats_for_a_seed(clock: FakeClock) -> None:
    """Two simulators with one seed stream the same records (only the dates follow the clock)."""
    tenants = [
        Simulator(seed=7, clock=clock.monotonic, wall_clock=clock.time).add_tenant("acme")
        for _ in range(2)
    ]
    for tenant in tenants:
        tenant.start_live(rate_per_second=400)
    try:
        wait_until(lambda: all(min(counts(t).values()) >= 3 for t in tenants))
    finally:
        for tenant in tenants:
            tenant.stop_live()
    first, second = ({c: t.records(c)[:3] for c in LOG_CATEGORIES} for t in tenants)
    assert first == second


def test_stopping_the_simulator_stops_live_streams(acme: SimTenant, sim: Simulator) -> None:
    """``Simulator.stop`` ends every tenant's live stream."""
    acme.start_live(rate_per_second=50)
    sim.stop()
    assert not acme.live


def test_live_rate_must_be_positive(acme: SimTenant) -> None:
    """A live rate of zero or less is refused."""
    with pytest.raises(ValueError, match="rate_per_second"):
        acme.start_live(rate_per_second=0)
