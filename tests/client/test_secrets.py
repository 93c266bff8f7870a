"""Canary secrets never leave the client: not in logs, errors, reprs or tracebacks."""

from __future__ import annotations

import base64
import time
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
import structlog
from pydantic import SecretStr

from mimecast_connector import Category, ConnectorError
from mimecast_connector.client import (
    Auth,
    ClientOptions,
    HmacSigner,
    MimecastClient,
    OAuth2ClientCredentials,
    RetryPolicy,
)
from mimecast_connector.simulator import SimTenant, Simulator, faults
from tests.fakes import FakeClock

SECRET_2 = "CANARY2-client-secret-9f8e7d"
APP_KEY = "CANARY1-app-key-5a4b3c"
ACCESS_KEY = "CANARY1-access-key-1d2e3f"
SECRET_RAW = b"CANARY1-secret-key-bytes-0a0b0c"
SECRET_B64 = base64.b64encode(SECRET_RAW).decode()
CANARIES = (SECRET_2, APP_KEY, ACCESS_KEY, SECRET_B64)


def echoing(status: int) -> faults.HttpStatus:
    """An error body that quotes every canary back, as a hostile or careless server might."""
    words = " ".join(CANARIES)
    return faults.HttpStatus(
        status=status, body=f'{{"fail":[{{"code":"echo","message":"you sent {words}"}}]}}'.encode()
    )


def make_auth(tenant: SimTenant, api: Literal["1.0", "2.0"]) -> Auth:
    clock = FakeClock(start=time.time())
    if api == "2.0":
        return OAuth2ClientCredentials(tenant.client_id, SecretStr(SECRET_2), clock=clock)
    return HmacSigner(
        app_id=tenant.app_id,
        app_key=SecretStr(APP_KEY),
        access_key=SecretStr(ACCESS_KEY),
        secret_key=SecretStr(SECRET_B64),
        clock=clock,
    )


@pytest.mark.parametrize("api", ["2.0", "1.0"])
@pytest.mark.parametrize(
    "fault",
    [
        echoing(401),
        echoing(403),
        echoing(500),
        echoing(400),
        faults.FailResponse(code="echo", message=" ".join(CANARIES)),
    ],
    ids=["401", "403", "500", "400", "fail"],
)
async def test_no_canary_escapes_in_failures(api: Literal["1.0", "2.0"], fault: Any) -> None:
    """Failures whose bodies quote the secrets produce logs, errors and tracebacks without them."""
    with Simulator(seed=3) as sim:
        tenant = sim.add_tenant(
            "acme",
            client_secret=SECRET_2,
            app_key=APP_KEY,
            access_key=ACCESS_KEY,
            secret_key=SECRET_B64,
        )
        sim.inject(fault, times=None)
        client = MimecastClient(
            tenant="acme",
            base_url=sim.url,
            auth=make_auth(tenant, api),
            options=ClientOptions(retry=RetryPolicy(attempts=2, initial=0.01, maximum=0.01)),
        )
        end = datetime.now(UTC)
        with structlog.testing.capture_logs() as logs, pytest.raises(ConnectorError) as caught:
            async for _ in client.pages(Category.URL, end - timedelta(hours=1), end):
                pass
        text = "\n".join(
            [
                str(caught.value),
                repr(caught.value),
                "".join(traceback.format_exception(caught.value)),
                repr(client),
                repr(client.auth),
                repr(logs),
            ]
        )
        await client.aclose()
    assert "echo" in text  # the server's words did reach the message
    # A client can only redact what it holds: the canaries of the scheme in use.
    held = (SECRET_2,) if api == "2.0" else (APP_KEY, ACCESS_KEY, SECRET_B64)
    for canary in held:
        assert canary not in text


async def test_bearer_token_is_redacted_too() -> None:
    """The current access token counts as a secret: an error body quoting it is redacted."""
    with Simulator(seed=3) as sim:
        tenant = sim.add_tenant("acme", client_secret=SECRET_2)
        auth = OAuth2ClientCredentials(tenant.client_id, SecretStr(SECRET_2))
        async with MimecastClient(tenant="acme", base_url=sim.url, auth=auth) as client:
            await client.check()
            token = auth.secrets()[1]
            sim.inject(
                faults.HttpStatus(
                    status=403,
                    body=f'{{"fail":[{{"code":"x","message":"token {token}"}}]}}'.encode(),
                )
            )
            with pytest.raises(ConnectorError) as caught:
                await client.check()
    assert "token ***" in str(caught.value)
    assert token not in str(caught.value)
