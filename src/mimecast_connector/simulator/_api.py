"""The simulated Mimecast API: one request in, one :class:`Outcome` out, no sockets.

Every request walks the same pipeline, in this order:

1. route: ``/oauth/token``, one of the log paths (three TTP logs, rejections), one of the SIEM
   paths, or 404; a method the path does not take is 405 (the log paths are POST only, the 2.0
   SIEM batch listing GET only);
2. authenticate: API 2.0 bearer token or API 1.0 HMAC signature, else 401 (§2, §3); the 2.0
   SIEM listing takes a bearer token only;
3. count the request for the tenant (late records; TTP log requests only) and spend one
   rate-limit token, else 429 (§8.3); ``/oauth/token`` is not rate-limited;
4. take the next matching injected fault, which may answer instead (see ``faults``); SIEM
   requests take faults from their own lane (``_injection.py``);
5. check the tenant's role for the category (or its SIEM role), else 403 (§3.2); parse the
   body, else 400;
6. run the function: filter, order and page the records (§4 to §7; rejections as in
   ``mta-rejections.md`` §2.3: ``start``/``end``, every mailbox only with ``admin: true``, newest
   first, no ``oldestFirst``); validation problems are a 200 with a ``fail`` entry (§1, §8.1).
   The SIEM functions live in ``_siemapi.py`` (``mta-rejections.md`` §2.1, §2.2).

A SIEM file download (a presigned link, ``/siem-files/...``) carries no credentials: its link is
checked instead of steps 2 to 5, and it takes faults from the SIEM lane, not rate-limited.

Section numbers refer to ``shared/docs/mimecast-api.md``. The HTTP server (``_server.py``) turns
the outcome into bytes on the wire; this module never sleeps, blocks or touches a socket.
"""

from __future__ import annotations

import hmac
import json
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from mimecast_connector._categories import Category
from mimecast_connector.simulator import faults
from mimecast_connector.simulator._auth import (
    AuthFailure,
    Scheme,
    TokenRegistry,
    TokenState,
    V1Credentials,
    verify_signature,
)
from mimecast_connector.simulator._generate import RecordFactory, malformed
from mimecast_connector.simulator._injection import FaultQueue, SiemCall
from mimecast_connector.simulator._paging import PageState, PageTokens
from mimecast_connector.simulator._siemapi import BATCH_PATH, FILES_PREFIX, V1_PATH, SiemEndpoints
from mimecast_connector.simulator._store import Query
from mimecast_connector.simulator._tenant import SimTenant
from mimecast_connector.simulator._times import parse_time
from mimecast_connector.simulator._wire import Outcome, Problem, Request
from mimecast_connector.simulator._wire import as_bytes as _bytes
from mimecast_connector.simulator._wire import encode as _encode
from mimecast_connector.simulator._wire import error as _error
from mimecast_connector.simulator._wire import fail_page as _fail_page
from mimecast_connector.simulator._wire import flat as _flat
from mimecast_connector.simulator._wire import method_not_allowed as _method_not_allowed
from mimecast_connector.simulator._wire import phrase as _phrase
from mimecast_connector.simulator._wire import v1 as _v1

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path, not a password
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500  # the practical ceiling every known client uses (§4.1)
_UNSUPPORTED_FILTERS = frozenset({"searchField", "query", "identifiers", "actions"})
_HTML_ERROR = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>Bad Gateway</h1><p>The upstream service returned an invalid response.</p>"
    b"</body></html>\n"
)


class Directory:
    """The tenants a simulator serves, indexed by every credential that names one."""

    def __init__(self) -> None:
        self.tenants: dict[str, SimTenant] = {}
        self.by_client_id: dict[str, SimTenant] = {}
        self.by_access_key: dict[str, V1Credentials] = {}

    def add(self, tenant: SimTenant) -> None:
        """Register ``tenant``; names, client ids and access keys must be unique."""
        if tenant.name in self.tenants:
            raise ValueError(f"a tenant named {tenant.name!r} already exists")
        if tenant.client_id in self.by_client_id:
            raise ValueError(f"client_id {tenant.client_id!r} is already used by another tenant")
        if tenant.access_key in self.by_access_key:
            raise ValueError("access_key is already used by another tenant")
        self.tenants[tenant.name] = tenant
        self.by_client_id[tenant.client_id] = tenant
        self.by_access_key[tenant.access_key] = V1Credentials(
            tenant.name, tenant.app_id, tenant.app_key, tenant.secret_key
        )


