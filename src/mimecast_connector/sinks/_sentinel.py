"""The ``sentinel`` sink: alerts to Microsoft Sentinel through the Azure Monitor Logs Ingestion API.

Each batch goes as JSON arrays of records (the alert in the sink's format: ``native``,
``ocsf`` or ``ecs``; the DCR's transformation maps the record onto the table), ``POST``ed to
``{dce}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01``, gzip
compressed unless ``gzip = false``. The bearer token comes from Microsoft Entra ID's OAuth 2.0
client credentials flow (``{authority}/{tenant_id}/oauth2/v2.0/token``, scope
``https://monitor.azure.com//.default``), is kept until five minutes before it expires (half
its life if that is shorter), and is fetched again once if the endpoint answers 401.

Acknowledged: the endpoint answered 204 for every body of the batch. At least once: a batch
whose 204 was lost, or whose later body failed, is sent again whole, so repeats are dropped in
KQL by the alert's stable id (``id``, ``finding_info.uid``, ``event.id``).

Answers, beyond :class:`~mimecast_connector.sinks.HttpSender`'s rule (429 and 503 wait out
``Retry-After``; 408, 5xx and broken connections are retried with backoff):

* 413: the body is halved and each half sent; one record alone over the limit is a refusal
  (:class:`~mimecast_connector.SinkRejectedError`: not acknowledged, nothing dropped). A
  record over the API's 1 MB alone is sent shortened to it (``sinks._limit``) instead;
* 401 after a fresh token, 403, 400, 404, and any 2xx but 204: refusals that name what to check.

Bodies are cut at ``max_body_bytes`` of JSON before compression (the API takes at most 1 MB a
call, compressed or not). No answer text reaches an error: only statuses, and from Entra ID
its OAuth error code and ``AADSTS`` numbers.
"""

from __future__ import annotations

import gzip as gzip_module
import json
import random
import re
import uuid
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import Field, SecretStr, StrictBool, field_validator

from mimecast_connector._clock import Clock
from mimecast_connector._errors import SinkRejectedError
from mimecast_connector._fields import header_value_problem, http_url, plain, secret_str
from mimecast_connector.alerts import ARRAY_ENCODERS, Alert, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._http import Answer, HttpSender, fit, url_name
from mimecast_connector.sinks._limit import within
from mimecast_connector.sinks._registry import SinkKind, SinkSettings

API_VERSION = "2023-01-01"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://monitor.azure.com//.default"
#: The Logs Ingestion API's limit on one call, read as 1,000,000 bytes (the stricter of MB/MiB).
API_LIMIT = 1_000_000
#: Bodies are cut 1% under the limit.
DEFAULT_MAX_BODY = 990_000
MIN_BODY = 16 * 1024
#: A token is renewed this long before it expires (or at half its life, if that is sooner).
RENEW_BEFORE = 300.0
#: A token is never kept longer than this, whatever ``expires_in`` says.
MAX_TOKEN_LIFE = 24 * 3600.0
TOKEN_READ_CAP = 64 * 1024

SentinelFormat = Literal["native", "ocsf", "ecs"]
"""The formats a stream can take: JSON objects (``cef`` lines are not records)."""
SENTINEL_FORMATS: tuple[SentinelFormat, ...] = ("native", "ocsf", "ecs")

