"""The client against servers that misbehave: empty pages that go on, trickling bodies, bad TLS.

Each test sets up one hostile server (the simulator with a fault, an in-process httpx transport,
or a loopback socket server) and checks that the client neither loses records silently nor
exceeds its bounds, and that its message says what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from pydantic import SecretStr

from mimecast_connector import (
    Category,
    PaginationError,
)
from mimecast_connector.client import (
    ClientOptions,
    MimecastClient,
    OAuth2ClientCredentials,
)
from mimecast_connector.simulator import Simulator, faults
from tests.fakes import FakeClock

END = datetime.now(UTC).replace(microsecond=0)
START = END - timedelta(hours=2)
T0 = 1_764_000_000


async def collect(client: MimecastClient, category: Category = Category.URL) -> list[bytes]:
    return [bytes(r) async for p in client.pages(category, START, END) for r in p.records]


# --- defect 5: empty pages that still carry next --------------------------------------------


@pytest.mark.parametrize("empty_pages", [1, 3])
async def test_empty_pages_with_next_are_followed_to_the_end(empty_pages: int) -> None:
    """Against the simulator, pages 2..k empty with a fresh next: all 400 records still arrive."""
    with Simulator(seed=21) as sim:
        tenant = sim.add_tenant("acme")
        tenant.generate(Category.URL, count=400, start=START, end=END)
        auth = OAuth2ClientCredentials(tenant.client_id, SecretStr(tenant.client_secret))
        options = ClientOptions(page_size=50)
        async with MimecastClient(
            tenant="acme", base_url=sim.url, auth=auth, options=options
        ) as client:
            expected = await collect(client)
            pages = client.pages(Category.URL, START, END)
            first = await anext(pages)
            sim.inject(faults.EmptyPageWithNext(), times=empty_pages)
            rest = [bytes(r) async for p in pages for r in p.records]
    records = [bytes(r) for r in first.records] + rest
    assert len(expected) == 400
    assert records == expected


def paged_server(pages: list[list[dict[str, str]]]) -> Callable[[httpx.Request], httpx.Response]:
    """Serve ``pages`` in order, each with a fresh next token until the last."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        sent = msgspec.json.decode(request.content)["meta"]["pagination"].get("pageToken")
        index = 0 if sent is None else int(sent.removeprefix("tok-"))
        pagination: dict[str, object] = {"pageSize": 2}
        if index + 1 < len(pages):
            pagination["next"] = f"tok-{index + 1}"
        body = {
            "meta": {"status": 200, "pagination": pagination},
            "data": [{"clickLogs": pages[index]}],
            "fail": [],
        }
        return httpx.Response(200, content=msgspec.json.encode(body))

    return handle


def record(n: int) -> dict[str, str]:
    return {
        "date": "2025-11-24T15:00:00+0000",
        "scanResult": "malicious",
        "url": f"https://{n}.test",
    }


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], **options: object
) -> MimecastClient:
    clock = FakeClock(start=float(T0))
    return MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=OAuth2ClientCredentials("cid", SecretStr("s3cret-value"), clock=clock),
        options=ClientOptions(**options),  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
        clock=clock,
    )


async def test_empty_pages_between_full_ones_lose_nothing() -> None:
    """A server whose pages 2..5 are empty with fresh next tokens: the records after them arrive."""
    pages = [[record(1), record(2)], [], [], [], [], [record(3)], [], [record(4)]]
    async with mock_client(paged_server(pages)) as client:
        records = await collect(client)
    assert [msgspec.json.decode(r)["url"] for r in records] == [
        f"https://{n}.test" for n in (1, 2, 3, 4)
    ]


async def test_an_empty_page_repeating_its_token_is_a_pagination_error() -> None:
    """An empty page whose next was already followed is a loop: PaginationError, not a silent end."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        body = {"meta": {"pagination": {"next": "same"}}, "data": [{"clickLogs": []}], "fail": []}
        return httpx.Response(200, content=msgspec.json.encode(body))

    async with mock_client(handle) as client:
        with pytest.raises(PaginationError):
            await collect(client)


async def test_endless_empty_pages_stop_at_the_page_guard() -> None:
    """Fresh next tokens on empty pages for ever end at max_pages with PaginationError."""
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        calls += 1
        body = {"meta": {"pagination": {"next": f"t{calls}"}}, "data": [], "fail": []}
        return httpx.Response(200, content=msgspec.json.encode(body))

    async with mock_client(handle, max_pages=25) as client:
        with pytest.raises(PaginationError, match="25 pages"):
            await collect(client)
    assert calls == 25
