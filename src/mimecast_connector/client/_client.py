"""The Mimecast API client: one tenant, both API versions, the three TTP logs, page by page.

This room talks HTTP and nothing else. It knows how to authenticate (``_auth``), how fast it
may go (``_ratelimit``), what every answer means (``_responses``) and how long to keep trying
(``_retry``); it hands each page of records on as raw JSON, undecoded, so that the next room
can validate every record on its own and keep the original bytes.

A window is read oldest first with ``from``/``to`` frozen for all its pages. Paging stops when
``next`` is missing; an empty page that carries ``next`` is followed. A ``next`` token seen twice
in one window, or more than ``max_pages`` pages, is a PaginationError.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import msgspec
import structlog
from msgspec import UNSET, UnsetType

from mimecast_connector._categories import Category
from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import (
    ApiError,
    ApiFailure,
    AuthError,
    ConfigError,
    PaginationError,
    UnavailableError,
    UpstreamFormatError,
)
from mimecast_connector._logging import Redactor, redactor_of
from mimecast_connector.client._auth import Auth, new_request_id
from mimecast_connector.client._http import HttpPool
from mimecast_connector.client._ratelimit import RateLimiter, parse_reset
from mimecast_connector.client._responses import (
    Outcome,
    Verdict,
    certificate_failure,
    classify_failures,
    classify_status,
    classify_transport_error,
    outcome_label,
)
from mimecast_connector.client._retry import RetryPolicy

_log = structlog.get_logger("mimecast_connector.client")

MAX_PAGE_SIZE = 500
#: The header Mimecast names a call by; sent with every request, and read from every answer
#: that has one (a support ticket quotes Mimecast's).
REQUEST_ID_HEADER = "x-mc-req-id"
_ERROR_BODY_CAP = 64 * 1024
#: Who is asking, in every request's User-Agent.
_USER_AGENT = b"mimecast-connector"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a password


class CallObserver(Protocol):
    """What a client reports about its calls (the run's metrics: ``observe.TenantCalls``).
    ``category`` is the stream the call was for (``receipt`` for the SIEM feed's)."""

    def answered(self, category: str, outcome: str, seconds: float) -> None:
        """One request ended: ``outcome`` is ``client.outcome_label``'s."""
        ...

    def waited(self, seconds: float) -> None:
        """One call waited ``seconds`` for the API user's quota."""
        ...


class _Unobserved:
    """The observer of a client nobody watches."""

    def answered(self, category: str, outcome: str, seconds: float) -> None:
        return None

    def waited(self, seconds: float) -> None:
        return None


UNOBSERVED: CallObserver = _Unobserved()


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Limits of one client. Every one is finite.

    ``timeout`` bounds each phase of a request (connect, write, each read, pool);
    ``request_deadline`` bounds one try including a slowly dripping body; ``retry`` bounds the
    tries of one call, and its ``deadline`` the whole call: every try, body read and wait, and
    the token request on the way; ``max_pages`` bounds one window's paging;
    ``max_body_bytes`` bounds one decoded response body.
    """

    page_size: int = MAX_PAGE_SIZE
    max_body_bytes: int = 64 * 1024 * 1024
    max_pages: int = 100_000
    timeout: httpx.Timeout = field(
        default_factory=lambda: httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0)
    )
    request_deadline: float = 180.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigError([("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")])


@dataclass(frozen=True, slots=True)
class Page:
    """One page of one window: the records as raw JSON, as Mimecast sent them.

    Two guarantees hold for every record, so that each can be written as one line of a JSON
    lines file: it contains no raw line break (a CR or LF between JSON tokens, which only
    whitespace can be, is replaced by a space), and, when ``utf8`` is true, it is valid UTF-8.
    When ``utf8`` is false, some record of the page is not: check each before writing it.
    """

    category: Category
    records: list[msgspec.Raw]
    number: int
    total_count: int | None
    request_id: str
    utf8: bool = True


def format_time(moment: datetime) -> str:
    """A ``from``/``to`` value: ``YYYY-MM-DDTHH:MM:SS+0000`` in UTC (``mimecast-api.md`` §4.1)."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no time zone; pass an aware one")
    m = moment.astimezone(UTC)  # formatted by hand: a third of strftime's cost
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}+0000"


