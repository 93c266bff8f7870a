"""A fake Splunk HTTP Event Collector on loopback, written from Splunk's documentation ("Format
events for HTTP Event Collector", "About HTTP Event Collector Indexer Acknowledgment", and the
table of HEC status codes), for the ``splunk_hec`` sink's tests.

What it checks, as HEC does, answering with HEC's status and ``{"text", "code"}``:

* the path: ``POST /services/collector/event`` and ``POST /services/collector/ack``; anything
  else is 404;
* ``Authorization: Splunk <token>``: none is 401 code 2, another scheme 401 code 3, a wrong
  token 403 code 4, a disabled token (:attr:`HecReceiver.disabled`) 403 code 1;
* the data channel: with indexer acknowledgement on (:attr:`HecReceiver.ack_enabled`) a request
  without ``X-Splunk-Request-Channel`` (or ``?channel=``) is 400 code 10; one that is not a
  GUID is 400 code 11;
* the size: a request whose body, as sent or once gunzipped, is over
  :attr:`HecReceiver.max_content_length` is 413 (gunzipping stops just past the limit);
* ``Content-Encoding: gzip`` is gunzipped (a body that does not gunzip is 400 code 6); an empty
  body is 400 code 5;
* the body, strictly: JSON objects one after another (whitespace between allowed), each with
  ``event`` (missing: 400 code 12; null or "": 400 code 13), ``time`` a number if present,
  ``host``/``source``/``sourcetype``/``index`` strings if present, ``fields`` an object of
  strings or lists of strings (else 400 code 15); anything else is 400 code 6 with
  ``invalid-event-number``. A request is all or nothing here (real HEC may index the events
  before a bad one);
* ``index`` against :attr:`HecReceiver.allowed_indexes` when set (400 code 7).

Then the events are kept (:attr:`HecReceiver.events`), and the answer is ``{"text": "Success",
"code": 0}``, with an ``ackId`` (numbered from 0 per channel) when acknowledgement is on. The ack
endpoint answers ``{"acks": {"<id>": bool}}``: an id is ``true`` once it was asked about
:attr:`HecReceiver.ack_after` times (None: never), and is then forgotten (asked again, it is
``false``: HEC may clear a confirmed id, so a sender must not need to ask twice); ids of requests listed in
:attr:`HecReceiver.never_ack` are never confirmed; with acknowledgement off, the ack endpoint is
400 code 14.

It speaks HTTP, or HTTPS with the certificate it is given. What it does not do: index
anything, search, apply Splunk's time or line-breaking rules, accept the raw endpoint or
query-string tokens, or forget a channel. Any request can instead be answered from a script
(:meth:`HecReceiver.script`, with the :class:`~tests.sinks.receiver.Answer` of the webhook's
receiver): back-pressure, refusals, a hang-up. A scripted request is recorded but not taken.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.sinks.receiver import Answer

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_KEYS = {"time", "host", "source", "sourcetype", "index", "event", "fields"}


def hec_answer(status: int, code: int, text: str, **extra: Any) -> Answer:
    """An answer as HEC words it."""
    body = json.dumps({"text": text, "code": code, **extra}).encode()
    return Answer(status, {"Content-Type": "application/json"}, body)


def busy(retry_after: str | None = None) -> Answer:
    """503 code 9, "Server is busy" (HEC's back-pressure), with ``Retry-After`` if given."""
    answer = hec_answer(503, 9, "Server is busy")
    if retry_after is None:
        return answer
    return Answer(503, {**answer.headers, "Retry-After": retry_after}, answer.body)


def throttled(retry_after: str | None = None) -> Answer:
    """429, as a proxy or load balancer before HEC says it."""
    return Answer(429, {"Retry-After": retry_after} if retry_after else {})


INVALID_TOKEN = hec_answer(403, 4, "Invalid token")


@dataclass(frozen=True)
class HecRequest:
    """One request as it arrived: header names lower-cased, the body as sent and gunzipped."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    data: bytes | None = None
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    answer: dict[str, Any] | None = None


class _Refusal(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hec: HecReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is expected in tests, not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`HecReceiver.requests`."""

    def setup(self) -> None:
        super().setup()
        # Head and body leave in two writes: without this, Nagle and delayed ACKs hold each
        # answer ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        hec = self.server.hec
        length = int(self.headers.get("Content-Length") or 0)
        # Read whole even when too large (tests send little), so the sender sees the 413.
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = HecRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        answer = hec.handle(request)
        if answer.close:
            self.close_connection = True
            return
        self._answer(answer)

    def _answer(self, answer: Answer) -> None:
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:
            self.close_connection = True


class HecReceiver:
    """The fake HEC, its settings, its script and what it received. :meth:`start`/:meth:`stop`."""

    def __init__(
        self,
        token: str,
        *,
        ack_enabled: bool = False,
        ack_after: int | None = 1,
        max_content_length: int = 1_000_000,
        allowed_indexes: set[str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.token = token
        self.disabled = False
        self.ack_enabled = ack_enabled
        self.ack_after = ack_after
        self.max_content_length = max_content_length
        self.allowed_indexes = allowed_indexes
        #: Indexes (0-based, among the requests taken) whose ackId is never confirmed.
        self.never_ack: set[int] = set()
        self.requests: list[HecRequest] = []
        #: The envelopes of every request taken, in order.
        self.events: list[dict[str, Any]] = []
        #: Ack queries, as the lists of ids asked.
        self.ack_queries: list[list[int]] = []
        self._taken = 0
        self._next_ack: dict[str, int] = {}
        self._asked: dict[tuple[str, int], int] = {}  # (channel, ackId) -> times asked
        self._unconfirmable: set[tuple[str, int]] = set()
        self._confirmed: set[tuple[str, int]] = set()
        self._answers: dict[str | None, deque[Answer]] = {None: deque()}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hec = self
        self.scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def script(self, *answers: Answer | int, path: str | None = None) -> None:
        """Answer the next requests (to ``path``; None: to any path) with these instead of
        HEC's own answers; a bare int is that status."""
        with self._lock:
            queue = self._answers.setdefault(path, deque())
            queue.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    @property
    def event_requests(self) -> list[HecRequest]:
        """The requests of events that were taken (answered code 0)."""
        return [
            r for r in self.requests if r.path == EVENT_PATH and (r.answer or {}).get("code") == 0
        ]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- the protocol ---------------------------------------------------------------------

    def handle(self, request: HecRequest) -> Answer:
        with self._lock:
            for queue in (self._answers.get(request.path), self._answers[None]):
                if queue:
                    self.requests.append(request)
                    return queue.popleft()
            try:
                answer, kept = self._handle(request)
            except _Refusal as refusal:
                answer, kept = refusal.answer, request
            self.requests.append(kept)
            return answer

    def _handle(self, request: HecRequest) -> tuple[Answer, HecRequest]:
        if len(request.body) > self.max_content_length:
            raise _Refusal(hec_answer(413, 413, "Content-Length too large"))
        if request.method != "POST" or request.path not in (EVENT_PATH, ACK_PATH):
            raise _Refusal(hec_answer(404, 404, "Not Found"))
        self._authorize(request.headers.get("authorization"))
        channel = request.headers.get("x-splunk-request-channel") or next(
            iter(request.query.get("channel", [])), None
        )
        if channel is not None and not _GUID.match(channel):
            raise _Refusal(hec_answer(400, 11, "Invalid data channel"))
        if request.path == ACK_PATH:
            return self._ack_query(request, channel), request
        if self.ack_enabled and channel is None:
            raise _Refusal(hec_answer(400, 10, "Data channel is missing"))
        data = self._gunzipped(request)
        if not data.strip():
            raise _Refusal(hec_answer(400, 5, "No data"))
        envelopes = self._envelopes(data)
        extra: dict[str, Any] = {}
        if self.ack_enabled:
            assert channel is not None
            ack_id = self._next_ack.get(channel, 0)
            self._next_ack[channel] = ack_id + 1
            extra["ackId"] = ack_id
            if self._taken in self.never_ack:
                self._unconfirmable.add((channel, ack_id))
        self._taken += 1
        self.events.extend(envelopes)
        answered = {"text": "Success", "code": 0, **extra}
        kept = HecRequest(
            request.method,
            request.path,
            request.query,
            request.headers,
            request.body,
            data,
            envelopes,
            answered,
        )
        return Answer(200, {"Content-Type": "application/json"}, json.dumps(answered).encode()), (
            kept
        )

    def _authorize(self, header: str | None) -> None:
        if not header:
            raise _Refusal(hec_answer(401, 2, "Token is required"))
        scheme, _, token = header.partition(" ")
        if scheme != "Splunk" or not token:
            raise _Refusal(hec_answer(401, 3, "Invalid authorization"))
        if token != self.token:
            raise _Refusal(hec_answer(403, 4, "Invalid token"))
        if self.disabled:
            raise _Refusal(hec_answer(403, 1, "Token disabled"))

    def _gunzipped(self, request: HecRequest) -> bytes:
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding in ("", "identity"):
            data = request.body
        elif encoding == "gzip":
            inflate = zlib.decompressobj(wbits=31)
            try:
                data = inflate.decompress(request.body, self.max_content_length + 1)
            except zlib.error:
                raise _Refusal(hec_answer(400, 6, "Invalid data format")) from None
            if not inflate.eof and len(data) <= self.max_content_length:
                raise _Refusal(hec_answer(400, 6, "Invalid data format"))  # truncated gzip
        else:
            raise _Refusal(hec_answer(400, 6, "Invalid data format"))
        if len(data) > self.max_content_length:
            raise _Refusal(hec_answer(413, 413, "Content-Length too large"))
        return data

    def _envelopes(self, data: bytes) -> list[dict[str, Any]]:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise _Refusal(
                hec_answer(400, 6, "Invalid data format", **{"invalid-event-number": 0})
            ) from None
        decoder = json.JSONDecoder()
        found: list[dict[str, Any]] = []
        at = 0
        while True:
            while at < len(text) and text[at] in " \t\r\n":
                at += 1
            if at == len(text):
                return found
            number = len(found)
            try:
                envelope, at = decoder.raw_decode(text, at)
            except json.JSONDecodeError:
                envelope = None
            self._check(envelope, number)
            found.append(envelope)

    def _check(self, envelope: Any, number: int) -> None:
        def invalid() -> _Refusal:
            return _Refusal(
                hec_answer(400, 6, "Invalid data format", **{"invalid-event-number": number})
            )

        if not isinstance(envelope, dict) or set(envelope) - _KEYS:
            raise invalid()
        if "event" not in envelope:
            raise _Refusal(hec_answer(400, 12, "Event field is required"))
        if envelope["event"] in (None, ""):
            raise _Refusal(hec_answer(400, 13, "Event field cannot be blank"))
        when = envelope.get("time", 0)
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise invalid()
        for key in ("host", "source", "sourcetype", "index"):
            if key in envelope and not isinstance(envelope[key], str):
                raise invalid()
        if self.allowed_indexes is not None and envelope.get("index") not in self.allowed_indexes:
            raise _Refusal(hec_answer(400, 7, "Incorrect index"))
        fields = envelope.get("fields", {})
        if not isinstance(fields, dict) or not all(
            isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            for v in fields.values()
        ):
            raise _Refusal(hec_answer(400, 15, "Error in handling indexed fields"))

    def _ack_query(self, request: HecRequest, channel: str | None) -> Answer:
        if not self.ack_enabled:
            raise _Refusal(hec_answer(400, 14, "ACK is disabled"))
        if channel is None:
            raise _Refusal(hec_answer(400, 10, "Data channel is missing"))
        try:
            asked = json.loads(request.body)["acks"]
        except (ValueError, KeyError, TypeError):
            raise _Refusal(hec_answer(400, 6, "Invalid data format")) from None
        if not isinstance(asked, list) or not all(
            isinstance(a, int) and not isinstance(a, bool) for a in asked
        ):
            raise _Refusal(hec_answer(400, 6, "Invalid data format"))
        self.ack_queries.append(list(asked))
        acks: dict[str, bool] = {}
        for ack_id in asked:
            key = (channel, ack_id)
            self._asked[key] = times = self._asked.get(key, 0) + 1
            issued = ack_id < self._next_ack.get(channel, 0)
            ready = (
                issued
                and self.ack_after is not None
                and times >= self.ack_after
                and key not in self._unconfirmable
                and key not in self._confirmed
            )
            if ready:
                self._confirmed.add(key)
            acks[str(ack_id)] = ready
        return Answer(
            200, {"Content-Type": "application/json"}, json.dumps({"acks": acks}).encode()
        )