class Api:
    """The request pipeline described in the module docstring. Thread-safe."""

    def __init__(
        self,
        *,
        directory: Directory,
        tokens: TokenRegistry,
        fault_queue: FaultQueue,
        wall_clock: Callable[[], float],
        siem_link_lifetime: float = 900.0,
    ) -> None:
        self._directory = directory
        self._tokens = tokens
        self._faults = fault_queue
        self._wall_clock = wall_clock
        self._siem = SiemEndpoints(wall_clock=wall_clock, link_lifetime=siem_link_lifetime)
        self._pages = PageTokens()
        self._malformed = RecordFactory("mimecast-sim/malformed", "example.com")
        self._malformed_lock = threading.Lock()

    def handle(self, request: Request) -> Outcome:
        """Answer one request."""
        scheme = Scheme.of(request.headers)
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                return _method_not_allowed(scheme)
            return self._token(request)
        siem = self._siem_route(request, scheme)
        if siem is not None:
            return siem
        category = Category.from_path(request.path)
        if category is None:
            return _error(scheme, 404, "err_not_found", f"No such endpoint: {request.path}")
        outcome = (
            self._logs(request, category, scheme)
            if request.method == "POST"
            else _method_not_allowed(scheme)
        )
        outcome.category = category
        return outcome

    # -- the SIEM endpoints (mta-rejections.md §2.1, §2.2) -------------------------------------

    def _siem_route(self, request: Request, scheme: Scheme) -> Outcome | None:
        """The answer of a SIEM path, or None if ``request`` is for none of them."""
        siem = self._siem
        if request.path == BATCH_PATH:
            if request.method != "GET":
                return _method_not_allowed(Scheme.V2, "GET")
            return self._pipeline(
                request,
                Scheme.V2,  # API 2.0 only: HMAC headers are not a bearer token
                lambda tenant, fault: siem.listing(request, tenant, fault),
                siem=SiemCall.LISTING,
            )
        if request.path == V1_PATH:
            if request.method != "POST":
                return _method_not_allowed(scheme)
            return self._pipeline(
                request,
                scheme,
                lambda tenant, fault: siem.get_siem_logs(request, tenant, scheme, fault),
                siem=SiemCall.GET_SIEM_LOGS,
            )
        if request.path.startswith(FILES_PREFIX):
            if request.method not in ("GET", "HEAD"):
                return _method_not_allowed(Scheme.V2, "GET")
            return self._download(request)
        return None

    def _download(self, request: Request) -> Outcome:
        """A presigned file link: no credentials, no rate limit; the link names the tenant."""
        found = self._siem.resolve(request, self._directory.tenants)
        if isinstance(found, Outcome):
            return found
        tenant, file = found
        fault = self._faults.take(
            tenant=tenant.name, category=None, scheme=Scheme.V2, siem=SiemCall.DOWNLOAD
        )
        outcome = self._transport_fault(fault, Scheme.V2, tenant) or _finish(
            self._siem.download(tenant, file, fault), fault
        )
        outcome.tenant = tenant.name
        return outcome

    # -- /oauth/token (§3.1) ------------------------------------------------------------------

    def _token(self, request: Request) -> Outcome:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items() if v}
        tenant = self._directory.by_client_id.get(form.get("client_id", ""))
        name = tenant.name if tenant else None
        fault = self._faults.take(tenant=name, category=None, scheme=Scheme.V2, token_endpoint=True)
        outcome = (
            _echo(fault, Scheme.V2, request)
            or self._transport_fault(fault, Scheme.V2, tenant)
            or self._issue(form, tenant)
        )
        outcome.tenant = name
        return _finish(outcome, fault)

    def _issue(self, form: Mapping[str, str], tenant: SimTenant | None) -> Outcome:
        missing = [f for f in ("client_id", "client_secret", "grant_type") if f not in form]
        if missing:
            return _flat(400, "invalid_request", f"Missing form field(s): {', '.join(missing)}")
        if form["grant_type"] != "client_credentials":
            return _flat(400, "unsupported_grant_type", "grant_type must be client_credentials")
        if tenant is None or not hmac.compare_digest(form["client_secret"], tenant.client_secret):
            return _flat(401, "InvalidClientIdentifier", "Client credentials are invalid")
        body = {
            "access_token": self._tokens.issue(tenant.name),
            "token_type": "Bearer",
            "expires_in": int(self._tokens.lifetime),
            "scope": "",
        }
        return Outcome(200, _encode(body), headers={"Cache-Control": "no-store"})

    # -- the TTP log endpoints ----------------------------------------------------------------

    def _logs(self, request: Request, category: Category, scheme: Scheme) -> Outcome:
        return self._pipeline(
            request,
            scheme,
            lambda tenant, fault: self._serve(request, tenant, category, scheme, fault),
            category=category,
        )

    def _pipeline(
        self,
        request: Request,
        scheme: Scheme,
        serve: Callable[[SimTenant, faults.Fault | None], Outcome],
        *,
        category: Category | None = None,
        siem: SiemCall | None = None,
    ) -> Outcome:
        """Steps 2 to 4 of the module docstring, then ``serve`` (steps 5 and 6)."""
        caller = self._authenticate(request, scheme)
        if isinstance(caller, Outcome):
            return caller
        tenant, bearer = caller
        if siem is None:
            tenant.note_request()  # late TTP records wait for TTP log requests only
        bucket = tenant.bucket
        allowed, limit_headers = bucket.take() if bucket else (True, {})
        if allowed:
            fault = self._faults.take(
                tenant=tenant.name, category=category, scheme=scheme, siem=siem
            )
            outcome = (
                _echo(fault, scheme, request)
                or self._api_fault(fault, bearer, request)
                or self._transport_fault(fault, scheme, tenant)
                or _finish(serve(tenant, fault), fault)
            )
        else:  # the function is not run (§8.3)
            outcome = _error(scheme, 429, "err_rate_limit_exceeded", "Rate limit exceeded", True)
        outcome.tenant = tenant.name
        for name, value in limit_headers.items():
            outcome.headers.setdefault(name, value)  # a RateLimited fault's own headers win
        return outcome

    def _authenticate(
        self, request: Request, scheme: Scheme
    ) -> tuple[SimTenant, str | None] | Outcome:
        """The calling tenant and its bearer token (None on 1.0), or the 401 to answer."""
        tenants = self._directory.tenants
        if scheme is Scheme.V1:
            result = verify_signature(
                request.headers, request.path, self._directory.by_access_key, self._wall_clock()
            )
            if isinstance(result, AuthFailure):
                outcome = _v1(401, result.code, result.message)
                outcome.tenant = result.tenant
                return outcome
            return tenants[result.tenant], None
        kind, _, token = request.headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not token:
            return _flat(401, "unauthorized", "Authorization: Bearer <access_token> is required")
        state = self._tokens.state(token)
        owner = self._tokens.owner(token)
        if state is TokenState.VALID and owner is not None:
            return tenants[owner], token
        outcome = (
            _flat(401, "invalid_token", "The access token is not valid")
            if state is TokenState.UNKNOWN
            else _flat(401, "token_expired", "The access token has expired")
        )
        outcome.tenant = owner
        return outcome

    def _serve(
        self,
        request: Request,
        tenant: SimTenant,
        category: Category,
        scheme: Scheme,
        fault: faults.Fault | None,
    ) -> Outcome:
        if category not in tenant.roles:
            return _error(
                scheme, 403, "app_forbidden", "Forbidden to perform the requested operation"
            )
        if not request.is_json:
            return _error(scheme, 400, "err_request_not_json", "The request body is not JSON")
        return self._page(request.json, tenant, category, fault)

    def _page(
        self, body: Any, tenant: SimTenant, category: Category, fault: faults.Fault | None
    ) -> Outcome:
        """One page of logs, or a 200 with a ``fail`` entry (§4, §5.2, §6.2, §7.2)."""
        try:
            return self._select_page(body, tenant, category, fault)
        except Problem as problem:
            return _fail_page(problem)

    def _select_page(
        self, body: Any, tenant: SimTenant, category: Category, fault: faults.Fault | None
    ) -> Outcome:
        item, page_size, raw_token = _parse_envelope(body)
        store = tenant.store(category)
        if raw_token is not None:
            state = self._pages.read(raw_token)
            if state is None or (state.tenant, state.category) != (tenant.name, category.value):
                raise Problem("err_validation_invalid_page_token", "Invalid page token", item)
            query, snapshot, offset, hop = state.query, state.snapshot, state.offset, state.hop
        else:
            query = _parse_query(item, category, self._wall_clock())
            snapshot, offset, hop = store.snapshot, 0, 0
        entries = store.select(query, snapshot)

        def token_at(position: int, hops: int = 0) -> str:
            return self._pages.issue(
                PageState(tenant.name, category.value, query, snapshot, position, hops)
            )

        end = offset + page_size
        records = [e.encoded for e in entries[offset:end]]
        next_token = token_at(end) if end < len(entries) else None
        if isinstance(fault, faults.EmptyPageWithNext):
            # A fresh token (never one already sent) that serves the page this one skipped.
            records, next_token = [], token_at(offset, hop + 1)
        elif isinstance(fault, faults.RepeatNextToken):
            next_token = raw_token or token_at(offset)
        elif isinstance(fault, faults.Malformed):
            records += self._malformed_records(category, query, fault.count)
        pagination: dict[str, Any] = {"pageSize": page_size, "totalCount": len(entries)}
        if next_token is not None:
            pagination["next"] = next_token
        if offset > 0:
            pagination["previous"] = token_at(max(0, offset - page_size))
        result_count = (
            b',"resultCount":%d' % len(entries) if category is Category.IMPERSONATION else b""
        )
        payload = b"".join(
            (
                b'{"meta":',
                _encode({"status": 200, "pagination": pagination}),
                b',"data":[{"',
                category.list_key.encode(),
                b'":[',
                b",".join(records),
                b"]",
                result_count,
                b'}],"fail":[]}',
            )
        )
        return Outcome(200, payload)

    def _malformed_records(self, category: Category, query: Query, count: int) -> list[bytes]:
        moment = max(math.ceil(query.start), min(math.floor(query.end), int(self._wall_clock())))
        with self._malformed_lock:
            _, template = self._malformed.make(category, 1, moment, moment)[0]
        return [_encode(malformed(template, category, i)) for i in range(count)]

    # -- faults -------------------------------------------------------------------------------

    def _api_fault(
        self, fault: faults.Fault | None, bearer: str | None, request: Request
    ) -> Outcome | None:
        """The answer of a fault that only exists on the log endpoints, if ``fault`` is one."""
        if isinstance(fault, faults.ExpireToken) and bearer is not None:
            self._tokens.revoke(bearer)
            return _flat(401, "token_expired", "The access token has expired")
        if isinstance(fault, faults.BindingExpired):
            return _v1(418, "err_xdk_binding_expired", "AccessKey has expired")
        if isinstance(fault, faults.FailResponse):
            problem = Problem(fault.code, fault.message, _first_item(request.json))
            return _fail_page(problem, retryable=fault.retryable)
        return None

    def _transport_fault(
        self, fault: faults.Fault | None, scheme: Scheme, tenant: SimTenant | None
    ) -> Outcome | None:
        """The answer of a fault that may hit any endpoint, if ``fault`` is one that answers."""
        if isinstance(fault, faults.HttpStatus):
            status = fault.status
            retryable = status >= 500 or status == 429
            outcome = (
                _error(scheme, status, f"err_http_{status}", _phrase(status), retryable)
                if fault.body is None
                else Outcome(status, _bytes(fault.body))
            )
            outcome.headers.update(fault.headers or {})
            return outcome
        if isinstance(fault, faults.RateLimited):
            outcome = _error(scheme, 429, "err_rate_limit_exceeded", "Rate limit exceeded", True)
            reset = fault.reset_ms
            if fault.absolute:
                reset += int(self._wall_clock() * 1000)
            bucket = tenant.bucket if tenant else None
            outcome.headers.update(
                {
                    "X-RateLimit-Limit": str(bucket.capacity if bucket else 100),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(reset),
                }
            )
            return outcome
        if isinstance(fault, faults.NotJson):
            return Outcome(200, _HTML_ERROR, content_type="text/html; charset=utf-8")
        if isinstance(fault, faults.Disconnect):
            return Outcome(0, disconnect=True)
        return None


