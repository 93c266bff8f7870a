"""The per-tenant token bucket and its three headers (§8.3), on the hand-driven clock."""

from __future__ import annotations

import httpx
import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.simulator import SimTenant, Simulator, faults
from tests.fakes import FakeClock
from tests.simulator._helpers import ALL_TIME, all_time, post_logs, token_for


def limits(response: httpx.Response) -> tuple[int, str, str, str]:
    h = response.headers
    return (
        response.status_code,
        h["x-ratelimit-limit"],
        h["x-ratelimit-remaining"],
        h["x-ratelimit-reset"],
    )


def test_bucket_empties_answers_429_and_refills(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """Each response counts down Remaining; an empty bucket is 429 with Reset in ms; time refills."""
    token = token_for(http, acme)
    acme.set_rate_limit(capacity=3, refill_per_second=2.0)
    seen = [limits(post_logs(http, Category.URL, token, ALL_TIME)) for _ in range(4)]
    assert seen == [
        (200, "3", "2", "500"),
        (200, "3", "1", "500"),
        (200, "3", "0", "500"),
        (429, "3", "0", "500"),
    ]
    clock.advance(0.25)
    assert limits(post_logs(http, Category.URL, token, ALL_TIME)) == (429, "3", "0", "250")
    clock.advance(0.25)
    assert limits(post_logs(http, Category.URL, token, ALL_TIME)) == (200, "3", "0", "500")
    clock.advance(10)
    assert limits(post_logs(http, Category.URL, token, ALL_TIME)) == (200, "3", "2", "500")


def test_bucket_is_shared_by_categories_not_by_tenants(
    sim: Simulator, acme: SimTenant, http: httpx.Client
) -> None:
    """Quota is per tenant across all four endpoints (§8.3), the rejection log's too; another tenant is unaffected."""
    other = sim.add_tenant("other")
    token, other_token = token_for(http, acme), token_for(http, other)
    acme.set_rate_limit(capacity=len(LOG_CATEGORIES), refill_per_second=0.001)
    statuses = [post_logs(http, c, token, all_time(c)).status_code for c in LOG_CATEGORIES]
    assert statuses == [200] * len(LOG_CATEGORIES) == [200, 200, 200, 200]
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 429
    unlimited = post_logs(http, Category.URL, other_token, ALL_TIME)
    assert unlimited.status_code == 200
    assert "x-ratelimit-limit" not in unlimited.headers


def test_429_does_not_run_the_function(
    sim: Simulator, acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """A request refused by the bucket spends no fault: the function and its faults never ran."""
    token = token_for(http, acme)
    acme.set_rate_limit(capacity=1, refill_per_second=1.0)
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 200
    sim.inject(faults.HttpStatus(503))
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 429
    clock.advance(1.0)
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 503


def test_removing_the_limit_removes_the_headers(acme: SimTenant, http: httpx.Client) -> None:
    """``set_rate_limit(None)`` makes the tenant unlimited again."""
    token = token_for(http, acme)
    acme.set_rate_limit(capacity=1, refill_per_second=0.001)
    post_logs(http, Category.URL, token, ALL_TIME)
    acme.set_rate_limit(None)
    response = post_logs(http, Category.URL, token, ALL_TIME)
    assert response.status_code == 200
    assert "x-ratelimit-remaining" not in response.headers


@pytest.mark.parametrize(("capacity", "refill"), [(0, 1.0), (5, 0.0)])
def test_nonsense_limits_are_refused(acme: SimTenant, capacity: int, refill: float) -> None:
    """A bucket needs a capacity of at least 1 and a positive refill rate."""
    with pytest.raises(ValueError, match="must be"):
        acme.set_rate_limit(capacity=capacity, refill_per_second=refill)
