"""A fake Microsoft Entra ID token endpoint and a fake Azure Monitor Logs Ingestion endpoint, on
one loopback server, for the ``sentinel`` sink's tests.

Written from Microsoft's public documentation ("Logs Ingestion API in Azure Monitor", the
service limits of the Logs Ingestion API, and the OAuth 2.0 client credentials flow of the
Microsoft identity platform), not from a capture of the real services.

The token endpoint, ``POST /{tenant}/oauth2/v2.0/token``, checks a form-encoded body with each
of ``client_id``, ``client_secret``, ``scope`` and ``grant_type`` exactly once, and refuses as
Entra ID does, with an OAuth ``error``, an ``error_description`` and ``error_codes``: an unknown
tenant (400, AADSTS90002), a grant other than ``client_credentials`` (400, AADSTS70003), an
unknown client (400, AADSTS700016), a wrong secret (401 ``invalid_client``, AADSTS7000215), a
scope other than ``https://monitor.azure.com//.default`` (400, AADSTS70011). It issues opaque
tokens that expire ``expires_in`` seconds later on the test's clock.

The ingestion endpoint, ``POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=...``,
checks in this order: a bearer token it issued and that has not expired or been revoked
(401), ``api-version=2023-01-01`` (400), the DCR immutable id (404) and the stream (400), the
role assignment (403 when :attr:`AzureReceiver.forbidden`), ``Content-Type: application/json``
(415), the body at most ``limit`` bytes as sent and, when ``Content-Encoding: gzip``, once
inflated (413; inflating stops past the limit), and a JSON array of objects (400). It answers
204 with no body and records what it took. Answers queued with :meth:`Receiver.script` are given
to ingestion requests before any check (:data:`THROUGH` lets one request through to them);
:meth:`AzureReceiver.script_token` does the same for the token endpoint.

It does not check a token's signature, audience or claims (its tokens are opaque strings), the
DCR's stream declaration or transformation, column types, the 64 KB field limit, the per-minute
limits of a DCR, or TLS.
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import FakeClock
from tests.sinks.receiver import Answer, Receiver, Request

TENANT = "8c3a1f52-4d0e-4b6a-9f27-0d5e1c7b9a64"
CLIENT_ID = "3f6b2d80-9a1c-4e57-b2d4-6a0f8e1c5d93"
DCR = "dcr-4e1b7c9a2d3f4a5b8c6d0e1f2a3b4c5d"
STREAM = "Custom-MimecastAlerts_CL"
SCOPE = "https://monitor.azure.com//.default"
API_VERSION = "2023-01-01"
LIMIT = 1_000_000

_FORM_KEYS = ("client_id", "client_secret", "scope", "grant_type")

#: A scripted "answer" that lets the request through to the endpoint's own checks.
THROUGH = Answer(status=0)


def entra_error(status: int, error: str, code: int, text: str) -> Answer:
    """An Entra ID token refusal, shaped as the identity platform's error answer."""
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {text}",
        "error_codes": [code],
        "timestamp": "2025-03-04 09:12:45Z",
        "trace_id": "00000000-0000-0000-0000-000000000000",
        "correlation_id": "00000000-0000-0000-0000-000000000000",
    }
    return Answer(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


def monitor_error(status: int, code: str, message: str) -> Answer:
    """A Logs Ingestion refusal: ``{"error": {"code", "message"}}``."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return Answer(status, {"Content-Type": "application/json"}, body)


class AzureReceiver(Receiver):
    """Both fake endpoints on one loopback port; :attr:`base` is the authority and the DCE."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        client_secret: str,
        tenant: str = TENANT,
        client_id: str = CLIENT_ID,
        dcr: str = DCR,
        stream: str = STREAM,
        expires_in: int = 3599,
        limit: int = LIMIT,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.client_secret = client_secret
        self.tenant, self.client_id, self.dcr, self.stream = tenant, client_id, dcr, stream
        self.expires_in = expires_in
        self.limit = limit
        #: The role assignment is missing: every ingestion request gets 403.
        self.forbidden = False
        #: Issued tokens and when each expires (the clock's ``time()``).
        self.tokens: dict[str, float] = {}
        #: Each token request's form, as received.
        self.token_requests: list[dict[str, str]] = []
        #: Each ingestion request, as received, and the status it was answered (0: hung up).
        self.uploads: list[Request] = []
        self.statuses: list[int] = []
        #: The bodies answered 204, inflated, and their records.
        self.accepted: list[bytes] = []
        self.records: list[Any] = []
        self._token_answers: deque[Answer] = deque()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script_token(self, *answers: Answer | int) -> None:
        """Queue answers for the next token requests; a bare int is that status, no body."""
        with self._lock:
            self._token_answers.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def revoke(self) -> None:
        """Every token issued so far is refused from now on (a key rollover, a revoked grant)."""
        with self._lock:
            self.tokens.clear()

    def bearers(self) -> list[str]:
        """The token each ingestion request carried, in order."""
        return [r.headers.get("authorization", "").removeprefix("Bearer ") for r in self.uploads]

    def _record(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            path = urlsplit(request.path).path
            if path.endswith("/oauth2/v2.0/token"):
                return self._token(request, path)
            if path.startswith("/dataCollectionRules/"):
                self.uploads.append(request)
                answer = self._answers.popleft() if self._answers else THROUGH
                if answer is THROUGH:
                    answer = self._ingest(request)
                self.statuses.append(0 if answer.close else answer.status)
                return answer
            return Answer(404)

    def _token(self, request: Request, path: str) -> Answer:
        fields = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        form = {key: values[0] for key, values in fields.items()}
        self.token_requests.append(form)
        if self._token_answers:
            return self._token_answers.popleft()
        if request.method != "POST":
            return Answer(405)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded" or any(
            len(fields.get(key, [])) != 1 for key in _FORM_KEYS
        ):
            return entra_error(400, "invalid_request", 900144, "The request body must contain")
        if path != f"/{self.tenant}/oauth2/v2.0/token":
            return entra_error(400, "invalid_request", 90002, "Tenant not found.")
        if form["grant_type"] != "client_credentials":
            return entra_error(400, "unsupported_grant_type", 70003, "Unsupported grant type.")
        if form["client_id"] != self.client_id:
            return entra_error(400, "unauthorized_client", 700016, "Application not found.")
        if form["client_secret"] != self.client_secret:
            return entra_error(401, "invalid_client", 7000215, "Invalid client secret provided.")
        if form["scope"] != SCOPE:
            return entra_error(400, "invalid_scope", 70011, "The provided scope is not valid.")
        token = f"eyJ0eXAiOiJKV1QifQ.fake-{len(self.tokens)}.{secrets.token_urlsafe(24)}"
        self.tokens[token] = self.clock.time() + self.expires_in
        body = {
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "ext_expires_in": self.expires_in,
            "access_token": token,
        }
        return Answer(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

    def _ingest(self, request: Request) -> Answer:
        if request.method != "POST":
            return Answer(405)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires = self.tokens.get(token) if scheme == "Bearer" else None
        if expires is None:
            return monitor_error(401, "InvalidToken", "The token is missing or not valid.")
        if self.clock.time() >= expires:
            return monitor_error(401, "TokenExpired", "The token has expired.")
        url = urlsplit(request.path)
        if parse_qs(url.query).get("api-version") != [API_VERSION]:
            return monitor_error(400, "InvalidApiVersion", "The api-version is not supported.")
        parts = url.path.split("/")
        if len(parts) != 5 or parts[3] != "streams" or parts[2] != self.dcr:
            return monitor_error(404, "NotFound", "Data collection rule not found.")
        if parts[4] != self.stream:
            return monitor_error(400, "InvalidStream", "The stream is not in the rule.")
        if self.forbidden:
            return monitor_error(403, "OperationFailed", "The token has no access to the rule.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/json":
            return monitor_error(415, "UnsupportedMediaType", "Use application/json.")
        if len(request.body) > self.limit:
            return monitor_error(413, "ContentLengthLimitExceeded", "The body is over 1 MB.")
        data = request.body
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding == "gzip":
            inflater = zlib.decompressobj(wbits=31)
            try:
                data = inflater.decompress(request.body, self.limit + 1)
            except zlib.error:
                return monitor_error(400, "InvalidContent", "The gzip body is corrupt.")
            if len(data) > self.limit:
                return monitor_error(413, "ContentLengthLimitExceeded", "Over 1 MB inflated.")
            if not inflater.eof:
                return monitor_error(400, "InvalidContent", "The gzip body is truncated.")
        elif encoding not in ("", "identity"):
            return monitor_error(415, "UnsupportedMediaType", "Use gzip or no encoding.")
        try:
            records = json.loads(data)
        except ValueError:
            return monitor_error(400, "InvalidPayload", "The body is not JSON.")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            return monitor_error(400, "InvalidPayload", "The body is not an array of objects.")
        self.accepted.append(data)
        self.records.extend(records)
        return Answer(204)
