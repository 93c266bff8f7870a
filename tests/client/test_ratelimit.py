"""Unit tests of the per-tenant rate limiter and of reading X-RateLimit-Reset."""

from __future__ import annotations

import pytest

from mimecast_connector.client import RateLimiter, parse_reset
from tests.fakes import FakeClock

NOW = 1_764_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1500", 1.5),  # documented: relative milliseconds
        ("0", 0.0),
        (str(int((NOW + 2.5) * 1000)), 2.5),  # absolute epoch milliseconds
        (str(int(NOW + 4)), 4.0),  # absolute epoch seconds
        (str(int((NOW - 10) * 1000)), 0.0),  # an absolute time already past
        ("99999999", 300.0),  # capped
        ("soon", 1.0),  # unreadable: the default
        (None, 1.0),
        ("-5", 1.0),
        ("nan", 1.0),
    ],
)
def test_parse_reset_reads_relative_and_absolute_values(value: str | None, seconds: float) -> None:
    """X-RateLimit-Reset is relative ms per the docs, or absolute epoch ms/s as some clients see it."""
    assert parse_reset(value, now=NOW) == pytest.approx(seconds, abs=1e-3)


async def test_limiter_does_not_wait_while_quota_is_plentiful() -> None:
    """With Remaining well above the low-water mark, calls go at once."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe(
        {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "80", "x-ratelimit-reset": "1000"}
    )
    for _ in range(10):
        await limiter.acquire()
    assert sum(clock.sleeps) == 0


async def test_limiter_paces_calls_as_remaining_approaches_zero() -> None:
    """At or below 10% of the limit, calls are spaced by the reset interval instead of bursting."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe(
        {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "5", "x-ratelimit-reset": "2000"}
    )
    start = clock.monotonic()
    for _ in range(4):
        await limiter.acquire()
    # First call at once, then one every 2 s.
    assert clock.monotonic() - start == pytest.approx(6.0)


async def test_limiter_counts_calls_before_responses_arrive() -> None:
    """Calls made before any new header shrink the known quota, so a burst starts pacing by itself."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe(
        {"x-ratelimit-limit": "20", "x-ratelimit-remaining": "4", "x-ratelimit-reset": "1000"}
    )
    for _ in range(6):
        await limiter.acquire()
    assert sum(clock.sleeps) > 0


async def test_limiter_blocks_every_caller_until_reset_at_zero() -> None:
    """Remaining 0 holds the next call until the reset has passed."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe(
        {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "3000"}
    )
    start = clock.monotonic()
    await limiter.acquire()
    assert clock.monotonic() - start == pytest.approx(3.0)


async def test_limiter_block_is_shared_and_capped() -> None:
    """block() after a 429 delays the next call, never longer than max_wait."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock, max_wait=10.0)
    limiter.block(3600)
    start = clock.monotonic()
    await limiter.acquire()
    assert clock.monotonic() - start == pytest.approx(10.0)


async def test_limiter_ignores_missing_or_garbled_headers() -> None:
    """Responses without rate-limit headers, or with garbage in them, never cause a wait."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.observe({})
    limiter.observe({"x-ratelimit-limit": "lots", "x-ratelimit-remaining": "some"})
    for _ in range(5):
        await limiter.acquire()
    assert clock.sleeps == []
