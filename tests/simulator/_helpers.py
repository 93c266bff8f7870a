"""Small helpers the simulator's tests share: tokens, log requests, records, 1.0 signing.

The API 1.0 signature here is computed from the spec (``mimecast-api.md`` §2.2) with the
standard library, independently of the simulator's own verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import httpx

from mimecast_connector import Category
from mimecast_connector.simulator import SimTenant

NOW = datetime(2025, 3, 4, 10, 0, 0, tzinfo=UTC)
ALL_TIME = {"from": "2000-01-01T00:00:00+0000", "to": "2030-01-01T00:00:00+0000"}
#: The same window for the rejection log, which names its bounds start/end and shows every
#: mailbox of the account only with ``admin: true`` (mta-rejections.md §2.3).
ALL_TIME_REJECTIONS = {
    "start": ALL_TIME["from"],
    "end": ALL_TIME["to"],
    "admin": True,
}


def all_time(category: Category) -> dict[str, Any]:
    """The request fields that ask ``category`` for everything since 2000."""
    return dict(ALL_TIME_REJECTIONS if category is Category.REJECTION else ALL_TIME)


def token_form(tenant: SimTenant) -> dict[str, str]:
    """The /oauth/token form fields for ``tenant`` (§3.1)."""
    return {
        "client_id": tenant.client_id,
        "client_secret": tenant.client_secret,
        "grant_type": "client_credentials",
    }


def token_for(http: httpx.Client, tenant: SimTenant) -> str:
    """A fresh API 2.0 access token for ``tenant``."""
    response = http.post("/oauth/token", data=token_form(tenant))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def post_logs(
    http: httpx.Client,
    category: Category,
    token: str,
    item: dict[str, Any] | None = None,
    *,
    page_size: int | None = None,
    page_token: str | None = None,
) -> httpx.Response:
    """POST one log request with a bearer token; ``item`` None sends no ``data``."""
    pagination: dict[str, Any] = {}
    if page_size is not None:
        pagination["pageSize"] = page_size
    if page_token is not None:
        pagination["pageToken"] = page_token
    body: dict[str, Any] = {"meta": {"pagination": pagination}}
    if item is not None:
        body["data"] = [item]
    return http.post(category.path, json=body, headers={"Authorization": f"Bearer {token}"})


def records_of(response: httpx.Response, category: Category) -> list[Any]:
    """The record list of a successful page."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fail"] == [], body["fail"]
    records: list[Any] = body["data"][0][category.list_key]
    return records


def pagination_of(response: httpx.Response) -> dict[str, Any]:
    """``meta.pagination`` of a page."""
    pagination: dict[str, Any] = response.json()["meta"]["pagination"]
    return pagination


def fetch_all(
    http: httpx.Client,
    category: Category,
    token: str,
    item: dict[str, Any],
    *,
    page_size: int,
    resend_data: bool,
) -> list[Any]:
    """Every record of a query, following ``next``; later pages resend ``data`` or not."""
    response = post_logs(http, category, token, item, page_size=page_size)
    records = records_of(response, category)
    for _ in range(10_000):
        next_token = pagination_of(response).get("next")
        if next_token is None:
            return records
        response = post_logs(
            http,
            category,
            token,
            item if resend_data else None,
            page_size=page_size,
            page_token=next_token,
        )
        records += records_of(response, category)
    raise AssertionError("paging did not end")


def fail_codes(response: httpx.Response) -> list[str]:
    """The codes in a 200 response's ``fail[].errors[]``."""
    assert response.status_code == 200, response.text
    return [e["code"] for f in response.json()["fail"] for e in f["errors"]]


def stamp(moment: datetime) -> str:
    """A time in the record format, ``2025-03-04T10:00:00+0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def url_record(date: str, **fields: Any) -> dict[str, Any]:
    """A URL click record shaped like §12.4, dated ``date``."""
    return {
        "userEmailAddress": "r.singh@example.com",
        "fromUserEmailAddress": "support@parcel-notify.example.net",
        "url": "https://parcel-notify.example.net/track/9931",
        "ttpDefinition": "Default Inbound URL Protect Definition",
        "subject": "Delivery attempt failed",
        "action": "warn",
        "adminOverride": "N/A",
        "userOverride": "None",
        "scanResult": "malicious",
        "category": "Phishing & Fraud",
        "sendingIp": "198.51.100.23",
        "userAwarenessAction": "N/A",
        "date": date,
        "actions": "Block",
        "route": "inbound",
        "creationMethod": "User Click",
        "emailPartsDescription": ["Body"],
        "messageId": "<77c2e1@parcel-notify.example.net>",
        **fields,
    }


def mc_date(moment: datetime, zone: str = "UTC") -> str:
    """An ``x-mc-date`` value, ``Tue, 04 Mar 2025 10:00:00 UTC`` (§2.1), locale-free."""
    days = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    months = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    m = moment.astimezone(UTC)
    return (
        f"{days[m.weekday()]}, {m.day:02d} {months[m.month - 1]} {m.year} "
        f"{m.hour:02d}:{m.minute:02d}:{m.second:02d} {zone}"
    )


def hmac_signature(secret_key_b64: str, date: str, req_id: str, path: str, app_key: str) -> str:
    """§2.2: base64(HMAC-SHA1(base64decode(secret), "date:req_id:path:app_key"))."""
    key = base64.b64decode(secret_key_b64)
    message = f"{date}:{req_id}:{path}:{app_key}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha1).digest()).decode()


def v1_headers(
    tenant: SimTenant,
    path: str,
    date: str,
    *,
    req_id: str = "8578FCFC-A305-4D9A-99CB-F4D5ECEFE297",
    app_key: str | None = None,
) -> dict[str, str]:
    """The four API 1.0 headers for ``path``, signed with ``app_key`` (default: the tenant's)."""
    signature = hmac_signature(
        tenant.secret_key, date, req_id, path, tenant.app_key if app_key is None else app_key
    )
    return {
        "Authorization": f"MC {tenant.access_key}:{signature}",
        "x-mc-app-id": tenant.app_id,
        "x-mc-date": date,
        "x-mc-req-id": req_id,
    }
