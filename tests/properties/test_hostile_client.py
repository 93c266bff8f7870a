"""Properties of the client under hostile input: no shape reads as an empty success, no empty
page ends paging early, and no encoding of a secret survives the redactor."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector._logging import Redactor
from mimecast_connector.client import ClientOptions, MimecastClient, OAuth2ClientCredentials
from mimecast_connector.client._client import _GiveUp, _records_of
from tests.fakes import FakeClock

RECORD = {"date": "2025-11-24T15:00:00+0000", "scanResult": "malicious", "url": "https://a.test"}
KEYS = ["meta", "data", "fail", "error", "clickLogs", "attachmentLogs", "logs", "status"]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5))
item = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(json_leaf, st.lists(st.just(RECORD), max_size=3)),
    max_size=3,
)
envelope: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(json_leaf, st.lists(item, max_size=3), st.just({}), st.just([])),
    max_size=4,
)


@settings(max_examples=400, deadline=None)
@given(document=envelope, category=st.sampled_from(list(LOG_CATEGORIES)))
def test_no_body_of_another_shape_reads_as_a_page(
    document: dict[str, Any], category: Category
) -> None:
    """Any JSON object decodes to a page only if it has meta, data and the endpoint's log list in every item."""
    body = msgspec.json.encode(document)
    try:
        (page, _), fail = MimecastClient._decode_page(category, body)
    except _GiveUp:
        return
    if fail:
        return  # a failure is reported as one, whatever else the body lacks
    assert isinstance(document.get("meta"), dict)
    data = document["data"]
    assert isinstance(data, list)
    for entry in data:
        assert isinstance(entry.get(category.list_key), list)
    expected = sum(len(entry[category.list_key]) for entry in data)
    assert len(_records_of(page)) == expected


def paged(pages: list[int]) -> Callable[[httpx.Request], httpx.Response]:
    """Page i holds ``pages[i]`` records numbered in order; every page but the last has a fresh next."""
    starts = [sum(pages[:i]) for i in range(len(pages))]

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        sent = msgspec.json.decode(request.content)["meta"]["pagination"].get("pageToken")
        index = 0 if sent is None else int(sent)
        records = [
            dict(RECORD, url=f"https://{n}.test")
            for n in range(starts[index], starts[index] + pages[index])
        ]
        pagination: dict[str, Any] = {"pageSize": 5}
        if index + 1 < len(pages):
            pagination["next"] = str(index + 1)
        body = {"meta": {"pagination": pagination}, "data": [{"clickLogs": records}], "fail": []}
        return httpx.Response(200, content=msgspec.json.encode(body))

    return handle


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=12))
async def test_empty_pages_anywhere_lose_no_record(pages: list[int]) -> None:
    """Whatever pages are empty (with a fresh next), every record of the window arrives, in order."""
    clock = FakeClock(start=1_764_000_000.0)
    client = MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=OAuth2ClientCredentials("cid", SecretStr("s3cret-value"), clock=clock),
        options=ClientOptions(page_size=5),
        transport=httpx.MockTransport(paged(pages)),
        clock=clock,
    )
    end = datetime.fromtimestamp(clock.now, UTC)
    urls = [
        msgspec.json.decode(bytes(r))["url"]
        async for p in client.pages(Category.URL, end - timedelta(hours=1), end)
        for r in p.records
    ]
    await client.aclose()
    assert urls == [f"https://{n}.test" for n in range(sum(pages))]


def encodings(secret: str) -> list[str]:
    raw = secret.encode()
    return [
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    ]


secret_text = st.text(
    alphabet=st.characters(exclude_characters="*", exclude_categories=["Cs"]),
    min_size=4,
    max_size=24,
)


@settings(max_examples=300, deadline=None)
@given(secret=secret_text, noise=st.lists(secret_text, max_size=3), filler=st.integers(0, 600))
def test_no_encoding_of_a_secret_survives(secret: str, noise: list[str], filler: int) -> None:
    """For any secret (any characters) each of its encodings is gone, with few or many secrets held."""
    many = [f"filler-secret-{i:04d}" for i in range(filler)]
    replace = Redactor([secret, *noise, *many])
    for form in encodings(secret):
        out = replace(f"<{form}>")
        assert form not in out, (form, out)
