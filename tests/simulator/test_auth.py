"""Both authentication schemes: OAuth tokens (API 2.0, §3) and HMAC signatures (API 1.0, §2)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mimecast_connector import Category
from mimecast_connector.simulator import SimTenant, Simulator, faults
from tests.fakes import FakeClock
from tests.simulator._helpers import (
    ALL_TIME,
    NOW,
    hmac_signature,
    mc_date,
    post_logs,
    records_of,
    token_for,
    token_form,
    v1_headers,
)

URL_PATH = Category.URL.path


def form(tenant: SimTenant, **changes: str | None) -> dict[str, str]:
    fields: dict[str, str | None] = {**token_form(tenant), **changes}
    return {k: v for k, v in fields.items() if v is not None}


# -- API 2.0 ----------------------------------------------------------------------------------


def test_token_response_has_the_documented_shape(acme: SimTenant, http: httpx.Client) -> None:
    """/oauth/token answers a 28-character alphanumeric Bearer token, expires_in and scope (§3.1)."""
    response = http.post("/oauth/token", data=form(acme))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert re.fullmatch(r"[A-Za-z0-9]{28}", body["access_token"])
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("Bearer", 1799, "")


def test_issued_token_opens_the_log_endpoints(acme: SimTenant, http: httpx.Client) -> None:
    """A token from /oauth/token is accepted as ``Authorization: Bearer`` on a TTP endpoint."""
    assert post_logs(http, Category.URL, token_for(http, acme), ALL_TIME).status_code == 200


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"client_secret": "wrong"}, 401, "InvalidClientIdentifier"),
        ({"client_id": "nobody"}, 401, "InvalidClientIdentifier"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"client_secret": None}, 400, "invalid_request"),
        ({"grant_type": None}, 400, "invalid_request"),
    ],
    ids=["bad-secret", "unknown-client", "grant-type", "no-secret", "no-grant-type"],
)
def test_token_request_errors_use_the_flat_fail_shape(
    acme: SimTenant,
    http: httpx.Client,
    changes: dict[str, str | None],
    status: int,
    code: str,
) -> None:
    """Bad credentials are 401, malformed token requests 400, both as ``fail[{code,message}]``."""
    response = http.post("/oauth/token", data=form(acme, **changes))
    assert response.status_code == status
    [failure] = response.json()["fail"]
    assert failure["code"] == code
    if code == "InvalidClientIdentifier":
        assert failure == {"code": code, "message": "Client credentials are invalid"}


def test_token_expires_after_its_lifetime(
    acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """A token works until ``token_lifetime`` seconds on the server clock, then gets 401."""
    token = token_for(http, acme)
    clock.advance(1798.9)
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 200
    clock.advance(0.1)
    response = post_logs(http, Category.URL, token, ALL_TIME)
    assert response.status_code == 401
    assert response.json()["fail"][0]["code"] == "token_expired"


def test_small_token_lifetime_is_reported_and_enforced(clock: FakeClock) -> None:
    """``token_lifetime`` sets ``expires_in`` and the expiry the server enforces."""
    with Simulator(token_lifetime=5.0, clock=clock.monotonic, wall_clock=clock.time) as sim:
        tenant = sim.add_tenant("acme")
        with httpx.Client(base_url=sim.url) as http:
            assert http.post("/oauth/token", data=form(tenant)).json()["expires_in"] == 5
            token = token_for(http, tenant)
            clock.advance(5.0)
            assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 401


def test_expire_token_fault_expires_that_token_for_good(
    sim: Simulator, acme: SimTenant, http: httpx.Client
) -> None:
    """ExpireToken answers 401 and the token stays expired; a new token works at once."""
    token = token_for(http, acme)
    sim.inject(faults.ExpireToken())
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 401
    assert post_logs(http, Category.URL, token, ALL_TIME).status_code == 401
    assert post_logs(http, Category.URL, token_for(http, acme), ALL_TIME).status_code == 200


def test_expire_tokens_invalidates_every_token_issued_so_far(
    sim: Simulator, acme: SimTenant, http: httpx.Client
) -> None:
    """``expire_tokens()`` turns every earlier token into a 401; later tokens are unaffected."""
    first, second = token_for(http, acme), token_for(http, acme)
    sim.expire_tokens()
    assert [post_logs(http, Category.URL, t, ALL_TIME).status_code for t in (first, second)] == [
        401,
        401,
    ]
    assert post_logs(http, Category.URL, token_for(http, acme), ALL_TIME).status_code == 200


@pytest.mark.parametrize(
    ("authorization", "code"),
    [(None, "unauthorized"), ("Bearer", "unauthorized"), ("Bearer NotARealToken", "invalid_token")],
    ids=["missing", "empty", "unknown"],
)
def test_missing_or_unknown_bearer_is_401(
    acme: SimTenant, http: httpx.Client, authorization: str | None, code: str
) -> None:
    """A log request without a valid bearer token gets 401 in the flat 2.0 shape (§3.2)."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = http.post(URL_PATH, json={"data": [ALL_TIME]}, headers=headers)
    assert response.status_code == 401
    assert response.json()["fail"][0]["code"] == code