def _echo(fault: faults.Fault | None, scheme: Scheme, request: Request) -> Outcome | None:
    """The answer of an :class:`~faults.Echo` fault: the request quoted back (see there)."""
    if not isinstance(fault, faults.Echo):
        return None
    text = request.body.decode("utf-8", "replace")
    headers = dict(request.headers)
    quote = (
        f"you sent {text} with headers {json.dumps(headers)} "
        f"{json.dumps(headers, ensure_ascii=False)} and body {json.dumps(text)} "
        f"{json.dumps(text, ensure_ascii=False)}"
    )
    if fault.status == 200:
        return _fail_page(Problem("echo", quote, _first_item(request.json)))
    return _error(scheme, fault.status, "echo", quote)


def _finish(outcome: Outcome, fault: faults.Fault | None) -> Outcome:
    """Apply the faults that change how a normal answer is delivered: delay and truncation."""
    if isinstance(fault, faults.Slow):
        outcome.delay = fault.seconds
    elif isinstance(fault, faults.Truncate) and outcome.stream is None:
        outcome.body = outcome.body[: int(len(outcome.body) * fault.keep_fraction)]
    return outcome


def _parse_envelope(body: Any) -> tuple[dict[str, Any], int, str | None]:
    """The filter item, page size and page token of a request body (§4.1)."""
    if not isinstance(body, dict):
        raise Problem("err_validation_invalid_request", "The body must be a JSON object")
    data = body.get("data", [])
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise Problem("err_validation_invalid_request", "data must be an array of objects")
    item: dict[str, Any] = data[0] if data else {}
    if len(data) > 1:
        raise Problem("err_validation_too_many_items", "The simulator answers one data item", item)
    meta = body.get("meta")
    pagination = meta.get("pagination") if isinstance(meta, dict) else None
    pagination = pagination if isinstance(pagination, dict) else {}
    size = pagination.get("pageSize", DEFAULT_PAGE_SIZE)
    if isinstance(size, bool) or not isinstance(size, int):
        raise Problem("err_validation_invalid_page_size", "pageSize must be a number", item)
    raw_token = pagination.get("pageToken")
    if raw_token is not None and not isinstance(raw_token, str):
        raise Problem("err_validation_invalid_page_token", "Invalid page token", item)
    return item, min(MAX_PAGE_SIZE, max(1, size)), raw_token or None


