"""Filters, ordering and paging of the log endpoints (§4, §5.1, §6.1, §7.1; rejections as in
mta-rejections.md §2.3), late records."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from mimecast_connector import Category
from mimecast_connector.simulator import SimTenant, Simulator
from tests.simulator._helpers import (
    ALL_TIME,
    NOW,
    fail_codes,
    fetch_all,
    pagination_of,
    post_logs,
    records_of,
    stamp,
    token_for,
    url_record,
)

HOUR = timedelta(hours=1)


@pytest.fixture
def token(acme: SimTenant, http: httpx.Client) -> str:
    return token_for(http, acme)


def subjects(records: list[Any]) -> list[str]:
    return [r["subject"] for r in records]


def test_window_is_inclusive_and_accepts_all_three_offset_styles(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """``from <= event time <= to``, with ``+0000``, ``Z`` and ``+00:00`` offsets (§4.1)."""
    acme.add_records(
        Category.URL,
        [url_record(stamp(NOW - k * HOUR), subject=f"s{k}") for k in (3, 2, 1)],
    )
    for start, end in [
        ("2025-03-04T07:00:00+0000", "2025-03-04T08:00:00+0000"),
        ("2025-03-04T07:00:00Z", "2025-03-04T08:00:00Z"),
        ("2025-03-04T07:00:00+00:00", "2025-03-04T08:00:00+00:00"),
        ("2025-03-04T08:00:00+01:00", "2025-03-04T09:00:00+01:00"),
    ]:
        response = post_logs(http, Category.URL, token, {"from": start, "to": end})
        assert subjects(records_of(response, Category.URL)) == ["s2", "s3"], (start, end)


def test_default_window_runs_from_the_start_of_the_utc_day_to_now(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """Without ``from``/``to`` the window is [start of today UTC, now] (§4.1)."""
    midnight = NOW.replace(hour=0)
    acme.add_records(
        Category.URL,
        [
            url_record(stamp(midnight - timedelta(seconds=1)), subject="yesterday"),
            url_record(stamp(midnight), subject="midnight"),
            url_record(stamp(NOW), subject="now"),
            url_record(stamp(NOW + timedelta(seconds=1)), subject="future"),
        ],
    )
    response = post_logs(http, Category.URL, token, {})
    assert subjects(records_of(response, Category.URL)) == ["now", "midnight"]
    assert subjects(records_of(post_logs(http, Category.URL, token), Category.URL)) == [
        "now",
        "midnight",
    ]


def test_newest_first_by_default_ties_in_insertion_order(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """Records come newest first; records with the same time keep the order they were added."""
    same = stamp(NOW - HOUR)
    acme.add_records(
        Category.URL,
        [
            url_record(same, subject="tie-1"),
            url_record(stamp(NOW - 2 * HOUR), subject="old"),
            url_record(same, subject="tie-2"),
            url_record(stamp(NOW), subject="new"),
            url_record(same, subject="tie-3"),
        ],
    )
    newest = records_of(post_logs(http, Category.URL, token, ALL_TIME), Category.URL)
    assert subjects(newest) == ["new", "tie-1", "tie-2", "tie-3", "old"]
    oldest = records_of(
        post_logs(http, Category.URL, token, {**ALL_TIME, "oldestFirst": True}), Category.URL
    )
    assert subjects(oldest) == ["old", "tie-1", "tie-2", "tie-3", "new"]


@pytest.mark.parametrize(
    ("category", "item", "field", "expected"),
    [
        (Category.URL, {"route": "internal"}, "route", {"internal"}),
        (Category.URL, {"scanResult": "Malicious"}, "scanResult", {"malicious"}),
        (Category.URL, {"scanResult": "all", "route": "all"}, "scanResult", None),
        (Category.ATTACHMENT, {"result": "timeout"}, "result", {"timeout"}),
        (Category.ATTACHMENT, {"route": "outbound"}, "route", {"outbound"}),
        (Category.IMPERSONATION, {"taggedMalicious": True}, "taggedMalicious", {True}),
        (Category.IMPERSONATION, {"taggedMalicious": False}, "taggedMalicious", {False}),
    ],
)
def test_field_filters_select_only_matching_records(
    acme: SimTenant,
    http: httpx.Client,
    token: str,
    category: Category,
    item: dict[str, Any],
    field: str,
    expected: set[Any] | None,
) -> None:
    """route / result / scanResult / taggedMalicious keep only matching records; ``all`` keeps all."""
    made = acme.generate(category, count=400, start=NOW - HOUR, end=NOW)
    served = fetch_all(
        http, category, token, {**ALL_TIME, **item}, page_size=500, resend_data=False
    )
    if expected is None:
        assert len(served) == len(made)
        return
    wanted = [r for r in made if str(r[field]).lower() in {str(e).lower() for e in expected}]
    assert served, "the generator should produce some matching records"
    assert {r[field] for r in served} == expected
    assert len(served) == len(wanted)


@pytest.mark.parametrize("field", ["from", "to"])
def test_unparseable_date_is_a_200_with_a_fail_entry(
    http: httpx.Client, token: str, field: str
) -> None:
    """A bad ``from``/``to`` is HTTP 200 with ``err_validation_invalid_date``, key echoed (§12.5)."""
    item = {**ALL_TIME, field: "2025-13-45T99:00:00+0000"}
    response = post_logs(http, Category.URL, token, item)
    assert fail_codes(response) == ["err_validation_invalid_date"]
    body = response.json()
    assert body["data"] == []
    assert body["fail"][0]["key"] == item
    assert body["fail"][0]["errors"][0]["retryable"] is False


@pytest.mark.parametrize("resend_data", [True, False], ids=["resend-data", "token-only"])
def test_paging_returns_every_record_exactly_once(
    acme: SimTenant, http: httpx.Client, token: str, resend_data: bool
) -> None:
    """Following ``next`` visits every record once, whether later pages resend ``data`` or not."""
    made = acme.generate(Category.URL, count=257, start=NOW - HOUR, end=NOW)
    served = fetch_all(
        http,
        Category.URL,
        token,
        {**ALL_TIME, "oldestFirst": True},
        page_size=50,
        resend_data=resend_data,
    )
    assert served == made


def test_total_count_next_and_previous(acme: SimTenant, http: httpx.Client, token: str) -> None:
    """``totalCount`` is the whole result; ``next`` only when more, ``previous`` only after page 1."""
    acme.generate(Category.URL, count=5, start=NOW - HOUR, end=NOW)
    first = post_logs(http, Category.URL, token, ALL_TIME, page_size=2)
    second = post_logs(
        http, Category.URL, token, page_size=2, page_token=pagination_of(first)["next"]
    )
    third = post_logs(
        http, Category.URL, token, page_size=2, page_token=pagination_of(second)["next"]
    )
    shapes = [
        (len(records_of(r, Category.URL)), set(pagination_of(r))) for r in (first, second, third)
    ]
    assert shapes == [
        (2, {"pageSize", "totalCount", "next"}),
        (2, {"pageSize", "totalCount", "next", "previous"}),
        (1, {"pageSize", "totalCount", "previous"}),
    ]
    assert {pagination_of(r)["totalCount"] for r in (first, second, third)} == {5}
    assert first.json()["meta"]["status"] == 200
    back = post_logs(
        http, Category.URL, token, page_size=2, page_token=pagination_of(third)["previous"]
    )
    assert records_of(back, Category.URL) == records_of(second, Category.URL)


def test_page_tokens_are_opaque_and_tamper_proof(
    sim: Simulator, acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """An edited token, a made-up one, or one from another tenant or endpoint is refused."""
    acme.generate(Category.URL, count=5, start=NOW - HOUR, end=NOW)
    acme.generate(Category.ATTACHMENT, count=5, start=NOW - HOUR, end=NOW)
    good = pagination_of(post_logs(http, Category.URL, token, ALL_TIME, page_size=2))["next"]
    assert "acme" not in good
    other = sim.add_tenant("other")
    other.generate(Category.URL, count=5, start=NOW - HOUR, end=NOW)
    foreign = pagination_of(
        post_logs(http, Category.URL, token_for(http, other), ALL_TIME, page_size=2)
    )["next"]
    flipped = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    for page_token in (flipped, "2", "x", foreign):
        response = post_logs(http, Category.URL, token, page_size=2, page_token=page_token)
        assert fail_codes(response) == ["err_validation_invalid_page_token"], page_token
    wrong_endpoint = post_logs(http, Category.ATTACHMENT, token, page_size=2, page_token=good)
    assert fail_codes(wrong_endpoint) == ["err_validation_invalid_page_token"]


def test_page_size_defaults_to_100_and_is_clamped_to_1_500(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """No pageSize serves 100 records; 0 serves 1; 1000 serves 500 (§4.1)."""
    acme.generate(Category.URL, count=600, start=NOW - HOUR, end=NOW)
    for size, served in ((None, 100), (0, 1), (1000, 500), (-3, 1)):
        response = post_logs(http, Category.URL, token, ALL_TIME, page_size=size)
        assert len(records_of(response, Category.URL)) == served
        assert pagination_of(response)["pageSize"] == served


def test_the_window_is_frozen_in_the_token(acme: SimTenant, http: httpx.Client, token: str) -> None:
    """Records added after page 1 stay out of that paging session and show up in the next query."""
    acme.generate(Category.URL, count=6, start=NOW - HOUR, end=NOW)
    first = post_logs(http, Category.URL, token, ALL_TIME, page_size=3)
    acme.add_records(Category.URL, [url_record(stamp(NOW - HOUR / 2), subject="newcomer")])
    second = post_logs(
        http, Category.URL, token, ALL_TIME, page_size=3, page_token=pagination_of(first)["next"]
    )
    assert pagination_of(second)["totalCount"] == 6
    assert "next" not in pagination_of(second)
    assert "newcomer" not in subjects(records_of(second, Category.URL))
    fresh = post_logs(http, Category.URL, token, ALL_TIME, page_size=10)
    assert "newcomer" in subjects(records_of(fresh, Category.URL))


def test_impersonation_pages_carry_result_count(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """Impersonation pages add ``resultCount`` (the total found) next to the list (§6.2)."""
    acme.generate(Category.IMPERSONATION, count=12, start=NOW - HOUR, end=NOW)
    response = post_logs(http, Category.IMPERSONATION, token, ALL_TIME, page_size=5)
    data = response.json()["data"]
    assert len(data) == 1
    assert (len(data[0]["impersonationLogs"]), data[0]["resultCount"]) == (5, 12)
    other = post_logs(http, Category.URL, token, ALL_TIME).json()["data"]
    assert other == [{"clickLogs": []}]


def test_late_records_appear_after_the_given_number_of_requests(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """``add_late`` records stay invisible for N log requests, then appear with their old dates."""
    acme.add_records(Category.URL, [url_record(stamp(NOW), subject="on time")])
    acme.add_late(Category.URL, [url_record(stamp(NOW - HOUR), subject="late")], after_requests=2)
    seen = [
        subjects(records_of(post_logs(http, Category.URL, token, ALL_TIME), Category.URL))
        for _ in range(3)
    ]
    assert seen == [["on time"], ["on time"], ["on time", "late"]]
    assert [r["subject"] for r in acme.records(Category.URL)] == ["late", "on time"]


def test_late_records_count_requests_of_any_category(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """Every TTP-log request of the tenant counts towards a late record's release."""
    acme.add_late(Category.URL, [url_record(stamp(NOW), subject="late")], after_requests=1)
    assert acme.records(Category.URL) == []
    post_logs(http, Category.ATTACHMENT, token, ALL_TIME)
    assert subjects(acme.records(Category.URL)) == ["late"]