def test_token_endpoint_only_takes_post(http: httpx.Client) -> None:
    """GET /oauth/token is 405 with ``Allow: POST``."""
    response = http.get("/oauth/token")
    assert (response.status_code, response.headers["allow"]) == (405, "POST")


# -- API 1.0 ----------------------------------------------------------------------------------

FIXED_DATE = "Tue, 24 Nov 2015 12:50:11 UTC"  # Mimecast's own example (§2.1)
FIXED_REQ_ID = "8578FCFC-A305-4D9A-99CB-F4D5ECEFE297"
FIXED_APP_KEY = "4bd3a0b6-b4a5-4a33-9c1b-2d3a1e5f7c90"
FIXED_SECRET = "c2ltdWxhdG9yLXRlc3Qtc2VjcmV0LWtleS0wMTIzNDU2Nzg5"  # base64 of an ASCII key
# Computed outside Python, with the spec's recipe:
#   printf '%s' "$FIXED_DATE:$FIXED_REQ_ID:/api/ttp/url/get-logs:$FIXED_APP_KEY" \
#     | openssl dgst -sha1 -mac HMAC -macopt key:simulator-test-secret-key-0123456789 -binary | base64
FIXED_SIGNATURE = "nNauMbGsS85dbVwnogffqhUOJ2k="


def test_v1_request_signed_from_fixed_inputs_is_accepted() -> None:
    """A request carrying the §2.2 signature of fixed inputs (checked against openssl) is 200."""
    signature = hmac_signature(FIXED_SECRET, FIXED_DATE, FIXED_REQ_ID, URL_PATH, FIXED_APP_KEY)
    assert signature == FIXED_SIGNATURE
    clock = FakeClock(start=datetime(2015, 11, 24, 12, 50, 11, tzinfo=UTC).timestamp())
    with Simulator(clock=clock.monotonic, wall_clock=clock.time) as sim:
        tenant = sim.add_tenant(
            "fixed",
            app_id="app-1",
            app_key=FIXED_APP_KEY,
            access_key="AK1",
            secret_key=FIXED_SECRET,
        )
        headers = {
            "Authorization": f"MC AK1:{FIXED_SIGNATURE}",
            "x-mc-app-id": "app-1",
            "x-mc-date": FIXED_DATE,
            "x-mc-req-id": FIXED_REQ_ID,
        }
        with httpx.Client(base_url=sim.url) as http:
            response = http.post(URL_PATH, json={"data": [ALL_TIME]}, headers=headers)
        assert response.status_code == 200, response.text
        assert sim.requests[-1].tenant == tenant.name


