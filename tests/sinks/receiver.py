"""A scripted HTTP receiver on loopback, for the webhook sink's tests.

It records every request (method, path, headers, body) and answers each from a script the test
sets with :meth:`Receiver.script`; once the script is used up it answers ``200``. An answer can
be delayed, or can close the connection without a word. It listens on ``127.0.0.1`` on a port
the system picks, in daemon threads, so no traffic leaves the machine.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    """One scripted answer: a status with headers and body, after ``delay`` seconds.

    ``close`` drops the connection after reading the request, without any answer.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    close: bool = False


#: Hang up after reading the request, answering nothing.
HANG_UP = Answer(close=True)


@dataclass(frozen=True)
class Request:
    """One request as it arrived; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up on a slow answer is expected here, not worth a traceback."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads :attr:`Receiver.requests` instead."""

    def setup(self) -> None:
        super().setup()
        with self.server.receiver._lock:
            self.server.receiver.connections += 1
            self.server.receiver._open.add(self.connection)

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver = self.server.receiver
        answer = receiver._record(
            Request(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
        )
        if answer.delay and receiver._stopping.wait(answer.delay):
            self.close_connection = True
            return
        if answer.close:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
        except OSError:  # the client gave up waiting (a timeout test)
            self.close_connection = True


class Receiver:
    """The server, its script and what it received. Use :meth:`start` / :meth:`stop`."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: a server context, to answer HTTPS."""
        self.requests: list[Request] = []
        self.connections = 0  # accepted, for connection reuse
        self._open: set[socket.socket] = set()  # kept-alive connections, closed by stop()
        self._answers: deque[Answer] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.receiver = self
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

    def url(self, path: str = "/hook") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def script(self, *answers: Answer | int) -> None:
        """Queue answers for the next requests; a bare int is that status with no body."""
        with self._lock:
            self._answers.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def _record(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self._answers.popleft() if self._answers else Answer()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop as a receiver that goes down does: no new connections, and the kept-alive
        ones closed (a sender must not find it still answering on one)."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_, self._open = self._open, set()
        for connection in open_:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._thread.join(timeout=5)
