"""The SIEM receipt logs (mta-rejections.md §2.1, §2.2): generation, both APIs, their faults."""

from __future__ import annotations

import gzip
import io
import json
import re
import tracemalloc
import zipfile
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mimecast_connector import Category
from mimecast_connector.simulator import SimTenant, Simulator, faults
from tests.fakes import FakeClock
from tests.simulator._helpers import ALL_TIME, NOW, mc_date, post_logs, token_for, v1_headers

BATCH_PATH = "/siem/v1/batch/events/cg"
V1_PATH = "/api/audit/get-siem-logs"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
QUARTER = 15 * 60
#: The event fields of §2.1, with the batch spelling of type/subtype.
RECEIPT_FIELDS = {
    "aggregateId", "processingId", "accountId", "timestamp", "action", "subtype", "type",
    "direction", "senderEnvelope", "senderHeader", "senderIp", "recipients", "messageId",
    "subject", "rejectionType", "rejectionCode", "rejectionInfo", "receiptErrors", "virusFound",
    "spamScore", "spamInfo", "spamProcessingDetail", "tlsVersion", "tlsCipher",
    "numberAttachments", "_offset", "_partition",
}  # fmt: skip
#: The receipt row fields of §2.2; rows leave out the ones they have no value for.
V1_RECEIPT_FIELDS = {
    "acc", "datetime", "aCode", "Act", "IP", "Dir", "Sender", "Rcpt", "headerFrom", "MsgId",
    "Subject", "RejType", "RejCode", "RejInfo", "Error", "SpamScore", "SpamInfo",
    "SpamProcessingDetail", "TlsVer", "Cphr",
}  # fmt: skip
#: The texts of Sophos's six alert types (mta-rejections.md §1), copied by hand.
SOPHOS_SIX = (
    "IP Temporarily Blacklisted",
    "Submitter failed to authenticate",
    "Anti-Spoofing policy - Inbound not allowed",
    "Invalid Recipient",
    "Exceeding outbound thread limit",
    "Message bounced due to Content Examination Policy",
)
V1_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}")
DISPOSITION = re.compile(r'attachment; filename="(receipt|process|delivery|ttp_url)_\d{17}\.json"')
GZIP_MAGIC = b"\x1f\x8b"


# -- helpers ----------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """A rejection text as §1 says to match it: lower-case, dashes, no KB link or server id."""
    text = text.lower().replace("\u2013", "-").replace("\u2014", "-")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" - https://\S*mimecast\S*$", "", text)
    return re.sub(r" \[[^\]]*\]$", "", text)


def list_batches(http: httpx.Client, token: str, **params: Any) -> httpx.Response:
    """GET the batch listing with a bearer token (``type`` defaults to receipt)."""
    query = {"type": "receipt", **params}
    return http.get(BATCH_PATH, params=query, headers={"Authorization": f"Bearer {token}"})


def walk(http: httpx.Client, token: str, **params: Any) -> tuple[list[list[dict[str, Any]]], str]:
    """Every page of the listing until ``isCaughtUp``: the pages' ``value`` and the last cursor."""
    response = list_batches(http, token, **params)
    pages = []
    for _ in range(1000):
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["value"])
        if body["isCaughtUp"]:
            return pages, body["@nextPage"]
        response = list_batches(http, token, nextPage=body["@nextPage"], **params)
    raise AssertionError("the listing never caught up")


def events_in(content: bytes) -> list[dict[str, Any]]:
    """The events of a gzip-compressed NDJSON file."""
    return [json.loads(line) for line in gzip.decompress(content).splitlines()]


