"""The health states: which error makes which state, what the advice names, when a stream is ready."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mimecast_connector._errors import (
    AuthError,
    BindingExpiredError,
    CertificateError,
    ConnectorError,
    ForbiddenError,
    InternalError,
    LeaseLostError,
    RateLimitedError,
    SinkRejectedError,
    SinkStorageError,
    SinkUnavailableError,
    StateError,
    StateUnavailableError,
    UnavailableError,
    UpstreamFormatError,
)
from mimecast_connector._health import (
    NEVER_POLLED,
    State,
    StreamHealth,
    classify,
    collecting,
    derived,
)


@pytest.mark.parametrize(
    ("error", "state"),
    [
        (AuthError("refused", tenant="acme", endpoint="/x", status=401), State.FAILING),
        (
            ForbiddenError(
                "lacks 'Monitoring / URL Protection / Read'", tenant="acme", endpoint="/x"
            ),
            State.FAILING,
        ),
        (BindingExpiredError("expired", tenant="acme", endpoint="/x", status=418), State.FAILING),
        (CertificateError("self-signed", tenant="acme", endpoint="/x"), State.FAILING),
        (SinkRejectedError("HTTP 400", sink="webhook:x"), State.FAILING),
        (StateError("deleted"), State.FAILING),
        (UnavailableError("503", tenant="acme", endpoint="/x", status=503), State.DEGRADED),
        (RateLimitedError("429", tenant="acme", endpoint="/x", status=429), State.DEGRADED),
        (
            UpstreamFormatError("not JSON", tenant="acme", endpoint="/x", request_id="R-1"),
            State.DEGRADED,
        ),
        (SinkUnavailableError("down", sink="webhook:x"), State.DEGRADED),
        (SinkStorageError("disk full", sink="jsonl:/out"), State.DEGRADED),
        (StateUnavailableError("gone"), State.DEGRADED),
        (LeaseLostError("acme", "url"), State.DEGRADED),
        (InternalError(RuntimeError("bug")), State.DEGRADED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, ConnectorError) else str(v),
)
def test_a_configuration_fault_is_failing_anything_else_degraded(
    error: ConnectorError, state: State
) -> None:
    """failing exactly when the error's fault is the configuration's; the reason is the message, since is the failure's time, and there is always advice."""
    health = classify(error, "the message", tenant="acme", api="2.0", at=1000.0)
    assert health.state is state
    assert (health.reason, health.since) == ("the message", 1000.0)
    assert health.advice


@pytest.mark.parametrize(
    ("api", "keys"),
    [("2.0", "client_id and client_secret"), ("1.0", "app_id, app_key, access_key and secret_key")],
)
def test_refused_credentials_name_the_keys_to_check(api: str, keys: str) -> None:
    """An AuthError's advice names the tenant and the configuration keys of its API version."""
    error = AuthError("refused", tenant="acme", endpoint="/x", status=401)
    advice = classify(error, "refused", tenant="acme", api=api, at=0.0).advice
    assert f"check {keys} of tenant 'acme'" in advice


def test_advice_names_what_else_to_fix() -> None:
    """A missing role points at the role, an expired binding at new keys, a degraded API call at its request id."""
    forbidden = classify(
        ForbiddenError("x", tenant="acme", endpoint="/x"), "x", tenant="acme", api="2.0", at=0.0
    )
    assert "permission" in forbidden.advice
    assert "Roles" in forbidden.advice
    expired = classify(
        BindingExpiredError("x", tenant="acme", endpoint="/x"),
        "x",
        tenant="acme",
        api="1.0",
        at=0.0,
    )
    assert "access_key and secret_key" in expired.advice
    odd = classify(
        UpstreamFormatError("x", tenant="acme", endpoint="/x", request_id="MC-42"),
        "x",
        tenant="acme",
        api="2.0",
        at=0,
    )
    assert "request id MC-42" in odd.advice


def test_a_long_reason_is_cut() -> None:
    """A reason quoting a huge error is cut to 500 characters."""
    health = classify(StateError("x"), "y" * 5000, tenant="acme", api="2.0", at=0.0)
    assert len(health.reason) == 500
    assert health.reason.endswith("...")


def test_ready_is_collecting_or_degraded_for_less_than_three_intervals() -> None:
    """Collecting is ready; degraded is ready for three intervals from its since; every other state is not."""
    minute = timedelta(minutes=1)
    assert collecting(0.0).ready(minute, 10_000.0)
    degraded = StreamHealth(State.DEGRADED, "503", "wait", 1000.0)
    assert degraded.ready(minute, 1000.0 + 179.0)
    assert not degraded.ready(minute, 1000.0 + 180.0)
    assert not NEVER_POLLED.ready(minute, 0.0)
    for state in (State.AUTHENTICATED, State.FAILING):
        assert not StreamHealth(state, "r", "", 0.0).ready(minute, 1.0)


def test_a_stream_stored_without_health_is_derived_from_its_other_columns() -> None:
    """An earlier release's stream: degraded since a newer error, collecting since a success, else never polled."""
    assert derived(None, None, None) == NEVER_POLLED
    assert derived(100.0, None, None) == collecting(100.0)
    assert derived(100.0, 50.0, "old") == collecting(100.0)
    newer = derived(100.0, 150.0, "timed out")
    assert (newer.state, newer.reason, newer.since) == (State.DEGRADED, "timed out", 150.0)