_DCR_ID = re.compile(r"^dcr-[0-9a-fA-F]{32}$")
_STREAM = re.compile(r"^(Custom|Microsoft)-[A-Za-z0-9_-]{1,250}$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_OAUTH_ERROR = re.compile(r"^[a-z_]{1,40}$")

#: The ingestion endpoint's refusals, and what to check (style.md habit 6: one table).
_REFUSALS: dict[int, str] = {
    400: "the DCR refused the records: check that `stream` is an input stream of the DCR and "
    "that its stream declaration and transformation take the `{format}` format",
    401: "the ingestion endpoint refused a fresh token: check that `tenant_id` is the DCR's "
    "tenant and that `authority` and `scope` are those of the DCR's cloud",
    403: "the app registration may not send to this DCR: give it the role Monitoring Metrics "
    "Publisher on the DCR (a new role assignment can take up to 30 minutes to apply)",
    404: "no such DCR or stream at this endpoint: check `dce` (the DCE's or the DCR's logs "
    "ingestion URL), `dcr_immutable_id` (the DCR's immutableId, not its name) and `stream`",
}
_GIVE_BACK = frozenset({*_REFUSALS, 413})

#: Entra ID's ``AADSTS`` codes worth a word of advice.
_AADSTS_HINTS: dict[int, str] = {
    7000215: "the client_secret is wrong (give the secret's Value, not its Secret ID)",
    7000222: "the client_secret has expired: create a new one in the app registration",
    700016: "no application with this client_id in the tenant: check client_id and tenant_id",
    90002: "no such tenant: check tenant_id and authority",
    500011: "the scope's resource is unknown to this authority: set `scope` for its cloud",
    70011: "the scope is not valid: check `scope`",
}


class SentinelSink:
    """POST alerts to a DCR stream of the Logs Ingestion API, with an Entra ID token."""

    def __init__(
        self,
        dce: str,
        dcr_immutable_id: str,
        stream: str,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: SecretStr,
        format: Format = "native",
        authority: str = DEFAULT_AUTHORITY,
        scope: str = DEFAULT_SCOPE,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        gzip: bool = True,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if format not in SENTINEL_FORMATS:
            raise ValueError(f"the sentinel sink takes {SENTINEL_FORMATS}, not {format!r}")
        self._format: Format = format
        self._encode = ARRAY_ENCODERS[format]
        self._stream = stream
        self._url = (
            f"{dce.rstrip('/')}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}"
            f"?api-version={API_VERSION}"
        )
        self._token_url = f"{authority.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._client_id = client_id
        self._secret = client_secret
        self._scope = scope
        self._max_body = max_body_bytes
        self._gzip = gzip
        self._token: SecretStr | None = None
        self._renew_at = 0.0
        # The name keys the sink in the state store and shows in messages: ids, no secret.
        self.name = url_name("sentinel", self._url)
        self._sender = HttpSender(
            self.name, retry=retry, timeout=timeout, transport=transport, clock=clock, rng=rng
        )

    def __repr__(self) -> str:
        return f"SentinelSink({self.name!r}, stream={self._stream!r}, format={self._format!r})"

    @property
    def format(self) -> Format:
        return self._format

    async def start(self, position: str | None) -> str | None:
        """Nothing to recover: the API has no position. The token is fetched when first needed."""
        return None

    def committed(self, position: str | None) -> None:
        """Nothing to do: the API has no position."""

    async def aclose(self) -> None:
        self._token = None
        await self._sender.aclose()

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        for items, body in fit(alerts, self._encode, self._max_body):
            if len(body) > API_LIMIT:  # one alert alone, over what the API takes in a call
                body = within(
                    items[0],
                    lambda a: self._encode([a]),
                    API_LIMIT,
                    sink=self.name,
                    setting="the 1 MB the Logs Ingestion API takes in a call",
                    advice="choose a shorter format",
                )
            await self._upload(items, body)
        return None

    async def _upload(self, items: Sequence[Alert], body: bytes) -> None:
        """Send ``body`` (the records ``items``); on 413, each half on its own."""
        if await self._post(body) != 413:
            return
        if len(items) == 1:
            raise SinkRejectedError(
                f"alert {items[0].id} is {len(body)} bytes as one record, more than the Logs "
                "Ingestion API takes in one call (HTTP 413); it cannot be sent in this format, "
                "and its batch is not acknowledged (nothing was dropped)",
                sink=self.name,
            )
        half = len(items) // 2
        for part in (items[:half], items[half:]):
            await self._upload(part, self._encode(part))

    async def _post(self, body: bytes) -> int:
        """POST one body until the endpoint answers 204 (returned) or 413 (returned); a 401
        fetches a new token and sends once more; anything else is a refusal."""
        wire = gzip_module.compress(body, mtime=0) if self._gzip else body
        request_id = str(uuid.uuid4())  # x-ms-client-request-id: for Microsoft's support
        for attempt in range(2):
            if attempt:
                self._token = None  # refused: a new token, once
            headers = {
                "Authorization": f"Bearer {await self._bearer()}",
                "Content-Type": "application/json",
                "User-Agent": "mimecast-connector",
                "x-ms-client-request-id": request_id,
            }
            if self._gzip:
                headers["Content-Encoding"] = "gzip"
            answer = await self._sender.send(
                "POST", self._url, body=wire, headers=headers, give_back=_GIVE_BACK
            )
            if answer.status != 401:
                break
        if answer.status in (204, 413):
            return answer.status
        advice = _REFUSALS.get(answer.status)
        if advice is None:  # a 2xx other than 204: not the Logs Ingestion API answering
            advice = "the Logs Ingestion API answers 204: check that `dce` is its endpoint"
        raise SinkRejectedError(
            f"HTTP {answer.status}: {advice.format(format=self._format)} (not retried; "
            f"client request id {request_id})",
            sink=self.name,
        )

    async def _bearer(self) -> str:
        """The access token, fetched if there is none or it is due for renewal."""
        clock = self._sender.clock
        if self._token is None or clock.monotonic() >= self._renew_at:
            self._token = None
            asked = clock.monotonic()
            token, lifetime = await self._fetch_token()
            self._token = token
            self._renew_at = asked + max(lifetime - RENEW_BEFORE, lifetime / 2)
        return self._token.get_secret_value()

    async def _fetch_token(self) -> tuple[SecretStr, float]:
        """A token from the client credentials flow, and its lifetime in seconds."""
        form = urlencode(
            {
                "client_id": self._client_id,
                "client_secret": self._secret.get_secret_value(),
                "scope": self._scope,
                "grant_type": "client_credentials",
            }
        ).encode()
        answer = await self._sender.send(
            "POST",
            self._token_url,
            body=form,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
                "User-Agent": "mimecast-connector",
            },
            read=TOKEN_READ_CAP,
            give_back=frozenset({400, 401}),
            what="the token request",
        )
        if answer.status in (400, 401):
            raise SinkRejectedError(_token_refusal(answer), sink=self.name)
        read = _read_token(answer.body)
        if isinstance(read, str):
            raise SinkRejectedError(
                f"the token endpoint answered HTTP {answer.status} without a token ({read}): "
                "check `authority` (Entra ID's login host, without the tenant)",
                sink=self.name,
            )
        return read


def _read_token(body: bytes) -> tuple[SecretStr, float] | str:
    """The token and its lifetime from a token answer, or why there is none (never the body)."""
    try:
        doc: Any = json.loads(body)
    except ValueError:
        return "the answer is not JSON"
    if not isinstance(doc, dict):
        return "the answer is not a JSON object"
    token, lifetime = doc.get("access_token"), doc.get("expires_in")
    if not isinstance(token, str) or not token:
        return "no access_token"
    if header_value_problem(token) is not None or " " in token:
        return "the access_token cannot go in a header"
    if str(doc.get("token_type", "Bearer")).lower() != "bearer":
        return "the token_type is not Bearer"
    if isinstance(lifetime, str) and lifetime.isdigit():
        lifetime = int(lifetime)  # Entra ID's v1 endpoint sends it as a string
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        return "no expires_in in seconds"
    return SecretStr(token), min(float(lifetime), MAX_TOKEN_LIFE)


def _token_refusal(answer: Answer) -> str:
    """Why Entra ID refused the credentials, from its OAuth ``error`` and ``AADSTS`` codes only."""
    error, codes = "", []
    try:
        doc: Any = json.loads(answer.body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        found = doc.get("error")
        error = found if isinstance(found, str) and _OAUTH_ERROR.match(found) else ""
        listed = doc.get("error_codes")
        if isinstance(listed, list):
            codes = [c for c in listed if isinstance(c, int) and not isinstance(c, bool)][:3]
    said = ", ".join(
        [f"HTTP {answer.status}", *([error] if error else [])] + [f"AADSTS{c}" for c in codes]
    )
    hints = [_AADSTS_HINTS[c] for c in codes if c in _AADSTS_HINTS]
    advice = "; ".join(hints) or "check tenant_id, client_id, client_secret, authority and scope"
    return f"the token endpoint refused the app's credentials ({said}): {advice} (not retried)"


def _endpoint_url(value: str) -> str:
    """``value`` as an endpoint base: https (or loopback http), no query or fragment, no trailing
    slash."""
    http_url(value)
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ValueError("must have no query (?...) or fragment (#...)")
    return value.rstrip("/")


class SentinelSinkConfig(SinkSettings):
    """Alerts to a Microsoft Sentinel (Log Analytics) table through a DCR stream."""

    type: Literal["sentinel"]
    dce: str
    dcr_immutable_id: str
    stream: str
    tenant_id: str
    client_id: str
    client_secret: SecretStr
    authority: str = DEFAULT_AUTHORITY
    scope: str = DEFAULT_SCOPE
    format: SentinelFormat = "native"
    max_body_bytes: int = Field(DEFAULT_MAX_BODY, ge=MIN_BODY, le=API_LIMIT, strict=True)
    gzip: StrictBool = True

    _secret_field = field_validator("client_secret", mode="before")(secret_str)
    _plain_fields = field_validator("tenant_id", "client_id", mode="before")(plain)
    _urls = field_validator("dce", "authority")(_endpoint_url)

    @field_validator("client_secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("must not be empty")
        return value

    @field_validator("dcr_immutable_id")
    @classmethod
    def _dcr_id(cls, value: str) -> str:
        if not _DCR_ID.match(value):
            raise ValueError(
                "must be the DCR's immutableId: 'dcr-' and 32 hex digits (the DCR's JSON view "
                "or Overview page shows it), not its name or resource id"
            )
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        if not _STREAM.match(value):
            raise ValueError(
                "must be a stream of the DCR: 'Custom-' (or 'Microsoft-') and a name of letters, "
                "digits, '_' and '-', such as 'Custom-MimecastAlerts_CL'"
            )
        return value

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str) -> str:
        if value.lower() in ("common", "organizations", "consumers"):
            raise ValueError(f"{value!r} cannot sign in an app: give the Directory (tenant) ID")
        if not (_GUID.match(value) or _DOMAIN.match(value)):
            raise ValueError("must be the Directory (tenant) ID, a GUID (or a verified domain)")
        return value

    @field_validator("client_id")
    @classmethod
    def _client(cls, value: str) -> str:
        if not _GUID.match(value):
            raise ValueError("must be the app registration's Application (client) ID, a GUID")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if not (value.startswith("https://") and value.endswith("/.default")) or any(
            c.isspace() for c in value
        ):
            raise ValueError(
                "must be the Logs Ingestion audience and '/.default', such as "
                f"{DEFAULT_SCOPE!r} (Azure US Government: 'https://monitor.azure.us//.default')"
            )
        return value

    def secrets(self) -> list[str]:
        """The client secret (tokens are never configured: they live in memory only)."""
        return [self.client_secret.get_secret_value()]


def _build(settings: SentinelSinkConfig) -> Sink:
    return SentinelSink(
        settings.dce,
        settings.dcr_immutable_id,
        settings.stream,
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        client_secret=settings.client_secret,
        format=settings.format,
        authority=settings.authority,
        scope=settings.scope,
        max_body_bytes=settings.max_body_bytes,
        gzip=settings.gzip,
    )


KIND = SinkKind(
    type="sentinel",
    settings=SentinelSinkConfig,
    build=_build,
    protocol="Azure Monitor Logs Ingestion API: HTTPS `POST` of gzipped JSON arrays (under 1 MB) "
    "to a DCR stream, with an Entra ID client-credentials token",
    acknowledged="the endpoint answered 204 for every body of the batch",
    guarantee="at least once: a batch whose 204 was lost is sent again; drop repeats by the "
    "alert id in KQL",
    order=50,
    tested_against="a fake Entra ID token endpoint and Logs Ingestion endpoint written from "
    "Microsoft's documentation (`tests/sinks/azure_receiver.py`)",
)
