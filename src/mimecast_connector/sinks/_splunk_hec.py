"""The ``splunk_hec`` sink: alerts to Splunk's HTTP Event Collector (HEC), one event each.

Each batch is POSTed to ``{url}/services/collector/event`` as concatenated JSON envelopes,
one per alert (Splunk's "Format events for HTTP Event Collector")::

    {"time": 1764000000.123, "host": ..., "source": ..., "sourcetype": ..., "index": ...,
     "event": <the alert in the sink's format>,
     "fields": {"alert_id": ..., "tenant": ..., "category": ...}}

gzipped (``Content-Encoding: gzip``), with ``Authorization: Splunk <token>`` and one
``X-Splunk-Request-Channel`` (a UUID) for the life of the sink. ``max_body_bytes`` caps each
request's body *before* compression, so what travels is smaller still, whichever size the
server checks; a batch over it is split (an alert larger alone goes alone). HEC's 413 (a
``max_content_length`` below the cap, or a proxy's limit) halves the request and lowers the cap
for the run, with a ``sink_body_too_large`` warning; one alert refused alone goes again
shortened to half the refused size (``sinks._limit``: its record replaced by a note of its size,
its longest texts cut and marked), and is refused only when its own fields do not fit.

When a batch is acknowledged:

* ``ack = false``: when HEC answered every request ``200`` with ``{"code": 0}``. HEC says so as
  soon as the events parse, before they are indexed.
* ``ack = true`` (HEC indexer acknowledgement, enabled on the token): every request's answer
  carries an ``ackId``, and the batch is acknowledged only once
  ``POST {url}/services/collector/ack?channel=...`` has reported every one of them ``true``
  (asked every ``ack_poll_interval``). A request not confirmed within ``ack_timeout`` is sent
  again (a new ``ackId``; the old one is still asked about, and either confirms it); one not
  confirmed within ``ack_timeout`` of its resend leaves the batch *not acknowledged*
  (:class:`~mimecast_connector.SinkUnavailableError`), and the runner sends it whole on its
  next poll. So the wait for one batch is bounded, at about ``2 x ack_timeout``.

Either way it is at least once: a batch whose answer (or confirmation) was lost is sent again,
and each envelope's ``fields.alert_id`` (the alert's stable id) lets a search drop repeats.

Answers, by the shared rule of :mod:`._http`: 408, 429 and 5xx (503 ``code 9``, "server is
busy", included) are back-pressure, retried with backoff and ``Retry-After``; past the
retry budget the batch is not acknowledged. HEC's refusals are read by their ``code`` (the
table :data:`REFUSALS`) into a :class:`~mimecast_connector.SinkRejectedError` that says what
to fix; HEC's own text is never repeated (a receiver may echo what it got).
"""

from __future__ import annotations

import calendar
import gzip
import math
import random
import re
import socket
import uuid
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NoReturn, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
import msgspec
import structlog
from pydantic import Field, SecretStr, field_validator, model_validator
from typing_extensions import override

from mimecast_connector._clock import Clock
from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError
from mimecast_connector._fields import anchored_path, http_url, secret_str, tls_verification
from mimecast_connector.alerts import ONE_ENCODERS, Alert, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._http import (
    Answer,
    HttpSender,
    fit,
    refused_as_too_large,
    url_name,
)
from mimecast_connector.sinks._limit import within
from mimecast_connector.sinks._registry import SinkKind, SinkSettings

_log = structlog.get_logger("mimecast_connector.sinks")

