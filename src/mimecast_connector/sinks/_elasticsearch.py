"""The ``elasticsearch`` sink: alerts indexed through the ``_bulk`` API of Elasticsearch or
OpenSearch, one ``create`` action per alert whose ``_id`` is the alert's id.

Exactly once in an index, across crashes: ``create`` never overwrites, so a batch sent again
(its answer was lost, the process died before the checkpoint, another sink refused it) is
answered ``409`` for every alert already there, and that counts as delivered. (A data stream or
an alias that rolls over to a new backing index between the two sends can hold a repeat: ids
are unique per backing index.)

A bulk request is answered ``200`` with one item per action, in order. Per item: ``201`` (and
any 2xx) or ``409`` is delivered; ``408``, ``429`` and 5xx are sent again, those items alone,
with backoff, bounded by the :class:`~mimecast_connector.client.RetryPolicy` (past it the batch
is not acknowledged, and the runner sends it again on its next poll); a ``400`` about the
document (a mapping or parsing error) is a *poison* alert: written to the ``dead_letter`` file
with the error's type and reason, and the batch goes on (without ``dead_letter`` the batch is
refused, naming the alert and the reason, until one is set or the mapping is fixed); a ``400``
about the index (closed, a bad name) and any other status is a refusal someone must fix.

The request as a whole goes through :class:`~mimecast_connector.sinks._http.HttpSender`
(408/429/5xx and broken connections retried there); ``401``/``403`` stop the sink naming the
credential to check, and ``413`` splits the request in halves (and lowers the body cap for the
batches after it); one alert refused alone goes again shortened to half the refused size
(``sinks._limit``: its record replaced by a note of its size, its longest texts cut and marked),
and is refused only when its own fields do not fit. Bodies are at most ``max_body_bytes``
before any gzip.

Only what both Elasticsearch and OpenSearch take is sent: ``application/x-ndjson`` (not
Elastic 8's ``compatible-with`` media types) and the ``filter_path`` parameter.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import os
import random
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
import msgspec
import structlog
from pydantic import Field, SecretStr, field_validator, model_validator
from typing_extensions import override

from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError
from mimecast_connector._fields import (
    anchored_path,
    header_value_problem,
    http_url,
    path_text,
    secret_str,
    tls_verification,
)
from mimecast_connector._logging import redactor_of
from mimecast_connector.alerts import ONE_ENCODERS, Alert, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks._appendfile import write_error
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

#: The formats an index can take: JSON documents (``cef`` is a line of text).
IndexFormat = Literal["ecs", "native", "ocsf"]

DEFAULT_MAX_BODY = 10 * 1024 * 1024
#: Elasticsearch waits up to a minute (``timeout``) for a shard before it answers an item 503:
#: the read timeout lets that answer arrive.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=75.0, write=60.0, pool=30.0)
#: Only what the sink reads of the answer (both Elasticsearch and OpenSearch filter it).
FILTER_PATH = ",".join(
    (
        "errors",
        "items.*._id",
        "items.*.status",
        "items.*.error.type",
        "items.*.error.reason",
        "items.*.error.caused_by.type",
        "items.*.error.caused_by.reason",
    )
)
#: The most of a bulk answer read: a little, plus this much per item (filtered, an item is
#: ~60 bytes; with an error, a few hundred).
ANSWER_BASE, ANSWER_PER_ITEM = 64 * 1024, 2 * 1024
#: Reasons from the cluster are cut to this many characters in errors, logs and dead letters.
REASON_CAP = 500
#: The index template the sink installs outranks the cluster's own (``logs-*-*`` has 100).
TEMPLATE_PRIORITY = 200

#: Whole-request statuses the sink reads itself instead of HttpSender's generic refusal.
_GIVE_BACK = frozenset({400, 401, 403, 404, 413})
#: What a 413 says to do (logged when the cap is lowered).
_LOWER = (
    "the cluster's http.max_content_length (or a proxy's limit) is below max_body_bytes; lower "
    "max_body_bytes to match"
)
#: 400 items that are about the index, not the document: every alert would get them, so they
#: are a refusal to fix, not poison to set aside.
_INDEX_FAULTS = frozenset(
    {
        "index_closed_exception",
        "invalid_index_name_exception",
        "index_not_found_exception",
        "action_request_validation_exception",
        "cluster_block_exception",
    }
)
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDERS = ("tenant", "category")
#: Index names (Elasticsearch's rules): lowercase, none of these characters, not ``.``/``..``.
_INDEX_FORBIDDEN = set('\\/*?"<>|, #:')
_LONGEST_TENANT = 100  # the tenant name's own limit (config)
_LONGEST_CATEGORY = "impersonation"


# --- the bulk answer -----------------------------------------------------------------------


class _Cause(msgspec.Struct):
    type: str | None = None
    reason: str | None = None


class _Error(msgspec.Struct):
    type: str | None = None
    reason: str | None = None
    caused_by: _Cause | None = None


class _Result(msgspec.Struct):
    status: int
    id: str | None = msgspec.field(default=None, name="_id")
    error: _Error | None = None


class _Bulk(msgspec.Struct):
    items: list[dict[str, _Result]]
    errors: bool = False


_decode_bulk = msgspec.json.Decoder(_Bulk).decode


class _Refusal(msgspec.Struct):
    error: _Error | str | None = None


_decode_refusal = msgspec.json.Decoder(_Refusal).decode
_encode = msgspec.json.encode


def _error_text(error: _Error | None) -> str:
    """``type: reason`` (and the cause's), as the cluster said it."""
    if error is None:
        return "no error given"
    text = f"{error.type or 'error'}: {error.reason or ''}".rstrip(": ")
    if error.caused_by is not None and (error.caused_by.type or error.caused_by.reason):
        text += f" (caused by {error.caused_by.type or 'error'}: {error.caused_by.reason or ''})"
    return text


def _cut(text: str) -> str:
    return text if len(text) <= REASON_CAP else text[:REASON_CAP] + "..."


# --- documents and dead letters ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Doc:
    """One alert as a bulk action: its index, its document, and the two lines sent."""

    alert: Alert
    index: str
    source: bytes
    lines: bytes


def _join(docs: Sequence[_Doc]) -> bytes:
    return b"".join(doc.lines for doc in docs)


class _DeadLetter(msgspec.Struct):
    """One line of the dead-letter file: the alert's document as it was sent, and why the
    cluster refused it (so it can be sent again once the mapping is fixed)."""

    time: str
    sink: str
    index: str
    id: str
    tenant: str
    category: str
    status: int
    error: str
    document: msgspec.Raw


class DeadLetterFile:
    """Poison alerts set aside: appended and fsynced, at least once (a batch sent again after
    a crash sets its poison aside again; the lines carry the alert id). The file is opened
    for each append (dead letters are rare), owner-only, and a line cut short by an earlier
    failed write is ended before the next one."""

    def __init__(self, path: Path, sink: str) -> None:
        self.path = path
        self._sink = sink

    async def check(self) -> None:
        """Refuse at start a file that cannot be appended to, rather than at the first poison."""
        try:
            await asyncio.to_thread(self._append, b"")
        except OSError as exc:
            raise SinkRejectedError(
                f"cannot open its dead_letter file {str(self.path)!r} for appending: "
                f"{exc.strerror}; check the path, its folder and their permissions",
                sink=self._sink,
            ) from None

    async def append(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            raise write_error(self.path, self._sink, exc) from None

    def _append(self, data: bytes) -> None:
        flags = (
            os.O_RDWR | os.O_CREAT | os.O_APPEND
        )  # read: the last byte | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            size = os.fstat(fd).st_size
            if data and size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if data:
                os.fsync(fd)
        finally:
            os.close(fd)


# --- the sink ------------------------------------------------------------------------------


def authorization(
    api_key: SecretStr | None, username: str | None, password: SecretStr | None
) -> str | None:
    """The ``Authorization`` header: ``ApiKey`` with the key as Elastic shows it encoded (an
    ``id:key`` pair is encoded here), or ``Basic`` for a user, or None."""
    if api_key is not None:
        key = api_key.get_secret_value()
        if ":" in key:  # base64 never has a colon: this is id:api_key, not yet encoded
            key = base64.b64encode(key.encode()).decode("ascii")
        return f"ApiKey {key}"
    if username is not None and password is not None:
        pair = f"{username}:{password.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return None


def credential_forms(
    api_key: SecretStr | None, username: str | None, password: SecretStr | None
) -> list[str]:
    """Every secret text of these credentials, for redaction: the key as given, encoded, and
    its secret half (after ``id:``); the password, and ``user:password`` (which Basic encodes)."""
    found = [s.get_secret_value() for s in (api_key, password) if s is not None]
    header = authorization(api_key, username, password)
    if header is not None:
        found.append(header.split(" ", 1)[1])
    if api_key is not None:
        try:
            pair = base64.b64decode(header.split(" ", 1)[1] if header else "", validate=True)
        except ValueError:
            pair = b""
        _, colon, key = pair.decode("utf-8", "replace").partition(":")
        if colon and key:
            found.append(key)
    if username is not None and password is not None:
        found.append(f"{username}:{password.get_secret_value()}")
    return found


def index_namer(index: str) -> Callable[[Alert], str]:
    """Built once: the index of an alert, ``{tenant}`` (lowercased) and ``{category}`` filled."""
    if "{" not in index:
        return lambda alert: index
    template = index.replace("{tenant}", "{0}").replace("{category}", "{1}")
    return lambda alert: template.format(alert.tenant.lower(), alert.category)


def index_pattern(index: str) -> str:
    """The index name with its placeholders as ``*``: the indices the template applies to."""
    return _PLACEHOLDER.sub("*", index)


def index_template(index: str, format: IndexFormat, data_stream: bool) -> dict[str, Any]:
    """A minimal composable index template for the sink's indices.

    Only what dynamic mapping gets wrong or what can break it is mapped: the time as a date,
    ECS's IPs as ``ip``, and the raw record (``event.original`` / ``raw_data`` / ``raw``) kept
    in the document but not indexed: the raw Mimecast fields of four logs in one index would
    otherwise map the same name two ways and turn alerts into mapping errors.
    """
    unindexed = {"type": "keyword", "index": False, "doc_values": False}
    properties: dict[str, Any] = {
        "ecs": {
            "@timestamp": {"type": "date"},
            "event": {"properties": {"original": unindexed}},
            "source": {"properties": {"ip": {"type": "ip"}}},
            "related": {"properties": {"ip": {"type": "ip"}}},
        },
        "native": {
            "time": {"type": "date"},
            "raw": {"type": "object", "enabled": False},
        },
        "ocsf": {
            "time": {"type": "date", "format": "epoch_millis"},
            "raw_data": unindexed,
        },
    }[format]
    template: dict[str, Any] = {
        "index_patterns": [index_pattern(index)],
        "priority": TEMPLATE_PRIORITY,
        "template": {
            "mappings": {
                "_meta": {"managed_by": "mimecast-connector", "format": format},
                "properties": properties,
            }
        },
    }
    if data_stream:
        template["data_stream"] = {}
    return template


def template_name(index: str) -> str:
    """The installed template's name, from the index (placeholders read ``all``)."""
    return "mimecast-connector-" + index_pattern(index).replace("*", "all")


class ElasticsearchSink:
    """Index alerts with ``_bulk`` ``create`` actions, ``_id`` = alert id."""

    def __init__(
        self,
        url: str,
        format: IndexFormat = "ecs",
        *,
        index: str = "mimecast-alerts",
        data_stream: bool = False,
        api_key: SecretStr | None = None,
        username: str | None = None,
        password: SecretStr | None = None,
        gzip: bool = False,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        verify_tls: bool | str = True,
        dead_letter: Path | None = None,
        install_template: bool = False,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        base = url.rstrip("/")
        self._bulk_url = f"{base}/_bulk?filter_path={FILTER_PATH}"
        self._template_url = f"{base}/_index_template/{template_name(index)}"
        self._format: IndexFormat = format
        self._index = index
        self._index_of = index_namer(index)
        self._one = ONE_ENCODERS[format]
        self._gzip = gzip
        self._cap = max_body_bytes
        self._template = (
            _encode(index_template(index, format, data_stream)) if install_template else None
        )
        self._auth = authorization(api_key, username, password)
        if api_key is not None:
            self._credential = "api_key"
        elif self._auth is not None:
            self._credential = "username and password"
        else:
            self._credential = "no credentials (set api_key, or username and password)"
        #: Whatever the cluster says passes through this before it reaches an error, a log
        #: line or the dead-letter file: a careless proxy may echo the credentials.
        self._scrub = redactor_of(credential_forms(api_key, username, password))
        # The name keys the sink in the state store and shows in messages: no secret in it.
        self.name = f"{url_name('elasticsearch', url)}/{index}"
        self._dead = DeadLetterFile(dead_letter, self.name) if dead_letter is not None else None
        self._retry = retry or RetryPolicy(attempts=5, deadline=120.0)
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._sender = HttpSender(
            self.name,
            retry=self._retry,
            timeout=timeout or DEFAULT_TIMEOUT,
            transport=transport,
            clock=self._clock,
            rng=self._rng,
            verify=verify_tls,
            peer="the cluster",
            ca_setting="verify_tls",
        )
        self._tls_problem = self._sender.tls_problem
        common = {"Accept": "application/json", "User-Agent": "mimecast-connector"}
        if self._auth is not None:
            common["Authorization"] = self._auth
        self._template_headers = {**common, "Content-Type": "application/json"}
        self._bulk_headers = {**common, "Content-Type": "application/x-ndjson"}
        if gzip:
            self._bulk_headers["Content-Encoding"] = "gzip"

    def __repr__(self) -> str:
        return f"ElasticsearchSink({self.name!r}, format={self._format!r})"

    @property
    def format(self) -> Format:
        return self._format

    async def start(self, position: str | None) -> str | None:
        """Nothing to recover (the index keeps what it has); check the CA file and the
        dead-letter file."""
        if self._tls_problem is not None:
            raise SinkRejectedError(self._tls_problem, sink=self.name)
        if self._dead is not None:
            await self._dead.check()
        return None

    def committed(self, position: str | None) -> None:
        """Nothing to do: the index has no position."""

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        if not alerts:
            return None
        if self._template is not None:
            await self._install_template()
        pending = [self._doc(alert) for alert in alerts]
        poison: list[tuple[_Doc, int, str]] = []
        started = self._clock.monotonic()
        failures = 0
        while True:
            again, problem = await self._send(pending, poison)
            if not again:
                break
            failures += 1
            wait = self._retry.backoff(failures, self._rng)
            elapsed = self._clock.monotonic() - started
            if failures >= self._retry.attempts or elapsed + wait > self._retry.deadline:
                raise SinkUnavailableError(
                    f"{len(again)} of {len(alerts)} alerts not acknowledged after "
                    f"{failures} tries ({problem}); the batch stays unacknowledged and is sent "
                    "again on the next poll (alerts already indexed are answered 409 then, "
                    "not written twice)",
                    sink=self.name,
                )
            _log.warning(
                "sink_retrying_items",
                sink=self.name,
                items=len(again),
                problem=problem,
                attempt=failures,
                wait_s=round(wait, 3),
            )
            await self._clock.sleep(wait)
            pending = again
        if poison:
            await self._set_aside(poison)
        return None

    def _doc(self, alert: Alert, source: bytes | None = None) -> _Doc:
        index = self._index_of(alert)
        source = self._one(alert) if source is None else source
        action = b'{"create":{"_index":%b,"_id":%b}}\n' % (_encode(index), _encode(alert.id))
        return _Doc(alert, index, source, action + source + b"\n")

    def _shortened(self, doc: _Doc, limit: int) -> tuple[_Doc, bytes]:
        """``doc`` as a bulk request of at most ``limit`` bytes, and that request: its alert
        shortened (logged), or a refusal if even its own fields are over."""
        source = within(
            doc.alert,
            self._one,
            limit - (len(doc.lines) - len(doc.source)),  # the action line and line feeds
            sink=self.name,
            setting="what the cluster takes (HTTP 413)",
            advice="raise the cluster's http.max_content_length (or the limit of a proxy in "
            "front of it)",
        )
        short = self._doc(doc.alert, source)
        return short, short.lines

    async def _send(
        self, docs: Sequence[_Doc], poison: list[tuple[_Doc, int, str]]
    ) -> tuple[list[_Doc], str]:
        """Send ``docs`` in bodies under the cap; the items to try again, and why. Poison items
        are added to ``poison``; a refusal raises."""
        again: list[_Doc] = []
        problem = ""
        queue = deque(fit(docs, _join, self._cap))
        while queue:
            part, body = queue.popleft()
            answer = await self._post(body, len(part))
            if answer.status == 413:
                self._cap = refused_as_too_large(
                    queue,
                    part,
                    body,
                    self._cap,
                    sink=self.name,
                    advice=_LOWER,
                    encode=_join,
                    shorten=self._shortened,
                )
                continue
            if not 200 <= answer.status < 300:
                raise self._refused(answer, "a bulk request")
            for doc, result in zip(part, self._items(answer, part), strict=True):
                status = result.status
                if 200 <= status < 300 or status == 409:
                    continue  # 409: a create of an _id already there, from an earlier send
                reason = _cut(self._scrub(_error_text(result.error)))
                if status in (408, 429) or status >= 500:
                    again.append(doc)
                    problem = f"item HTTP {status}, {reason}"
                elif status == 400 and (
                    result.error is None or result.error.type not in _INDEX_FAULTS
                ):
                    poison.append((doc, status, reason))
                else:
                    raise SinkRejectedError(
                        f"the cluster refused alert {doc.alert.id} for index {doc.index!r} with "
                        f"HTTP {status} ({reason}); check the index and the privileges of "
                        f"{self._credential} (create_doc on it, auto_configure or "
                        "create_index to create it); not retried",
                        sink=self.name,
                    )
        return again, problem

    async def _post(self, body: bytes, count: int) -> Answer:
        data = await asyncio.to_thread(gzip.compress, body, 6, mtime=0) if self._gzip else body
        return await self._sender.send(
            "POST",
            self._bulk_url,
            body=data,
            headers=self._bulk_headers,
            read=ANSWER_BASE + ANSWER_PER_ITEM * count,
            give_back=_GIVE_BACK,
            what=f"a bulk request of {count} alerts",
        )

    def _items(self, answer: Answer, part: Sequence[_Doc]) -> list[_Result]:
        """The answer's items, one per document, in order; a refusal if it is no bulk answer."""
        try:
            bulk = _decode_bulk(answer.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            bulk = None
        results = [next(iter(item.values()), None) for item in bulk.items] if bulk else []
        if (
            bulk is None
            or len(results) != len(part)
            or any(
                r is None or (r.id is not None and r.id != d.alert.id)
                for r, d in zip(results, part, strict=True)
            )
        ):
            got = "items" if bulk is None else f"{len(results)} items for {len(part)} alerts"
            raise SinkRejectedError(
                f"the answer to a bulk request of {len(part)} alerts (HTTP {answer.status}, "
                f"{len(answer.body)} bytes) is not an Elasticsearch bulk answer ({got} not "
                "read); check that url is the cluster's (or its proxy's) address, not Kibana's",
                sink=self.name,
            )
        return [r for r in results if r is not None]

    def _refused(self, answer: Answer, what: str) -> SinkRejectedError:
        """The error for a request refused as a whole (401, 403, 400, 404)."""
        said = _cut(self._scrub(_refusal_text(answer.body)))
        advice = {
            401: f"the cluster did not accept the credentials: check {self._credential}",
            403: f"the cluster refused {self._credential} this request: it needs the "
            "create_doc privilege on the index (auto_configure or create_index to create it, "
            "manage_index_templates for install_template)",
            404: "nothing answers there: check url (the cluster's address, with any path a "
            "proxy puts in front of it)",
        }.get(answer.status, "the request is malformed (a fault of this sink: report it)")
        return SinkRejectedError(
            f"the cluster refused {what} with HTTP {answer.status} ({said}); {advice}; not retried",
            sink=self.name,
        )

    async def _install_template(self) -> None:
        """PUT the index template (idempotent: the same body each time), once per process,
        before the first document creates the index."""
        assert self._template is not None
        answer = await self._sender.send(
            "PUT",
            self._template_url,
            body=self._template,
            headers=self._template_headers,
            give_back=_GIVE_BACK,
            what="the index template",
        )
        if not 200 <= answer.status < 300:
            raise self._refused(answer, f"the index template (install_template) {self._index!r}")
        _log.info("sink_template_installed", sink=self.name, template=template_name(self._index))
        self._template = None

    async def _set_aside(self, poison: list[tuple[_Doc, int, str]]) -> None:
        first, status, reason = poison[0]
        if self._dead is None:
            raise SinkRejectedError(
                f"the cluster refused {len(poison)} alerts for good (HTTP {status}), first "
                f"{first.alert.id} for index {first.index!r}: {reason}; fix the index mapping, "
                "or set dead_letter to a file where such alerts are set aside so the others go "
                "on; not retried",
                sink=self.name,
            )
        when = datetime.fromtimestamp(self._clock.time(), UTC)
        now = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        lines = b"".join(
            _encode(
                _DeadLetter(
                    now,
                    self.name,
                    doc.index,
                    doc.alert.id,
                    doc.alert.tenant,
                    doc.alert.category,
                    status,
                    reason,
                    msgspec.Raw(doc.source),
                )
            )
            + b"\n"
            for doc, status, reason in poison
        )
        await self._dead.append(lines)
        _log.warning(
            "sink_dead_lettered",
            sink=self.name,
            alerts=len(poison),
            ids=[doc.alert.id for doc, _, _ in poison[:10]],
            first_error=reason,
            file=str(self._dead.path),
        )


def _refusal_text(body: bytes) -> str:
    """``type: reason`` of an Elasticsearch error body, or a note that there is none."""
    try:
        error = _decode_refusal(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "no Elasticsearch error in the answer"
    if isinstance(error, str):
        return error
    return _error_text(error)


# --- settings ------------------------------------------------------------------------------


def index_problem(index: str) -> str | None:
    """Why ``index`` cannot name an index or data stream (with ``{tenant}`` / ``{category}``
    filled by any tenant), or None."""
    unknown = [p for p in _PLACEHOLDER.findall(index) if p not in _PLACEHOLDERS]
    if unknown:
        return f"only {{tenant}} and {{category}} can be filled in, not {{{unknown[0]}}}"
    longest = index.replace("{tenant}", "t" * _LONGEST_TENANT)
    longest = longest.replace("{category}", _LONGEST_CATEGORY)
    if "{" in longest or "}" in longest:
        return "has an unmatched { or }"
    if not index[:1].isalnum() or not index[:1].isascii():
        return "must begin with a lowercase letter or a digit"
    if index != index.lower():
        return "must be lowercase"
    bad = sorted(_INDEX_FORBIDDEN & set(longest))
    if bad:
        return f"must not contain {' '.join(repr(c) for c in bad)}"
    if any(not c.isprintable() for c in longest):
        return "must not contain control characters"
    if len(longest.encode()) > 255:
        return "is longer than 255 bytes (with a tenant name of 100 characters filled in)"
    return None


class ElasticsearchSinkConfig(SinkSettings):
    """Alerts indexed in Elasticsearch or OpenSearch through ``_bulk``, one document each."""

    type: Literal["elasticsearch"]
    url: str
    index: str = "mimecast-alerts"
    data_stream: bool = False
    format: IndexFormat = "ecs"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    gzip: bool = False
    max_body_bytes: int = Field(DEFAULT_MAX_BODY, ge=64 * 1024, le=100 * 1024 * 1024)
    #: true: the system's CAs; a path: trust that PEM CA file only (Elasticsearch 8 makes its
    #: own CA at install); false: no check.
    verify_tls: bool | str = True
    dead_letter: str | None = None
    install_template: bool = False

    _secrets = field_validator("api_key", "password", mode="before")(secret_str)
    _url = field_validator("url")(http_url)
    _paths = field_validator("dead_letter", mode="before")(path_text)

    _verify = field_validator("verify_tls", mode="before")(tls_verification)

    @field_validator("url")
    @classmethod
    def _bare_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.query or parts.fragment:
            raise ValueError(
                "must be the cluster's address without a query or fragment (the sink adds "
                "/_bulk to it)"
            )
        return value

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        problem = index_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("api_key", "password")
    @classmethod
    def _header_safe(cls, value: SecretStr | None, info: Any) -> SecretStr | None:
        if value is not None:
            problem = header_value_problem(value.get_secret_value())
            if problem is not None or not value.get_secret_value():
                raise ValueError(
                    f"cannot be sent in an HTTP header: {problem or 'it is empty'} "
                    "(the value is not shown)"
                )
        return value

    @field_validator("username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None and (not value or ":" in value or header_value_problem(value)):
            raise ValueError("must be a non-empty ASCII user name without a colon")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> Self:
        from mimecast_connector.client import is_loopback_host

        if self.api_key is not None and (self.username is not None or self.password is not None):
            raise ValueError("set either api_key, or username and password, not both")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both, or use api_key")
        if self.api_key is None and self.username is None:
            host = urlsplit(self.url).hostname or ""
            if not is_loopback_host(host):
                raise ValueError(
                    "set api_key, or username and password (a cluster without credentials is "
                    "allowed only on loopback)"
                )
        if self.data_stream and self.format != "ecs":
            raise ValueError(
                f'a data stream needs @timestamp in every document, which format "ecs" has and '
                f'"{self.format}" has not: use format = "ecs", or a plain index '
                "(data_stream = false)"
            )
        return self

    @override
    def secrets(self) -> list[str]:
        """The API key and the password, in the forms they are sent in too."""
        return credential_forms(self.api_key, self.username, self.password)

    @override
    def local_files(self) -> list[tuple[str, Path]]:
        return [] if self.dead_letter is None else [("dead_letter", Path(self.dead_letter))]

    @override
    def anchored(self, base_dir: Path) -> Self:
        """Relative ``dead_letter`` and ``verify_tls`` paths are relative to the configuration's
        folder."""
        update = {
            key: anchored_path(value, base_dir)
            for key, value in (("dead_letter", self.dead_letter), ("verify_tls", self.verify_tls))
            if isinstance(value, str)
        }
        return self.model_copy(update=update) if update else self


def _build(settings: ElasticsearchSinkConfig) -> Sink:
    return ElasticsearchSink(
        settings.url,
        settings.format,
        index=settings.index,
        data_stream=settings.data_stream,
        api_key=settings.api_key,
        username=settings.username,
        password=settings.password,
        gzip=settings.gzip,
        max_body_bytes=settings.max_body_bytes,
        verify_tls=settings.verify_tls,
        dead_letter=Path(settings.dead_letter) if settings.dead_letter is not None else None,
        install_template=settings.install_template,
    )


KIND = SinkKind(
    type="elasticsearch",
    settings=ElasticsearchSinkConfig,
    build=_build,
    protocol="Elasticsearch / OpenSearch `_bulk` over HTTPS: a `create` per alert, `_id` = "
    "alert id",
    acknowledged="every item answered 201, or 409 (already indexed); a 400 mapping error is "
    "written to `dead_letter`",
    guarantee="exactly once in the index: a batch sent again is answered 409 (a data stream or "
    "alias that rolls over in between can hold a repeat)",
    order=40,
    tested_against="a loopback fake of the `_bulk` and index template APIs "
    "(`tests/sinks/es_receiver.py`)",
)