def download_all(http: httpx.Client, pages: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every event behind every link, in listing order (links need no credentials)."""
    events = []
    for page in pages:
        for item in page:
            response = http.get(item["url"])
            assert response.status_code == 200, response.text
            assert len(response.content) == item["size"]
            events += events_in(response.content)
    return events


def object_key(url: str) -> str:
    """The path of a presigned link: the same file keeps it across listings."""
    return urlsplit(url).path


def now_of(clock: FakeClock) -> datetime:
    return datetime.fromtimestamp(clock.time(), UTC)


def siem_logs(
    http: httpx.Client,
    tenant: SimTenant,
    clock: FakeClock,
    token: str | None = None,
    *,
    compress: bool = True,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One signed API 1.0 get-siem-logs call."""
    item: dict[str, Any] = {"type": "MTA", "fileFormat": "json", "compress": compress}
    if token is not None:
        item["token"] = token
    signed = v1_headers(tenant, V1_PATH, mc_date(now_of(clock))) if headers is None else headers
    return http.post(V1_PATH, json={"data": [item]}, headers=signed)


def member_of(response: httpx.Response) -> bytes:
    """The one member of a zipped 1.0 answer."""
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        [name] = archive.namelist()
        assert f'filename="{name}"' in response.headers["content-disposition"]
        return archive.read(name)


def walk_v1(
    http: httpx.Client, tenant: SimTenant, clock: FakeClock, token: str | None = None
) -> tuple[list[httpx.Response], httpx.Response]:
    """Follow the token chain: every file answer, then the final "nothing new" answer."""
    files: list[httpx.Response] = []
    for _ in range(1000):
        response = siem_logs(http, tenant, clock, token)
        assert response.status_code == 200, response.text
        if response.headers["content-type"] == "application/json":
            return files, response
        files.append(response)
        token = response.headers["mc-siem-token"]
    raise AssertionError("the token chain never ended")


@pytest.fixture(scope="module")
def receipts() -> list[dict[str, Any]]:
    """5000 events of one tenant, generated once for the content tests."""
    tenant = Simulator(seed=7).add_tenant("acme")
    return tenant.generate_receipts(5000, start=NOW - DAY, end=NOW)


@pytest.fixture
def bearer(acme: SimTenant, http: httpx.Client) -> str:
    return token_for(http, acme)


# -- generation -------------------------------------------------------------------------------


def test_about_ninety_percent_of_receipts_are_accepted(receipts: list[dict[str, Any]]) -> None:
    """``Acc`` is about 90 %; ``Rej``, ``Hld`` and ``Sdbx`` share the rest (§2.1)."""
    actions = Counter(r["action"] for r in receipts)
    assert set(actions) == {"Acc", "Rej", "Hld", "Sdbx"}
    assert 0.87 <= actions["Acc"] / len(receipts) <= 0.94
    assert actions["Rej"] > actions["Hld"] > actions["Sdbx"] > 0


def test_receipt_events_have_the_documented_fields(receipts: list[dict[str, Any]]) -> None:
    """Every event has the §2.1 fields; ids, times, offsets and string-typed counts hold."""
    for event in receipts:
        spelled = {"subType": "subtype", "eventType": "type"}
        assert {spelled.get(k, k) for k in event} == RECEIPT_FIELDS, event
        assert event.get("type", event.get("eventType")) == "receipt"
        assert event.get("subtype", event.get("subType")) == event["action"]
        assert isinstance(event["timestamp"], int)
        assert isinstance(event["numberAttachments"], str)
        assert event["direction"] in ("Inbound", "inbound")
    assert len({r["processingId"] for r in receipts}) == len(receipts)
    assert len({r["aggregateId"] for r in receipts}) < len(receipts)  # some messages have rows
    times = [r["timestamp"] for r in receipts]
    assert times == sorted(times)
    assert NOW.timestamp() * 1000 - DAY.total_seconds() * 1000 <= times[0]
    assert times[-1] <= NOW.timestamp() * 1000
    offsets = [r["_offset"] for r in receipts]
    assert offsets == sorted(set(offsets))
    assert len({r["_partition"] for r in receipts}) == 1
    assert len({r["accountId"] for r in receipts}) == 1


def test_rejections_carry_the_six_sophos_texts_and_kb_texts_with_drift(
    receipts: list[dict[str, Any]],
) -> None:
    """Rejections hold the six texts and other KB texts, worded with the drift of §1."""
    rejected = [r for r in receipts if r["action"] == "Rej"]
    assert all(r["rejectionType"] for r in rejected)
    infos = [r["rejectionInfo"] for r in rejected if r["rejectionInfo"] is not None]
    found = {normalise(i) for i in infos}
    assert {t.lower() for t in SOPHOS_SIX} <= found
    assert "envelope blocked - user entry" in found
    assert any(i.islower() for i in infos)
    assert any("\u2013" in i for i in infos)
    assert any(i.endswith("DOC-1369#550") for i in infos)
    assert any(re.search(r"\[[0-9a-f]{8}\.mimecast\.example\]$", i) for i in infos)
    accepted = [r for r in receipts if r["action"] != "Rej"]
    assert all(r["rejectionInfo"] is None and r["rejectionType"] is None for r in accepted)


def test_rejections_have_the_quirks_of_real_data(receipts: list[dict[str, Any]]) -> None:
    """On a rejection ids are often null, the code may be "0", virusFound repeats the info."""
    rejected = [r for r in receipts if r["action"] == "Rej"]
    share = sum(r["messageId"] is None for r in rejected) / len(rejected)
    assert share > 0.5
    assert any(r["subject"] is None for r in rejected)
    assert any(r["senderEnvelope"] is None for r in rejected)
    assert any(r["senderEnvelope"] is not None for r in rejected)
    assert {"0", "550", "451"} <= {r["rejectionCode"] for r in rejected}
    assert any(r["virusFound"] and r["virusFound"] == r["rejectionInfo"] for r in rejected)


def test_events_show_every_drift_variant(receipts: list[dict[str, Any]]) -> None:
    """Both key spellings, both direction cases, numbers as strings, the four detail shapes."""
    assert any("eventType" in r and "subType" in r for r in receipts)
    assert sum("type" in r for r in receipts) > 0.9 * len(receipts)
    assert {r["direction"] for r in receipts} == {"Inbound", "inbound"}
    scores = [r["spamScore"] for r in receipts if r["spamScore"] is not None]
    assert any(isinstance(s, str) for s in scores)
    assert any(isinstance(s, int) for s in scores)
    details = [r["spamProcessingDetail"] for r in receipts]
    assert any(d is None for d in details)
    assert any(isinstance(d, dict) for d in details)
    strings = [d for d in details if isinstance(d, str)]
    decoded = [json.loads(d) for d in strings]
    assert any(isinstance(d, dict) for d in decoded)  # a JSON string
    assert any(isinstance(d, str) and isinstance(json.loads(d), dict) for d in decoded)  # twice


def test_generation_is_deterministic() -> None:
    """The same seed and calls give the same events; another seed gives others."""

    def make(seed: int) -> list[dict[str, Any]]:
        tenant = Simulator(seed=seed).add_tenant("acme")
        return tenant.generate_receipts(300, start=NOW - HOUR, end=NOW)

    assert make(1) == make(1)
    assert make(1) != make(2)


def test_generate_receipts_refuses_bad_arguments(acme: SimTenant) -> None:
    """A reversed window, a naive datetime or a file size below 1 are errors."""
    with pytest.raises(ValueError, match="start"):
        acme.generate_receipts(1, start=NOW, end=NOW - HOUR)
    with pytest.raises(ValueError, match="time zone"):
        acme.generate_receipts(1, start=datetime(2025, 3, 4), end=NOW)
    with pytest.raises(ValueError, match="file_size"):
        acme.generate_receipts(1, start=NOW - HOUR, end=NOW, file_size=0)


def test_batches_cover_fifteen_minutes_and_split_at_the_file_size(acme: SimTenant) -> None:
    """A batch a quarter hour, published at its end; a busy quarter is split by ``file_size``."""
    acme.generate_receipts(400, start=NOW - HOUR, end=NOW, file_size=50)
    files = acme.siem_files("2.0")
    assert sum(f.events for f in files) == 400
    assert all(f.events <= 50 for f in files)
    published = sorted({f.published for f in files})
    assert published == [NOW - timedelta(minutes=m) for m in (45, 30, 15, 0)]
    v1 = acme.siem_files("1.0")
    assert {f.published for f in v1} == {NOW - timedelta(minutes=30), NOW}


# -- API 2.0: the batch listing ---------------------------------------------------------------


def test_listing_needs_a_valid_bearer_token(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """No token, an unknown token and API 1.0 signatures all get 401 on the 2.0 listing."""
    assert http.get(BATCH_PATH, params={"type": "receipt"}).status_code == 401
    bad = list_batches(http, "x" * 28)
    assert (bad.status_code, bad.json()["fail"][0]["code"]) == (401, "invalid_token")
    signed = http.get(
        BATCH_PATH,
        params={"type": "receipt"},
        headers=v1_headers(acme, BATCH_PATH, mc_date(now_of(clock))),
    )
    assert signed.status_code == 401


def test_listing_without_the_siem_role_is_403(sim: Simulator, http: httpx.Client) -> None:
    """A tenant without the SIEM role gets 403 ``app_forbidden``; its TTP logs still work."""
    tenant = sim.add_tenant("nosiem", siem=False)
    assert tenant.siem is False
    token = token_for(http, tenant)
    response = list_batches(http, token)
    assert response.status_code == 403
    assert response.json() == {
        "fail": [
            {"code": "app_forbidden", "message": "Forbidden to perform the requested operation"}
        ]
    }
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 200


def test_listing_is_get_only(http: httpx.Client, bearer: str) -> None:
    """The batch listing answers 405 ``Allow: GET`` to a POST."""
    response = http.post(BATCH_PATH, headers={"Authorization": f"Bearer {bearer}"})
    assert (response.status_code, response.headers["allow"]) == (405, "GET")


def test_listing_pages_files_and_ends_caught_up(
    acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """``pageSize`` counts files; every page has ``@nextPage``; the last is ``isCaughtUp``."""
    acme.generate_receipts(1200, start=NOW - 6 * HOUR, end=NOW)
    assert len(acme.siem_files()) == 24
    first = list_batches(http, bearer, pageSize=10).json()
    assert set(first) == {"value", "@nextPage", "isCaughtUp"}
    assert set(first["value"][0]) == {"url", "size", "expiry"}
    pages, _ = walk(http, bearer, pageSize=10)
    assert [len(p) for p in pages] == [10, 10, 4]
    keys = [object_key(item["url"]) for page in pages for item in page]
    assert len(set(keys)) == 24
    assert [item["size"] for page in pages for item in page] == [f.size for f in acme.siem_files()]


def test_files_hold_the_generated_events_as_gzip_ndjson(
    acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """Downloaded without credentials, the files are gzip NDJSON holding exactly the events."""
    generated = acme.generate_receipts(800, start=NOW - 3 * HOUR, end=NOW)
    pages, _ = walk(http, bearer, pageSize=5)
    response = http.get(pages[0][0]["url"])
    assert response.content[:2] == GZIP_MAGIC
    assert "content-encoding" not in response.headers
    assert response.headers["content-type"] == "application/octet-stream"
    assert gzip.decompress(response.content).endswith(b"}\n")
    assert download_all(http, pages) == generated


def test_same_cursor_lists_the_same_files_with_fresh_links(
    acme: SimTenant, http: httpx.Client, bearer: str, clock: FakeClock
) -> None:
    """``@nextPage`` is durable: later, the same token lists the same files, newly signed."""
    acme.generate_receipts(600, start=NOW - 4 * HOUR, end=NOW)
    cursor = list_batches(http, bearer, pageSize=4).json()["@nextPage"]
    before = list_batches(http, bearer, pageSize=4, nextPage=cursor).json()
    clock.advance(600)
    after = list_batches(http, bearer, pageSize=4, nextPage=cursor).json()
    assert len(before["value"]) == 4
    assert [object_key(i["url"]) for i in after["value"]] == [
        object_key(i["url"]) for i in before["value"]
    ]
    assert [i["size"] for i in after["value"]] == [i["size"] for i in before["value"]]
    assert all(a["url"] != b["url"] for a, b in zip(after["value"], before["value"], strict=True))
    assert after["value"][0]["expiry"] == "2025-03-04T10:25:00.000Z"
    assert before["value"][0]["expiry"] == "2025-03-04T10:15:00.000Z"
    assert after["@nextPage"] == before["@nextPage"]


def test_links_expire_and_answer_403(
    acme: SimTenant, http: httpx.Client, bearer: str, clock: FakeClock
) -> None:
    """A link works for its lifetime, then answers S3's 403 "Request has expired"."""
    acme.generate_receipts(50, start=NOW - HOUR, end=NOW)
    url = list_batches(http, bearer).json()["value"][0]["url"]
    clock.advance(QUARTER)
    assert http.get(url).status_code == 200
    clock.advance(1)
    expired = http.get(url)
    assert expired.status_code == 403
    assert expired.headers["content-type"] == "application/xml"
    assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.text
    fresh = list_batches(http, token_for(http, acme)).json()["value"][0]["url"]
    assert http.get(fresh).status_code == 200


def test_link_lifetime_is_configurable(clock: FakeClock) -> None:
    """``siem_link_lifetime`` sets how long links live, and their ``expiry``."""
    with (
        Simulator(
            seed=1, clock=clock.monotonic, wall_clock=clock.time, siem_link_lifetime=60
        ) as sim,
        httpx.Client(base_url=sim.url) as http,
    ):
        tenant = sim.add_tenant("acme")
        tenant.generate_receipts(20, start=NOW - HOUR, end=NOW)
        [item, *_] = list_batches(http, token_for(http, tenant)).json()["value"]
        assert item["expiry"] == "2025-03-04T10:01:00.000Z"
        assert parse_qs(urlsplit(item["url"]).query)["X-Amz-Expires"] == ["60"]
        clock.advance(61)
        assert http.get(item["url"]).status_code == 403


def test_an_altered_link_is_refused(acme: SimTenant, http: httpx.Client, bearer: str) -> None:
    """A link whose signature or key was changed is 403 ``SignatureDoesNotMatch``."""
    acme.generate_receipts(20, start=NOW - HOUR, end=NOW)
    url = list_batches(http, bearer).json()["value"][0]["url"]
    for altered in (
        url[:-4] + "0000",
        url[:-4] + "%C3%A9",  # not even ASCII
        url.replace("/siem-files/", "/siem-files/x"),
    ):
        response = http.get(altered)
        assert response.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text
    assert http.post(url).status_code == 405


def test_a_caught_up_cursor_lists_batches_published_later(
    acme: SimTenant, http: httpx.Client, bearer: str, clock: FakeClock
) -> None:
    """Events of the running quarter are published at its end, then follow the cursor."""
    acme.generate_receipts(100, start=NOW - HOUR, end=NOW)
    upcoming = acme.generate_receipts(
        30, start=NOW + timedelta(seconds=1), end=NOW + timedelta(minutes=10)
    )
    pages, cursor = walk(http, bearer)
    assert sum(len(p) for p in pages) == 4
    clock.advance(10 * 60)
    page = list_batches(http, bearer, nextPage=cursor).json()
    assert (page["value"], page["isCaughtUp"], page["@nextPage"]) == ([], True, cursor)
    clock.advance(5 * 60)
    page = list_batches(http, token_for(http, acme), nextPage=cursor).json()
    assert page["isCaughtUp"] is True
    assert download_all(http, [page["value"]]) == upcoming


def test_dates_reach_back_seven_days(acme: SimTenant, http: httpx.Client, bearer: str) -> None:
    """Files older than 7 days are gone; a start before 7 days ago is a 400 ``error``."""
    acme.generate_receipts(900, start=NOW - 9 * DAY, end=NOW)
    oldest = min(f.published for f in acme.siem_files())
    assert oldest >= NOW - 7 * DAY
    too_old = list_batches(http, bearer, dateRangeStartsAt="2025-02-24")
    assert too_old.status_code == 400
    assert too_old.json()["error"]["code"] == "err_validation_date_range"
    pages, _ = walk(http, bearer, dateRangeStartsAt="2025-02-25")
    assert sum(len(p) for p in pages) == len(acme.siem_files())
    default, _ = walk(http, bearer)
    assert sum(len(p) for p in default) == len(acme.siem_files())
    today, _ = walk(http, bearer, dateRangeStartsAt="2025-03-04", dateRangeEndsAt="2025-03-04")
    one_day, _ = walk(http, bearer, dateRangeStartsAt="2025-03-03", dateRangeEndsAt="2025-03-03")
    day_files = [f for f in acme.siem_files() if f.published.date().isoformat() == "2025-03-03"]
    assert sum(len(p) for p in one_day) == len(day_files) > 0
    assert sum(len(p) for p in today) == len(acme.siem_files()) - sum(
        f.published < NOW - 10 * HOUR for f in acme.siem_files()
    )


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"type": None}, "err_validation_type_missing"),
        ({"type": "receipts"}, "err_validation_type_invalid"),
        ({"pageSize": "0"}, "err_validation_page_size"),
        ({"pageSize": "ten"}, "err_validation_page_size"),
        ({"dateRangeStartsAt": "2025-3-4"}, "err_validation_date_format"),
        ({"dateRangeStartsAt": "2025-03-04", "dateRangeEndsAt": "2025-03-03"}, "err_validation_date_range"),
        ({"nextPage": "not-a-token"}, "err_validation_next_page_invalid"),
    ],
    ids=["no-type", "bad-type", "page-size-0", "page-size-word", "date-format", "reversed", "token"],
)  # fmt: skip
def test_listing_validation_errors_are_400_with_an_error_object(
    http: httpx.Client, bearer: str, params: dict[str, str | None], code: str
) -> None:
    """Bad parameters are HTTP 400 with a top-level ``error`` (mimecast-api.md §8.1)."""
    query = {k: v for k, v in {"type": "receipt", **params}.items() if v is not None}
    response = http.get(BATCH_PATH, params=query, headers={"Authorization": f"Bearer {bearer}"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


def test_cursors_are_bound_to_tenant_and_type(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """Another tenant's cursor, or one of another type, is refused; other types list nothing."""
    other = sim.add_tenant("other")
    acme.generate_receipts(100, start=NOW - HOUR, end=NOW)
    cursor = list_batches(http, bearer).json()["@nextPage"]
    stolen = list_batches(http, token_for(http, other), nextPage=cursor)
    assert stolen.status_code == 400
    assert list_batches(http, bearer, type="delivery", nextPage=cursor).status_code == 400
    delivery = list_batches(http, bearer, type="delivery").json()
    assert (delivery["value"], delivery["isCaughtUp"]) == ([], True)
    big = list_batches(http, bearer, pageSize=500).json()
    assert len(big["value"]) == 4


def test_page_size_is_capped_at_one_hundred_files(
    acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """A ``pageSize`` above 100 is served as 100."""
    acme.generate_receipts(120, start=NOW - 31 * HOUR, end=NOW, file_size=1)
    page = list_batches(http, bearer, pageSize=1000).json()
    assert (len(page["value"]), page["isCaughtUp"]) == (100, False)


def test_without_enhanced_logging_the_feeds_are_empty(
    sim: Simulator, http: httpx.Client, clock: FakeClock
) -> None:
    """No Enhanced Logging: generated events exist but nothing is published on either API."""
    tenant = sim.add_tenant("quiet", enhanced_logging=False)
    assert len(tenant.generate_receipts(100, start=NOW - HOUR, end=NOW)) == 100
    page = list_batches(http, token_for(http, tenant)).json()
    assert (page["value"], page["isCaughtUp"]) == ([], True)
    files, last = walk_v1(http, tenant, clock)
    assert files == []
    assert last.json() == {"meta": {"status": 200}, "data": [], "fail": []}


def test_siem_requests_share_the_rate_limit_but_downloads_do_not(
    acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """The listing spends the tenant's bucket (§8.3); presigned downloads are not counted."""
    acme.generate_receipts(20, start=NOW - HOUR, end=NOW)
    url = list_batches(http, bearer).json()["value"][0]["url"]
    acme.set_rate_limit(2, 0.001)
    assert list_batches(http, bearer).headers["x-ratelimit-remaining"] == "1"
    assert [http.get(url).status_code for _ in range(3)] == [200, 200, 200]
    assert list_batches(http, bearer).status_code == 200
    assert list_batches(http, bearer).status_code == 429


def test_siem_requests_are_logged_with_their_query(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """The request log records SIEM calls with their tenant and query string."""
    list_batches(http, bearer, pageSize=3)
    entry = sim.requests[-1]
    assert (entry.path, entry.tenant, entry.status) == (BATCH_PATH, "acme", 200)
    assert parse_qs(entry.query) == {"type": ["receipt"], "pageSize": ["3"]}


# -- API 1.0: get-siem-logs -------------------------------------------------------------------


def test_get_siem_logs_needs_valid_credentials_and_the_role(
    sim: Simulator, acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """No credentials or a bad signature is 401; a tenant without the SIEM role 403."""
    body = {"data": [{"type": "MTA", "fileFormat": "json", "compress": True}]}
    assert http.post(V1_PATH, json=body).status_code == 401
    forged = v1_headers(acme, V1_PATH, mc_date(now_of(clock)), app_key="wrong")
    response = siem_logs(http, acme, clock, headers=forged)
    assert response.status_code == 401
    assert response.json()["fail"][0]["errors"][0]["code"] == "err_xdk_invalid_signature"
    denied = siem_logs(http, sim.add_tenant("nosiem", siem=False), clock)
    assert denied.status_code == 403
    assert denied.json()["fail"][0]["errors"][0]["code"] == "app_forbidden"
    assert http.get(V1_PATH).status_code == 405


def test_token_chain_walks_every_file_once_then_says_nothing_new(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """Without a token the earliest file comes first; the chain serves each file once."""
    generated = acme.generate_receipts(1500, start=NOW - 5 * HOUR, end=NOW)
    files, last = walk_v1(http, acme, clock)
    names = [re.sub(r'.*filename="(.*)"', r"\1", f.headers["content-disposition"]) for f in files]
    assert names == [f.name for f in acme.siem_files("1.0")]
    assert len(set(names)) == len(names)
    assert last.json() == {"meta": {"status": 200}, "data": [], "fail": []}
    assert last.headers["isLastToken"] == "true"
    again = siem_logs(http, acme, clock, last.headers["mc-siem-token"])
    assert again.headers["content-type"] == "application/json"
    members = [json.loads(member_of(f)) for f in files]
    assert all(m["type"] == "MTA" for m in members)
    receipt_rows = [row for f, m in zip(files, members, strict=True) for row in m["data"]
                    if "receipt_" in f.headers["content-disposition"]]  # fmt: skip
    assert len(receipt_rows) == len(generated)
    assert Counter(r["Act"] for r in receipt_rows) == Counter(e["action"] for e in generated)
    assert Counter(r.get("RejInfo") for r in receipt_rows) == Counter(
        e["rejectionInfo"] for e in generated
    )


def test_files_are_named_after_their_log_kind(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """``Content-Disposition`` names the kind; the feed interleaves receipt, process, delivery."""
    acme.generate_receipts(3000, start=NOW - 6 * HOUR, end=NOW)
    files, _ = walk_v1(http, acme, clock)
    dispositions = [f.headers["content-disposition"] for f in files]
    assert all(DISPOSITION.fullmatch(d) for d in dispositions)
    kinds = [DISPOSITION.fullmatch(d)[1] for d in dispositions]  # type: ignore[index]
    assert set(kinds) == {"receipt", "process", "delivery", "ttp_url"}
    assert kinds[:3] == ["receipt", "process", "delivery"]
    assert kinds.count("receipt") == 12  # one per half hour
    assert all(f.headers["content-type"] == "application/octet-stream" for f in files)


def test_v1_rows_have_the_documented_shapes(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """Receipt rows in any offset, ``Rcpt`` string or array; delivery rows refused downstream."""
    acme.generate_receipts(3000, start=NOW - 6 * HOUR, end=NOW)
    files, _ = walk_v1(http, acme, clock)
    rows: dict[str, list[dict[str, Any]]] = {}
    for response in files:
        kind = response.headers["content-disposition"].split('"')[1].rsplit("_", 1)[0]
        rows.setdefault(kind, []).extend(json.loads(member_of(response))["data"])
    receipt = rows["receipt"]
    assert all(set(r) <= V1_RECEIPT_FIELDS for r in receipt)
    assert all(V1_TIME.fullmatch(r["datetime"]) for r in receipt)
    assert len({r["datetime"][-5:] for r in receipt}) > 2
    assert any(isinstance(r["Rcpt"], list) for r in receipt)
    assert any(isinstance(r["Rcpt"], str) for r in receipt)
    rejected = [r for r in receipt if r["Act"] == "Rej"]
    assert {normalise(r["RejInfo"]) for r in rejected if r["RejInfo"]} >= {
        t.lower() for t in SOPHOS_SIX
    }
    refused = [r for r in rows["delivery"] if r["Delivered"] is False]
    assert refused
    assert all(r["RejType"] and r["RejCode"] and r["RejInfo"] for r in refused)
    assert any("Invalid Recipient" in r["RejInfo"] for r in refused)
    assert any(r["RejInfo"].startswith("5.4.1 Recipient address rejected") for r in refused)
    codes = {r["aCode"] for r in receipt}
    assert all(r["aCode"] in codes for r in rows["delivery"] + rows["process"])
    assert all(r["reason"] == "malicious" for r in rows["ttp_url"])


def test_compress_false_sends_the_json_member_itself(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """With ``compress: false`` the answer is the JSON ``{ "type" : "MTA", "data" : [...] }``."""
    acme.generate_receipts(100, start=NOW - HOUR, end=NOW)
    zipped = siem_logs(http, acme, clock)
    plain = siem_logs(http, acme, clock, compress=False)
    assert plain.content.startswith(b'{ "type" : "MTA", "data" : [')
    assert plain.content == member_of(zipped)
    assert plain.headers["mc-siem-token"] == zipped.headers["mc-siem-token"]


def test_bad_tokens_and_bodies_are_200_with_a_fail_entry(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """An unknown token is ``err_audit_siem_invalid_token``; key_value is not served."""
    response = siem_logs(http, acme, clock, token="bm90LWEtdG9rZW4")
    assert response.status_code == 200
    assert response.json()["fail"][0]["errors"][0]["code"] == "err_audit_siem_invalid_token"
    headers = v1_headers(acme, V1_PATH, mc_date(now_of(clock)))
    key_value = http.post(V1_PATH, json={"data": [{"type": "MTA"}]}, headers=headers)
    assert key_value.json()["fail"][0]["errors"][0]["code"] == "err_simulator_unsupported_format"


def test_v1_files_are_kept_seven_days(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """The earliest file served is at most 7 days old; a bearer token works on the path too."""
    acme.generate_receipts(500, start=NOW - 9 * DAY, end=NOW)
    first = siem_logs(http, acme, clock)
    assert first.headers["content-disposition"] == (
        f'attachment; filename="{acme.siem_files("1.0")[0].name}"'
    )
    assert acme.siem_files("1.0")[0].published >= NOW - 7 * DAY
    body = {"data": [{"type": "MTA", "fileFormat": "json", "compress": True}]}
    bearer = http.post(
        V1_PATH, json=body, headers={"Authorization": f"Bearer {token_for(http, acme)}"}
    )
    assert bearer.headers["content-disposition"] == first.headers["content-disposition"]


# -- faults -----------------------------------------------------------------------------------


def test_truncated_file_cuts_the_gzip_or_its_text(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """TruncatedFile: a gzip that ends early, or a whole gzip whose last line is cut."""
    acme.generate_receipts(200, start=NOW - HOUR, end=NOW)
    url = list_batches(http, bearer).json()["value"][0]["url"]
    whole = http.get(url).content
    sim.inject(faults.TruncatedFile(0.5))
    cut = http.get(url).content
    assert cut == whole[: len(whole) // 2]
    with pytest.raises(EOFError):
        gzip.decompress(cut)
    sim.inject(faults.TruncatedFile(0.5, content=True))
    lines = gzip.decompress(http.get(url).content).splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[-1])
    assert http.get(url).content == whole


def test_truncated_v1_file_and_the_chain_goes_on(
    sim: Simulator, acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """A zip cut short, or the member cut right after ``"data" :``; the token still advances."""
    acme.generate_receipts(300, start=NOW - HOUR, end=NOW)
    names = [f.name for f in acme.siem_files("1.0")]
    sim.inject(faults.TruncatedFile(0.5), siem="get-siem-logs")
    first = siem_logs(http, acme, clock)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(first.content))
    sim.inject(faults.TruncatedFile(0.0, content=True))
    second = siem_logs(http, acme, clock, first.headers["mc-siem-token"])
    assert member_of(second) == b'{ "type" : "MTA", "data" : '
    third = siem_logs(http, acme, clock, second.headers["mc-siem-token"])
    assert json.loads(member_of(third))["type"] == "MTA"
    assert [
        r.headers["content-disposition"].split('"')[1] for r in (first, second, third)
    ] == names[:3]


def test_not_gzip_serves_html_or_plain_text(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str, clock: FakeClock
) -> None:
    """NotGzip: an HTML page, or the NDJSON (1.0: the JSON) not compressed at all."""
    acme.generate_receipts(100, start=NOW - HOUR, end=NOW)
    url = list_batches(http, bearer).json()["value"][0]["url"]
    whole = http.get(url).content
    sim.inject(faults.NotGzip())
    html = http.get(url)
    assert (html.status_code, html.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert html.content.startswith(b"<!DOCTYPE html>")
    sim.inject(faults.NotGzip("text"), siem="download")
    assert http.get(url).content == gzip.decompress(whole)
    sim.inject(faults.NotGzip("text"), siem="get-siem-logs")
    plain = siem_logs(http, acme, clock)
    assert plain.content.startswith(b'{ "type" : "MTA", "data" : [')
    assert "mc-siem-token" in plain.headers


def test_expired_link_fault_answers_403_once(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """ExpiredLink: the next download is 403 "Request has expired" though its link is fresh."""
    acme.generate_receipts(50, start=NOW - HOUR, end=NOW)
    url = list_batches(http, bearer).json()["value"][0]["url"]
    sim.inject(faults.ExpiredLink())
    assert list_batches(http, bearer).status_code == 200  # a listing does not spend it
    expired = http.get(url)
    assert expired.status_code == 403
    assert "Request has expired" in expired.text
    assert http.get(url).status_code == 200


def test_late_batch_shows_up_after_the_cursor_was_caught_up(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """LateBatch: older events published now come on the page after ``isCaughtUp``."""
    acme.generate_receipts(300, start=NOW - 2 * HOUR, end=NOW)
    pages, cursor = walk(http, bearer)
    newest = max(e["timestamp"] for e in download_all(http, pages))
    sim.inject(faults.LateBatch(count=7, age=3 * 3600))
    late = list_batches(http, bearer, nextPage=cursor).json()
    assert late["isCaughtUp"] is True
    assert len(late["value"]) == 1
    events = download_all(http, [late["value"]])
    assert len(events) == 7
    assert all(e["timestamp"] < newest - 2 * 3600 * 1000 for e in events)
    assert list_batches(http, bearer, nextPage=late["@nextPage"]).json()["value"] == []
    fresh, _ = walk(http, bearer)
    assert sum(len(p) for p in fresh) == sum(len(p) for p in pages) + 1


def test_late_batch_comes_next_in_the_v1_token_chain(
    sim: Simulator, acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """On 1.0 the late files follow the last token: the chain that had ended goes on."""
    acme.generate_receipts(200, start=NOW - HOUR, end=NOW)
    _, last = walk_v1(http, acme, clock)
    sim.inject(faults.LateBatch(count=5, age=7200))
    files, _ = walk_v1(http, acme, clock, last.headers["mc-siem-token"])
    kinds = [f.headers["content-disposition"].split('"')[1].split("_")[0] for f in files]
    assert kinds[0] == "receipt"
    rows = json.loads(member_of(files[0]))["data"]
    assert len(rows) == 5
    assert all(datetime.fromisoformat(r["datetime"]) < NOW - HOUR for r in rows)


def test_huge_file_is_streamed_in_bounded_memory(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str
) -> None:
    """HugeFile: tens of MB of NDJSON, made and sent chunk by chunk, never held whole."""
    acme.generate_receipts(20, start=NOW - HOUR, end=NOW)
    url = list_batches(http, bearer).json()["value"][0]["url"]
    rows = 20_000
    sim.inject(faults.HugeFile(rows=rows))
    inflate = zlib.decompressobj(31)
    lines = size = 0
    rest = b""
    tracemalloc.start()
    try:
        with http.stream("GET", url) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            for chunk in response.iter_raw():
                data = rest + inflate.decompress(chunk)
                complete, _, rest = data.rpartition(b"\n")
                if complete:
                    lines += complete.count(b"\n") + 1
                    size += len(complete) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert inflate.eof
    assert rest == b""
    assert lines == rows
    assert size > 15_000_000
    assert peak < size / 4, (peak, size)


def test_huge_file_on_api_1_is_a_streamed_zip(
    sim: Simulator, acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """On 1.0 the huge file is a streamed zip (or JSON) of receipt rows; the chain goes on."""
    acme.generate_receipts(100, start=NOW - HOUR, end=NOW)
    sim.inject(faults.HugeFile(rows=1500), times=2)
    zipped = siem_logs(http, acme, clock)
    assert zipped.headers["transfer-encoding"] == "chunked"
    assert zipped.headers["content-disposition"].startswith('attachment; filename="receipt_')
    member = json.loads(member_of(zipped))
    assert len(member["data"]) == 1500
    assert all(set(r) <= V1_RECEIPT_FIELDS for r in member["data"])
    plain = siem_logs(http, acme, clock, zipped.headers["mc-siem-token"], compress=False)
    assert len(json.loads(plain.content)["data"]) == 1500
    names = [f.name for f in acme.siem_files("1.0")]
    third = siem_logs(http, acme, clock, plain.headers["mc-siem-token"])
    assert third.headers["content-disposition"] == f'attachment; filename="{names[2]}"'


def test_generic_faults_reach_siem_requests_only_when_asked(
    sim: Simulator, acme: SimTenant, http: httpx.Client, bearer: str, clock: FakeClock
) -> None:
    """A TTP fault skips SIEM calls; ``siem=`` aims one at a listing, a download or a 1.0 call."""
    acme.generate_receipts(50, start=NOW - HOUR, end=NOW)
    sim.inject(faults.HttpStatus(503))
    assert list_batches(http, bearer).status_code == 200
    assert post_logs(http, Category.URL, bearer, ALL_TIME).status_code == 503
    sim.inject(faults.HttpStatus(502), siem="download")
    page = list_batches(http, bearer).json()
    assert http.get(page["value"][0]["url"]).status_code == 502
    sim.inject(faults.HttpStatus(500), siem=True)
    assert siem_logs(http, acme, clock).status_code == 500
    sim.inject(faults.ExpireToken(), siem="listing")
    assert list_batches(http, bearer).json()["fail"][0]["code"] == "token_expired"


@pytest.mark.parametrize(
    ("fault", "options", "match"),
    [
        (faults.Malformed(), {"siem": True}, "does not apply to the SIEM"),
        (faults.ExpiredLink(), {"siem": "listing"}, "does not apply to a SIEM listing"),
        (faults.TruncatedFile(), {"category": Category.URL}, "category"),
        (faults.NotGzip(), {"token_endpoint": True}, "oauth/token"),
        (faults.HttpStatus(500), {"siem": True, "category": Category.URL}, "category"),
    ],
    ids=["ttp-only", "wrong-call", "category", "token-endpoint", "siem-category"],
)
def test_siem_fault_rules_that_cannot_apply_are_refused(
    sim: Simulator, fault: faults.Fault, options: dict[str, Any], match: str
) -> None:
    """``inject`` refuses a SIEM rule that could never hit a request."""
    with pytest.raises(ValueError, match=match):
        sim.inject(fault, **options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: faults.TruncatedFile(1.0),
        lambda: faults.LateBatch(count=0),
        lambda: faults.LateBatch(age=-1),
        lambda: faults.HugeFile(rows=0),
    ],
)
def test_siem_fault_fields_are_checked(make: Any) -> None:
    """The SIEM fault dataclasses refuse values that make no sense."""
    with pytest.raises(ValueError, match="must"):
        make()