def test_records_need_a_parseable_event_time(acme: SimTenant) -> None:
    """``add_records`` refuses a record whose time field is missing or unparseable."""
    for record in (url_record("yesterday"), {"subject": "no date"}):
        with pytest.raises(ValueError, match="'date'"):
            acme.add_records(Category.URL, [record])
    with pytest.raises(ValueError, match="'eventTime'"):
        acme.add_records(Category.IMPERSONATION, [url_record(stamp(NOW))])
    assert acme.records(Category.URL) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"data": [ALL_TIME, ALL_TIME]}, "err_validation_too_many_items"),
        ({"data": "all"}, "err_validation_invalid_request"),
        ([], "err_validation_invalid_request"),
        ({"meta": {"pagination": {"pageSize": "ten"}}}, "err_validation_invalid_page_size"),
        ({"meta": {"pagination": {"pageToken": 5}}}, "err_validation_invalid_page_token"),
        ({"data": [{"oldestFirst": "yes"}]}, "err_validation_invalid_value"),
        ({"data": [{"route": 3}]}, "err_validation_invalid_value"),
    ],
)
def test_malformed_request_bodies_fail_in_the_function(
    acme: SimTenant, http: httpx.Client, token: str, body: Any, code: str
) -> None:
    """A JSON body of the wrong shape is HTTP 200 with a ``fail`` entry naming the problem."""
    response = http.post(Category.URL.path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert fail_codes(response) == [code]


def test_unimplemented_impersonation_search_is_refused_loudly(
    http: httpx.Client, token: str
) -> None:
    """searchField/query/identifiers/actions are not modelled, so they fail instead of being ignored."""
    response = post_logs(
        http, Category.IMPERSONATION, token, {"identifiers": ["internal_user_name"]}
    )
    assert fail_codes(response) == ["err_simulator_unsupported_filter"]


def test_rejections_need_admin_and_come_newest_first(
    acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """get-rejections (mta-rejections.md §2.3) answers nothing without ``admin: true`` (only the
    API user's own mailbox, which receives no mail), and with it every rejection of the window
    ``start``/``end``, newest first, whatever ``oldestFirst`` says; the page token keeps it."""
    rejections = Category.REJECTION
    made = acme.generate(rejections, count=40, start=NOW - HOUR, end=NOW)
    newest_first = sorted(made, key=lambda r: r["created"], reverse=True)
    window = {"start": ALL_TIME["from"], "end": ALL_TIME["to"]}
    assert records_of(post_logs(http, rejections, token, window), rejections) == []
    not_admin = post_logs(http, rejections, token, {**window, "admin": False})
    assert records_of(not_admin, rejections) == []
    assert "next" not in pagination_of(not_admin)

    admin = {**window, "admin": True}
    served = fetch_all(http, rejections, token, admin, page_size=7, resend_data=False)
    assert served == newest_first
    asked_oldest = {**admin, "oldestFirst": True}
    assert records_of(post_logs(http, rejections, token, asked_oldest), rejections) == newest_first

    half = stamp(NOW - HOUR / 2)
    recent = {"start": half, "end": stamp(NOW), "admin": True}
    assert records_of(post_logs(http, rejections, token, recent), rejections) == [
        r for r in newest_first if r["created"] >= half
    ]
    assert 0 < len([r for r in made if r["created"] >= half]) < len(made)
    # ``from``/``to`` are the TTP logs' names: here they are no window (the default, today).
    ttp_names = {"from": half, "to": stamp(NOW), "admin": True}
    assert records_of(post_logs(http, rejections, token, ttp_names), rejections) == newest_first
