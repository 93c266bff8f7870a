"""Authentication: two small pluggable pieces, one for each Mimecast API version.

The client asks an :class:`Auth` for the headers of each request, and tells it when Mimecast
answered 401 so that the next request carries fresh credentials. Neither piece sends HTTP on
its own: the OAuth2 token request goes through a :data:`TokenFetcher` that the client passes
in, so timeouts, retries and the response table stay in one place.

* :class:`OAuth2ClientCredentials` (API 2.0, ``mimecast-api.md`` §3): one cached token per
  tenant, refreshed ``refresh_margin`` seconds before ``expires_in`` runs out; concurrent
  requests share one refresh.
* :class:`HmacSigner` (API 1.0, §2): a fresh ``x-mc-date`` / ``x-mc-req-id`` pair and
  HMAC-SHA1 signature for every request.

Secrets are held as :class:`pydantic.SecretStr` and unwrapped only at the moment they are used.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import SecretStr

from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import ConfigError

#: Sends the form to ``{base_url}/oauth/token`` and returns the decoded JSON object.
#: It raises :class:`~mimecast_connector.AuthError` itself when Mimecast refuses.
TokenFetcher = Callable[[Mapping[str, str]], Awaitable[Mapping[str, Any]]]

ApiVersion = Literal["1.0", "2.0"]


class Auth(Protocol):
    """Puts credentials on requests."""

    @property
    def api_version(self) -> ApiVersion:
        """Which Mimecast API these credentials are for."""
        ...

    @property
    def credential_hint(self) -> str:
        """Which settings to check when Mimecast keeps refusing these credentials."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Every secret value this auth holds, for the redactor; never logged."""
        ...

    async def headers(
        self, path: str, request_id: str, fetch_token: TokenFetcher
    ) -> dict[str, str]:
        """The authentication headers of one request to ``path``."""
        ...

    async def invalidate(self, sent: Mapping[str, str]) -> None:
        """Mimecast answered 401 to a request that carried ``sent``: drop what it carried."""
        ...


@dataclass(frozen=True, slots=True)
class _Token:
    header: SecretStr
    refresh_at: float  # monotonic


class OAuth2ClientCredentials:
    """API 2.0: OAuth2 client-credentials grant, token cached and shared."""

    def __init__(
        self,
        client_id: str,
        client_secret: SecretStr,
        *,
        clock: Clock | None = None,
        refresh_margin: float = 60.0,
        default_lifetime: float = 1800.0,
    ) -> None:
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock: Clock = clock or SystemClock()
        self._margin = refresh_margin
        self._default_lifetime = default_lifetime
        self._token: _Token | None = None
        self._lock = asyncio.Lock()
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        return f"OAuth2ClientCredentials(client_id={self._client_id!r}, client_secret=**********)"

    @property
    def api_version(self) -> ApiVersion:
        return "2.0"

    @property
    def credential_hint(self) -> str:
        return (
            "check client_id and client_secret of this tenant (Mimecast Administration > "
            "Services > API and Platform Integrations > Your Application Integrations)"
        )

    def secrets(self) -> tuple[str, ...]:
        token = self._token
        values = [self._client_secret.get_secret_value()]
        if token is not None:
            values.append(token.header.get_secret_value().partition(" ")[2])
        return tuple(v for v in values if v)

    async def headers(
        self, path: str, request_id: str, fetch_token: TokenFetcher
    ) -> dict[str, str]:
        token = self._token
        if token is None or self._clock.monotonic() >= token.refresh_at:
            token = await self._refresh(stale=token, fetch_token=fetch_token)
        return {"Authorization": token.header.get_secret_value()}

    async def invalidate(self, sent: Mapping[str, str]) -> None:
        token = self._token
        # Only the token that was refused is dropped: if another request already replaced
        # it, the new one stays and this request simply retries with it.
        if token is not None and sent.get("Authorization") == token.header.get_secret_value():
            self._token = None

    async def _refresh(self, *, stale: _Token | None, fetch_token: TokenFetcher) -> _Token:
        async with self._lock:
            current = self._token
            # Another request refreshed while this one waited for the lock: share its token.
            if current is not None and current is not stale:
                return current
            form = {
                "client_id": self._client_id,
                "client_secret": self._client_secret.get_secret_value(),
                "grant_type": "client_credentials",
            }
            issued = self._clock.monotonic()
            answer = await fetch_token(form)
            self._token = self._parse(answer, issued)
            self.tokens_fetched += 1
            return self._token

    def _parse(self, answer: Mapping[str, Any], issued: float) -> _Token:
        access = answer.get("access_token")
        if (
            not isinstance(access, str)
            or not access
            or not access.isascii()
            or any(c.isspace() for c in access)
        ):
            raise ValueError("token response has no usable access_token")
        kind = answer.get("token_type", "Bearer")
        kind = kind.title() if isinstance(kind, str) and kind else "Bearer"
        lifetime = answer.get("expires_in", self._default_lifetime)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = self._default_lifetime
        # A token shorter-lived than the margin would be refreshed on every request; use half
        # its life instead.
        margin = min(self._margin, float(lifetime) / 2)
        return _Token(SecretStr(f"{kind} {access}"), issued + float(lifetime) - margin)