#: The formats an HEC event can carry as a JSON object (``cef`` is a line of text).
HecFormat = Literal["native", "ocsf", "ecs"]

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
#: The sourcetype of each format when ``sourcetype`` is not set: one per schema, so field
#: extractions and searches need not guess which one an event is.
DEFAULT_SOURCETYPES: dict[HecFormat, str] = {
    "native": "mimecast:alert",
    "ocsf": "mimecast:alert:ocsf",
    "ecs": "mimecast:alert:ecs",
}
DEFAULT_SOURCE = "mimecast-connector"
#: HEC answers are a few dozen bytes (an ack answer ~15 bytes an id): more is not HEC.
ANSWER_CAP = 64 * 1024
#: At most this many ackIds in one ack query (so its answer stays well under the cap).
ACK_QUERY_MAX = 1000
#: Sends of one request within one delivery: the first, and one resend after ``ack_timeout``.
ACK_SENDS = 2

#: What to do about each refusal, by HEC's ``code`` (Splunk's documented status codes). The
#: statuses the sink reads itself; any other 4xx is refused by :mod:`._http`'s rule.
REFUSALS: dict[int, str] = {
    1: "the HEC token is disabled; enable it in Splunk (Data inputs > HTTP Event Collector) "
    "or set `token` to an enabled one",
    2: "HEC got no token; set `token`",
    3: "HEC could not read the token in the Authorization header; set `token` to the token "
    "value alone",
    4: "the HEC token is invalid or disabled; check `token`",
    5: "HEC got no data (a fault of the sink: please report it)",
    6: "HEC could not parse the events (a fault of the sink: please report it)",
    7: "the token may not write to `index`; set `index` to one of the token's allowed indexes, "
    "or allow it on the token",
    10: "HEC wants a data channel (a fault of the sink: please report it)",
    11: "HEC refused the data channel (a fault of the sink: please report it)",
    12: "HEC got an event without `event` (a fault of the sink: please report it)",
    13: "HEC got an empty `event` (a fault of the sink: please report it)",
    14: "indexer acknowledgement is disabled on this token; set `ack = false`, or enable "
    "indexer acknowledgement on the token",
    15: "HEC could not index the `fields` (a fault of the sink: please report it)",
}
_AUTH = "the HEC token is invalid or disabled; check `token`"
_NOT_FOUND = (
    "there is no HTTP Event Collector at `url`; set it to HEC's base URL (such as "
    "https://splunk.example.com:8088), and check that HEC is enabled in Splunk's Global Settings"
)
_LOWER = (
    "HEC (or a proxy in front of it) takes less than max_body_bytes; lower max_body_bytes to match"
)
_NO_ACK_ID = (
    "HEC accepted the events without an ackId: indexer acknowledgement is off for this token. "
    "Enable it on the token, or set `ack = false` (a batch then counts as delivered when HEC "
    "accepts it, before it is indexed)"
)
_NOT_HEC = (
    "the answer to {what} was HTTP 200 but not HEC's (no readable HEC answer); check that "
    "`url` is the HTTP Event Collector's base URL, not a proxy page or another service"
)


class _HecAnswer(msgspec.Struct):
    code: int | None = None
    ackId: int | None = None  # HEC spells it so
    invalid_event_number: int | None = msgspec.field(default=None, name="invalid-event-number")


class _AckAnswer(msgspec.Struct):
    acks: dict[str, bool]


_answer = msgspec.json.Decoder(_HecAnswer)
_ack_answer = msgspec.json.Decoder(_AckAnswer)
_json = msgspec.json.Encoder()

#: One request of envelopes: its alerts with their envelopes, and its body (before gzip).
_Request = tuple[Sequence[tuple[Alert, bytes]], bytes]


def _join(envelopes: Sequence[tuple[Alert, bytes]]) -> bytes:
    return b"".join(envelope for _, envelope in envelopes)


def _decoded(body: bytes) -> _HecAnswer | None:
    """HEC's ``{"text": ..., "code": ...}`` answer, or None if the body is not one."""
    try:
        return _answer.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def epoch_text(rfc3339: str) -> bytes | None:
    """An alert's RFC 3339 time as HEC's ``time``: epoch seconds, milliseconds after a point
    when there are any, written exactly (no float rounding); None if it does not parse."""
    try:
        moment = datetime.fromisoformat(rfc3339)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    seconds = calendar.timegm(moment.utctimetuple())
    millis = moment.microsecond // 1000
    return (f"{seconds}.{millis:03d}" if millis else str(seconds)).encode()


