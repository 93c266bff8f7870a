"""The ``webhook`` sink: each batch POSTed as one JSON array.

At least once: a batch whose acknowledgement was lost is sent again, so a receiver drops
repeats by each alert's stable ``id``. With a ``secret``, every request carries
``X-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` so the receiver can check who sent it.

Answers: 2xx acknowledges. 408, 429 (honouring ``Retry-After``), 5xx, timeouts and connection
errors are retried with backoff, bounded by :class:`~mimecast_connector.client.RetryPolicy`;
past that the batch is not acknowledged and the runner tries again on its next poll. Any other
4xx stops the sink with an error that names the status: retrying would not change the answer.
Redirects are never followed. Large batches are split so no request body exceeds
``max_body_bytes``.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import random
from collections.abc import Mapping, Sequence

import httpx
import structlog
from pydantic import SecretStr

from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError
from mimecast_connector.alerts import ARRAY_ENCODERS, Alert, Format
from mimecast_connector.client import RetryPolicy

#: The most of a receiver's answer read (to reuse its connection); past it, it is dropped.
_ANSWER_READ_CAP = 64 * 1024
_log = structlog.get_logger("mimecast_connector.sinks")


def signature(secret: str, body: bytes) -> str:
    """The ``X-Signature-256`` header value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_after(value: str | None, now: float, default: float) -> float:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), capped at 300."""
    if value is None:
        return default
    value = value.strip()
    try:
        seconds = int(value)
    except ValueError:
        pass
    else:
        return min(float(seconds), 300.0) if seconds >= 0 else default
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return min(max(when.timestamp() - now, 0.0), 300.0)


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
    ) -> None:
        self._url = url
        self._format: Format = format
        self._encode = ARRAY_ENCODERS[format]
        self._secret = secret
        self._headers = dict(headers or {})
        self._retry = retry or RetryPolicy(attempts=5, deadline=120.0)
        self._max_body = max_body_bytes
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=timeout or httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=30.0),
            follow_redirects=False,
            trust_env=False,
        )
        # The name keys the sink in the state store and appears in messages: scheme, host and
        # port only, plus a digest of the whole URL, since services put tokens in the path.
        parsed = httpx.URL(url)
        digest = hashlib.sha256(url.encode()).hexdigest()[:8]
        self.name = f"webhook:{parsed.scheme}://{parsed.host}:{parsed.port or 443}#{digest}"

    def __repr__(self) -> str:
        return f"WebhookSink({self.name!r}, format={self._format!r})"

    @property
    def format(self) -> Format:
        return self._format

    async def start(self, position: str | None) -> str | None:
        """Nothing to recover: a webhook has no position."""
        return None

    def committed(self, position: str | None) -> None:
        """Nothing to do: a webhook has no position."""

    async def aclose(self) -> None:
        await self._http.aclose()

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        for chunk in self._chunks(alerts):
            await self._post(chunk)
        return None

    def _chunks(self, alerts: Sequence[Alert]) -> list[bytes]:
        """The batch as request bodies, each within ``max_body_bytes`` (one alert at the least)."""
        body = self._encode(alerts)
        if len(body) <= self._max_body or len(alerts) <= 1:
            return [body] if alerts else []
        half = len(alerts) // 2
        return self._chunks(alerts[:half]) + self._chunks(alerts[half:])

    async def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "mimecast-connector"}
        headers.update({k: v.get_secret_value() for k, v in self._headers.items()})
        if self._secret is not None:
            headers["X-Signature-256"] = signature(self._secret.get_secret_value(), body)
        started = self._clock.monotonic()
        failures = 0
        tries = 0
        while True:
            if self._http.is_closed:
                raise SinkRejectedError("deliver() after aclose()", sink=self.name)
            tries += 1
            wait_hint: float | None = None
            try:
                async with self._http.stream(
                    "POST", self._url, content=body, headers=headers
                ) as response:
                    status = response.status_code
                    # Only the status matters, but an answer read to its end lets its
                    # connection carry the next batch (unread, it is closed: a new connection,
                    # and a TLS handshake, per batch). A long one is not worth it.
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > _ANSWER_READ_CAP:
                            break
                problem = f"HTTP {status}"
                if 200 <= status < 300:
                    return
                if status == 429 or status == 503:
                    hint = retry_after(response.headers.get("retry-after"), self._clock.time(), 0.0)
                    wait_hint = hint if hint > 0 else None
                if not (status in (408, 429) or status >= 500):
                    raise SinkRejectedError(
                        f"the receiver refused the batch with HTTP {status}; check the sink's url, "
                        "headers and the receiver's logs (not retried: the same request would get the same answer)",
                        sink=self.name,
                    )
            except httpx.HTTPError as exc:  # transport failures, and answers httpx cannot read
                problem = type(exc).__name__
            if wait_hint is None:
                failures += 1  # waiting out the receiver's own Retry-After is not a failure
            wait = wait_hint if wait_hint is not None else self._retry.backoff(failures, self._rng)
            elapsed = self._clock.monotonic() - started
            if failures >= self._retry.attempts or elapsed + wait > self._retry.deadline:
                raise SinkUnavailableError(
                    f"not acknowledged after {tries} tries ({problem}); the batch stays "
                    "unacknowledged and is sent again on the next poll",
                    sink=self.name,
                )
            _log.warning(
                "sink_retrying",
                sink=self.name,
                problem=problem,
                attempt=tries,
                wait_s=round(wait, 3),
            )
            await self._clock.sleep(wait)
