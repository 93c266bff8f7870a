"""Both Mimecast authentication schemes, verified from the spec, plus default credentials.

API 2.0 (``shared/docs/mimecast-api.md`` §3): :class:`TokenRegistry` issues opaque 28-character
bearer tokens from ``/oauth/token`` and says whether one is valid, expired or unknown.

API 1.0 (§2.1, §2.2): :func:`verify_signature` checks the four headers and the HMAC-SHA1 signature
``base64(HMAC-SHA1(base64decode(secret_key), "{date}:{req_id}:{path}:{app_key}"))`` over the path
only, and that ``x-mc-date`` is within 15 minutes of the server's clock. It is written from the
spec alone, on purpose independently of the connector's client.

The 1.0 error codes below are the simulator's own, in Mimecast's style, except
``err_xdk_invalid_signature``; a client should treat any 401 as an authentication failure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import string
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from mimecast_connector.simulator._times import parse_mc_date

DATE_SKEW_SECONDS = 15 * 60
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class Scheme(Enum):
    """Which API generation a request speaks, judged by its headers."""

    V1 = "1.0"
    V2 = "2.0"

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Scheme:
        """V2 for a Bearer token; V1 for ``MC ...`` or any request carrying ``x-mc-app-id``."""
        authorization = headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            return cls.V2
        if authorization.startswith("MC ") or "x-mc-app-id" in headers:
            return cls.V1
        return cls.V2


class TokenState(Enum):
    """What the registry knows about a bearer token."""

    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class TokenRegistry:
    """Bearer tokens issued by ``/oauth/token``: owner, expiry, revocation. Thread-safe.

    ``clock`` is monotonic seconds; a token issued at ``t`` is valid while
    ``clock() < t + lifetime``.
    """

    def __init__(self, lifetime: float, clock: Callable[[], float]) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (tenant, expires at)
        self._revoked: set[str] = set()

    def issue(self, tenant: str) -> str:
        """A fresh token for ``tenant``: 28 random alphanumerics (§3.1)."""
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(28))
        with self._lock:
            self._tokens[token] = (tenant, self._clock() + self.lifetime)
        return token

    def owner(self, token: str) -> str | None:
        """The tenant a token was issued to, whether or not it is still valid."""
        with self._lock:
            entry = self._tokens.get(token)
        return entry[0] if entry else None

    def state(self, token: str) -> TokenState:
        """Whether ``token`` may be used now."""
        with self._lock:
            entry = self._tokens.get(token)
            if entry is None:
                return TokenState.UNKNOWN
            if token in self._revoked or self._clock() >= entry[1]:
                return TokenState.EXPIRED
            return TokenState.VALID

    def revoke(self, token: str) -> None:
        """Expire one token for good (the ``ExpireToken`` fault)."""
        with self._lock:
            self._revoked.add(token)

    def revoke_all(self) -> None:
        """Expire every token issued so far; tokens issued later are unaffected."""
        with self._lock:
            self._revoked.update(self._tokens)


@dataclass(frozen=True, slots=True)
class V1Credentials:
    """What the server knows of one tenant's API 1.0 application and key binding."""

    tenant: str
    app_id: str
    app_key: str
    secret_key: str


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a 1.0 request was refused; ``tenant`` is set when the access key was recognised."""

    code: str
    message: str
    tenant: str | None = None


def sign(secret_key: str, date: str, req_id: str, path: str, app_key: str) -> str:
    """The §2.2 signature. Raises ``binascii.Error`` if ``secret_key`` is not base64."""
    key = base64.b64decode(secret_key, validate=True)
    message = f"{date}:{req_id}:{path}:{app_key}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha1).digest()).decode()


def verify_signature(
    headers: Mapping[str, str],
    path: str,
    by_access_key: Mapping[str, V1Credentials],
    now: float,
) -> V1Credentials | AuthFailure:
    """Check an API 1.0 request (lower-case ``headers``); the tenant's credentials or why not."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    access_key, colon, signature = credentials.partition(":")
    if scheme != "MC" or not colon or not access_key or not signature:
        return AuthFailure(
            "err_xdk_authorization_invalid", "Authorization must be 'MC <accessKey>:<signature>'"
        )
    date, req_id, app_id = (headers.get(h, "") for h in ("x-mc-date", "x-mc-req-id", "x-mc-app-id"))
    if not (date and req_id and app_id):
        return AuthFailure(
            "err_developer_key", "Connection headers has not been configured: x-mc-date, "
            "x-mc-req-id and x-mc-app-id are required",
        )  # fmt: skip
    known = by_access_key.get(access_key)
    if known is None:
        return AuthFailure("err_xdk_invalid_access_key", "Unknown access key")
    if not hmac.compare_digest(app_id, known.app_id):
        return AuthFailure("err_xdk_invalid_app_id", "Application id does not match", known.tenant)
    sent_at = parse_mc_date(date)
    if sent_at is None:
        return AuthFailure(
            "err_xdk_invalid_date",
            "x-mc-date must look like 'Tue, 24 Nov 2015 12:50:11 UTC'",
            known.tenant,
        )
    if abs(now - sent_at) > DATE_SKEW_SECONDS:
        return AuthFailure(
            "err_xdk_date_out_of_range",
            "x-mc-date is more than 15 minutes away from the server time",
            known.tenant,
        )
    expected = sign(known.secret_key, date, req_id, path, known.app_key)
    if not hmac.compare_digest(signature.rstrip().encode(), expected.encode()):
        return AuthFailure("err_xdk_invalid_signature", "0004 Invalid Signature", known.tenant)
    return known


def default_credentials(name: str) -> dict[str, str]:
    """Deterministic credentials for a tenant, derived from its name only (they are public)."""

    def digest(field: str, size: int) -> bytes:
        return hashlib.sha512(f"mimecast-sim/{name}/{field}".encode()).digest()[:size]

    return {
        "client_id": f"sim-{digest('client_id', 12).hex()}",
        "client_secret": digest("client_secret", 24).hex(),
        "app_id": str(uuid.UUID(bytes=digest("app_id", 16))),
        "app_key": str(uuid.UUID(bytes=digest("app_key", 16))),
        "access_key": base64.urlsafe_b64encode(digest("access_key", 64)).decode().rstrip("="),
        "secret_key": base64.b64encode(digest("secret_key", 32)).decode(),
    }


def check_secret_key(secret_key: str) -> None:
    """Refuse a secret key that is not base64, as the signature needs it decoded (§2.2)."""
    try:
        base64.b64decode(secret_key, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"secret_key must be base64: {exc}") from None