class SplunkHecSink:
    """Alerts to Splunk's HTTP Event Collector, acknowledged by HEC or by the indexers."""

    def __init__(
        self,
        url: str,
        token: SecretStr,
        format: HecFormat = "native",
        *,
        index: str | None = None,
        source: str = DEFAULT_SOURCE,
        sourcetype: str | None = None,
        host: str | None = None,
        ack: bool = False,
        ack_timeout: float = 300.0,
        ack_poll_interval: float = 2.0,
        max_body_bytes: int = 1_000_000,
        verify_tls: bool | str = True,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        ack_query_max: int = ACK_QUERY_MAX,
    ) -> None:
        base = url.rstrip("/")
        self._event_url = base + EVENT_PATH
        self._format: HecFormat = format
        self._encode_one = ONE_ENCODERS[format]
        self._token = token
        self._ack = ack
        self._ack_timeout = ack_timeout
        self._ack_poll = ack_poll_interval
        self._ack_query_max = ack_query_max
        self._max_body = max_body_bytes
        # One channel for the life of the sink: HEC numbers ackIds per channel.
        self.channel = str(uuid.uuid4())
        self._ack_url = f"{base}{ACK_PATH}?channel={self.channel}"
        # What every envelope says between ``time`` and ``event``, encoded once.
        meta: dict[str, str] = {
            "host": host if host is not None else socket.gethostname(),
            "source": source,
            "sourcetype": sourcetype or DEFAULT_SOURCETYPES[format],
        }
        if index is not None:
            meta["index"] = index
        self._meta = b"," + _json.encode(meta)[1:-1]
        # The name keys the sink in the state store and shows in messages: no secret in it.
        self.name = url_name("splunk_hec", base)
        self._sender = HttpSender(
            self.name,
            retry=retry,
            timeout=timeout,
            transport=transport,
            clock=clock,
            rng=rng,
            verify=verify_tls,
            peer="HEC",
            ca_setting="verify_tls",
        )
        self._tls_problem = self._sender.tls_problem

    def __repr__(self) -> str:
        return f"SplunkHecSink({self.name!r}, format={self._format!r}, ack={self._ack!r})"

    @property
    def format(self) -> Format:
        return self._format

    async def start(self, position: str | None) -> str | None:
        """Nothing to recover (HEC has no position); a CA file that cannot be used stops here."""
        if self._tls_problem is not None:
            raise SinkRejectedError(self._tls_problem, sink=self.name)
        return None

    def committed(self, position: str | None) -> None:
        """Nothing to do: HEC has no position."""

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        if self._tls_problem is not None:
            raise SinkRejectedError(self._tls_problem, sink=self.name)
        if not alerts:
            return None
        envelopes = [(alert, self._envelope(alert)) for alert in alerts]
        requests = fit(envelopes, _join, self._max_body)
        if not self._ack:
            for request in requests:
                await self._post(request)
            return None
        await self._until_indexed(requests)
        return None

    def _envelope(self, alert: Alert) -> bytes:
        time = epoch_text(alert.time)
        fields = _json.encode(
            {"alert_id": alert.id, "tenant": alert.tenant, "category": alert.category}
        )
        head = b'{"time":' + time + self._meta if time is not None else b"{" + self._meta[1:]
        return head + b',"event":' + self._encode_one(alert) + b',"fields":' + fields + b"}"

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": "Splunk " + self._token.get_secret_value(),
            "X-Splunk-Request-Channel": self.channel,
            "Content-Type": "application/json",
            "User-Agent": "mimecast-connector",
        }

    async def _post(self, request: _Request) -> list[tuple[_Request, int | None]]:
        """Send one request of envelopes until HEC takes it: the requests HEC took for it, each
        with its ackId (None without one). Usually that request alone; after a 413 (a limit
        below ``max_body_bytes``: Splunk Cloud's, a proxy's) its halves, the cap lowered for the
        run; one alert refused alone goes again shortened to half the refused size
        (``sinks._limit``), refused only when its own fields do not fit."""
        headers = self._headers()
        headers["Content-Encoding"] = "gzip"
        queue = deque([request])
        taken: list[tuple[_Request, int | None]] = []
        while queue:
            items, body = request = queue.popleft()
            answer = await self._sender.send(
                "POST",
                self._event_url,
                body=gzip.compress(body, compresslevel=6, mtime=0),
                headers=headers,
                read=ANSWER_CAP,
                give_back=frozenset({400, 401, 403, 404, 413}),
                what="the batch",
            )
            if answer.status == 413:
                self._max_body = refused_as_too_large(
                    queue,
                    items,
                    body,
                    self._max_body,
                    sink=self.name,
                    advice=_LOWER,
                    encode=_join,
                    shorten=self._shorten,
                )
                continue
            read = self._read(answer)
            if self._ack and read.ackId is None:
                raise SinkRejectedError(_NO_ACK_ID, sink=self.name)
            taken.append((request, read.ackId))
        return taken

    def _shorten(self, item: tuple[Alert, bytes], limit: int) -> tuple[tuple[Alert, bytes], bytes]:
        """The envelope of the item's alert in at most ``limit`` bytes (``sinks._limit``)."""
        alert = item[0]
        envelope = within(
            alert,
            self._envelope,
            limit,
            sink=self.name,
            setting="what HEC takes (HTTP 413)",
            advice="raise HEC's max_content_length (limits.conf [http_input]) or the limit of "
            "a proxy in front of it",
        )
        return (alert, envelope), envelope

    def _read(self, answer: Answer) -> _HecAnswer:
        """HEC's answer to a request of events, if it took them; else why not."""
        read = _decoded(answer.body)
        if answer.status != 200:
            self._refuse(answer, read, "the batch")
        if read is None or read.code != 0:
            raise SinkRejectedError(_NOT_HEC.format(what="the batch"), sink=self.name)
        return read

    def _refuse(self, answer: Answer, read: _HecAnswer | None, what: str) -> NoReturn:
        """The refusal HEC's status and ``code`` name, saying what to fix (table above)."""
        code = read.code if read is not None else None
        if answer.status == 404:
            advice = _NOT_FOUND
        elif code in REFUSALS:
            advice = REFUSALS[code]
            if code == 6 and read is not None and read.invalid_event_number is not None:
                advice += f" (event {read.invalid_event_number} of the request)"
        elif answer.status in (401, 403):
            advice = _AUTH
        else:
            advice = "check the sink's settings and Splunk's logs"
        shown = f"HTTP {answer.status}" + (f", code {code}" if code is not None else "")
        raise SinkRejectedError(
            f"HEC refused {what} ({shown}): {advice} (not retried: the same request would get "
            "the same answer)",
            sink=self.name,
        )

    async def _until_indexed(self, requests: list[_Request]) -> None:
        """Send ``requests`` and wait until HEC confirms each indexed, resending once what it
        does not confirm within ``ack_timeout``; SinkUnavailableError if still unconfirmed."""
        clock = self._sender.clock
        requests = list(requests)  # grows by the halves of any HEC answered 413
        waiting: dict[int, int] = {}  # ackId -> the request it confirms
        sent_at: dict[int, float] = {}  # request -> when it was last sent
        sends = [0] * len(requests)
        due = list(range(len(requests)))
        # Each send is waited for at most ack_timeout, a poll every ack_poll_interval: so many
        # polls bound the loop, whatever the clock or the answers do.
        for _ in range(ACK_SENDS * (math.ceil(self._ack_timeout / self._ack_poll) + 1)):
            for i in due:
                for n, (taken, ack_id) in enumerate(await self._post(requests[i])):
                    assert ack_id is not None  # _post refuses an answer without one
                    if n == 0:  # the request, or the first part of one refused as too large
                        j = i
                        requests[i] = taken
                    else:  # another part: one more request to confirm
                        j = len(requests)
                        requests.append(taken)
                        sends.append(sends[i] - 1)
                    waiting[ack_id] = j
                    sends[j] += 1
                    sent_at[j] = clock.monotonic()
            await clock.sleep(self._ack_poll)
            confirmed = {waiting[a] for a in await self._indexed(list(waiting)) if a in waiting}
            # Either send of a body confirms it: drop every ackId of the confirmed ones.
            waiting = {a: i for a, i in waiting.items() if i not in confirmed}
            if not waiting:
                return
            now = clock.monotonic()
            late = sorted({i for i in waiting.values() if now - sent_at[i] >= self._ack_timeout})
            if any(sends[i] >= ACK_SENDS for i in late):
                break
            if late:
                _log.warning(
                    "sink_resending_unconfirmed",
                    sink=self.name,
                    requests=len(late),
                    waited_s=self._ack_timeout,
                )
            due = late
        raise SinkUnavailableError(
            f"HEC did not confirm {len(set(waiting.values()))} of {len(requests)} requests as "
            f"indexed within {self._ack_timeout:g} s of their last send (each is sent at most "
            f"{ACK_SENDS} times); the batch stays unacknowledged and is sent again on the next "
            "poll (repeats carry the same fields.alert_id)",
            sink=self.name,
        )

    async def _indexed(self, ack_ids: list[int]) -> set[int]:
        """Which of ``ack_ids`` HEC reports indexed (each is asked until it is, never after:
        HEC may forget an id once it said true)."""
        found: set[int] = set()
        for start in range(0, len(ack_ids), self._ack_query_max):
            asked = ack_ids[start : start + self._ack_query_max]
            answer = await self._sender.send(
                "POST",
                self._ack_url,
                body=_json.encode({"acks": asked}),
                headers=self._headers(),
                read=ANSWER_CAP,
                give_back=frozenset({400, 401, 403, 404}),
                what="the batch (asking whether HEC indexed it)",
            )
            what = "the acknowledgement query"
            if answer.status != 200:
                self._refuse(answer, _decoded(answer.body), what)
            try:
                acks = _ack_answer.decode(answer.body).acks
            except (msgspec.DecodeError, msgspec.ValidationError):
                raise SinkRejectedError(_NOT_HEC.format(what=what), sink=self.name) from None
            found.update(a for a in asked if acks.get(str(a)) is True)
        return found