def _parse_query(item: Mapping[str, Any], category: Category, now: float) -> Query:
    """The first page's filters (§4.1, §5.1, §6.1, §7.1) as a :class:`Query`."""
    first, last = category.window_keys
    start = _time_filter(item, first, now - now % 86_400)  # default: start of the UTC day
    end = _time_filter(item, last, now)
    if category is Category.REJECTION:
        # Without admin: true, only the API user's own mailbox, which receives nothing here.
        # The log has no documented order; it is served newest first.
        return Query(start=start, end=end, own_mailbox=_bool_filter(item, "admin") is not True)
    if category is Category.IMPERSONATION and (unsupported := _UNSUPPORTED_FILTERS & item.keys()):
        raise Problem(
            "err_simulator_unsupported_filter",
            f"The simulator does not implement {', '.join(sorted(unsupported))}; leave them out",
            item,
        )
    if category is Category.IMPERSONATION:
        route = verdict = None
        tagged = _bool_filter(item, "taggedMalicious")
    else:
        route = _choice_filter(item, "route")
        verdict = _choice_filter(item, _VERDICT_FILTERS[category])
        tagged = None
    return Query(
        start=start,
        end=end,
        oldest_first=_bool_filter(item, "oldestFirst") is True,
        route=route,
        verdict=verdict,
        tagged_malicious=tagged,
    )


_VERDICT_FILTERS = {Category.ATTACHMENT: "result", Category.URL: "scanResult"}


def _time_filter(item: Mapping[str, Any], name: str, default: float) -> float:
    value = item.get(name)
    parsed = default if value is None else parse_time(value)
    if parsed is None:
        raise Problem("err_validation_invalid_date", f"{name} is not a valid date", item)
    return parsed


def _bool_filter(item: Mapping[str, Any], name: str) -> bool | None:
    value = item.get(name)
    if value is None or isinstance(value, bool):
        return value
    raise Problem("err_validation_invalid_value", f"{name} must be a boolean", item)


def _choice_filter(item: Mapping[str, Any], name: str) -> str | None:
    """A lower-cased enum filter; ``all`` or absent means no filter."""
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Problem("err_validation_invalid_value", f"{name} must be a string", item)
    return None if value.lower() == "all" else value.lower()


def _first_item(body: Any) -> dict[str, Any]:
    data = body.get("data") if isinstance(body, dict) else None
    first = data[0] if isinstance(data, list) and data else None
    return first if isinstance(first, dict) else {}
