"""The client against the simulator: every row of the response table, on both API versions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
from pydantic import SecretStr

from mimecast_connector import (
    ApiFailure,
    AuthError,
    BindingExpiredError,
    Category,
    ForbiddenError,
    PaginationError,
    UnavailableError,
    UpstreamFormatError,
)
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.client import (
    Auth,
    ClientOptions,
    HmacSigner,
    MimecastClient,
    OAuth2ClientCredentials,
    RetryPolicy,
)
from mimecast_connector.simulator import SimTenant, Simulator, faults
from tests.fakes import FakeClock

Api = Literal["1.0", "2.0"]
END = datetime.now(UTC).replace(microsecond=0)
START = END - timedelta(hours=2)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(seed=11) as simulator:
        yield simulator


@pytest.fixture
def tenant(sim: Simulator) -> SimTenant:
    return sim.add_tenant("acme")


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: API 1.0 signatures carry the clock's date and the simulator checks it.
    return FakeClock(start=time.time())


def make_auth(tenant: SimTenant, api: Api, clock: FakeClock, **wrong: str) -> Auth:
    if api == "2.0":
        return OAuth2ClientCredentials(
            tenant.client_id,
            SecretStr(wrong.get("client_secret", tenant.client_secret)),
            clock=clock,
        )
    return HmacSigner(
        app_id=tenant.app_id,
        app_key=SecretStr(wrong.get("app_key", tenant.app_key)),
        access_key=SecretStr(tenant.access_key),
        secret_key=SecretStr(wrong.get("secret_key", tenant.secret_key)),
        clock=clock,
    )


def make_client(
    sim: Simulator,
    tenant: SimTenant,
    api: Api,
    clock: FakeClock,
    options: ClientOptions | None = None,
    **wrong: str,
) -> MimecastClient:
    return MimecastClient(
        tenant=tenant.name,
        base_url=sim.url,
        auth=make_auth(tenant, api, clock, **wrong),
        options=options or ClientOptions(page_size=50),
        clock=clock,
    )


async def collect(client: MimecastClient, category: Category = Category.URL) -> list[bytes]:
    out: list[bytes] = []
    async for page in client.pages(category, START, END):
        out.extend(bytes(r) for r in page.records)
    return out


def api_requests(sim: Simulator, category: Category = Category.URL) -> list[Any]:
    return [r for r in sim.requests if r.path == category.path]


@pytest.fixture(params=["2.0", "1.0"])
def api(request: pytest.FixtureRequest) -> Api:
    value: Api = request.param
    return value


@pytest.fixture
async def client(
    sim: Simulator, tenant: SimTenant, api: Api, clock: FakeClock
) -> AsyncIterator[MimecastClient]:
    async with make_client(sim, tenant, api, clock) as c:
        yield c


# --- 200, fail empty: records ------------------------------------------------------------


async def test_reads_every_record_of_the_window_oldest_first(
    sim: Simulator, tenant: SimTenant, client: MimecastClient
) -> None:
    """All records of the window arrive once, oldest first, across several pages."""
    made = tenant.generate(Category.URL, count=137, start=START, end=END)
    got = await collect(client)
    assert len(got) == 137
    dates = [httpx.Response(200, content=r).json()["date"] for r in got]
    assert dates == sorted(dates)
    assert sorted(dates) == sorted(r["date"] for r in made)
    assert len(api_requests(sim)) == 3  # 50 + 50 + 37


async def test_later_pages_carry_the_token_and_the_frozen_window(
    sim: Simulator, tenant: SimTenant, client: MimecastClient
) -> None:
    """Every page request sends the same from/to, oldestFirst, the page size, and pageToken after the first."""
    tenant.generate(Category.ATTACHMENT, count=120, start=START, end=END)
    await collect(client, Category.ATTACHMENT)
    bodies = [r.json for r in api_requests(sim, Category.ATTACHMENT)]
    assert len(bodies) == 3
    windows = [b["data"][0] for b in bodies]
    assert all(w == windows[0] for w in windows)
    assert windows[0] == {
        "from": START.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "to": END.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "oldestFirst": True,
    }
    assert "pageToken" not in bodies[0]["meta"]["pagination"]
    assert all(b["meta"]["pagination"]["pageToken"] for b in bodies[1:])
    assert all(b["meta"]["pagination"]["pageSize"] == 50 for b in bodies)


async def test_an_empty_window_gives_no_pages(
    sim: Simulator, tenant: SimTenant, client: MimecastClient
) -> None:
    """A window without records ends after one request and yields nothing."""
    assert await collect(client, Category.IMPERSONATION) == []
    assert len(api_requests(sim, Category.IMPERSONATION)) == 1


async def test_hmac_requests_carry_fresh_request_ids(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """API 1.0: every request has the four headers and its own x-mc-req-id."""
    tenant.generate(Category.URL, count=120, start=START, end=END)
    async with make_client(sim, tenant, "1.0", clock) as c:
        await collect(c)
    reqs = api_requests(sim)
    assert all(r.headers["authorization"].startswith(f"MC {tenant.access_key}:") for r in reqs)
    assert all(r.headers["x-mc-app-id"] == tenant.app_id for r in reqs)
    assert len({r.headers["x-mc-req-id"] for r in reqs}) == len(reqs) == 3
    assert all(r.headers["x-mc-date"].endswith(" UTC") for r in reqs)


# --- 200, fail non-empty -----------------------------------------------------------------


async def test_fail_array_is_an_error_with_each_code_and_not_retried(
    sim: Simulator, tenant: SimTenant, client: MimecastClient
) -> None:
    """200 with a non-retryable fail entry raises ApiFailure carrying the code and message, at once."""
    sim.inject(
        faults.FailResponse(code="err_validation_blank", message="from is blank", retryable=False)
    )
    with pytest.raises(ApiFailure) as caught:
        await collect(client)
    assert caught.value.failures == [("err_validation_blank", "from is blank")]
    assert caught.value.retryable is False
    assert "err_validation_blank" in str(caught.value)
    assert len(api_requests(sim)) == 1


async def test_retryable_fail_is_retried_then_succeeds(
    sim: Simulator, tenant: SimTenant, client: MimecastClient, clock: FakeClock
) -> None:
    """200 with a fail entry marked retryable is retried with backoff; the call then succeeds."""
    tenant.generate(Category.URL, count=10, start=START, end=END)
    sim.inject(faults.FailResponse(code="err_busy", message="try later", retryable=True), times=2)
    assert len(await collect(client)) == 10
    assert len(api_requests(sim)) == 3
    assert len(clock.sleeps) >= 2


async def test_retryable_fail_that_persists_ends_as_retryable_error(
    sim: Simulator, tenant: SimTenant, api: Api, clock: FakeClock
) -> None:
    """A retryable fail that never clears stops after the attempt cap, marked retryable."""
    sim.inject(
        faults.FailResponse(code="err_busy", message="try later", retryable=True), times=None
    )
    options = ClientOptions(page_size=50, retry=RetryPolicy(attempts=3))
    async with make_client(sim, tenant, api, clock, options) as c:
        with pytest.raises(ApiFailure) as caught:
            await collect(c)
    assert caught.value.retryable is True
    assert len(api_requests(sim)) == 3


# --- 401 -----------------------------------------------------------------------------------


async def test_token_expiry_mid_paging_refreshes_once_and_continues(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """API 2.0: a token that expires between pages is replaced once and paging goes on."""
    tenant.generate(Category.URL, count=150, start=START, end=END)
    async with make_client(sim, tenant, "2.0", clock) as c:
        pages = c.pages(Category.URL, START, END)
        first = await anext(pages)
        sim.inject(faults.ExpireToken())
        rest = [p async for p in pages]
    assert len(first.records) + sum(len(p.records) for p in rest) == 150
    assert [r.status for r in sim.requests if r.path == "/oauth/token"] == [200, 200]
    assert [r.status for r in api_requests(sim)] == [200, 401, 200, 200]


async def test_hmac_401_is_retried_once_with_a_fresh_signature(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """API 1.0: one 401 is retried once, signed again with a new request id."""
    tenant.generate(Category.URL, count=5, start=START, end=END)
    sim.inject(faults.HttpStatus(status=401))
    async with make_client(sim, tenant, "1.0", clock) as c:
        assert len(await collect(c)) == 5
    reqs = api_requests(sim)
    assert [r.status for r in reqs] == [401, 200]
    assert reqs[0].headers["x-mc-req-id"] != reqs[1].headers["x-mc-req-id"]


async def test_persistent_401_is_an_auth_error_after_one_refresh(
    sim: Simulator, tenant: SimTenant, api: Api, client: MimecastClient
) -> None:
    """A 401 that survives the refresh raises AuthError naming the credentials to check."""
    sim.inject(faults.HttpStatus(status=401), times=None)
    with pytest.raises(AuthError) as caught:
        await collect(client)
    assert len(api_requests(sim)) == 2
    hint = "client_secret" if api == "2.0" else "secret_key"
    assert hint in str(caught.value)
    assert caught.value.fault == "config"
    assert not caught.value.retryable


async def test_wrong_client_secret_fails_at_the_token_request(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """API 2.0: a wrong client secret is an AuthError quoting Mimecast, with no API call made."""
    async with make_client(sim, tenant, "2.0", clock, client_secret="wrong-secret") as c:
        with pytest.raises(AuthError) as caught:
            await collect(c)
    assert "Client credentials are invalid" in str(caught.value)
    assert "client_id and client_secret" in str(caught.value)
    assert api_requests(sim) == []


async def test_wrong_hmac_key_is_an_auth_error(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """API 1.0: a wrong secret key is refused twice (original and retry) and named in the error."""
    async with make_client(
        sim, tenant, "1.0", clock, secret_key="d3JvbmcgYnV0IHZhbGlkIGJhc2U2NA=="
    ) as c:
        with pytest.raises(AuthError) as caught:
            await collect(c)
    assert [r.status for r in api_requests(sim)] == [401, 401]
    assert "app_key" in str(caught.value)


# --- 403, 418 ------------------------------------------------------------------------------


async def test_forbidden_names_the_missing_role(sim: Simulator, api: Api, clock: FakeClock) -> None:
    """403 raises ForbiddenError naming the Mimecast permission the endpoint needs, without retrying."""
    tenant = sim.add_tenant("limited", roles={Category.ATTACHMENT})
    async with make_client(sim, tenant, api, clock) as c:
        with pytest.raises(ForbiddenError) as caught:
            await collect(c, Category.URL)
        assert await collect(c, Category.ATTACHMENT) == []
    assert "Monitoring / URL Protection / Read" in str(caught.value)
    assert len(api_requests(sim, Category.URL)) == 1


async def test_binding_expired_says_how_to_fix_it(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """API 1.0: 418 raises BindingExpiredError telling to regenerate keys or set the TTL to never expire."""
    sim.inject(faults.BindingExpired())
    async with make_client(sim, tenant, "1.0", clock) as c:
        with pytest.raises(BindingExpiredError) as caught:
            await collect(c)
    message = str(caught.value)
    assert "generate new keys" in message
    assert "Never Expire" in message
    assert caught.value.status == 418


# --- 429 -----------------------------------------------------------------------------------


@pytest.mark.parametrize("absolute", [False, True])
async def test_429_waits_for_the_reset_then_retries(
    sim: Simulator, tenant: SimTenant, client: MimecastClient, clock: FakeClock, absolute: bool
) -> None:
    """429 is no failure: the client waits out X-RateLimit-Reset (relative ms or absolute epoch) and retries."""
    tenant.generate(Category.URL, count=5, start=START, end=END)
    sim.inject(faults.RateLimited(reset_ms=2500, absolute=absolute))
    assert len(await collect(client)) == 5
    assert [r.status for r in api_requests(sim)] == [429, 200]
    assert sum(clock.sleeps) == pytest.approx(2.5, abs=1.0)


async def test_limiter_slows_down_instead_of_running_into_429(
    sim: Simulator, tenant: SimTenant
) -> None:
    """Against a real token bucket, the three categories of a tenant share a limiter and draw no 429."""
    for category in LOG_CATEGORIES:
        tenant.generate(category, count=60, start=START, end=END)
    tenant.set_rate_limit(capacity=6, refill_per_second=40.0)
    auth = OAuth2ClientCredentials(tenant.client_id, SecretStr(tenant.client_secret))
    async with MimecastClient(
        tenant=tenant.name, base_url=sim.url, auth=auth, options=ClientOptions(page_size=5)
    ) as c:
        for category in LOG_CATEGORIES:
            assert len([r async for p in c.pages(category, START, END) for r in p.records]) == 60
    statuses = [r.status for r in sim.requests]
    assert len(statuses) >= 36
    assert 429 not in statuses


# --- 5xx, timeouts, connection errors ---------------------------------------------------


async def test_5xx_is_retried_with_growing_capped_backoff(
    sim: Simulator, tenant: SimTenant, client: MimecastClient, clock: FakeClock
) -> None:
    """503 twice then success: two bounded waits, the records all arrive."""
    tenant.generate(Category.URL, count=5, start=START, end=END)
    sim.inject(faults.HttpStatus(status=503), times=2)
    assert len(await collect(client)) == 5
    assert [r.status for r in api_requests(sim)] == [503, 503, 200]
    assert len(clock.sleeps) == 2
    assert all(0 < s <= 30 for s in clock.sleeps)


async def test_5xx_that_persists_stops_at_the_attempt_cap(
    sim: Simulator, tenant: SimTenant, api: Api, clock: FakeClock
) -> None:
    """A server that keeps failing gets exactly `attempts` tries, then UnavailableError (retryable)."""
    sim.inject(faults.HttpStatus(status=500), times=None)
    options = ClientOptions(page_size=50, retry=RetryPolicy(attempts=4))
    async with make_client(sim, tenant, api, clock, options) as c:
        with pytest.raises(UnavailableError) as caught:
            await collect(c)
    assert len(api_requests(sim)) == 4
    assert caught.value.retryable
    assert caught.value.fault == "upstream"


async def test_5xx_stops_at_the_total_deadline(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """Retries also stop when the next wait would pass the deadline, however many attempts remain."""
    sim.inject(faults.HttpStatus(status=502), times=None)
    options = ClientOptions(
        retry=RetryPolicy(attempts=1000, deadline=20.0, initial=4.0, maximum=8.0, floor=4.0)
    )
    async with make_client(sim, tenant, "2.0", clock, options) as c:
        with pytest.raises(UnavailableError):
            await collect(c)
    assert sum(clock.sleeps) <= 20.0
    assert 3 <= len(api_requests(sim)) <= 6


async def test_slow_response_times_out_and_is_retried(
    sim: Simulator, tenant: SimTenant, api: Api, clock: FakeClock
) -> None:
    """A response slower than the read timeout is abandoned and retried."""
    tenant.generate(Category.URL, count=5, start=START, end=END)
    sim.inject(faults.Slow(seconds=1.5))
    options = ClientOptions(page_size=50, timeout=httpx.Timeout(0.3))
    async with make_client(sim, tenant, api, clock, options) as c:
        assert len(await collect(c)) == 5
    assert len(api_requests(sim)) == 2


async def test_dropped_connection_is_retried(
    sim: Simulator, tenant: SimTenant, client: MimecastClient
) -> None:
    """A connection closed without an answer is retried like a 5xx."""
    tenant.generate(Category.URL, count=5, start=START, end=END)
    sim.inject(faults.Disconnect())
    assert len(await collect(client)) == 5


# --- bodies that are not the documented JSON -----------------------------------------------


@pytest.mark.parametrize(
    "fault", [faults.NotJson(), faults.Truncate(keep_fraction=0.5)], ids=["html", "truncated"]
)
async def test_body_that_is_not_json_is_an_upstream_format_error(
    sim: Simulator, tenant: SimTenant, client: MimecastClient, fault: Any
) -> None:
    """HTML or cut-off JSON in a 200 raises UpstreamFormatError."""
    tenant.generate(Category.URL, count=20, start=START, end=END)
    sim.inject(fault)
    with pytest.raises(UpstreamFormatError) as caught:
        await collect(client)
    assert caught.value.fault == "upstream"


async def test_body_over_the_size_cap_is_refused(
    sim: Simulator, tenant: SimTenant, clock: FakeClock
) -> None:
    """A body larger than max_body_bytes raises UpstreamFormatError instead of filling memory."""
    tenant.generate(Category.URL, count=50, start=START, end=END)
    options = ClientOptions(page_size=50, max_body_bytes=4096)
    async with make_client(sim, tenant, "2.0", clock, options) as c:
        with pytest.raises(UpstreamFormatError, match="larger than the cap"):
            await collect(c)


# --- paging quirks -------------------------------------------------------------------------


async def test_repeated_next_token_is_an_error_not_a_loop(
    sim: Simulator, tenant: SimTenant, client: MimecastClient
) -> None:
    """A next token that comes back twice raises PaginationError after a bounded number of pages."""
    tenant.generate(Category.URL, count=200, start=START, end=END)
    sim.inject(faults.RepeatNextToken(), times=None)
    with pytest.raises(PaginationError):
        await collect(client)
    assert len(api_requests(sim)) <= 3