_INDEX = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def _seconds(value: Any) -> Any:
    """A duration as text (``"5m"``) or a number of seconds (not a boolean)."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as '300s' or '5m', or a number of seconds")
    if isinstance(value, str):
        from mimecast_connector.config import parse_duration  # config imports the sinks

        return parse_duration(value).total_seconds()
    return value


def _label(value: Any) -> Any:
    """``host``, ``source`` and ``sourcetype``: text Splunk keeps as it is, on one line."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        if len(value) > 1024:
            raise ValueError("must be at most 1024 characters")
        if any(not c.isprintable() for c in value):
            raise ValueError("must not contain control characters")
    return value


def _hec_url(value: str) -> str:
    """HEC's base URL: https (http to loopback only), no query; a path ending in
    ``/services/collector`` or ``/services/collector/event`` is taken as its base."""
    http_url(value)
    parts = urlsplit(value)
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ValueError("must not have a query or a fragment; put the token in `token`")
    path = parts.path.rstrip("/")
    for suffix in (EVENT_PATH, "/services/collector"):
        if path.endswith(suffix):
            path = path.removesuffix(suffix)
            break
    if "/services/collector" in path:
        raise ValueError(
            "must be HEC's base URL (such as https://splunk.example.com:8088): the sink adds "
            "/services/collector/event itself, and does not use the raw endpoint"
        )
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class SplunkHecSinkConfig(SinkSettings):
    """Alerts to Splunk's HTTP Event Collector, one event per alert."""

    type: Literal["splunk_hec"]
    url: str
    token: SecretStr
    format: HecFormat = "native"
    index: str | None = None
    source: str = DEFAULT_SOURCE
    #: None: by format (``mimecast:alert``, ``mimecast:alert:ocsf``, ``mimecast:alert:ecs``).
    sourcetype: str | None = None
    #: None: the name of the machine the connector runs on.
    host: str | None = None
    ack: bool = False
    ack_timeout: float = Field(300.0, ge=1.0, le=3600.0)
    ack_poll_interval: float = Field(2.0, ge=0.1, le=60.0)
    max_body_bytes: int = Field(1_000_000, ge=1024, le=100_000_000)
    #: True (the system's CA bundle), False (no check: a test Splunk only), or a CA file.
    verify_tls: bool | str = True

    _url = field_validator("url")(_hec_url)
    _labels = field_validator("source", "sourcetype", "host", mode="before")(_label)
    _durations = field_validator("ack_timeout", "ack_poll_interval", mode="before")(_seconds)

    @field_validator("token", mode="before")
    @classmethod
    def _token_field(cls, value: Any, info: Any) -> SecretStr | None:
        """The token alone (a ``Splunk `` before it is dropped); it travels in a header."""
        secret = secret_str(value, info)
        if secret is None:
            return None
        text = secret.get_secret_value()
        if text[:7].lower() == "splunk ":
            text = text[7:].strip()
        if not text or not all("!" <= c <= "~" for c in text):
            raise ValueError(
                "must be the HEC token as Splunk shows it: visible ASCII without spaces"
            )
        return SecretStr(text)

    @field_validator("index")
    @classmethod
    def _index(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 1024 or not _INDEX.match(value)):
            raise ValueError(
                "must be a Splunk index name: lowercase letters, digits, '_' and '-', not "
                "starting with '_' or '-'"
            )
        return value

    _verify = field_validator("verify_tls", mode="before")(tls_verification)

    @model_validator(mode="after")
    def _poll_within_timeout(self) -> Self:
        if self.ack_poll_interval >= self.ack_timeout:
            raise ValueError("ack_poll_interval must be shorter than ack_timeout")
        return self

    @override
    def secrets(self) -> list[str]:
        """The token (the URL carries none: a query is refused)."""
        return [self.token.get_secret_value()]

    @override
    def anchored(self, base_dir: Path) -> Self:
        """A relative CA file of ``verify_tls`` is relative to the configuration's folder."""
        if isinstance(self.verify_tls, str):
            return self.model_copy(update={"verify_tls": anchored_path(self.verify_tls, base_dir)})
        return self


def _build(settings: SplunkHecSinkConfig) -> Sink:
    return SplunkHecSink(
        settings.url,
        settings.token,
        settings.format,
        index=settings.index,
        source=settings.source,
        sourcetype=settings.sourcetype,
        host=settings.host,
        ack=settings.ack,
        ack_timeout=settings.ack_timeout,
        ack_poll_interval=settings.ack_poll_interval,
        max_body_bytes=settings.max_body_bytes,
        verify_tls=settings.verify_tls,
    )


KIND = SinkKind(
    type="splunk_hec",
    settings=SplunkHecSinkConfig,
    build=_build,
    protocol="Splunk HTTP Event Collector: gzipped JSON envelopes to `/services/collector/event`, "
    "optional indexer acknowledgement",
    acknowledged="HEC answered `code 0` (`ack = true`: the indexers confirmed every request's "
    "`ackId`)",
    guarantee="at least once: a batch unanswered or unconfirmed is sent again; drop repeats by "
    "`fields.alert_id`",
    order=20,
    tested_against="a loopback fake HEC written from Splunk's documentation "
    "(`tests/sinks/hec_receiver.py`); no real Splunk",
)
