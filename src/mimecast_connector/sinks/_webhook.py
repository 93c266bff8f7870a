"""The ``webhook`` sink: each batch POSTed as one JSON array.

At least once: a batch whose acknowledgement was lost is sent again, so a receiver drops
repeats by each alert's stable ``id``. With a ``secret``, every request carries
``X-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` so the receiver can check who sent it.

Answers: 2xx acknowledges. 408, 429 (honouring ``Retry-After``), 5xx, timeouts and connection
errors are retried with backoff, bounded by :class:`~mimecast_connector.client.RetryPolicy`;
past that the batch is not acknowledged and the runner tries again on its next poll. Any other
4xx stops the sink with an error that names the status: retrying would not change the answer,
except 413: the body is halved (and ``max_body_bytes`` lowered for the run, with a warning),
and one alert refused alone is sent shortened. Redirects are never followed. Large batches are
split so no request body exceeds ``max_body_bytes``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import httpx
from pydantic import Field, SecretStr, field_validator
from typing_extensions import override

from mimecast_connector._clock import Clock
from mimecast_connector._errors import SinkRejectedError
from mimecast_connector._fields import (
    anchored_path,
    header_secrets,
    http_url,
    secret_str,
    tls_verification,
)
from mimecast_connector.alerts import ARRAY_ENCODERS, Alert, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._http import (
    HttpSender,
    fit,
    refused_as_too_large,
    url_name,
)
from mimecast_connector.sinks._limit import within
from mimecast_connector.sinks._registry import SinkKind, SinkSettings

#: Answers the sink handles itself: 413 splits the body (or shortens an alert alone).
_TOO_LARGE = frozenset({413})
#: What a 413 says to do (logged when the cap is lowered).
_LOWER = (
    "the receiver (or a proxy in front of it) takes less than max_body_bytes; lower "
    "max_body_bytes to match"
)


def signature(secret: str, body: bytes) -> str:
    """The ``X-Signature-256`` header value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink:
    """POST a JSON array of alerts per batch."""

    def __init__(
        self,
        url: str,
        format: Format = "native",
        *,
        secret: SecretStr | None = None,
        headers: Mapping[str, SecretStr] | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        max_body_bytes: int = 8 * 1024 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        verify_tls: bool | str = True,
    ) -> None:
        self._url = url
        self._format: Format = format
        self._encode = ARRAY_ENCODERS[format]
        self._secret = secret
        self._headers = dict(headers or {})
        self._max_body = max_body_bytes
        # The name keys the sink in the state store and appears in messages: no secret in it.
        self.name = url_name("webhook", url)
        self._sender = HttpSender(
            self.name,
            retry=retry,
            timeout=timeout,
            transport=transport,
            clock=clock,
            rng=rng,
            verify=verify_tls,
            peer="the receiver",
            ca_setting="verify_tls",
        )

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r}, format={self._format!r})"

    @property
    def format(self) -> Format:
        return self._format

    async def start(self, position: str | None) -> str | None:
        """Nothing to recover: a webhook has no position. A CA file of ``verify_tls`` that
        cannot be used stops the run here, before anything is read."""
        if self._sender.tls_problem is not None:
            raise SinkRejectedError(self._sender.tls_problem, sink=self.name)
        return None

    def committed(self, position: str | None) -> None:
        """Nothing to do: a webhook has no position."""

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        """POST the batch in bodies under the cap, in order. A 413 (a proxy in front of the
        receiver takes less: nginx's default is 1 MB) halves the body and lowers the cap for
        the rest of the run, as Elasticsearch's sink does; one alert refused alone is sent
        shortened to half that size (``sinks._limit``), down to its own fields, then refused."""
        if self._sender.tls_problem is not None:
            raise SinkRejectedError(self._sender.tls_problem, sink=self.name)
        queue = deque(fit(alerts, self._encode, self._max_body))
        while queue:
            items, body = queue.popleft()
            headers = {"Content-Type": "application/json", "User-Agent": "mimecast-connector"}
            headers.update({k: v.get_secret_value() for k, v in self._headers.items()})
            if self._secret is not None:
                headers["X-Signature-256"] = signature(self._secret.get_secret_value(), body)
            answer = await self._sender.send(
                "POST", self._url, body=body, headers=headers, give_back=_TOO_LARGE
            )
            if answer.status == 413:
                self._max_body = refused_as_too_large(
                    queue,
                    items,
                    body,
                    self._max_body,
                    sink=self.name,
                    advice=_LOWER,
                    encode=self._encode,
                    shorten=self._shorten,
                )
        return None

    def _shorten(self, alert: Alert, limit: int) -> tuple[Alert, bytes]:
        """A body of ``alert`` alone in at most ``limit`` bytes (``sinks._limit.within``)."""
        body = within(
            alert,
            lambda a: self._encode([a]),
            limit,
            sink=self.name,
            setting="what the receiver takes (HTTP 413)",
            advice="raise the receiver's (or its proxy's) limit on a request's body",
        )
        return alert, body


class WebhookSinkConfig(SinkSettings):
    """Alerts POSTed as a JSON array per batch."""

    type: Literal["webhook"]
    url: str
    format: Format = "native"
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    #: True (the public CAs of certifi's bundle), False (no check: a test receiver only), or
    #: the PEM file of the CA that signed the receiver's certificate.
    verify_tls: bool | str = True

    _secret_field = field_validator("secret", mode="before")(secret_str)
    _url = field_validator("url")(http_url)
    _verify = field_validator("verify_tls", mode="before")(tls_verification)

    @field_validator("headers", mode="before")
    @classmethod
    def _header_secrets(cls, value: Any, info: Any) -> Any:
        """Each header as HTTP (RFC 9110) can carry it; every problem named at once, no value shown."""
        return header_secrets(value, info)

    def secrets(self) -> list[str]:
        """The secret and header values, and the URL itself: services put tokens in its path."""
        values = [self.secret, *self.headers.values()]
        return [self.url, *(v.get_secret_value() for v in values if v is not None)]

    @override
    def anchored(self, base_dir: Path) -> Self:
        """A relative CA file of ``verify_tls`` is relative to the configuration's folder."""
        if isinstance(self.verify_tls, str):
            return self.model_copy(update={"verify_tls": anchored_path(self.verify_tls, base_dir)})
        return self


def _build(settings: WebhookSinkConfig) -> Sink:
    return WebhookSink(
        settings.url,
        settings.format,
        secret=settings.secret,
        headers=settings.headers,
        verify_tls=settings.verify_tls,
    )


KIND = SinkKind(
    type="webhook",
    settings=WebhookSinkConfig,
    build=_build,
    protocol="HTTPS `POST` of a JSON array per batch, optional HMAC signature",
    acknowledged="the receiver answered 2xx",
    guarantee="at least once: a batch whose answer was lost is sent again; drop repeats by `id`",
    order=10,
    tested_against="a loopback HTTP receiver (`tests/sinks/receiver.py`), over HTTPS with a private CA too",
)
