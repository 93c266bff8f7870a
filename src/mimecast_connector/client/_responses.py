"""The response table: what the client does with each kind of answer, decided in one place.

::

    answer                                  outcome        error when it gives up
    200, fail empty                         RECORDS        -
    200, fail non-empty, all retryable      RETRY          ApiFailure
    200, fail non-empty, binding expired    FAIL           BindingExpiredError
    200, fail non-empty, otherwise          FAIL           ApiFailure
    401                                     REFRESH_AUTH   AuthError (after one refresh)
    400 or 401 from /oauth/token            FAIL           AuthError
    403                                     FAIL           ForbiddenError, naming the role
    408                                     RETRY          UnavailableError
    418                                     FAIL           BindingExpiredError
    429                                     WAIT           RateLimitedError (past the deadline)
    5xx                                     RETRY          UnavailableError
    timeout, connection error               RETRY          UnavailableError
    TLS certificate fails verification      FAIL           CertificateError, naming the host
    3xx                                     FAIL           UnexpectedResponseError (never followed)
    any other status                        FAIL           UnexpectedResponseError
    body not JSON, truncated, too large     FAIL           UpstreamFormatError
    200 without the documented envelope     FAIL           UpstreamFormatError, naming its keys

Every call, its retries, waits and body reads included, ends by the retry policy's deadline.
Only text from a response is quoted as "Mimecast said"; for a failure without an answer the
message says what happened locally.

A 200 whose body does not decode is an upstream format error at once: the same bytes would
come back on a retry within seconds, and the poller retries the whole window on its backoff.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass

import httpx

from mimecast_connector._categories import Category
from mimecast_connector._errors import (
    ApiError,
    ApiFailure,
    AuthError,
    BindingExpiredError,
    CertificateError,
    ForbiddenError,
    RateLimitedError,
    UnavailableError,
    UnexpectedResponseError,
)


class Outcome(enum.Enum):
    """What the client does next."""

    RECORDS = "records"
    RETRY = "retry"
    WAIT = "wait"
    REFRESH_AUTH = "refresh_auth"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Verdict:
    """An outcome, the error raised when the client stops, and what to tell the user."""

    outcome: Outcome
    error: type[ApiError] | None = None
    advice: str = ""


BINDING_EXPIRED_CODE = "err_xdk_binding_expired"

_BINDING_ADVICE = (
    "the API 1.0 access key / secret key binding has expired: generate new keys for this "
    "tenant, or set the Authentication Cache TTL of the API user's Authentication Profile to "
    "'Never Expire'"
)


def classify_status(
    status: int,
    category: Category | None,
    *,
    token_request: bool = False,
    role: str | None = None,
) -> Verdict:
    """The row of the table for an HTTP status (a 200 still has its ``fail`` array to check).

    On the OAuth token endpoint a 400 or 401 means the client credentials are wrong: there
    is nothing to refresh, so it fails at once. ``role`` names the permission a 403 lacks
    where the category alone does not say it (the SIEM endpoints).
    """
    if status == 200:
        return Verdict(Outcome.RECORDS)
    if token_request and status in (400, 401):
        return Verdict(Outcome.FAIL, AuthError, "Mimecast refused the token request")
    if status == 401:
        return Verdict(Outcome.REFRESH_AUTH, AuthError, "Mimecast refused the credentials")
    if status == 403:
        role = role or (category.role if category else "the role this endpoint needs")
        return Verdict(
            Outcome.FAIL,
            ForbiddenError,
            f"the API user lacks the permission {role!r}: add it to the role of the API "
            "application's user in Mimecast Administration",
        )
    if status == 418:
        return Verdict(Outcome.FAIL, BindingExpiredError, _BINDING_ADVICE)
    if status == 429:
        return Verdict(
            Outcome.WAIT, RateLimitedError, "Mimecast's rate limit outlasted the retry budget"
        )
    if status == 408 or 500 <= status <= 599:
        return Verdict(Outcome.RETRY, UnavailableError, "Mimecast kept failing")
    if 300 <= status <= 399:
        return Verdict(
            Outcome.FAIL,
            UnexpectedResponseError,
            "Mimecast answered with a redirect, which is never followed: set base_url to the "
            "address it points to",
        )
    return Verdict(Outcome.FAIL, UnexpectedResponseError, f"unexpected HTTP status {status}")


def classify_failures(codes: list[str], retryable: list[bool]) -> Verdict:
    """The row of the table for a 200 whose ``fail`` array is not empty."""
    if BINDING_EXPIRED_CODE in codes:
        return Verdict(Outcome.FAIL, BindingExpiredError, _BINDING_ADVICE)
    if retryable and all(retryable):
        return Verdict(Outcome.RETRY, ApiFailure, "Mimecast reported a retryable failure")
    return Verdict(Outcome.FAIL, ApiFailure, "Mimecast reported a failure")


def classify_transport_error(exc: BaseException) -> Verdict:
    """The row of the table for a timeout or a connection error: no answer at all.

    A certificate that fails verification is not a passing network fault: a retry meets the
    same certificate, so it fails at once, as the configuration's (or the network's) fault.
    """
    if certificate_failure(exc) is not None:
        return Verdict(
            Outcome.FAIL,
            CertificateError,
            "the server's TLS certificate could not be verified (not retried): check that "
            "base_url is Mimecast's API host and whether a proxy or firewall on the way "
            "intercepts TLS; the connector trusts only the public CAs of the certifi bundle, "
            "for loopback hosts too",
        )
    return Verdict(Outcome.RETRY, UnavailableError, "Mimecast could not be reached")


def outcome_label(status: int | None, exc: BaseException | None = None) -> str:
    """A request's outcome as the metrics count it: ``2xx``, ``401``, ``403``, ``418``,
    ``429``, ``5xx``, ``timeout`` or ``other`` (a redirect, another 4xx, a connection error)."""
    if status is None:
        return "timeout" if isinstance(exc, httpx.TimeoutException | TimeoutError) else "other"
    if 200 <= status <= 299:
        return "2xx"
    if status in (401, 403, 418, 429):
        return str(status)
    if 500 <= status <= 599:
        return "5xx"
    return "other"


def certificate_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification error behind ``exc`` (httpx wraps it twice), if any."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None
