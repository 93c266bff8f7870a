"""What every HTTP sink shares: one client, the retry rule, ``Retry-After``, size-capped bodies,
and a name that never shows a secret.

The rule, in one place (``style.md`` habit 6): a 2xx answer is returned; 408, 429, 5xx, a
timeout or a broken connection is retried with backoff (``Retry-After`` honoured on 429 and
503, and waiting it out does not count as a failed try), bounded by a
:class:`~mimecast_connector.client.RetryPolicy`'s attempts and deadline, after which the batch
is *not acknowledged* (:class:`~mimecast_connector.SinkUnavailableError`: the runner sends it
again on its next poll); any other answer is a refusal that retrying would not change
(:class:`~mimecast_connector.SinkRejectedError`), unless the sink asked to see it (Sentinel's
413 means "split the body", not "stop"). A server certificate that fails verification is such
a refusal too, as for syslog over TLS: a person must fix the receiver's certificate or name its
CA (``verify_tls``, where the sink has it), and retrying would only repeat the failure. Redirects
are never followed.
"""

from __future__ import annotations

import email.utils
import hashlib
import random
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import httpx
import structlog

from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError
from mimecast_connector.client import RetryPolicy
from mimecast_connector.client._responses import certificate_failure

#: The most of an answer read when the sink does not need it (to reuse its connection).
ANSWER_READ_CAP = 64 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=30.0, pool=30.0)
_log = structlog.get_logger("mimecast_connector.sinks")

T = TypeVar("T")


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


def url_name(kind: str, url: str) -> str:
    """A sink's name from its URL: scheme, host and port, plus a digest of the whole URL (so two
    paths of one host differ), since services put tokens in paths and queries."""
    parsed = httpx.URL(url)
    digest = hashlib.sha256(url.encode()).hexdigest()[:8]
    return f"{kind}:{parsed.scheme}://{parsed.host}:{parsed.port or 443}#{digest}"


def fit(
    items: Sequence[T], encode: Callable[[Sequence[T]], bytes], limit: int
) -> list[tuple[Sequence[T], bytes]]:
    """``items`` as bodies of at most ``limit`` bytes each, halving until they fit (an item too
    large alone is a body of its own: the receiver says whether it takes it)."""
    if not items:
        return []
    body = encode(items)
    if len(body) <= limit or len(items) == 1:
        return [(items, body)]
    half = len(items) // 2
    return fit(items[:half], encode, limit) + fit(items[half:], encode, limit)


