"""The health of a stream (one tenant's one log): what state it is in, why, and what to do.

::

    configured ──> authenticated ──> collecting <──┐
        │               │                │          │ a poll finishes
        └───────────────┴──> degraded ───┴──────────┤
                             failing  ──────────────┘

* ``configured``: never polled yet (or never got an answer).
* ``authenticated``: Mimecast accepted the token or signature, and no poll has finished yet
  (a first poll reading days of logs stays here until it ends).
* ``collecting``: the last poll finished.
* ``degraded``: the last poll failed on something that passes by itself (Mimecast's 5xx, 429
  storms, timeouts, a sink down, the disk full, the PostgreSQL server away): it is retried with
  backoff; ``since`` is the first failure of the current run of failures.
* ``failing``: the last poll failed on something only a person can fix (refused credentials, a
  missing role, an expired API 1.0 binding, a certificate, a sink refusing for good); ``advice``
  names the key or role and what to do.

:func:`classify` is the one place that turns an error into a state, from the two axes every
error carries (``_errors``): whose ``fault`` it is decides failing (``config``) or degraded
(anything else). Both stores keep a stream's health (``Store.set_health``, ``record_error``,
``Commit.health``) and keep ``since`` while the state stays the same.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta

from mimecast_connector._errors import (
    ApiError,
    AuthError,
    BindingExpiredError,
    CertificateError,
    ConfigError,
    ConnectorError,
    ForbiddenError,
    InternalError,
    RateLimitedError,
    SinkError,
    SinkRejectedError,
    SinkStorageError,
    StateError,
    StateUnavailableError,
    UnavailableError,
)


class State(enum.StrEnum):
    """A stream's health state, in the order a healthy stream goes through them."""

    CONFIGURED = "configured"
    AUTHENTICATED = "authenticated"
    COLLECTING = "collecting"
    DEGRADED = "degraded"
    FAILING = "failing"


#: How many poll intervals a stream may stay degraded and still count as ready (``/readyz``).
READY_DEGRADED_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """One stream's health: its state, why (``reason``), what to do (``advice``, empty when
    nothing is to be done) and ``since`` when (epoch seconds; None for ``configured``)."""

    state: State
    reason: str
    advice: str = ""
    since: float | None = None

    def ready(self, interval: timedelta, now: float) -> bool:
        """Collecting, or degraded for less than :data:`READY_DEGRADED_INTERVALS` intervals."""
        if self.state is State.COLLECTING:
            return True
        if self.state is State.DEGRADED:
            since = now if self.since is None else self.since
            return now - since < READY_DEGRADED_INTERVALS * interval.total_seconds()
        return False


NEVER_POLLED = StreamHealth(State.CONFIGURED, "never polled yet")

#: What each API version's credentials are called in the configuration.
_KEYS = {"2.0": "client_id and client_secret", "1.0": "app_id, app_key, access_key and secret_key"}

#: Shown values are cut to this many characters (a reason quoting a long error).
_REASON_CAP = 500


def accepted(since: float) -> StreamHealth:
    """Mimecast accepted the stream's credentials; its first poll has not finished."""
    return StreamHealth(
        State.AUTHENTICATED,
        "Mimecast accepted the credentials; the first poll has not finished yet",
        "",
        since,
    )


def collecting(since: float) -> StreamHealth:
    """The stream's last poll finished."""
    return StreamHealth(State.COLLECTING, "the last poll finished", "", since)


def classify(
    error: ConnectorError, message: str, *, tenant: str, api: str, at: float
) -> StreamHealth:
    """The health of a stream whose poll just failed with ``error`` (``message``: its text,
    every secret already redacted). ``failing`` for a configuration fault, else ``degraded``."""
    reason = _cut(message)
    if error.fault == "config":
        return StreamHealth(State.FAILING, reason, _fix(error, tenant, api), at)
    return StreamHealth(State.DEGRADED, reason, _wait(error, tenant), at)


def _fix(error: ConnectorError, tenant: str, api: str) -> str:
    """What a person must do about a configuration fault."""
    where = f"tenant {tenant!r}"
    if isinstance(error, AuthError):
        keys = _KEYS.get(api, "the credentials")
        return (
            f"Mimecast refused the credentials: check {keys} of {where} in the configuration "
            "(Mimecast Administration > Services > API and Platform Integrations), then "
            "`mimecast-connector reload`"
        )
    if isinstance(error, ForbiddenError):
        return (
            f"give the API user of {where} the permission named in the reason (Mimecast "
            "Administration > Roles); the stream tries again by itself, at most an hour later"
        )
    if isinstance(error, BindingExpiredError):
        return (
            f"generate new access_key and secret_key for {where} and set them, or set the "
            "Authentication Cache TTL of the API user's Authentication Profile to 'Never "
            "Expire'; then `mimecast-connector reload`"
        )
    if isinstance(error, CertificateError):
        return (
            f"check base_url of {where} (Mimecast's API host), and whether a proxy or "
            "firewall on the way intercepts TLS"
        )
    if isinstance(error, SinkRejectedError):
        return f"fix sink {error.sink} as the reason says, then start the connector again"
    if isinstance(error, StateError):
        return "follow the reason's advice for the state database, then start again"
    if isinstance(error, ConfigError):
        return "fix the configuration as the reason says, then start again"
    return "the reason says what to fix"


def _wait(error: ConnectorError, tenant: str) -> str:
    """What to know about a fault that passes by itself (retried with backoff)."""
    retried = "retried with backoff, nothing to do"
    if isinstance(error, RateLimitedError):
        return (
            f"{retried}; if it lasts, another integration may be spending the quota of the "
            f"API user of tenant {tenant!r}"
        )
    if isinstance(error, UnavailableError):
        return f"{retried}; if it lasts, check that this machine reaches Mimecast's API host"
    if isinstance(error, ApiError):
        request = f" (request id {error.request_id})" if error.request_id else ""
        return f"{retried}; if it lasts, report it to Mimecast with the request id{request}"
    if isinstance(error, SinkStorageError):
        return f"free space or fix the folder of {error.sink}; the batch is written again then"
    if isinstance(error, SinkError):
        return f"{retried}; if it lasts, check sink {error.sink}"
    if isinstance(error, StateUnavailableError):
        return f"{retried}; if it lasts, check the PostgreSQL server of the state"
    if isinstance(error, InternalError):
        return f"{retried}; this is a bug if it lasts: please report it"
    return retried


def derived(
    last_success: float | None, last_error_at: float | None, last_error: str | None
) -> StreamHealth:
    """The health of a stream whose store keeps none yet (written by an earlier release):
    degraded since its last error if that is newer than its last success, collecting if it
    has a success, else never polled."""
    if last_error_at is not None and (last_success is None or last_error_at > last_success):
        return StreamHealth(
            State.DEGRADED,
            _cut(last_error or "the last poll failed"),
            "the state was written by an earlier release: the next poll tells more",
            last_error_at,
        )
    if last_success is not None:
        return collecting(last_success)
    return NEVER_POLLED


def _cut(text: str) -> str:
    return text if len(text) <= _REASON_CAP else text[: _REASON_CAP - 3] + "..."
