"""The simulator's HTTP face: a standard-library threading server on loopback, and its log.

Each connection gets a thread; HTTP/1.1 keep-alive works and every response carries a
Content-Length, so a client with a connection pool (httpx) reuses connections as it would against
Mimecast. The server reads the request, hands it to :class:`~._api.Api` and writes whatever the
outcome says, honouring the delivery faults (delay, disconnect). It also records every request in
a :class:`RequestLog`. Stopping closes idle keep-alive connections too.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from typing_extensions import override

from mimecast_connector._categories import Category
from mimecast_connector.simulator._api import Api
from mimecast_connector.simulator._siemapi import FILES_PREFIX
from mimecast_connector.simulator._wire import Outcome, Request

_IDLE_TIMEOUT = 120.0  # seconds a kept-alive connection may sit idle before the server drops it
_MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request the simulator received, and how it answered.

    ``headers`` has lower-case names; ``json`` is the parsed body or None; ``status`` is None when
    the connection was dropped without an answer (the ``Disconnect`` fault); ``tenant`` and
    ``category`` are None when unknown (and for SIEM requests); ``time`` is the arrival time in
    seconds on the simulator's monotonic clock; ``query`` the undecoded query string;
    ``request_id`` the ``x-mc-req-id`` the answer carried (None: no answer, or a file download).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int | None
    tenant: str | None
    category: Category | None
    time: float
    query: str = ""
    request_id: str | None = None


class RequestLog:
    """Every request in arrival order, bounded to the most recent ``limit``. Thread-safe."""

    def __init__(self, limit: int | None) -> None:
        self._lock = threading.Lock()
        self._entries: deque[tuple[int, LoggedRequest]] = deque(maxlen=limit)
        self._arrivals = itertools.count()

    def arrival(self) -> int:
        """A ticket that orders a request by arrival, whenever it finishes."""
        return next(self._arrivals)

    def add(self, ticket: int, entry: LoggedRequest) -> None:
        """Record a finished request."""
        with self._lock:
            self._entries.append((ticket, entry))

    def entries(self) -> list[LoggedRequest]:
        """The recorded requests, in arrival order."""
        with self._lock:
            ordered = sorted(self._entries, key=lambda pair: pair[0])
        return [entry for _, entry in ordered]

    def clear(self) -> None:
        """Forget every recorded request."""
        with self._lock:
            self._entries.clear()


class HttpServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one simulator's :class:`Api` and :class:`RequestLog`."""

    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        *,
        api: Api,
        log: RequestLog,
        clock: Callable[[], float],
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.api = api
        self.log = log
        self.clock = clock
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @override
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away mid-request (killed, timed out) is normal here, not news."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket) -> None:
        """Remember an open connection, to close it on stop."""
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        """Forget a closed connection."""
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut down every open connection, idle keep-alive ones included."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time off a connection and writes the :class:`Outcome`."""

    protocol_version = "HTTP/1.1"
    server_version = "MimecastSimulator/1.0"
    sys_version = ""
    timeout = _IDLE_TIMEOUT
    disable_nagle_algorithm = True  # headers and body are two writes; don't wait on a delayed ACK
    server: HttpServer

    @override
    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    @override
    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    @override
    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; :class:`RequestLog` is the record."""

    def do_POST(self) -> None:
        """Every method goes through :meth:`_dispatch`; the API decides what is allowed."""
        self._dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST

    def _dispatch(self) -> None:
        server = self.server
        ticket = server.log.arrival()
        arrived = server.clock()
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        body = self._read_body(headers)
        target = urlsplit(self.path)
        path = target.path
        if body is None:
            outcome = Outcome(400, b'{"fail":[{"code":"bad_request","message":"Bad framing"}]}')
            outcome.headers["Connection"] = "close"  # the stream position is lost; start afresh
            request = Request(self.command, path, headers, b"", query=target.query)
        else:
            request = Request.build(self.command, path, headers, body, target.query)
            outcome = server.api.handle(request)
        request_id = None
        if not outcome.disconnect and not path.startswith(FILES_PREFIX):
            # Mimecast names each call it answers by its own id, which a support ticket quotes
            # (a presigned file download is the storage service's answer, without one).
            request_id = outcome.headers.setdefault("x-mc-req-id", str(uuid.uuid4()).upper())
        # Logged before answering (and before any delay): a client that has its answer, or has
        # given up waiting for it, can already see its request.
        server.log.add(
            ticket,
            LoggedRequest(
                method=request.method,
                path=request.path,
                headers=headers,
                body=request.body,
                json=request.json if request.is_json else None,
                status=None if outcome.disconnect else outcome.status,
                tenant=outcome.tenant,
                category=outcome.category,
                time=arrived,
                query=request.query,
                request_id=request_id,
            ),
        )
        if outcome.delay > 0:
            server.stopping.wait(outcome.delay)
        if outcome.disconnect:
            self.close_connection = True
        else:
            self._write(outcome)

    def _read_body(self, headers: dict[str, str]) -> bytes | None:
        """The request body, or None if its framing is broken."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return None
        if not 0 <= length <= _MAX_BODY:
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return None
            total += size
            if total > _MAX_BODY:
                return None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _write(self, outcome: Outcome) -> None:
        try:
            self.send_response(outcome.status)
            self.send_header("Content-Type", outcome.content_type)
            if outcome.stream is None:
                self.send_header("Content-Length", str(len(outcome.body)))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            for name, value in outcome.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command == "HEAD":
                pass
            elif outcome.stream is None:
                self.wfile.write(outcome.body)
            else:
                self._write_chunked(outcome.stream)
            self.wfile.flush()
        except OSError:  # the client went away; nothing left to tell it
            self.close_connection = True

    def _write_chunked(self, stream: Iterable[bytes]) -> None:
        """Send ``stream`` chunk by chunk as it is produced; give up when the server stops."""
        for chunk in stream:
            if self.server.stopping.is_set():
                self.close_connection = True  # the body is incomplete: the connection is done
                return
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")
