"""The run's HTTP face: ``/metrics``, ``/healthz`` and ``/readyz``, on the run's event loop.

A small HTTP/1.1 server of our own on ``asyncio.start_server``: one request per connection
(answered with ``Connection: close``), ``GET`` and ``HEAD`` only, no request body read. It
cannot be wedged by a slow or hostile client, because everything is bounded:

* a request head of at most :data:`MAX_HEAD` bytes (else 431), read within :data:`HEAD_TIMEOUT`
  seconds (else the connection is closed: a client trickling bytes holds nothing for long);
* an answer written within :data:`WRITE_TIMEOUT` seconds (a client that does not read it is
  dropped);
* at most :data:`MAX_CONNECTIONS` connections at once; one more is closed at once.

``/healthz`` answers 200 while the process is alive; ``/readyz`` 200 when every stream is
collecting, or degraded for less than three of its poll intervals, else 503 with a short
plain-text list of what is not ready; ``/metrics`` the registry in Prometheus' text format,
gzipped when the scraper accepts it (Prometheus does: at 3,000 tenants the text is ~8 MB).
With a token, every path but ``/healthz`` requires ``Authorization: Bearer <token>``,
compared in constant time; a request without it gets 401, and nothing of the token is ever
logged or echoed.

The dashboard (``dashboard``, given as ``dashboard=``) adds its routes: ``/`` and its JSON and
static files, under the same token rule. A browser has no way to send a header on its own,
so ``/login`` (open to anyone, with the stylesheet and script it loads: a form, no data) asks
for the token and sends it once as a header to ``/session``, which answers with an HttpOnly,
SameSite=Strict cookie holding an HMAC of the token (never the token); the cookie is then
accepted as the header is. A browser asking for a page without either is sent to ``/login``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

_log = structlog.get_logger("mimecast_connector.observe")

#: The largest request head read (request line and headers).
MAX_HEAD = 8 * 1024
#: Seconds a client has to send its whole request head.
HEAD_TIMEOUT = 5.0
#: Seconds a client has to take the whole answer.
WRITE_TIMEOUT = 10.0
#: Connections served at once; one more is closed without an answer.
MAX_CONNECTIONS = 32
#: Streams listed by a 503 from ``/readyz`` at most (then how many more).
NOT_READY_SHOWN = 50

#: The dashboard's session cookie: an HMAC of the token under this label (``/session``).
SESSION_COOKIE = "mc_dashboard"
_SESSION_LABEL = b"mimecast-connector dashboard session"
#: Seconds a session cookie lasts.
SESSION_SECONDS = 12 * 3600

_REASONS = {
    200: "OK",
    204: "No Content",
    303: "See Other",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    400: "Bad Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    """What a route sees: the method, the path and the query (undecoded), the headers (names
    in lower case)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = _TEXT
    headers: Mapping[str, str] = field(default_factory=dict)


#: A route: a request in, an answer out.
Route = Callable[[Request], Awaitable[Response]]


class Pages(Protocol):
    """More routes, with something to close when the server closes (the dashboard)."""

    @property
    def routes(self) -> Mapping[str, Route]: ...

    #: Paths answered to anyone, token or not (a login form).
    @property
    def public(self) -> frozenset[str]: ...

    async def aclose(self) -> None: ...