def test_v1_accepts_gmt_and_a_date_within_15_minutes(acme: SimTenant, http: httpx.Client) -> None:
    """``x-mc-date`` may end in GMT and may be up to 15 minutes off the server clock (§2.1)."""
    for date in (mc_date(NOW, "GMT"), mc_date(NOW - timedelta(minutes=14, seconds=59))):
        response = http.post(
            URL_PATH, json={"data": [ALL_TIME]}, headers=v1_headers(acme, URL_PATH, date)
        )
        assert response.status_code == 200, (date, response.text)


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        ("signature", "err_xdk_invalid_signature"),
        ("app_key", "err_xdk_invalid_signature"),
        ("path", "err_xdk_invalid_signature"),
        ("stale_date", "err_xdk_date_out_of_range"),
        ("future_date", "err_xdk_date_out_of_range"),
        ("date_format", "err_xdk_invalid_date"),
        ("app_id", "err_xdk_invalid_app_id"),
        ("access_key", "err_xdk_invalid_access_key"),
        ("no_req_id", "err_developer_key"),
        ("realm", "err_xdk_authorization_invalid"),
    ],
)
def test_v1_rejects_every_broken_part(
    sim: Simulator, acme: SimTenant, http: httpx.Client, tamper: str, code: str
) -> None:
    """Each broken part of a 1.0 request is a 401 in the 1.0 shape, and the function never runs."""
    date = mc_date(NOW)
    if tamper == "stale_date":
        date = mc_date(NOW - timedelta(minutes=16))
    elif tamper == "future_date":
        date = mc_date(NOW + timedelta(minutes=16))
    elif tamper == "date_format":
        date = NOW.isoformat()
    headers = v1_headers(
        acme,
        "/api/ttp/attachment/get-logs" if tamper == "path" else URL_PATH,
        date,
        app_key="00000000-0000-0000-0000-000000000000" if tamper == "app_key" else None,
    )
    if tamper == "signature":
        headers["Authorization"] = headers["Authorization"][:-6] + "AAAAA="
    elif tamper == "app_id":
        headers["x-mc-app-id"] = "not-the-app"
    elif tamper == "access_key":
        headers["Authorization"] = headers["Authorization"].replace(acme.access_key, "unknown")
    elif tamper == "no_req_id":
        del headers["x-mc-req-id"]
    elif tamper == "realm":
        headers["Authorization"] = headers["Authorization"].replace("MC ", "Basic ", 1)
    response = http.post(URL_PATH, json={"data": [ALL_TIME]}, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["meta"] == {"status": 401}
    assert body["data"] == []
    [error] = body["fail"][0]["errors"]
    assert (error["code"], error["retryable"]) == (code, False)


def test_v1_and_v2_reach_the_same_records(acme: SimTenant, http: httpx.Client) -> None:
    """One tenant's records are the same whichever API version asks for them."""
    acme.generate(Category.URL, count=7, start=NOW - timedelta(hours=1), end=NOW)
    v2 = post_logs(http, Category.URL, token_for(http, acme), ALL_TIME)
    v1 = http.post(
        URL_PATH, json={"data": [ALL_TIME]}, headers=v1_headers(acme, URL_PATH, mc_date(NOW))
    )
    assert records_of(v1, Category.URL) == records_of(v2, Category.URL)
    assert len(records_of(v1, Category.URL)) == 7


def test_default_credentials_derive_from_the_name_and_are_unique() -> None:
    """Default credentials are the same for the same name and differ between tenants."""
    first, again, other = Simulator(), Simulator(), Simulator()
    a, b, c = first.add_tenant("demo"), again.add_tenant("demo"), other.add_tenant("other")
    fields = ("client_id", "client_secret", "app_id", "app_key", "access_key", "secret_key")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert all(getattr(a, f) != getattr(c, f) for f in fields)


def test_duplicate_tenants_and_bad_secret_keys_are_refused() -> None:
    """A second tenant with the same name or client id, or a non-base64 secret key, is refused."""
    sim = Simulator()
    sim.add_tenant("acme", client_id="cid")
    with pytest.raises(ValueError, match="already exists"):
        sim.add_tenant("acme")
    with pytest.raises(ValueError, match="client_id"):
        sim.add_tenant("other", client_id="cid")
    with pytest.raises(ValueError, match="base64"):
        sim.add_tenant("third", secret_key="not base64!")
