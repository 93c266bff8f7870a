"""Unit tests of the two auth schemes, without a server."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import SecretStr

from mimecast_connector import ConfigError
from mimecast_connector.client import HmacSigner, OAuth2ClientCredentials, sign_v1
from mimecast_connector.client._auth import new_request_id
from tests.fakes import FakeClock

DATE = "Tue, 24 Nov 2015 12:50:11 UTC"
REQ_ID = "8578FCFC-A305-4D9A-99CB-F4D5ECEFE297"
PATH = "/api/ttp/url/get-logs"
APP_KEY = "3f1a6c9e-2b7d-4e0a-9c55-7a1e2d4b8f60"
SECRET_B64 = "bWltZWNhc3QtdGVzdC1zZWNyZXQta2V5LTMyYnl0ZXM="
# Computed outside Python, with:
#   printf '<date>:<req id>:<path>:<app key>' |
#   openssl dgst -sha1 -mac HMAC -macopt hexkey:<hex of the decoded secret> -binary | base64
OPENSSL_SIGNATURE = "OokkvIwIpV4SD9mN6MyHSdQusZA="


def test_sign_v1_matches_a_signature_computed_by_openssl() -> None:
    """The API 1.0 signature equals a known answer computed with openssl for fixed inputs."""
    got = sign_v1(date=DATE, request_id=REQ_ID, path=PATH, app_key=APP_KEY, secret_key=SECRET_B64)
    assert got == OPENSSL_SIGNATURE


def test_sign_v1_matches_the_documented_recipe() -> None:
    """The signature follows mimecast-api.md 2.2 step by step, computed here independently."""
    key = base64.b64decode(SECRET_B64)
    message = f"{DATE}:{REQ_ID}:{PATH}:{APP_KEY}".encode()
    expected = base64.b64encode(hmac.new(key, message, hashlib.sha1).digest()).decode()
    assert (
        sign_v1(date=DATE, request_id=REQ_ID, path=PATH, app_key=APP_KEY, secret_key=SECRET_B64)
        == expected
    )
    # The app key, not the app id, is signed: another key gives another signature.
    assert (
        sign_v1(date=DATE, request_id=REQ_ID, path=PATH, app_key="other", secret_key=SECRET_B64)
        != expected
    )


async def _no_token(form: Mapping[str, str]) -> Mapping[str, Any]:
    raise AssertionError("API 1.0 never asks for a token")


async def test_hmac_signer_builds_the_four_headers_with_a_fresh_date() -> None:
    """HmacSigner sends MC realm, app id, a UTC x-mc-date from the clock and the given request id."""
    clock = FakeClock(start=1448369411.0)  # Tue, 24 Nov 2015 12:50:11 UTC
    signer = HmacSigner(
        app_id="app-id-1",
        app_key=SecretStr(APP_KEY),
        access_key=SecretStr("access-key-1"),
        secret_key=SecretStr(SECRET_B64),
        clock=clock,
    )
    headers = await signer.headers(PATH, REQ_ID, _no_token)
    assert headers == {
        "Authorization": f"MC access-key-1:{OPENSSL_SIGNATURE}",
        "x-mc-app-id": "app-id-1",
        "x-mc-date": DATE,
        "x-mc-req-id": REQ_ID,
    }


def test_hmac_signer_refuses_a_secret_key_that_is_not_base64() -> None:
    """A secret key that is not base64 is a config error that does not echo the key."""
    with pytest.raises(ConfigError) as caught:
        HmacSigner(
            app_id="a",
            app_key=SecretStr("k"),
            access_key=SecretStr("x"),
            secret_key=SecretStr("not base64 !!canary-secret"),
        )
    assert "secret_key" in str(caught.value)
    assert "canary-secret" not in str(caught.value)


class TokenServer:
    """Counts token requests and hands out numbered tokens."""

    def __init__(self, lifetime: float = 1800.0, delay: float = 0.0) -> None:
        self.forms: list[Mapping[str, str]] = []
        self.lifetime = lifetime
        self.delay = delay

    async def __call__(self, form: Mapping[str, str]) -> Mapping[str, Any]:
        self.forms.append(dict(form))
        if self.delay:
            await asyncio.sleep(self.delay)
        return {
            "access_token": f"token{len(self.forms)}",
            "token_type": "bearer",
            "expires_in": self.lifetime,
        }


async def test_oauth_caches_the_token_until_60_seconds_before_expiry() -> None:
    """One token serves requests until expires_in - 60 s; then exactly one new one is fetched."""
    clock = FakeClock()
    auth = OAuth2ClientCredentials("cid", SecretStr("csecret"), clock=clock)
    server = TokenServer(lifetime=1800)
    first = await auth.headers(PATH, "r1", server)
    assert first == {"Authorization": "Bearer token1"}
    assert server.forms == [
        {"client_id": "cid", "client_secret": "csecret", "grant_type": "client_credentials"}
    ]
    clock.advance(1800 - 60 - 1)
    assert await auth.headers(PATH, "r2", server) == first
    clock.advance(1)
    assert await auth.headers(PATH, "r3", server) == {"Authorization": "Bearer token2"}
    assert len(server.forms) == 2


async def test_oauth_concurrent_requests_share_one_refresh() -> None:
    """Twenty requests that find no token at once cause one token request, not twenty."""
    auth = OAuth2ClientCredentials("cid", SecretStr("csecret"), clock=FakeClock())
    server = TokenServer(delay=0.01)
    results = await asyncio.gather(*(auth.headers(PATH, f"r{i}", server) for i in range(20)))
    assert len(server.forms) == 1
    assert {r["Authorization"] for r in results} == {"Bearer token1"}


async def test_oauth_invalidate_drops_only_the_refused_token() -> None:
    """After a 401, the refused token is dropped once; a stale 401 does not drop its successor."""
    auth = OAuth2ClientCredentials("cid", SecretStr("csecret"), clock=FakeClock())
    server = TokenServer()
    old = await auth.headers(PATH, "r1", server)
    await auth.invalidate(old)
    new = await asyncio.gather(*(auth.headers(PATH, f"r{i}", server) for i in range(5)))
    assert {h["Authorization"] for h in new} == {"Bearer token2"}
    await auth.invalidate(old)  # a late 401 for the old token
    assert await auth.headers(PATH, "r9", server) == {"Authorization": "Bearer token2"}
    assert len(server.forms) == 2


async def test_oauth_short_lived_token_is_not_refreshed_on_every_request() -> None:
    """A token living less than the margin is kept for half its life instead of zero."""
    clock = FakeClock()
    auth = OAuth2ClientCredentials("cid", SecretStr("csecret"), clock=clock)
    server = TokenServer(lifetime=30)
    await auth.headers(PATH, "r1", server)
    clock.advance(14)
    await auth.headers(PATH, "r2", server)
    assert len(server.forms) == 1
    clock.advance(1)
    await auth.headers(PATH, "r3", server)
    assert len(server.forms) == 2


def test_reprs_hide_every_secret() -> None:
    """repr() of both auth objects shows no secret value."""
    oauth = OAuth2ClientCredentials("cid", SecretStr("canary-oauth-secret"))
    signer = HmacSigner(
        app_id="app",
        app_key=SecretStr("canary-app-key"),
        access_key=SecretStr("canary-access"),
        secret_key=SecretStr(base64.b64encode(b"canary-secret-bytes").decode()),
    )
    text = repr(oauth) + repr(signer) + str(vars(oauth)) + str(vars(signer))
    for canary in (
        "canary-oauth-secret",
        "canary-app-key",
        "canary-access",
        base64.b64encode(b"canary-secret-bytes").decode(),
    ):
        assert canary not in text


def test_request_ids_are_distinct_version_4_guids() -> None:
    """``x-mc-req-id`` is a GUID as Mimecast's examples show (random, version 4, RFC 4122
    variant, lower-case hex): 100,000 of them, none twice."""
    ids = [new_request_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:2000]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