def lowered_cap(sink: str, refused: int, cap: int, advice: str) -> int:
    """The body cap after a body of ``refused`` bytes got 413: half of it, if that is below
    ``cap`` (then logged as ``sink_body_too_large`` with ``advice``); else ``cap``."""
    lower = max(refused // 2, 1)
    if lower >= cap:
        return cap
    _log.warning(
        "sink_body_too_large",
        sink=sink,
        refused_bytes=refused,
        max_body_bytes=lower,
        advice=advice,
    )
    return lower


def refused_as_too_large(
    queue: deque[tuple[Sequence[T], bytes]],
    items: Sequence[T],
    body: bytes,
    cap: int,
    *,
    sink: str,
    advice: str,
    encode: Callable[[Sequence[T]], bytes],
    shorten: Callable[[T, int], tuple[T, bytes]],
) -> int:
    """What every HTTP sink does when ``body`` (of ``items``) got 413, its receiver (or a
    proxy in front of it) taking less than ``max_body_bytes``: items several go again at the
    head of ``queue``, fit under the cap lowered for the refused size (:func:`lowered_cap`,
    which logs it with ``advice``); an item alone goes again shortened to half the refused size
    (``shorten``: the item and its body, ``sinks._limit.within``, which refuses it when its
    own fields do not fit). Returns the cap."""
    if len(items) > 1:
        cap = lowered_cap(sink, len(body), cap, advice)
        queue.extendleft(reversed(fit(items, encode, cap)))
    else:
        item, shortened = shorten(items[0], len(body) // 2)
        queue.appendleft(([item], shortened))
    return cap


@dataclass(frozen=True)
class Answer:
    """A receiver's answer: its status, headers and (up to the cap asked for) body."""

    status: int
    headers: httpx.Headers
    body: bytes


class HttpSender:
    """One sink's HTTP client and retry loop."""

    def __init__(
        self,
        name: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        verify: bool | str = True,
        peer: str = "the server",
        ca_setting: str | None = None,
    ) -> None:
        self.name = name
        self._peer = peer
        #: The sink's setting that names a CA file, if it has one (for the advice on a failed
        #: certificate).
        self._ca_setting = ca_setting
        self.retry = retry or RetryPolicy(attempts=5, deadline=120.0)
        self.clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        #: Why the CA file of ``verify`` cannot be used (the sink refuses to start), or None.
        self.tls_problem: str | None = None
        if isinstance(verify, str) and transport is None:
            try:
                context = ssl.create_default_context(cafile=verify)
            except (OSError, ssl.SSLError) as exc:
                self.tls_problem = (
                    f"cannot use the CA file of `verify_tls` ({type(exc).__name__}: "
                    f"{getattr(exc, 'strerror', None) or 'not PEM certificates'}); give a "
                    f"readable PEM file of the CA that signed {peer}'s certificate"
                )
            else:
                transport = httpx.AsyncHTTPTransport(verify=context)
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=timeout or DEFAULT_TIMEOUT,
            follow_redirects=False,
            trust_env=False,
            verify=verify if isinstance(verify, bool) else True,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        read: int = ANSWER_READ_CAP,
        give_back: frozenset[int] = frozenset(),
        what: str = "the batch",
    ) -> Answer:
        """Send until acknowledged (2xx, or a status in ``give_back``), by the rule above.

        ``read``: how much of the answer to keep; past it, the rest is dropped (and with it the
        connection). ``what`` names the request in errors.
        """
        started = self.clock.monotonic()
        failures = 0
        tries = 0
        while True:
            if self._http.is_closed:
                raise SinkRejectedError("deliver() after aclose()", sink=self.name)
            tries += 1
            wait_hint: float | None = None
            try:
                async with self._http.stream(
                    method, url, content=body, headers=headers
                ) as response:
                    status = response.status_code
                    # An answer read to its end lets its connection carry the next request
                    # (unread, it is closed: a new connection and TLS handshake per batch).
                    kept = bytearray()
                    async for chunk in response.aiter_raw():
                        kept += chunk
                        if len(kept) > read:
                            break
                content = _decoded(response.headers.get("content-encoding"), bytes(kept), read)
                problem = f"HTTP {status}"
                if 200 <= status < 300 or status in give_back:
                    return Answer(status, response.headers, content)
                if status in (429, 503):
                    hint = retry_after(response.headers.get("retry-after"), self.clock.time(), 0.0)
                    wait_hint = hint if hint > 0 else None
                if not (status in (408, 429) or status >= 500):
                    raise SinkRejectedError(
                        f"the receiver refused {what} with HTTP {status}; check "
                        "the sink's settings and the receiver's logs (not retried: the same "
                        "request would get the same answer)",
                        sink=self.name,
                    )
            except httpx.HTTPError as exc:  # transport failures, and answers httpx cannot read
                if (failure := certificate_failure(exc)) is not None:
                    raise self._untrusted(failure) from None
                problem = type(exc).__name__
            if wait_hint is None:
                failures += 1  # waiting out the receiver's own Retry-After is not a failure
            wait = wait_hint if wait_hint is not None else self.retry.backoff(failures, self._rng)
            elapsed = self.clock.monotonic() - started
            if failures >= self.retry.attempts or elapsed + wait > self.retry.deadline:
                raise SinkUnavailableError(
                    f"not acknowledged after {tries} tries ({problem}); {what} stays "
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
            await self.clock.sleep(wait)

    def _untrusted(self, failure: ssl.SSLCertVerificationError) -> SinkRejectedError:
        """The refusal for a server certificate that failed verification, with what to do."""
        reason = failure.verify_message or failure.reason or "not trusted"
        if self._ca_setting is not None:
            advice = (
                f"if it is signed by a private CA, name that CA's PEM file in "
                f"`{self._ca_setting}`; otherwise fix the certificate"
            )
        else:
            # httpx verifies against certifi's bundle, not this machine's CA store.
            advice = "fix the certificate: this sink trusts the public CAs of certifi's bundle"
        return SinkRejectedError(
            f"the TLS certificate of {self._peer} failed verification ({reason}): {advice}. "
            "Nothing was sent; the run stops, and a restart after the fix resumes there",
            sink=self.name,
        )


def _decoded(encoding: str | None, raw: bytes, limit: int) -> bytes:
    """The answer's body, at most ``limit`` bytes, decompressed if gzip or deflate (bounded: a
    small answer cannot inflate past the limit). Anything else, or a body that does not
    decompress, is kept as it came: a 2xx acknowledges whatever its body."""
    encoding = (encoding or "").strip().lower()
    if encoding not in ("gzip", "deflate", "x-gzip"):
        return raw[:limit]
    try:
        return zlib.decompressobj(wbits=47).decompress(raw, limit)  # 47: gzip or zlib header
    except zlib.error:
        return raw[:limit]