def sign_v1(*, date: str, request_id: str, path: str, app_key: str, secret_key: str) -> str:
    """The API 1.0 signature (``mimecast-api.md`` §2.2) of one request, base64-encoded.

    ``secret_key`` is the base64 Secret Key as Mimecast hands it out; ``path`` is the request
    path only (no host, no query).
    """
    key = base64.b64decode(secret_key, validate=True)
    message = f"{date}:{request_id}:{path}:{app_key}".encode()
    digest = hmac.new(key, message, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii").rstrip()


class HmacSigner:
    """API 1.0: every request signed with HMAC-SHA1 over date, request id, path and app key."""

    def __init__(
        self,
        *,
        app_id: str,
        app_key: SecretStr,
        access_key: SecretStr,
        secret_key: SecretStr,
        clock: Clock | None = None,
    ) -> None:
        try:
            base64.b64decode(secret_key.get_secret_value(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                [("secret_key", "is not base64; paste the Secret Key exactly as Mimecast shows it")]
            ) from None
        self._app_id = app_id
        self._app_key = app_key
        self._access_key = access_key
        self._secret_key = secret_key
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"HmacSigner(app_id={self._app_id!r}, app_key=SecretStr('**********'), ...)"

    @property
    def api_version(self) -> ApiVersion:
        return "1.0"

    @property
    def credential_hint(self) -> str:
        return (
            "check app_id, app_key, access_key and secret_key of this tenant, and that this "
            "machine's clock is right (Mimecast refuses an x-mc-date more than minutes off)"
        )

    def secrets(self) -> tuple[str, ...]:
        values = [v.get_secret_value() for v in (self._app_key, self._access_key, self._secret_key)]
        decoded = base64.b64decode(self._secret_key.get_secret_value()).decode("utf-8", "ignore")
        if decoded.isprintable():
            values.append(decoded)  # the key's bytes, should anything print them
        return tuple(v for v in values if v)

    async def headers(
        self, path: str, request_id: str, fetch_token: TokenFetcher
    ) -> dict[str, str]:
        date = time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime(self._clock.time()))
        signature = sign_v1(
            date=date,
            request_id=request_id,
            path=path,
            app_key=self._app_key.get_secret_value(),
            secret_key=self._secret_key.get_secret_value(),
        )
        return {
            "Authorization": f"MC {self._access_key.get_secret_value()}:{signature}",
            "x-mc-app-id": self._app_id,
            "x-mc-date": date,
            "x-mc-req-id": request_id,
        }

    async def invalidate(self, sent: Mapping[str, str]) -> None:
        """Nothing is cached: the retry is signed afresh with a new date and request id."""


#: Request ids need to be unique, not secret: a generator seeded once from the system's
#: randomness, not a system call per request as ``uuid.uuid4`` makes (a third of its cost).
_ids = random.Random(os.urandom(32))


def new_request_id() -> str:
    """A fresh GUID (random, version 4) for ``x-mc-req-id``."""
    h = f"{_ids.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