def registry_text(registry: CollectorRegistry) -> Callable[[], Callable[[], bytes]]:
    """``MetricsServer``'s ``metrics`` for a plain registry."""
    return lambda: functools.partial(generate_latest, registry)


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` (and any ``routes`` added) on ``host:port``.

    ``not_ready`` lists the streams that are not ready (empty: ready) and ``total`` how many
    there are; ``refresh`` is awaited before ``/metrics`` and ``/readyz`` answer (a fleet
    worker reads the other workers' health); ``token`` guards every path but ``/healthz``.
    ``head_timeout`` and ``max_connections`` are the bounds above (tests shorten them).
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Callable[[], Callable[[], bytes]] | None,
        not_ready: Callable[[], list[str]] = list,
        total: Callable[[], int] = int,
        refresh: Callable[[], Awaitable[None]] | None = None,
        token: str | None = None,
        routes: Mapping[str, Route] | None = None,
        dashboard: Pages | None = None,
        head_timeout: float = HEAD_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """``metrics``: takes a snapshot of the run's metrics (on the event loop) and returns
        what renders it in the text format (run on a thread: 12,000 streams are ~130,000
        lines); ``registry_text`` makes one of a registry. None: no ``/metrics`` and
        ``/readyz`` (the ``dashboard`` command's server, which has no run to tell about)."""
        self._host, self._port = host, port
        self._snapshot = metrics
        self._not_ready = not_ready
        self._total = total
        self._refresh = refresh
        self._token = None if token is None else token.encode()
        self._session = (
            None
            if token is None
            else hmac.new(token.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest().encode()
        )
        self._dashboard = dashboard
        self._public = {"/healthz"} | (set(dashboard.public) if dashboard is not None else set())
        self._routes: dict[str, Route] = {"/healthz": self._healthz}
        if metrics is not None:
            self._routes.update({"/metrics": self._metrics, "/readyz": self._readyz})
        if dashboard is not None:
            self._routes.update(dashboard.routes)
            self._routes["/session"] = self._start_session
        self._routes.update(routes or {})
        self._head_timeout = head_timeout
        self._max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None

    async def start(self) -> tuple[str, int]:
        """Listen; return the address bound (the port chosen, for port 0). OSError if the
        address cannot be had (in use, not this machine's)."""
        self._server = await asyncio.start_server(
            self._connected, self._host, self._port, limit=MAX_HEAD, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        _log.info(
            "metrics_serving",
            host=self.address[0],
            port=self.address[1],
            paths=sorted(self._routes),
            token_required=self._token is not None,
        )
        return self.address

    async def aclose(self) -> None:
        if self._dashboard is not None:
            await self._dashboard.aclose()
        if self._server is not None:
            self._server.close()
            for task in list(self._open):
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None

    # --- one connection ----------------------------------------------------------------------

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or len(self._open) >= self._max_connections:
            writer.transport.abort()
            return
        self._open.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or was too slow: nothing to tell it
        finally:
            self._open.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self._head_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await self._answer(writer, "GET", Response(431, b"request head too large\n"))
            return
        except TimeoutError:
            await self._answer(writer, "GET", Response(408, b"request head too slow\n"))
            return
        request = _parse(head)
        if request is None:
            await self._answer(writer, "GET", Response(400, b"malformed request\n"))
            return
        await self._answer(writer, request.method, await self._route(request))

    async def _route(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", headers={"Allow": "GET, HEAD"})
        route = self._routes.get(request.path)
        if route is None:
            paths = (
                "/, /metrics, /healthz, /readyz"
                if self._dashboard
                else "/metrics, /healthz, /readyz"
            )
            return Response(404, f"not found: {paths}\n".encode())
        if request.path not in self._public and not self._authorized(request):
            if self._dashboard is not None and "text/html" in request.headers.get("accept", ""):
                return Response(303, b"log in first: /login\n", headers={"Location": "/login"})
            return Response(
                401,
                b"this endpoint needs Authorization: Bearer <metrics_token>\n",
                headers={"WWW-Authenticate": 'Bearer realm="mimecast-connector"'},
            )
        try:
            return await route(request)
        except Exception as exc:  # a bug: answer it, never take the run down
            _log.error("metrics_route_failed", path=request.path, error=type(exc).__name__)
            return Response(500, b"internal error; see the connector's log\n")

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        return self._bearer(request) or self._has_session(request)

    def _bearer(self, request: Request) -> bool:
        assert self._token is not None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Compared in constant time, and always compared (no early exit on a wrong scheme).
        matches = hmac.compare_digest(given.strip().encode(), self._token)
        return matches and scheme.lower() == "bearer"

    def _has_session(self, request: Request) -> bool:
        """The dashboard's cookie, compared in constant time (only where there is a dashboard)."""
        if self._dashboard is None or self._session is None:
            return False
        given = b""
        for part in request.headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                given = value.encode("latin-1", "replace")
        return hmac.compare_digest(given, self._session)

    async def _answer(self, writer: asyncio.StreamWriter, method: str, response: Response) -> None:
        head = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Connection: close",
            "Cache-Control: no-store",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if method != "HEAD":
            writer.write(response.body)
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()

    # --- the routes --------------------------------------------------------------------------

    async def _metrics(self, request: Request) -> Response:
        assert self._snapshot is not None
        if self._refresh is not None:
            await self._refresh()
        # Text format 0.0.4, which every Prometheus reads (the names need no escaping); the
        # snapshot here, the text on a thread, so that the polls go on meanwhile.
        render = self._snapshot()
        if not accepts_gzip(request.headers.get("accept-encoding", "")):
            return Response(200, await asyncio.to_thread(render), CONTENT_TYPE_PLAIN_0_0_4)
        body = await asyncio.to_thread(lambda: gzip.compress(render(), compresslevel=1, mtime=0))
        headers = {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
        return Response(200, body, CONTENT_TYPE_PLAIN_0_0_4, headers)

    async def _start_session(self, request: Request) -> Response:
        """The dashboard's cookie, for a browser that sent the token as a header once (the
        login form's script); with no token configured there is nothing to remember."""
        if self._session is None:
            return Response(204)
        if not self._bearer(request):  # a cookie alone does not make a new one
            return Response(401, b"send Authorization: Bearer <token>\n")
        cookie = (
            f"{SESSION_COOKIE}={self._session.decode()}; HttpOnly; SameSite=Strict; Path=/; "
            f"Max-Age={SESSION_SECONDS}"
        )
        return Response(204, headers={"Set-Cookie": cookie})

    async def _healthz(self, request: Request) -> Response:
        return Response(200, b"ok\n")

    async def _readyz(self, request: Request) -> Response:
        if self._refresh is not None:
            await self._refresh()
        waiting = self._not_ready()
        if not waiting:
            return Response(200, f"ready: {self._total()} streams\n".encode())
        lines = [
            f"not ready: {len(waiting)} of {self._total()} streams",
            *waiting[:NOT_READY_SHOWN],
        ]
        if len(waiting) > NOT_READY_SHOWN:
            lines.append(f"... and {len(waiting) - NOT_READY_SHOWN} more")
        return Response(503, ("\n".join(lines) + "\n").encode("utf-8", "replace"))


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value lets the answer be gzip (RFC 9110 12.5.3): named,
    or ``*``, with a weight above zero; ``gzip;q=0`` refuses it."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        weight = 1.0
        name, _, value = parameters.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                weight = 0.0
        weights[coding.strip().lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def _parse(head: bytes) -> Request | None:
    """The request line and headers, or None if they are not HTTP/1.x."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return None
    method, target, _ = parts
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        headers[name.lower()] = value.strip()
    return Request(method, path, query, headers)
