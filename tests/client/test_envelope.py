"""A 200 page must have the documented envelope for its endpoint, or it is an UpstreamFormatError.

``mimecast-api.md`` §1, §4.3, §5.2, §6.2, §7.2: ``meta``, ``data`` (an array of objects holding
the endpoint's log list) and ``fail``. A captive portal, a maintenance page in JSON or an API
change must never read as "ok, 0 records".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from pydantic import SecretStr

from mimecast_connector import ApiFailure, Category, UpstreamFormatError
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.client import ClientOptions, MimecastClient, OAuth2ClientCredentials
from mimecast_connector.simulator import Simulator
from tests.fakes import FakeClock

T0 = 1_764_000_000
SECRET = "CANARY-envelope-secret-7q"
RECORD = {"date": "2025-11-24T15:00:00+0000", "scanResult": "malicious", "url": "https://a.test"}
META = {"status": 200, "pagination": {"pageSize": 500, "totalCount": 1}}


def answering(body: bytes) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        return httpx.Response(200, content=body)

    return handle


async def read(category: Category, body: bytes) -> tuple[int, BaseException | None]:
    """Read one window against a server that answers every page with ``body``."""
    clock = FakeClock(start=float(T0))
    client = MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=OAuth2ClientCredentials("cid", SecretStr(SECRET), clock=clock),
        options=ClientOptions(),
        transport=httpx.MockTransport(answering(body)),
        clock=clock,
    )
    end = datetime.fromtimestamp(T0, UTC)
    records = 0
    error: BaseException | None = None
    try:
        async for page in client.pages(category, end - timedelta(hours=1), end):
            records += len(page.records)
    except Exception as exc:
        error = exc
    finally:
        await client.aclose()
    return records, error


def encode(document: Any) -> bytes:
    return msgspec.json.encode(document)


WRONG: list[tuple[str, Category, bytes, list[str]]] = [
    ("empty-object", Category.URL, b"{}", []),
    ("maintenance", Category.URL, encode({"error": "maintenance"}), ["error"]),
    (
        "renamed-list-key",
        Category.URL,
        encode({"meta": META, "data": [{"clickLog": [RECORD]}], "fail": []}),
        ["clickLog"],
    ),
    (
        "click-logs-on-attachment",
        Category.ATTACHMENT,
        encode({"meta": META, "data": [{"clickLogs": [RECORD]}], "fail": []}),
        ["clickLogs"],
    ),
    ("no-data", Category.URL, encode({"meta": META, "fail": []}), ["meta", "fail"]),
    ("empty-item", Category.IMPERSONATION, encode({"meta": META, "data": [{}], "fail": []}), []),
    (
        "lone-surrogate-renamed",
        Category.URL,
        b'{"meta":{},"data":[{"logs":[{"a":"\\ud800"}]}],"fail":[]}',
        ["logs"],
    ),
]


@pytest.mark.parametrize(
    ("category", "body", "named"),
    [case[1:] for case in WRONG],
    ids=[case[0] for case in WRONG],
)
async def test_a_200_of_another_shape_is_a_format_error_naming_its_keys(
    category: Category, body: bytes, named: list[str]
) -> None:
    """{}, a JSON maintenance page, a renamed or foreign list key: UpstreamFormatError naming the keys seen."""
    records, error = await read(category, body)
    assert isinstance(error, UpstreamFormatError), repr(error)
    assert records == 0
    text = str(error)
    assert category.list_key in text  # says what was expected
    for key in named:
        assert key in text


async def test_the_keys_named_are_redacted_and_bounded() -> None:
    """Key names in the message pass the redactor first and are capped in number and length."""
    keys = {f"k{i:05d}" + "x" * 300: i for i in range(5000)}
    keys[SECRET] = 1
    keys["y" * 200 + SECRET] = 2  # a secret past any per-key cut is still not half-shown
    _, error = await read(Category.URL, encode(keys))
    assert isinstance(error, UpstreamFormatError), repr(error)
    text = str(error)
    assert SECRET not in text
    assert SECRET[:12] not in text
    assert len(text) < 2000, len(text)


async def test_a_flat_fail_without_meta_or_data_is_still_an_api_failure() -> None:
    """A 200 whose body is only a non-empty fail array stays ApiFailure, not a shape error."""
    body = encode({"fail": [{"code": "err_x", "message": "the function failed"}]})
    _, error = await read(Category.URL, body)
    assert isinstance(error, ApiFailure), repr(error)
    assert "err_x" in str(error)


EMPTY: list[tuple[str, bytes]] = [
    ("data-empty-array", encode({"meta": META, "data": [], "fail": []})),
    ("list-empty", encode({"meta": META, "data": [{"clickLogs": []}], "fail": []})),
]


@pytest.mark.parametrize("body", [case[1] for case in EMPTY], ids=[case[0] for case in EMPTY])
async def test_an_empty_but_well_formed_page_is_an_empty_window(body: bytes) -> None:
    """data: [] and data: [{"clickLogs": []}] are the documented empty results, not errors."""
    records, error = await read(Category.URL, body)
    assert error is None, repr(error)
    assert records == 0


async def test_well_formed_pages_with_records_still_read() -> None:
    """The shape check lets the documented page through, extra keys such as resultCount included."""
    body = encode(
        {"meta": META, "data": [{"impersonationLogs": [RECORD], "resultCount": 1}], "fail": []}
    )
    records, error = await read(Category.IMPERSONATION, body)
    assert (records, error) == (1, None)


@pytest.mark.parametrize("category", list(LOG_CATEGORIES))
async def test_the_simulator_empty_result_passes_the_shape_check(category: Category) -> None:
    """The simulator's answer for a window without records is a well-formed empty page."""
    with Simulator(seed=5) as sim:
        tenant = sim.add_tenant("acme")
        auth = OAuth2ClientCredentials(tenant.client_id, SecretStr(tenant.client_secret))
        async with MimecastClient(tenant="acme", base_url=sim.url, auth=auth) as client:
            end = datetime.now(UTC)
            pages = [p async for p in client.pages(category, end - timedelta(hours=1), end)]
            await client.check(category)
    assert pages == []


async def test_check_refuses_a_page_of_another_shape() -> None:
    """`check` reads one page too: a captive portal's JSON fails it instead of passing."""
    clock = FakeClock(start=float(T0))
    client = MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=OAuth2ClientCredentials("cid", SecretStr(SECRET), clock=clock),
        transport=httpx.MockTransport(answering(encode({"portal": "please log in"}))),
        clock=clock,
    )
    with pytest.raises(UpstreamFormatError, match="portal"):
        await client.check()
    await client.aclose()
