"""Every injectable fault, and the rule deciding which request a fault hits."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.simulator import SimTenant, Simulator, faults
from tests.simulator._helpers import (
    ALL_TIME,
    NOW,
    all_time,
    mc_date,
    pagination_of,
    post_logs,
    records_of,
    token_for,
    token_form,
    v1_headers,
)

HOUR = timedelta(hours=1)


@pytest.fixture
def token(acme: SimTenant, http: httpx.Client) -> str:
    acme.generate(Category.URL, count=30, start=NOW - HOUR, end=NOW)
    return token_for(http, acme)


def test_http_status_default_body_is_mimecast_shaped(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """HttpStatus answers its status with a flat ``fail`` body, then the next request is normal."""
    sim.inject(faults.HttpStatus(503), times=2)
    statuses = [post_logs(http, Category.URL, token, ALL_TIME) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].json() == {
        "fail": [{"code": "err_http_503", "message": "Service Unavailable"}]
    }


def test_http_status_on_api_1_uses_the_1_0_shape(
    sim: Simulator, acme: SimTenant, http: httpx.Client
) -> None:
    """On an API 1.0 request the default error body has ``meta``, ``data`` and ``fail[].errors``."""
    sim.inject(faults.HttpStatus(500))
    path = Category.URL.path
    response = http.post(
        path, json={"data": [ALL_TIME]}, headers=v1_headers(acme, path, mc_date(NOW))
    )
    assert response.status_code == 500
    body = response.json()
    assert (body["meta"], body["data"]) == ({"status": 500}, [])
    assert body["fail"][0]["errors"][0]["code"] == "err_http_500"
    assert body["fail"][0]["errors"][0]["retryable"] is True


def test_http_status_with_custom_body_and_headers(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """HttpStatus sends a given body and extra headers verbatim."""
    sim.inject(faults.HttpStatus(502, body="upstream gone", headers={"Retry-After": "3"}))
    response = post_logs(http, Category.URL, token, ALL_TIME)
    assert (response.status_code, response.text, response.headers["retry-after"]) == (
        502,
        "upstream gone",
        "3",
    )


def test_fail_response_is_a_200_with_the_request_item_echoed(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """FailResponse is HTTP 200, ``data: []`` and ``fail[{key: <request item>, errors}]`` (§8.1)."""
    sim.inject(faults.FailResponse(code="err_validation_blank", message="blank", retryable=True))
    item = {**ALL_TIME, "route": "inbound"}
    response = post_logs(http, Category.URL, token, item)
    assert response.status_code == 200
    assert response.json() == {
        "meta": {"status": 200},
        "data": [],
        "fail": [
            {
                "key": item,
                "errors": [{"code": "err_validation_blank", "message": "blank", "retryable": True}],
            }
        ],
    }


@pytest.mark.parametrize("absolute", [False, True])
def test_rate_limited_sends_429_with_reset(
    sim: Simulator, http: httpx.Client, token: str, absolute: bool
) -> None:
    """RateLimited is one 429 with Remaining 0 and Reset in ms, relative or absolute epoch (§8.3)."""
    sim.inject(faults.RateLimited(reset_ms=2500, absolute=absolute))
    response = post_logs(http, Category.URL, token, ALL_TIME)
    assert response.status_code == 429
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["x-ratelimit-limit"]) > 0
    expected = int(NOW.timestamp() * 1000) + 2500 if absolute else 2500
    assert int(response.headers["x-ratelimit-reset"]) == expected
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 200


def test_binding_expired_hits_only_api_1_requests(
    sim: Simulator, acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """BindingExpired skips 2.0 requests and answers the next 1.0 one with 418 (§2.4)."""
    sim.inject(faults.BindingExpired())
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 200
    path = Category.URL.path
    response = http.post(
        path, json={"data": [ALL_TIME]}, headers=v1_headers(acme, path, mc_date(NOW))
    )
    assert response.status_code == 418
    assert response.json()["fail"][0]["errors"][0]["code"] == "err_xdk_binding_expired"


def test_expire_token_skips_api_1_requests(
    sim: Simulator, acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """ExpireToken waits for a bearer request: a 1.0 request in between is served normally."""
    sim.inject(faults.ExpireToken())
    path = Category.URL.path
    signed = v1_headers(acme, path, mc_date(NOW))
    assert http.post(path, json={"data": [ALL_TIME]}, headers=signed).status_code == 200
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 401


def test_truncate_cuts_the_body_and_its_content_length(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """Truncate sends the first fraction of the normal body, Content-Length matching the cut."""
    full = post_logs(http, Category.URL, token, ALL_TIME).content
    sim.inject(faults.Truncate(keep_fraction=0.3))
    response = post_logs(http, Category.URL, token, ALL_TIME)
    assert response.status_code == 200
    assert response.content == full[: int(len(full) * 0.3)]
    assert int(response.headers["content-length"]) == len(response.content)
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_not_json_sends_an_html_page_with_200(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """NotJson answers HTTP 200 with an HTML error page."""
    sim.inject(faults.NotJson())
    response = post_logs(http, Category.URL, token, ALL_TIME)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_slow_waits_then_answers_normally(sim: Simulator, http: httpx.Client, token: str) -> None:
    """Slow delays the answer by its seconds, then sends the normal page."""
    sim.inject(faults.Slow(seconds=0.3))
    started = time.monotonic()
    response = post_logs(http, Category.URL, token, ALL_TIME)
    assert time.monotonic() - started >= 0.3
    assert len(records_of(response, Category.URL)) == 30


def test_disconnect_closes_without_answering(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """Disconnect drops the connection with no response; the log says status None; then all is well."""
    sim.inject(faults.Disconnect())
    with pytest.raises(httpx.RemoteProtocolError):
        post_logs(http, Category.URL, token, ALL_TIME)
    assert sim.requests[-1].status is None
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 200


@pytest.mark.parametrize("category", list(LOG_CATEGORIES))
def test_malformed_adds_each_kind_of_broken_record_once(
    sim: Simulator, acme: SimTenant, http: httpx.Client, category: Category
) -> None:
    """Malformed(4) adds four broken records of the four kinds, never stored and never repeated."""
    token = token_for(http, acme)
    acme.generate(category, count=3, start=NOW - HOUR, end=NOW)
    stored = acme.records(category)
    sim.inject(faults.Malformed(count=4))
    records = records_of(post_logs(http, category, token, all_time(category)), category)
    assert records[:3] == sorted(stored, key=lambda r: r[category.time_field], reverse=True)
    missing, wrong_type, bad_time, not_object = records[3:]
    field = category.time_field
    assert field not in missing
    if category is Category.IMPERSONATION:
        assert wrong_type["hits"] == "two"
    else:
        assert wrong_type[field] == 12345
    assert bad_time[field] == "2025-13-45T99:00:00+0000"
    assert not isinstance(not_object, dict)
    assert acme.records(category) == stored
    assert len(records_of(post_logs(http, category, token, all_time(category)), category)) == 3


def test_empty_page_with_next_continues_where_it_was(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """EmptyPageWithNext serves no records but a ``next`` that yields the page it skipped (§4.3)."""
    normal = post_logs(http, Category.URL, token, ALL_TIME, page_size=10)
    sim.inject(faults.EmptyPageWithNext())
    empty = post_logs(http, Category.URL, token, ALL_TIME, page_size=10)
    assert records_of(empty, Category.URL) == []
    resumed = post_logs(
        http, Category.URL, token, page_size=10, page_token=pagination_of(empty)["next"]
    )
    assert records_of(resumed, Category.URL) == records_of(normal, Category.URL)


def test_repeat_next_token_echoes_the_request_token(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """RepeatNextToken makes ``next`` equal to the ``pageToken`` sent: a loop (§4.3)."""
    first = post_logs(http, Category.URL, token, ALL_TIME, page_size=10)
    sent = pagination_of(first)["next"]
    sim.inject(faults.RepeatNextToken())
    looped = post_logs(http, Category.URL, token, page_size=10, page_token=sent)
    assert pagination_of(looped)["next"] == sent


def test_faults_match_tenant_and_category_and_last_until_cleared(
    sim: Simulator, acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """A fault hits only its tenant and category; ``times=None`` lasts until ``clear_faults``."""
    other = sim.add_tenant("other")
    other_token = token_for(http, other)
    sim.inject(faults.HttpStatus(500), tenant="acme", category=Category.URL, times=None)

    def statuses() -> list[int]:
        requests = [
            (other_token, Category.URL),
            (token, Category.ATTACHMENT),
            (token, Category.URL),
            (token, Category.URL),
        ]
        return [post_logs(http, c, t, ALL_TIME).status_code for t, c in requests]

    assert statuses() == [200, 200, 500, 500]
    sim.clear_faults()
    assert statuses() == [200, 200, 200, 200]


def test_faults_apply_in_order_and_skip_failed_authentication(
    sim: Simulator, http: httpx.Client, token: str
) -> None:
    """Faults hit requests in the order injected, and a request failing auth spends none."""
    sim.inject(faults.HttpStatus(500))
    sim.inject(faults.HttpStatus(503))
    assert post_logs(http, Category.URL, "NotAToken", ALL_TIME).status_code == 401
    assert [post_logs(http, Category.URL, token, ALL_TIME).status_code for _ in range(3)] == [
        500,
        503,
        200,
    ]


def test_token_endpoint_faults_hit_only_token_requests(
    sim: Simulator, acme: SimTenant, http: httpx.Client, token: str
) -> None:
    """With ``token_endpoint=True`` a fault waits for /oauth/token and leaves log requests alone."""
    sim.inject(faults.HttpStatus(503), tenant="acme", token_endpoint=True)
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 200
    form = token_form(acme)
    assert [http.post("/oauth/token", data=form).status_code for _ in range(2)] == [503, 200]


@pytest.mark.parametrize(
    ("fault", "options"),
    [
        (faults.Malformed(), {"token_endpoint": True}),
        (faults.Slow(1), {"token_endpoint": True, "category": Category.URL}),
        (faults.Slow(1), {"times": 0}),
    ],
)
def test_faults_that_could_never_apply_are_refused(
    sim: Simulator, fault: faults.Fault, options: dict[str, Any]
) -> None:
    """inject refuses a page fault on /oauth/token, a category there, and ``times`` below 1."""
    with pytest.raises(ValueError, match=r"token|times"):
        sim.inject(fault, **options)


@pytest.mark.parametrize(
    "make",
    [
        lambda: faults.HttpStatus(99),
        lambda: faults.Truncate(1.0),
        lambda: faults.Slow(-1),
        lambda: faults.Malformed(0),
        lambda: faults.RateLimited(-5),
    ],
)
def test_fault_fields_are_checked(make: Any) -> None:
    """Fault dataclasses refuse values that make no sense."""
    with pytest.raises(ValueError, match="must"):
        make()


def test_every_fault_kind_has_a_snake_case_name() -> None:
    """``faults.KINDS`` names all eighteen kinds as scenario files spell them."""
    assert sorted(faults.KINDS) == [
        "binding_expired",
        "disconnect",
        "echo",
        "empty_page_with_next",
        "expire_token",
        "expired_link",
        "fail_response",
        "http_status",
        "huge_file",
        "late_batch",
        "malformed",
        "not_gzip",
        "not_json",
        "rate_limited",
        "repeat_next_token",
        "slow",
        "truncate",
        "truncated_file",
    ]
    assert faults.kind_of(faults.EmptyPageWithNext()) == "empty_page_with_next"