def window_fields(category: Category, start: datetime, end: datetime) -> dict[str, Any]:
    """The request fields that ask ``category`` for ``[start, end]``.

    The TTP logs take ``from``/``to`` and ``oldestFirst`` (mimecast-api.md §4.1); the rejection
    log takes ``start``/``end`` and ``admin: true`` (every mailbox of the account, not only the
    API user's own) and documents no order (mta-rejections.md §2.3).
    """
    first, last = category.window_keys
    fields: dict[str, Any] = {first: format_time(start), last: format_time(end)}
    if category.ordered:
        fields["oldestFirst"] = True
    else:
        fields["admin"] = True
    return fields


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1: the only places plain HTTP may go."""
    if host.lower() in {"localhost", "localhost."}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1024)  # tenants share a few hosts
def check_base_url(url: str, *, key: str = "base_url") -> str:
    """``url`` without a trailing slash, or a ConfigError saying what is wrong with it.

    HTTPS is required, except for loopback hosts (the simulator). A path, query, fragment or
    user info is refused: Mimecast's API lives at the root of its host.
    """
    parts = urlsplit(url.strip())
    problems: list[tuple[str, str]] = []
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        problems.append((key, "must be an absolute URL such as https://api.services.mimecast.com"))
    elif parts.scheme == "http" and not is_loopback_host(parts.hostname):
        problems.append((key, "must use https (plain http is allowed only for loopback hosts)"))
    if parts.username or parts.password:
        problems.append((key, "must not carry user info; credentials go in their own keys"))
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        problems.append((key, "must be the host only, without a path, query or fragment"))
    if problems:
        raise ConfigError(problems)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


# --- the envelope, decoded once a page (style.md habit 4) ------------------------------------


class _FailError(msgspec.Struct):
    code: str = ""
    message: str = ""
    retryable: bool = False


class _Fail(msgspec.Struct):
    code: str = ""
    message: str = ""
    errors: list[_FailError] = []


class _Pagination(msgspec.Struct):
    next: str | None = None
    totalCount: int | None = None


class _Meta(msgspec.Struct):
    pagination: _Pagination | None = None


# UNSET marks a key the body did not have: the shape check (``_shape_problem``) tells an
# absent ``meta``, ``data`` or log list apart from an empty one.


class _AttachmentData(msgspec.Struct):
    attachmentLogs: list[msgspec.Raw] | UnsetType = UNSET


class _ImpersonationData(msgspec.Struct):
    impersonationLogs: list[msgspec.Raw] | UnsetType = UNSET


class _UrlData(msgspec.Struct):
    clickLogs: list[msgspec.Raw] | UnsetType = UNSET


class _RejectionData(msgspec.Struct):
    rejections: list[msgspec.Raw] | UnsetType = UNSET


class _AttachmentPage(msgspec.Struct):
    meta: _Meta | UnsetType = UNSET
    data: list[_AttachmentData] | UnsetType = UNSET
    fail: list[_Fail] = []


class _ImpersonationPage(msgspec.Struct):
    meta: _Meta | UnsetType = UNSET
    data: list[_ImpersonationData] | UnsetType = UNSET
    fail: list[_Fail] = []


class _UrlPage(msgspec.Struct):
    meta: _Meta | UnsetType = UNSET
    data: list[_UrlData] | UnsetType = UNSET
    fail: list[_Fail] = []


class _RejectionPage(msgspec.Struct):
    meta: _Meta | UnsetType = UNSET
    data: list[_RejectionData] | UnsetType = UNSET
    fail: list[_Fail] = []


class _ErrorBody(msgspec.Struct):
    fail: list[_Fail] = []


_PageT = _AttachmentPage | _ImpersonationPage | _UrlPage | _RejectionPage

_PAGE_TYPES: dict[Category, tuple[type[_PageT], type[Any]]] = {
    Category.ATTACHMENT: (_AttachmentPage, _AttachmentData),
    Category.IMPERSONATION: (_ImpersonationPage, _ImpersonationData),
    Category.URL: (_UrlPage, _UrlData),
    Category.REJECTION: (_RejectionPage, _RejectionData),
}
_PAGE_DECODERS: dict[Category, msgspec.json.Decoder[Any]] = {
    category: msgspec.json.Decoder(page_type) for category, (page_type, _) in _PAGE_TYPES.items()
}
_ERROR_DECODER = msgspec.json.Decoder(_ErrorBody)
_TOKEN_DECODER = msgspec.json.Decoder(dict[str, Any])
_ENCODER = msgspec.json.Encoder()


def _records_of(page: _PageT) -> list[msgspec.Raw]:
    """The records of a page that passed the shape check."""
    records: list[msgspec.Raw] = []
    for item in page.data or ():
        if isinstance(item, _AttachmentData):
            logs = item.attachmentLogs
        elif isinstance(item, _ImpersonationData):
            logs = item.impersonationLogs
        elif isinstance(item, _UrlData):
            logs = item.clickLogs
        else:
            logs = item.rejections
        if isinstance(logs, list):
            records.extend(logs)
    return records


def _pagination(page: _PageT) -> _Pagination:
    meta = page.meta
    return (meta.pagination if isinstance(meta, _Meta) else None) or _Pagination()


def _shape_problem(category: Category, page: _PageT) -> bool:
    """Whether a page without ``fail`` entries lacks part of its documented envelope.

    ``meta`` and ``data`` must be there, and every item of ``data`` must hold the endpoint's
    log list (``mimecast-api.md`` §5.2, §6.2, §7.2). ``data: []`` is the documented empty
    result (§4.3), and so is an item with an empty list.
    """
    if page.meta is UNSET or page.data is UNSET:
        return True
    key = category.list_key
    return any(getattr(item, key) is UNSET for item in page.data)


_KEYS_SHOWN = 8
_KEY_CHARS = 40


def _describe_shape(category: Category, body: bytes, redact: Callable[[str], str]) -> str:
    """What the body had instead of the envelope: key names only, redacted, bounded."""
    expected = f"meta, data: [{{{category.list_key}: [...]}}] and fail"
    try:
        document = json.loads(body, strict=False)
    except (ValueError, RecursionError):
        return f"a page of this endpoint has {expected}; this body's keys could not be listed"
    parts = [f"top-level keys {_key_list(document, redact)}"]
    data = document.get("data") if isinstance(document, dict) else None
    if isinstance(data, list):
        for index, item in enumerate(data):
            if not isinstance(item, dict) or category.list_key not in item:
                parts.append(f"data[{index}] keys {_key_list(item, redact)}")
                break
    return f"a page of this endpoint has {expected}; this one has {' and '.join(parts)}"


def _key_list(value: Any, redact: Callable[[str], str]) -> str:
    if not isinstance(value, dict):
        return f"(none: a JSON {type(value).__name__.replace('NoneType', 'null')})"
    if not value:
        return "(none)"
    shown = []
    for key in list(value)[:_KEYS_SHOWN]:
        name = redact(str(key))
        name = name if len(name) <= _KEY_CHARS else name[:_KEY_CHARS] + "..."
        shown.append(json.dumps(name))
    more = len(value) - len(shown)
    return "[" + ", ".join(shown) + (f", ... {more} more" if more > 0 else "") + "]"


def _failures(fail: list[_Fail]) -> tuple[list[tuple[str, str]], list[bool]]:
    """Every ``(code, message)`` in a ``fail`` array, flat (2.0 auth) or nested (1.0 style)."""
    pairs: list[tuple[str, str]] = []
    retryable: list[bool] = []
    for item in fail:
        if item.errors:
            for error in item.errors:
                pairs.append((error.code, error.message))
                retryable.append(error.retryable)
        else:
            pairs.append((item.code, item.message))
            retryable.append(False)
    return pairs, retryable


class _GiveUp(Exception):
    """Internal: the loop stops with this verdict and detail."""

    def __init__(self, verdict: Verdict, detail: str, failures: list[tuple[str, str]]) -> None:
        self.verdict = verdict
        self.detail = detail
        self.failures = failures


_T = TypeVar("_T")


@functools.lru_cache(maxsize=1024)
def _endpoint(
    base_url: str,
) -> tuple[tuple[bytes, str, int], list[tuple[bytes, bytes]], bytes]:
    """A base URL's origin (scheme, host, port), fixed request headers and path prefix:
    parsed once per host, not per tenant. The headers are shared: never changed in place."""
    url = httpx.URL(base_url)
    origin = (url.raw_scheme, url.host, url.port or (443 if url.raw_scheme == b"https" else 80))
    headers = [
        (b"Host", url.netloc),
        (b"User-Agent", _USER_AGENT),
        (b"Accept-Encoding", b"identity"),
    ]
    return origin, headers, url.raw_path.rstrip(b"/")


class MimecastClient:
    """A client for one tenant. Use it as an async context manager, or call :meth:`aclose`.

    ``http`` is the run's shared :class:`~mimecast_connector.client._http.HttpPool` (without
    one, the client makes its own and closes it); ``transport`` is the httpx seam tests may
    swap; ``limiter`` is shared by everything that uses this tenant's quota; ``secrets`` are
    values that must never appear in a message (the auth's own secrets are always included);
    ``observer`` is told of every request and every wait for the quota (the run's metrics).

    Every log line about a request carries the tenant, the category (``None`` for a token
    request made outside a poll) and the request id: Mimecast's own, from the answer's
    ``x-mc-req-id``, when the answer has one, else the one sent.
    """

    def __init__(
        self,
        *,
        tenant: str,
        base_url: str,
        auth: Auth,
        options: ClientOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        limiter: RateLimiter | None = None,
        rng: random.Random | None = None,
        secrets: Sequence[str] = (),
        http: HttpPool | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.tenant = tenant
        self.observer: CallObserver = observer or UNOBSERVED
        self._static_redactor = redactor_of(secrets)
        self.base_url = check_base_url(base_url)
        self.auth = auth
        self.options = options or ClientOptions()
        self._clock: Clock = clock or SystemClock()
        self.limiter = limiter or RateLimiter(clock=self._clock)
        self._rng = rng or random.Random()
        self._own_pool = HttpPool(timeout=self.options.timeout) if http is None else None
        pool = http or self._own_pool
        assert pool is not None
        self._http = pool.client(self.base_url, transport)
        self._slots = pool.slots
        # The hot path: pages POSTed straight through our transport (no test transport given).
        self._direct = pool.direct(self.base_url, transport)
        self._origin, self._fixed_headers, self._prefix = _endpoint(self.base_url)
        self._timeouts = self.options.timeout.as_dict()

    def __repr__(self) -> str:
        api = self.auth.api_version
        return f"MimecastClient(tenant={self.tenant!r}, base_url={self.base_url!r}, api={api})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_pool is not None:
            await self._own_pool.aclose()

    # --- public calls --------------------------------------------------------------------

    async def pages(
        self,
        category: Category,
        start: datetime,
        end: datetime,
        *,
        filters: Mapping[str, Any] | None = None,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[Page]:
        """Every page of records with event times in ``[start, end]``, oldest first where the
        endpoint can be asked for that order (:func:`window_fields`).

        Memory holds one page at a time. ``filters`` adds request fields (``route``,
        ``result``, ``scanResult``, ``taggedMalicious``) to the frozen window. ``admit`` is
        awaited before each try of a page request, once the rate limiter let it through (the
        runner's bound on pages held: a stream waiting on its quota holds nothing).
        """
        window = window_fields(category, start, end)
        window.update(filters or {})
        seen: set[str] = set()
        token: str | None = None
        number = 0
        while True:
            pagination: dict[str, Any] = {"pageSize": self.options.page_size}
            if token is not None:
                pagination["pageToken"] = token
            body = _ENCODER.encode({"meta": {"pagination": pagination}, "data": [window]})
            (page, utf8), request_id = await self._page(category, body, admit)
            number += 1
            records = _records_of(page)
            meta = _pagination(page)
            if records:
                yield Page(category, records, number, meta.totalCount, request_id, utf8)
            if not meta.next:
                return
            # An empty page that still carries a next token goes on (mimecast-api.md §4.3):
            # stopping there would drop the rest of the window on every poll. The repeated-token
            # check and the page guard below bound a server that never ends.
            if meta.next in seen:
                raise PaginationError(
                    "Mimecast sent the same next-page token twice in one window; stopped "
                    "instead of looping (the window will be read again on the next poll)",
                    tenant=self.tenant,
                    endpoint=category.path,
                    request_id=request_id,
                )
            if number >= self.options.max_pages:
                raise PaginationError(
                    f"more than {self.options.max_pages} pages in one window; stopped",
                    tenant=self.tenant,
                    endpoint=category.path,
                    request_id=request_id,
                )
            seen.add(meta.next)
            token = meta.next

    async def check(self, category: Category = Category.URL) -> None:
        """Authenticate once and read one small page: raises what a real poll would raise."""
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        window = window_fields(category, now.replace(microsecond=0), now)
        body = _ENCODER.encode({"meta": {"pagination": {"pageSize": 1}}, "data": [window]})
        await self._page(category, body)

    async def _page(
        self,
        category: Category,
        body: bytes,
        admit: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[tuple[_PageT, bool], str]:
        """One page request: the decoded page, whether it is UTF-8, and the request id."""
        return await self._call(
            category.path,
            category,
            body,
            "application/json",
            decode=lambda raw: self._decode_page(category, raw, self._redact),
            authenticated=True,
            admit=admit,
            stream=category.value,
        )

    # --- one call, with the response table ---------------------------------------------

    async def _fetch_token(
        self, form: Mapping[str, str], *, deadline: float | None = None, stream: str | None = None
    ) -> Mapping[str, Any]:
        content = urlencode(dict(form)).encode()
        answer, _ = await self._call(
            TOKEN_PATH,
            None,
            content,
            "application/x-www-form-urlencoded",
            decode=self._decode_token,
            authenticated=False,
            deadline=deadline,
            stream=stream,
        )
        return answer

    async def _call(
        self,
        path: str,
        category: Category | None,
        content: bytes,
        content_type: str,
        *,
        decode: Callable[[bytes], tuple[_T, list[_Fail]]],
        authenticated: bool,
        deadline: float | None = None,
        admit: Callable[[], Awaitable[None]] | None = None,
        method: str = "POST",
        query: str = "",
        role: str | None = None,
        stream: str | None = None,
    ) -> tuple[_T, str]:
        """Send one call until the table says stop; return the decoded answer and request id
        (Mimecast's, when the answer named one). ``method`` GET sends no body and ``query``
        after the path; ``role`` names what a 403 lacks where ``category`` does not say it;
        ``stream`` is the category the call is for, in logs and metrics (a token request is
        counted with the call that needed it).

        Everything the call does ends by ``deadline`` (on the client's monotonic clock; by
        default ``retry.deadline`` seconds from now): every try and its body read, the waits
        between tries, and the token request it may need on the way, which shares it.
        """
        started = self._clock.monotonic()
        if deadline is None:
            deadline = started + self.options.retry.deadline
        failures = tries = 0
        refreshed = False
        request_id = ""
        status: int | None = None
        sent: dict[str, str] = {}
        verdict = _OUT_OF_TIME
        happened = said = ""
        observer = self.observer
        label = stream or "none"
        while True:
            waited = await self.limiter.acquire()
            if waited:
                observer.waited(waited)
            if admit is not None:
                await admit()
            request_id = new_request_id()
            headers = {
                "Content-Type": content_type,
                "Accept": "application/json",
                "x-mc-req-id": request_id,
            }
            sent = {}
            budget = 0.0
            sending = 0.0
            try:
                if authenticated:
                    sent = await self._auth_headers(path, request_id, deadline, stream)
                    headers.update(sent)
                budget = min(self.options.request_deadline, deadline - self._clock.monotonic())
                if budget <= 0:
                    raise self._error(
                        verdict,
                        happened=self._gave_up(happened, tries, started),
                        said=said,
                        path=path,
                        request_id=request_id,
                        status=status,
                        sent=sent,
                    )
                tries += 1
                sending = time.perf_counter()
                status = None
                status, response_headers, body = await self._send(
                    path, headers, content, budget, method=method, query=query
                )
            except (
                httpx.HTTPError,
                TimeoutError,
            ) as exc:  # transport, and bodies httpx cannot decode
                if sending:
                    observer.answered(
                        label, outcome_label(None, exc), time.perf_counter() - sending
                    )
                status, reset, said = None, 0.0, ""
                verdict = classify_transport_error(exc)
                happened = self._describe_transport(exc, budget)
            except _GiveUp as stop:
                if sending:
                    observer.answered(label, outcome_label(status), time.perf_counter() - sending)
                raise self._unreadable(stop, path, request_id, status, sent) from None
            else:
                observer.answered(label, outcome_label(status), time.perf_counter() - sending)
                request_id = response_headers.get(REQUEST_ID_HEADER) or request_id
                self.limiter.observe(response_headers)
                verdict = classify_status(
                    status, category, token_request=not authenticated, role=role
                )
                happened = said = ""
                reset = 0.0
                if verdict.outcome is Outcome.RECORDS:
                    try:
                        answer, fail = decode(body)
                    except _GiveUp as stop:
                        raise self._unreadable(stop, path, request_id, status, sent) from None
                    if not fail:
                        return answer, request_id
                    pairs, retryable = _failures(fail)
                    verdict = classify_failures([c for c, _ in pairs], retryable)
                    said = "; ".join(f"{c}: {m}" for c, m in pairs)
                    if verdict.outcome is Outcome.FAIL:
                        raise self._error(
                            verdict,
                            said=said,
                            failures=pairs,
                            path=path,
                            request_id=request_id,
                            status=status,
                            sent=sent,
                        )
                else:
                    said = self._error_detail(body)
                    if verdict.outcome is Outcome.WAIT:
                        reset = parse_reset(
                            response_headers.get("x-ratelimit-reset"),
                            now=self._clock.time(),
                            cap=self.options.retry.maximum * 10,
                        )

            now = self._clock.monotonic()
            if verdict.outcome is Outcome.FAIL or (
                verdict.outcome is Outcome.REFRESH_AUTH and (refreshed or not authenticated)
            ):
                raise self._error(
                    verdict, happened=happened, said=said, path=path, request_id=request_id,
                    status=status, sent=sent,
                )  # fmt: skip
            if verdict.outcome is Outcome.REFRESH_AUTH:
                refreshed = True
                await self.auth.invalidate(sent)
                _log.info(
                    "auth_refused_refreshing",
                    tenant=self.tenant,
                    category=stream,
                    endpoint=path,
                    request_id=request_id,
                )
                continue
            if verdict.outcome is Outcome.WAIT:
                wait = max(reset, 0.05)
                if now + wait > deadline:
                    raise self._error(
                        verdict, happened=self._gave_up(happened, tries, started), said=said,
                        path=path, request_id=request_id, status=status, sent=sent,
                    )  # fmt: skip
                self.limiter.block(wait)
                _log.info(
                    "rate_limited",
                    tenant=self.tenant,
                    category=stream,
                    endpoint=path,
                    request_id=request_id,
                    wait_s=round(wait, 3),
                )
                continue
            # RETRY
            failures += 1
            wait = self.options.retry.backoff(failures, self._rng)
            if failures >= self.options.retry.attempts or now + wait >= deadline:
                raise self._error(
                    verdict, happened=self._gave_up(happened, tries, started), said=said,
                    path=path, request_id=request_id, status=status, sent=sent,
                )  # fmt: skip
            _log.warning(
                "retrying",
                tenant=self.tenant,
                category=stream,
                endpoint=path,
                status=status,
                request_id=request_id,
                attempt=failures,
                wait_s=round(wait, 3),
                detail=self._redact(said or happened, sent),
            )
            await self._clock.sleep(wait)

    def _gave_up(self, happened: str, tries: int, started: float) -> str:
        """``happened``, plus how many tries and how long the call took before it stopped."""
        elapsed = self._clock.monotonic() - started
        plural = "try" if tries == 1 else "tries"
        spent = f"gave up after {tries} {plural} in {elapsed:.1f} s"
        return f"{happened}; {spent}" if happened else spent

    def _describe_transport(self, exc: BaseException, budget: float) -> str:
        """What happened locally when no answer came: never phrased as Mimecast's words."""
        host = urlsplit(self.base_url).hostname or self.base_url
        name = type(exc).__name__
        if (failure := certificate_failure(exc)) is not None:
            reason = failure.verify_message or failure.reason or "not trusted"
            return f"the certificate of {host} failed verification: {reason}"
        if isinstance(exc, httpx.ConnectTimeout):
            return f"connecting to {host} timed out ({name})"
        if isinstance(exc, httpx.ReadTimeout):
            return f"{host} sent nothing for {self.options.timeout.read} s ({name})"
        if isinstance(exc, httpx.TimeoutException):
            return f"a request to {host} timed out ({name})"
        if isinstance(exc, TimeoutError):
            return f"the answer from {host} did not complete within {budget:.1f} s ({name})"
        if isinstance(exc, httpx.ConnectError):
            return f"could not connect to {host} ({name}: {exc})"
        if isinstance(exc, httpx.DecodingError):
            return f"the body from {host} could not be decoded ({name})"
        return f"the connection to {host} failed ({name}: {exc})"

    async def _auth_headers(
        self, path: str, request_id: str, deadline: float, stream: str | None = None
    ) -> dict[str, str]:
        try:
            return await self.auth.headers(
                path,
                request_id,
                lambda form: self._fetch_token(form, deadline=deadline, stream=stream),
            )
        except ValueError as exc:  # the token response had no usable token
            raise _GiveUp(
                Verdict(Outcome.FAIL, UpstreamFormatError, "the token response is unusable"),
                str(exc),
                [],
            ) from None

    async def _send(
        self,
        path: str,
        headers: dict[str, str],
        content: bytes,
        budget: float,
        *,
        method: str = "POST",
        query: str = "",
    ) -> tuple[int, Mapping[str, str], bytes]:
        """POST and read the body within the size cap and ``budget`` seconds for the whole,
        once a slot for a request in flight is free (``client._http``: that wait is not timed).

        Through our own transport (the run's case) the request and response are bytes and a
        dict, not httpx objects, which cost more CPU than the exchange itself at thousands of
        streams (issue 8); with a test transport, through httpx. Through ours, the budget is the
        transport's ``deadline`` (each phase's timer ends by it: one timer a phase, not two)."""
        async with self._slots:
            if self._direct is not None and method == "POST":
                sent = [
                    *self._fixed_headers,
                    *((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
                ]
                status, raw, body = await self._direct.post(
                    *self._origin,
                    self._prefix + path.encode("ascii"),
                    sent,
                    content,
                    self._timeouts,
                    asyncio.get_running_loop().time() + budget,
                )
                answer = {name.decode("latin-1").lower(): v.decode("latin-1") for name, v in raw}
                if answer.get("content-encoding", "identity").lower() != "identity":
                    await body.aclose()
                    raise _GiveUp(
                        _FORMAT_VERDICT,
                        "the answer is compressed (Content-Encoding "
                        f"{answer['content-encoding'][:40]!r}) although none was asked for",
                        [],
                    )
                return (
                    status,
                    answer,
                    await _read_capped(
                        status, answer, aiter(body), body.aclose, self.options.max_body_bytes
                    ),
                )
            async with asyncio.timeout(budget):
                request = self._http.build_request(
                    method,
                    self.base_url + path + query,
                    headers=headers,
                    content=content if method == "POST" else None,
                )
                response = await self._http.send(request, stream=True)
                return (
                    response.status_code,
                    response.headers,
                    await _read_capped(
                        response.status_code,
                        response.headers,
                        response.aiter_bytes(),
                        response.aclose,
                        self.options.max_body_bytes,
                    ),
                )

    # --- decoding ------------------------------------------------------------------------

    @staticmethod
    def _decode_page(
        category: Category, body: bytes, redact: Callable[[str], str] = str
    ) -> tuple[tuple[_PageT, bool], list[_Fail]]:
        """The page, and whether its body is valid UTF-8 (see :class:`Page`).

        A page without ``fail`` entries must have the documented envelope, else it is an
        UpstreamFormatError naming the keys it had (passed through ``redact`` first).
        """
        if b"\n" in body or b"\r" in body:
            # Outside strings these are whitespace; inside strings JSON forbids them raw.
            body = body.replace(b"\r", b" ").replace(b"\n", b" ")
        try:
            page: _PageT = _PAGE_DECODERS[category].decode(body)
        except msgspec.ValidationError as exc:  # JSON, but not the documented shape
            raise _GiveUp(_FORMAT_VERDICT, _describe_decode_error(exc, body), []) from None
        except msgspec.DecodeError as exc:
            lenient = _lenient_page(category, body)
            if lenient is None:
                raise _GiveUp(_FORMAT_VERDICT, _describe_decode_error(exc, body), []) from None
            page = lenient
        except RecursionError:
            # One record nested too deeply for the decoder must not sink its page: split the
            # record list without recursion; the format check dead-letters that record alone.
            split = _split_page(category, body)
            if split is None:
                raise _GiveUp(_FORMAT_VERDICT, "nested too deeply to decode", []) from None
            page = split
        if not page.fail and _shape_problem(category, page):
            raise _GiveUp(_FORMAT_VERDICT, _describe_shape(category, body, redact), [])
        return (page, _is_utf8(body)), page.fail

    @staticmethod
    def _decode_token(body: bytes) -> tuple[Mapping[str, Any], list[_Fail]]:
        try:
            answer: dict[str, Any] = _TOKEN_DECODER.decode(body)
        except RecursionError:
            raise _GiveUp(_FORMAT_VERDICT, "nested too deeply to decode", []) from None
        except msgspec.DecodeError as exc:
            raise _GiveUp(_FORMAT_VERDICT, _describe_decode_error(exc, body), []) from None
        fail: list[_Fail] = []
        if answer.get("fail"):
            try:
                fail = _ERROR_DECODER.decode(body).fail
            except msgspec.DecodeError:
                fail = [
                    _Fail(
                        code="unreadable", message="the token response has a malformed fail array"
                    )
                ]
        return answer, fail

    def _error_detail(self, body: bytes) -> str:
        """Mimecast's own words from an error body, if it has any."""
        try:
            pairs, _ = _failures(_ERROR_DECODER.decode(body).fail)
        except msgspec.DecodeError:
            return ""
        return "; ".join(f"{c}: {m}" for c, m in pairs if c or m)

    # --- errors --------------------------------------------------------------------------

    def _redact(self, text: str, sent: Mapping[str, str] | None = None) -> str:
        """``text`` without any form of a secret this client holds or just sent.

        The configured secrets' redactor is built once (``__init__``); the auth's own secrets
        (the current token) and the credentials of the request ``sent`` (the API 1.0
        signature) change, so theirs is built for each message (a few forms: cheap).
        """
        dynamic = (*self.auth.secrets(), *_sent_secrets(sent or {}))
        # Built here, not taken from the shared cache: every signature is new, and churning
        # the cache would evict the fleet's redactor (rebuilt at ~0.15 s for 9,000 secrets).
        return self._static_redactor(Redactor(dynamic)(text))

    def _unreadable(
        self,
        stop: _GiveUp,
        path: str,
        request_id: str,
        status: int | None,
        sent: Mapping[str, str],
    ) -> ApiError:
        """The error for a call given up on while reading its answer (too large, malformed)."""
        return self._error(
            stop.verdict,
            happened=stop.detail,
            failures=stop.failures,
            path=path,
            request_id=request_id,
            status=status,
            sent=sent,
        )

    def _error(
        self,
        verdict: Verdict,
        *,
        happened: str = "",
        said: str = "",
        failures: Sequence[tuple[str, str]] = (),
        path: str,
        request_id: str,
        status: int | None,
        sent: Mapping[str, str],
    ) -> ApiError:
        """The error for ``verdict``. ``happened`` is what the client saw (a timeout, a body of
        the wrong shape); ``said`` is text from Mimecast's answer, and only that is quoted."""
        error_type = verdict.error or ApiError
        advice = verdict.advice
        if error_type is AuthError:
            advice = f"{verdict.advice}: {self.auth.credential_hint}"
        message = f"{advice}: {happened}" if happened else advice
        if said:
            quoted = self._redact(said, sent)  # before the cut, so no secret is cut in half
            message += f" (Mimecast said: {quoted[:500]})"
        message = self._redact(message, sent)
        if issubclass(error_type, ApiFailure):
            return error_type(
                message,
                failures=[(self._redact(c, sent), self._redact(m, sent)) for c, m in failures],
                retryable=verdict.outcome is Outcome.RETRY,
                tenant=self.tenant,
                endpoint=path,
                request_id=request_id,
                status=status,
            )
        return error_type(
            message, tenant=self.tenant, endpoint=path, request_id=request_id, status=status
        )


def _sent_secrets(sent: Mapping[str, str]) -> list[str]:
    """The credentials in the headers of one request: the Authorization value, its credential
    part (a bearer token, or ``access key:signature``) and the API 1.0 signature alone."""
    value = sent.get("Authorization", "")
    credential = value.partition(" ")[2]
    return [value, credential, credential.rpartition(":")[2]] if credential else []


_OUT_OF_TIME = Verdict(Outcome.RETRY, UnavailableError, "the call ran out of time")


_FORMAT_VERDICT = Verdict(
    Outcome.FAIL, UpstreamFormatError, "Mimecast's response is not the JSON the API documents"
)


async def _read_capped(
    status: int,
    headers: Mapping[str, str],
    chunks: AsyncIterator[bytes],
    close: Callable[[], Awaitable[None]],
    cap: int,
) -> bytes:
    """The body, at most ``cap`` bytes of a page (over that: UpstreamFormatError) and at most
    ``_ERROR_BODY_CAP`` of anything else (the rest is not read: only its message matters);
    the body is closed however this ends."""
    try:
        limit = cap if status == 200 else _ERROR_BODY_CAP
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit and status == 200:
            raise _too_large(limit)
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                if status != 200:
                    break  # an error body is only read for its message
                raise _too_large(limit)
            parts.append(chunk)
        return b"".join(parts)
    finally:
        await close()


def _too_large(cap: int) -> _GiveUp:
    mib = 1024 * 1024
    size = f"{cap // mib} MiB" if cap % mib == 0 else f"{cap} bytes"
    return _GiveUp(
        Verdict(Outcome.FAIL, UpstreamFormatError, "Mimecast's response is larger than the cap"),
        f"one response may hold at most {size} (a safety limit of the connector, not a "
        "setting); lower page_size in the configuration so that each page is smaller, and "
        "if pages stay this large, report it to the connector's maintainers",
        [],
    )


def _lenient_page(category: Category, body: bytes) -> _PageT | None:
    """A page that msgspec refuses but the JSON grammar allows, record by record; else None.

    One record with a lone UTF-16 surrogate escape (``"\\ud800"``, which a Java JSON writer
    can produce from a broken string) or a raw control character in a string makes msgspec
    refuse the whole body. Here the standard
    library parses it instead and every record is written back on its own: records that can
    be are re-encoded as UTF-8 JSON (equal in meaning to what was sent, not byte for byte),
    and the one that cannot keeps its escape, so the format check dead-letters it alone.
    """
    try:
        # strict=False also lets a raw control character inside a string through (JSON wants
        # it escaped); the record is then written back escaped.
        document = json.loads(body, strict=False)
    except (ValueError, RecursionError):
        return None
    page_type, data_type = _PAGE_TYPES[category]
    if not isinstance(document, dict):
        return None
    items = document.get("data", [])
    key = category.list_key
    if not isinstance(items, list) or not all(
        isinstance(item, dict) and isinstance(item.get(key, []), list) for item in items
    ):
        return None  # not the documented shape either: a format error, as msgspec said
    try:
        records: list[msgspec.Raw] = []
        for item in items:
            for record in item.get(key, []):
                try:
                    records.append(msgspec.Raw(_ENCODER.encode(record)))
                except UnicodeEncodeError:
                    records.append(msgspec.Raw(json.dumps(record).encode("ascii")))
        data: Any = UNSET
        if "data" in document:
            # An item without the log list stays without it, for the shape check to see.
            whole = all(key in item for item in items)
            data = [data_type(records)] if whole else [data_type()]
        return page_type(
            meta=msgspec.convert(document["meta"] or {}, _Meta) if "meta" in document else UNSET,
            data=data,
            fail=msgspec.convert(document.get("fail") or [], list[_Fail]),
        )
    except (msgspec.ValidationError, AttributeError, TypeError):
        return None


_OPEN, _CLOSE, _QUOTE, _BACKSLASH, _COMMA, _COLON = b"[{", b"]}", 34, 92, 44, 58


def _split_page(category: Category, body: bytes) -> _PageT | None:
    """The page, its record list split by a non-recursive scan; None if it is not a page.

    Walks the body once tracking nesting depth and strings. The records are the elements of
    each ``data[i].<list key>`` array (depth 4); everything else of the page is shallow, so it
    is decoded normally once the record lists are emptied out of the body.
    """
    key = f'"{category.list_key}"'.encode()
    records: list[msgspec.Raw] = []
    spans: list[tuple[int, int]] = []  # record lists to cut out of the envelope
    depth = 0
    in_string = escaped = False
    string_start = -1
    last_string = b""
    in_list = False
    element_start = -1
    list_start = -1
    for index, byte in enumerate(body):
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
                last_string = body[string_start : index + 1]
            continue
        if byte == _QUOTE:
            in_string, string_start = True, index
            if in_list and depth == 4 and element_start < 0:
                element_start = index
        elif byte in _OPEN:
            if depth == 3 and byte == 91 and last_string == key:  # "[" of the record list
                in_list, list_start, element_start = True, index, -1
            elif in_list and depth == 4 and element_start < 0:
                element_start = index
            depth += 1
        elif byte in _CLOSE:
            depth -= 1
            if depth < 0:
                return None
            if in_list and depth == 3:  # the record list closes
                if element_start >= 0:
                    records.append(msgspec.Raw(body[element_start:index].rstrip()))
                spans.append((list_start + 1, index))
                in_list, element_start = False, -1
        elif byte == _COMMA and in_list and depth == 4:
            if element_start >= 0:
                records.append(msgspec.Raw(body[element_start:index].rstrip()))
            element_start = -1
        elif byte == _COLON:
            continue
        elif in_list and depth == 4 and element_start < 0 and byte not in b" \t\r\n":
            element_start = index
        if byte not in b" \t\r\n" and byte != _QUOTE:
            last_string = last_string if byte == _COLON else b""
    if depth != 0 or in_string:
        return None
    envelope = bytearray(body)
    for start, end in reversed(spans):
        del envelope[start:end]
    page_type, data_type = _PAGE_TYPES[category]
    try:
        shell = _PAGE_DECODERS[category].decode(bytes(envelope))
    except (msgspec.DecodeError, RecursionError):
        return None
    data: Any = shell.data
    if isinstance(data, list) and not any(
        getattr(item, category.list_key) is UNSET for item in data
    ):
        data = [data_type(records)]
    return page_type(meta=shell.meta, data=data, fail=shell.fail)


def _is_utf8(body: bytes) -> bool:
    """Whether ``body`` is UTF-8; ASCII bodies (the common case) are checked at memory speed."""
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _describe_decode_error(exc: msgspec.DecodeError, body: bytes) -> str:
    kind = "empty body" if not body.strip() else str(exc)
    return f"{kind} ({len(body)} bytes)"
