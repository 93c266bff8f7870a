"""A fake Elasticsearch / OpenSearch on loopback: the ``_bulk`` and ``_index_template`` APIs,
for the elasticsearch sink's tests.

Written from Elastic's public documentation of the Bulk API, the composable index template
API, data streams and the common ``filter_path`` option (OpenSearch documents the same). No
real cluster runs here, so this is what the sink is tested against; what it holds a request to:

* ``POST [/{index}]/_bulk``: ``Content-Type`` ``application/x-ndjson`` or ``application/json``
  (anything else, Elastic 8's ``compatible-with`` media types included, 406 as OpenSearch
  answers them); a gzip body when ``Content-Encoding: gzip``; query parameters the Bulk API
  knows (others: 400, as both answer an unknown parameter); a body over
  ``max_content_length`` (100 MiB by default, counted before decompression): 413.
* The body parsed strictly, as a whole-request 400 when malformed: it must end with a line
  feed; each action line is a JSON object with one action, whose metadata keys are known ones;
  the source line follows it. The fake takes ``create`` only, with ``_id`` (a real cluster also
  takes ``index``, ``update``, ``delete`` and makes ids up: the sink never sends those).
* Per item, in order: an index name breaking Elasticsearch's rules is ``400
  invalid_index_name_exception``; a source that is not a JSON object ``400
  document_parsing_exception``; in a data stream (named in ``data_streams``, or matching an
  installed template with ``data_stream``), a source without ``@timestamp`` the same; an
  ``(index, _id)`` already stored is ``409 version_conflict_engine_exception``; else it is
  stored and answered ``201``. ``errors`` is true when an item is not 2xx.
* ``Authorization`` must equal ``auth`` when set (else 401 ``security_exception``).
* ``PUT /_index_template/{name}``: a JSON object with ``index_patterns`` and only the keys the
  API knows; stored, answered ``{"acknowledged": true}``.
* ``filter_path`` is applied to the answer (dotted paths, ``*`` for one level).

What it does not do: mappings (no field is typed, so no mapping error happens unless scripted
with :meth:`EsReceiver.poison`), shards, replicas, refresh, routing, pipelines, rollover of a
data stream, index privileges (only the one credential is checked), or any other API.

Scripts: :meth:`EsReceiver.script` sets whole-request answers (401, 413, 429, 503, a hang-up)
for the next requests, before any parsing; :meth:`EsReceiver.fail_items` makes chosen ids
answer chosen item statuses (429, 503) their next times; :meth:`EsReceiver.poison` makes ids
answer a 400 mapping error every time; :meth:`EsReceiver.busy_items` answers every item of the
next bulk requests 429.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gzip
import json
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.sinks.receiver import Answer, Request

MAX_CONTENT_LENGTH = 100 * 1024 * 1024
BULK_PARAMS = frozenset(
    {
        "filter_path",
        "refresh",
        "pipeline",
        "routing",
        "timeout",
        "wait_for_active_shards",
        "require_alias",
        "require_data_stream",
        "_source",
        "_source_includes",
        "_source_excludes",
        "pretty",
        "human",
        "error_trace",
    }
)
ACTION_KEYS = frozenset(
    {
        "_index",
        "_id",
        "routing",
        "pipeline",
        "require_alias",
        "require_data_stream",
        "dynamic_templates",
        "version",
        "version_type",
        "if_seq_no",
        "if_primary_term",
        "list_executed_pipelines",
    }
)
TEMPLATE_KEYS = frozenset(
    {
        "index_patterns",
        "template",
        "composed_of",
        "priority",
        "version",
        "_meta",
        "data_stream",
        "allow_auto_create",
        "ignore_missing_component_templates",
        "deprecated",
    }
)
MEDIA_TYPES = frozenset({"application/x-ndjson", "application/json"})
INDEX_FORBIDDEN = set('\\/*?"<>|, #:')


def error_body(status: int, type: str, reason: str) -> bytes:
    """An error answer as Elasticsearch writes one."""
    cause = {"type": type, "reason": reason}
    return json.dumps({"error": {"root_cause": [cause], **cause}, "status": status}).encode()


def item_error(type: str, reason: str, index: str) -> dict[str, Any]:
    return {"type": type, "reason": reason, "index_uuid": "aAsFqTI0Tc2W0LCWgPNrOA", "index": index}


#: The error of each item status the fake can be scripted to answer.
ITEM_ERRORS = {
    429: (
        "es_rejected_execution_exception",
        "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, "
        "replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1, max_coordinating_and_"
        "primary_bytes=107374182]",
    ),
    500: ("exception", "Elasticsearch exception"),
    503: ("unavailable_shards_exception", "primary shard is not active Timeout: [1m]"),
}


def index_name_problem(name: str) -> str | None:
    if not name or name in {".", ".."}:
        return "must not be empty, '.' or '..'"
    if name != name.lower():
        return "must be lowercase"
    if name[0] in "-_+":
        return "must not start with '_', '-', or '+'"
    if INDEX_FORBIDDEN & set(name):
        return 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]'
    if len(name.encode()) > 255:
        return "index name is too long"
    return None


def filtered(value: Any, paths: list[list[str]]) -> Any:
    """``value`` with only what ``paths`` (split on dots, ``*`` a wildcard) select; None when
    nothing is. A list is filtered element by element, as ``filter_path`` does."""
    if isinstance(value, list):
        kept = [filtered(v, paths) for v in value]
        kept = [k for k in kept if k is not None]
        return kept or None
    if not isinstance(value, dict):
        return None
    out = {}
    for key, item in value.items():
        rest = [p[1:] for p in paths if fnmatch.fnmatchcase(key, p[0])]
        if not rest:
            continue
        if any(not r for r in rest):
            out[key] = item
            continue
        kept = filtered(item, [r for r in rest if r])
        if kept is not None:
            out[key] = kept
    return out or None


class _Fault(Exception):
    """A whole-request refusal, as (status, body)."""

    def __init__(self, status: int, type: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.body = error_body(status, type, reason)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: EsReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up is expected in these tests, not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read what the fake recorded."""

    def setup(self) -> None:
        super().setup()
        with self.server.fake._lock:
            self.server.fake.connections += 1
            self.server.fake._open.add(self.connection)

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        answer = self.server.fake._answer(request)
        if answer.close:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            headers = {"Content-Type": "application/json", **answer.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:
            self.close_connection = True


@dataclass(frozen=True)
class Bulk:
    """One bulk request the fake parsed: the (index, id) of each action, in order."""

    actions: list[tuple[str, str]]
    answer: dict[str, Any]


class EsReceiver:
    """The fake cluster: what it stores, its scripts, and what it received."""

    def __init__(
        self,
        *,
        auth: str | None = None,
        max_content_length: int = MAX_CONTENT_LENGTH,
        data_streams: Iterable[str] = (),
        honour_filter_path: bool = True,
        prefix: str = "",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.auth = auth
        self.max_content_length = max_content_length
        self.data_streams = set(data_streams)
        self.honour_filter_path = honour_filter_path
        self.prefix = prefix
        #: Every request as it arrived (bodies as sent: gzip stays gzip).
        self.requests: list[Request] = []
        #: Every bulk request parsed (not those refused as a whole).
        self.bulks: list[Bulk] = []
        #: Stored documents by (index, _id), and their keys in the order they were stored.
        self.docs: dict[tuple[str, str], bytes] = {}
        self.order: list[tuple[str, str]] = []
        self.templates: dict[str, dict[str, Any]] = {}
        self.connections = 0
        self._answers: deque[Answer] = deque()
        self._item_faults: dict[str, deque[int]] = {}
        self._poison: dict[str, tuple[int, str, str]] = {}
        self._busy = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.scheme = "http"
        if tls is not None:  # HTTPS, as a cluster with security on serves it
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    # --- the test's side -----------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{self.prefix}"

    def script(self, *answers: Answer | int) -> None:
        """Whole-request answers for the next requests (before parsing); a bare int is that
        status with an Elasticsearch error body."""
        with self._lock:
            self._answers.extend(a if isinstance(a, Answer) else self._status(a) for a in answers)

    def fail_items(self, id: str, *statuses: int) -> None:
        """The next times ``id`` comes, its item is answered these statuses (then normally)."""
        with self._lock:
            self._item_faults.setdefault(id, deque()).extend(statuses)

    def poison(
        self,
        id: str,
        type: str = "document_parsing_exception",
        reason: str = "[1:42] failed to parse field [severity] of type [long] in document with "
        "id 'ID'. Preview of field's value: 'high'",
        status: int = 400,
    ) -> None:
        """``id`` is answered an item error (a 400 mapping error unless told) every time."""
        with self._lock:
            self._poison[id] = (status, type, reason.replace("ID", id))

    def busy_items(self, requests: int = 1) -> None:
        """Every item of the next ``requests`` bulk requests is answered 429."""
        with self._lock:
            self._busy += requests

    def sources(self) -> list[bytes]:
        """The stored documents, in the order they were stored."""
        with self._lock:
            return [self.docs[key] for key in self.order]

    def ids(self, index: str | None = None) -> list[str]:
        with self._lock:
            return [i for x, i in self.order if index is None or x == index]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_, self._open = self._open, set()
        for connection in open_:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._thread.join(timeout=5)

    # --- the cluster's side --------------------------------------------------------------

    @staticmethod
    def _status(status: int) -> Answer:
        known = {
            401: ("security_exception", "missing authentication credentials for REST request"),
            403: ("security_exception", "action [indices:data/write/bulk] is unauthorized"),
            413: ("", ""),
            429: ("es_rejected_execution_exception", "rejected execution of bulk request"),
            503: ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not "),
        }
        type, reason = known.get(status, ("exception", f"scripted {status}"))
        headers = {"WWW-Authenticate": 'Basic realm="security", ApiKey'} if status == 401 else {}
        return Answer(status, headers, error_body(status, type, reason) if type else b"")

    def _answer(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            if self._answers:
                return self._answers.popleft()
            try:
                return self._route(request)
            except _Fault as fault:
                return Answer(fault.status, body=fault.body)

    def _route(self, request: Request) -> Answer:
        if self.auth is not None and request.headers.get("authorization") != self.auth:
            raise _Fault(
                401,
                "security_exception",
                f"unable to authenticate user for REST request [{urlsplit(request.path).path}]",
            )
        parts = urlsplit(request.path)
        path = parts.path
        if not path.startswith(self.prefix):
            raise _Fault(400, "illegal_argument_exception", f"no handler found for uri [{path}]")
        path = path[len(self.prefix) :]
        query = parse_qs(parts.query, keep_blank_values=True)
        segments = path.strip("/").split("/")
        if request.method == "POST" and segments[-1] == "_bulk" and len(segments) <= 2:
            default = segments[0] if len(segments) == 2 else None
            return self._bulk(request, query, default)
        if request.method == "PUT" and len(segments) == 2 and segments[0] == "_index_template":
            return self._template(segments[1], request.body)
        raise _Fault(
            400,
            "illegal_argument_exception",
            f"no handler found for uri [{path}] and method [{request.method}]",
        )

    def _template(self, name: str, body: bytes) -> Answer:
        try:
            template = json.loads(body)
        except ValueError:
            raise _Fault(400, "x_content_parse_exception", "request body is not JSON") from None
        if not isinstance(template, dict) or "index_patterns" not in template:
            raise _Fault(400, "action_request_validation_exception", "index patterns are missing")
        unknown = set(template) - TEMPLATE_KEYS
        if unknown:
            raise _Fault(400, "x_content_parse_exception", f"unknown field [{sorted(unknown)[0]}]")
        self.templates[name] = template
        return Answer(200, body=b'{"acknowledged":true}')

    def _is_stream(self, index: str) -> bool:
        if index in self.data_streams:
            return True
        return any(
            "data_stream" in t and any(fnmatch.fnmatchcase(index, p) for p in _patterns(t))
            for t in self.templates.values()
        )

    def _bulk(self, request: Request, query: dict[str, list[str]], default: str | None) -> Answer:
        unknown = sorted(set(query) - BULK_PARAMS)
        if unknown:
            raise _Fault(
                400,
                "illegal_argument_exception",
                f"request [/_bulk] contains unrecognized parameter: [{unknown[0]}]",
            )
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in MEDIA_TYPES:
            return Answer(
                406,
                body=json.dumps(
                    {"error": f"Content-Type header [{media}] is not supported", "status": 406}
                ).encode(),
            )
        body = request.body
        if len(body) > self.max_content_length:
            return Answer(413)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if encoding == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                raise _Fault(400, "illegal_argument_exception", "not gzip") from None
        elif encoding not in ("", "identity"):
            raise _Fault(400, "illegal_argument_exception", f"unsupported encoding {encoding}")
        actions = self._parse(body, default)
        items = []
        busy = self._busy > 0
        if busy:
            self._busy -= 1
        for index, id, source in actions:
            items.append({"create": self._create(index, id, source, busy)})
        answer = {
            "took": 3,
            "errors": any(not 200 <= i["create"]["status"] < 300 for i in items),
            "items": items,
        }
        self.bulks.append(Bulk([(i, d) for i, d, _ in actions], answer))
        if self.honour_filter_path and "filter_path" in query:
            paths = [p.split(".") for v in query["filter_path"] for p in v.split(",") if p]
            answer = filtered(answer, paths) or {}
        return Answer(200, {"X-Elastic-Product": "Elasticsearch"}, json.dumps(answer).encode())

    def _parse(self, body: bytes, default: str | None) -> list[tuple[str, str, bytes]]:
        if not body:
            raise _Fault(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: no requests added;",
            )
        if not body.endswith(b"\n"):
            raise _Fault(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            )
        lines = body[:-1].split(b"\n")
        if len(lines) % 2:
            raise _Fault(
                400,
                "illegal_argument_exception",
                f"Action/metadata line [{len(lines)}] has no source line (the fake takes "
                "create only, which needs one)",
            )
        actions = []
        for n in range(0, len(lines), 2):
            where = f"Malformed action/metadata line [{n + 1}]"
            try:
                action = json.loads(lines[n])
            except ValueError:
                raise _Fault(400, "x_content_parse_exception", f"{where}: not JSON") from None
            if not isinstance(action, dict) or len(action) != 1:
                raise _Fault(
                    400, "illegal_argument_exception", f"{where}, expected one action object"
                )
            [(verb, meta)] = action.items()
            if verb != "create":
                raise _Fault(
                    400,
                    "illegal_argument_exception",
                    f"{where}: the fake takes create only, not [{verb}]",
                )
            if not isinstance(meta, dict):
                raise _Fault(400, "illegal_argument_exception", f"{where}, expected START_OBJECT")
            unknown = sorted(set(meta) - ACTION_KEYS)
            if unknown:
                raise _Fault(
                    400,
                    "illegal_argument_exception",
                    f"Action/metadata line [{n + 1}] contains an unknown parameter [{unknown[0]}]",
                )
            index = meta.get("_index", default)
            id = meta.get("_id")
            if not isinstance(index, str):
                raise _Fault(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: index is missing;",
                )
            if not isinstance(id, str) or not id:
                raise _Fault(
                    400,
                    "action_request_validation_exception",
                    f"{where}: the fake needs an _id (a real cluster would make one up)",
                )
            actions.append((index, id, lines[n + 1]))
        return actions

    def _create(self, index: str, id: str, source: bytes, busy: bool) -> dict[str, Any]:
        result: dict[str, Any] = {"_index": index, "_id": id}

        def failed(status: int, type: str, reason: str) -> dict[str, Any]:
            return {**result, "status": status, "error": item_error(type, reason, index)}

        problem = index_name_problem(index)
        if problem is not None:
            return failed(
                400, "invalid_index_name_exception", f"Invalid index name [{index}], {problem}"
            )
        if busy:
            return failed(429, *ITEM_ERRORS[429])
        faults = self._item_faults.get(id)
        if faults:
            status = faults.popleft()
            return failed(status, *ITEM_ERRORS[status])
        if id in self._poison:
            return failed(*self._poison[id])
        try:
            document = json.loads(source)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            return failed(400, "document_parsing_exception", "[1:1] failed to parse")
        if self._is_stream(index) and "@timestamp" not in document:
            return failed(
                400,
                "document_parsing_exception",
                "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing",
            )
        if (index, id) in self.docs:
            return failed(
                409,
                "version_conflict_engine_exception",
                f"[{id}]: version conflict, document already exists (current version [1])",
            )
        self.docs[(index, id)] = source
        self.order.append((index, id))
        return {
            **result,
            "_version": 1,
            "result": "created",
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": len(self.order) - 1,
            "_primary_term": 1,
            "status": 201,
        }


def _patterns(template: dict[str, Any]) -> list[str]:
    patterns = template.get("index_patterns", [])
    return [patterns] if isinstance(patterns, str) else list(patterns)
