"""A lean HTTP/1.1 transport for httpx: keep-alive connections over asyncio streams.

Why it exists: with thousands of streams, httpcore's pool spends most of the connector's CPU
scanning every connection on every request (see issue 8 and ``benchmarks/tenants.py``). This
transport takes and returns a connection in O(1): per origin (scheme, host, port) it keeps a
deque of idle connections and a first-come-first-served bound on open ones.

What it guarantees, each bounded:

* At most ``max_connections`` open connections per origin. A request that finds none free waits
  its turn, first come first served, for at most the ``pool`` timeout, then ``httpx.PoolTimeout``.
* Every phase is timed from ``request.extensions["timeout"]`` (connect, read, write, pool; None is
  no limit) and fails as the matching ``httpx`` timeout. :meth:`Http11Transport.post` also takes
  the request's ``deadline`` (the loop's clock): every phase ends by it too, and past it the
  request fails with ``TimeoutError``, as an ``asyncio.timeout`` around it would, with one timer
  a phase instead of two. A phase that cannot wait (the request went to the socket whole, the
  body is already received) arms no timer.
* A response head is at most ``max_head_bytes`` (64 KiB) and ``max_headers`` (100) header lines;
  1xx heads are skipped (at most 10); anything malformed is ``httpx.RemoteProtocolError``.
* The body is read lazily, chunk by chunk (at most 64 KiB each), so the caller's size cap and
  deadline keep working; httpx decodes ``Content-Encoding`` as usual.
* A connection is reused only when its body was read to the end and neither side said
  ``Connection: close``; idle connections older than ``keepalive_expiry`` are closed.
* A request sent on a reused idle connection that fails before any byte of an answer arrived
  (the server closed it while idle) is retried once on a fresh connection, never later.
* TLS: one ``ssl.SSLContext`` for every connection, verified against certifi's CA bundle with
  hostname checking; a verification failure is ``httpx.ConnectError`` chained to the
  ``ssl.SSLCertVerificationError`` (``client._responses.certificate_failure`` finds it).

Only the client package uses this module; tests may pass ``ssl_context``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final

import certifi
import httpx

#: The most bytes of a response head (status line and headers) read before giving up.
MAX_HEAD_BYTES: Final = 64 * 1024
#: The most header lines in a response head (trailers of a chunked body included).
MAX_HEADERS: Final = 100
#: The most 1xx heads skipped before the final one.
MAX_INFORMATIONAL: Final = 10
#: The largest piece of a body handed to the caller at once.
READ_SIZE: Final = 64 * 1024

_NO_BODY_STATUS: Final = frozenset({204, 304})
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def default_ssl_context() -> ssl.SSLContext:
    """Verified TLS as httpx builds it: certifi's CAs, hostname checked, HTTP/1.1 by ALPN."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


class _NoAnswer(Exception):
    """The connection failed before any byte of a response arrived (may be retried once)."""

    def __init__(self, error: httpx.TransportError) -> None:
        super().__init__(str(error))
        self.error = error


class _Connection:
    __slots__ = ("idle_since", "origin", "reader", "writer")

    def __init__(
        self, origin: _Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self) -> bool:
        """False if the server already closed (or reset) it while it sat idle: O(1)."""
        return not (
            self.reader.at_eof() or self.reader.exception() is not None or self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class _Origin:
    """The connections to one (scheme, host, port): idle ones, and the bound on open ones."""

    __slots__ = ("host", "idle", "open", "port", "slots", "tls")

    def __init__(self, host: str, port: int, tls: bool, max_connections: int) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.idle: deque[_Connection] = deque()
        # One slot per connection open or being opened; asyncio.Semaphore wakes waiters FIFO.
        self.slots = asyncio.Semaphore(max_connections)


class Http11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with keep-alive over asyncio streams; see the module docstring for the bounds.

    ``max_connections`` bounds open connections per origin; ``ssl_context`` replaces the
    verified default (tests pass one trusting their own CA); ``keepalive_expiry`` is how long an
    idle connection is kept, in seconds.
    """

    def __init__(
        self,
        *,
        max_connections: int = 64,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = 5.0,
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self._max_connections = max_connections
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._max_head_bytes = max_head_bytes
        self._max_headers = max_headers
        self._origins: dict[tuple[bytes, str, int], _Origin] = {}
        self._open: set[_Connection] = set()
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"Http11Transport(origins={len(self._origins)}, open={len(self._open)}, "
            f"max_connections={self._max_connections})"
        )

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:  # built on first https use, then shared by all
            self._ssl_context = default_ssl_context()
        return self._ssl_context

    # --- the pool ------------------------------------------------------------------------

    def _origin(self, url: httpx.URL) -> _Origin:
        scheme = url.raw_scheme
        return self._origin_of(scheme, url.host, url.port or (443 if scheme == b"https" else 80))

    def _origin_of(self, scheme: bytes, host: str, port: int) -> _Origin:
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            if scheme not in (b"http", b"https"):
                raise httpx.UnsupportedProtocol(
                    f"the URL scheme must be http or https, not {scheme.decode(errors='replace')}"
                )
            origin = _Origin(host, port, scheme == b"https", self._max_connections)
            self._origins[key] = origin
        return origin

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        """The most recently used idle connection that is still usable, if any."""
        idle = origin.idle
        while idle:
            connection = idle.pop()
            if connection.usable() and (
                time.monotonic() - connection.idle_since < self._keepalive_expiry
            ):
                return connection
            self._discard(connection)
        return None

    def _give_back(self, connection: _Connection) -> None:
        """Return a connection whose answer was read to its end; expire the stalest idle ones."""
        origin = connection.origin
        now = time.monotonic()
        connection.idle_since = now
        idle = origin.idle
        idle.append(connection)
        while idle and now - idle[0].idle_since >= self._keepalive_expiry:
            self._discard(idle.popleft())
        origin.slots.release()

    def _discard(self, connection: _Connection) -> None:
        self._open.discard(connection)
        connection.close()

    async def _connect(
        self, origin: _Origin, limit: float | None, deadline: float | None
    ) -> _Connection:
        context = self._ssl() if origin.tls else None
        try:
            async with asyncio.timeout_at(_until(limit, deadline)):
                reader, writer = await asyncio.open_connection(
                    origin.host,
                    origin.port,
                    ssl=context,
                    server_hostname=origin.host if context is not None else None,
                    limit=self._max_head_bytes,
                )
        except TimeoutError as exc:
            if _past(deadline):
                raise
            raise httpx.ConnectTimeout(
                f"connecting to {origin.host}:{origin.port} took over {limit} s"
            ) from exc
        except (OSError, ssl.SSLError) as exc:  # SSLError is an OSError; named for the reader
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        connection = _Connection(origin, reader, writer)
        self._open.add(connection)
        return connection

    # --- one exchange --------------------------------------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        head, chunked = _head(
            request.method.encode("ascii"), request.url.raw_path, request.headers.raw
        )
        stream = request.stream
        # A body of bytes (ByteStream) is sent whole and may be sent again on a fresh
        # connection; a streamed one is sent as it comes, once.
        body: bytes | httpx.AsyncByteStream
        if isinstance(stream, httpx.ByteStream):
            body = b"".join(stream)
        elif isinstance(stream, httpx.AsyncByteStream):
            body = stream
        else:
            raise RuntimeError("an async transport needs an async request body")
        status, reason, headers, answer = await self._roundtrip(
            self._origin(request.url),
            head,
            body,
            chunked=chunked,
            no_body=request.method == "HEAD",
            close=_connection_close(request.headers.raw, False),
            timeouts=request.extensions.get("timeout", {}),
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=answer,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def post(
        self,
        scheme: bytes,
        host: str,
        port: int,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        timeouts: Mapping[str, float | None],
        deadline: float | None = None,
    ) -> tuple[int, list[tuple[bytes, bytes]], _Body]:
        """POST ``body`` to ``target`` (path and query) on that origin, without building httpx
        request and response objects (the client's hot path: one per page): the status, the
        response headers and the body, to be read (``async for``) and then closed
        (``aclose``). ``headers`` must include ``Host``; ``Content-Length`` is added. The
        bounds, timeouts and the retry on a stale idle connection are those of every request;
        ``deadline`` (the loop's clock) ends every phase, the body's reads included, with
        ``TimeoutError``."""
        head, chunked = _head(b"POST", target, [*headers, (b"Content-Length", b"%d" % len(body))])
        status, _, answer_headers, answer = await self._roundtrip(
            self._origin_of(scheme, host, port),
            head,
            body,
            chunked=chunked,
            no_body=False,
            close=_connection_close(headers, False),
            timeouts=timeouts,
            deadline=deadline,
        )
        return status, answer_headers, answer

    async def _roundtrip(
        self,
        origin: _Origin,
        head: bytes,
        body: bytes | httpx.AsyncByteStream,
        *,
        chunked: bool,
        no_body: bool,
        close: bool,
        timeouts: Mapping[str, float | None],
        deadline: float | None = None,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], _Body]:
        """One exchange on a connection of ``origin``: its slot, an idle or new connection, the
        request sent, the final head read; the body left to read from the returned ``_Body``.
        Each phase ends by its own timeout and by ``deadline`` (the loop's clock), if given."""
        if self._closed:
            raise RuntimeError("the transport is closed: make a new one")
        try:
            if origin.slots.locked():
                async with asyncio.timeout_at(_until(timeouts.get("pool"), deadline)):
                    await origin.slots.acquire()
            else:  # a free slot: taken at once, no timer to arm and cancel
                await origin.slots.acquire()
        except TimeoutError as exc:
            if _past(deadline):
                raise
            raise httpx.PoolTimeout(
                f"no connection to {origin.host}:{origin.port} was free within "
                f"{timeouts.get('pool')} s (at most {self._max_connections} are open)"
            ) from exc
        connection: _Connection | None = None
        try:
            connection = self._take_idle(origin)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(origin, timeouts.get("connect"), deadline)
            try:
                status, reason, headers, http10 = await self._exchange(
                    connection, head, body, chunked, timeouts, deadline
                )
            except _NoAnswer as failed:
                self._discard(connection)
                connection = None
                if not reused or not isinstance(body, bytes):
                    raise failed.error from failed.__cause__
                # The server closed the idle connection meanwhile: once more on a fresh one.
                connection = await self._connect(origin, timeouts.get("connect"), deadline)
                try:
                    status, reason, headers, http10 = await self._exchange(
                        connection, head, body, chunked, timeouts, deadline
                    )
                except _NoAnswer as again:
                    raise again.error from again.__cause__
            framing = _framing(no_body, close, status, headers, http10)
            answer = _Body(self, connection, framing, timeouts.get("read"), deadline)
        except BaseException:
            if connection is not None:
                self._discard(connection)
            origin.slots.release()
            raise
        return status, reason, headers, answer

    async def _exchange(
        self,
        connection: _Connection,
        head: bytes,
        body: bytes | httpx.AsyncByteStream,
        chunked: bool,
        timeouts: Mapping[str, float | None],
        deadline: float | None,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        """Send the request and read the final head: status, reason, headers, HTTP/1.0."""
        await self._send(connection, head, body, chunked, timeouts.get("write"), deadline)
        read_timeout = timeouts.get("read")
        reader = connection.reader
        for informational in range(MAX_INFORMATIONAL + 1):
            first = b""
            try:
                async with asyncio.timeout_at(_until(read_timeout, deadline)):
                    if informational == 0:
                        # One byte first, so a failure before any byte of an answer is known.
                        first = await reader.read(1)
                        if not first:
                            raise _NoAnswer(
                                httpx.RemoteProtocolError(
                                    "the server closed the connection without sending a response"
                                )
                            )
                    head = first + await reader.readuntil(b"\r\n\r\n")
            except TimeoutError as exc:
                if _past(deadline):
                    raise
                raise httpx.ReadTimeout(f"no response head within {read_timeout} s") from exc
            except asyncio.IncompleteReadError as exc:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection in the middle of the response head"
                ) from exc
            except asyncio.LimitOverrunError as exc:
                raise httpx.RemoteProtocolError(
                    f"the response head is over {self._max_head_bytes} bytes"
                ) from exc
            except OSError as exc:
                error = httpx.ReadError(str(exc) or type(exc).__name__)
                if not first and informational == 0:
                    raise _NoAnswer(error) from exc
                raise error from exc
            status, reason, headers, http10 = self._parse_head(head)
            if status >= 200:
                return status, reason, headers, http10
            if status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols (101), unsupported")
        raise httpx.RemoteProtocolError(f"more than {MAX_INFORMATIONAL} 1xx responses")

    async def _send(
        self,
        connection: _Connection,
        head: bytes,
        body: bytes | httpx.AsyncByteStream,
        chunked: bool,
        limit: float | None,
        deadline: float | None,
    ) -> None:
        writer = connection.writer
        try:
            if isinstance(body, bytes):
                if chunked:  # httpx frames bytes by Content-Length; a caller may not
                    body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
                writer.write(head + body)
                if writer.transport.get_write_buffer_size() == 0:
                    # All of it went to the socket at once (a small request, the common case):
                    # nothing can wait, so no timer to arm and cancel.
                    await writer.drain()
                    return
            async with asyncio.timeout_at(_until(limit, deadline)):
                if not isinstance(body, bytes):
                    writer.write(head)
                    async for part in body:
                        if chunked:
                            if part:
                                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                        else:
                            writer.write(part)
                        await writer.drain()
                    if chunked:
                        writer.write(b"0\r\n\r\n")
                await writer.drain()
        except TimeoutError as exc:
            if _past(deadline):
                raise
            raise httpx.WriteTimeout(f"sending the request took over {limit} s") from exc
        except OSError as exc:
            # Nothing of an answer was read yet: a reused connection may be retried.
            raise _NoAnswer(httpx.WriteError(str(exc) or type(exc).__name__)) from exc

    def _parse_head(self, head: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]], bool]:
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        version = parts[0]
        if (
            len(parts) < 2
            or version not in (b"HTTP/1.1", b"HTTP/1.0")
            or len(parts[1]) != 3
            or not parts[1].isdigit()
        ):
            raise httpx.RemoteProtocolError(f"malformed status line: {lines[0][:80]!r}")
        if len(lines) - 1 > self._max_headers:
            raise httpx.RemoteProtocolError(f"more than {self._max_headers} response headers")
        headers = [_header(line) for line in lines[1:]]
        return int(parts[1]), parts[2] if len(parts) > 2 else b"", headers, version == b"HTTP/1.0"

    async def aclose(self) -> None:
        """Close every connection, idle or in use; the transport cannot be used after."""
        self._closed = True
        connections, self._open = self._open, set()
        for origin in self._origins.values():
            origin.idle.clear()
        for connection in connections:
            connection.close()
        for connection in connections:
            try:
                async with asyncio.timeout(1.0):
                    await connection.writer.wait_closed()
            except (OSError, TimeoutError, ssl.SSLError):
                pass  # closing anyway; the peer's manners do not matter now


def _head(
    method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[bytes, bool]:
    """The request line and headers, and whether the body is chunked. A line break in a name
    or a value (a token from a hostile answer, say) would split the head: refused. (Checked on
    the whole block: each line writes one CR and one LF, so any more came from a header.)"""
    block = b"".join([b"%s: %s\r\n" % header for header in headers])
    if block.count(b"\n") != len(headers) or block.count(b"\r") != len(headers):
        raise httpx.LocalProtocolError("a request header contains a line break")
    chunked = b"chunked" in block.lower() and any(
        name.lower() == b"transfer-encoding" and value.lower() == b"chunked"
        for name, value in headers
    )
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, block), chunked


def _until(limit: float | None, deadline: float | None) -> float | None:
    """When a phase allowed ``limit`` seconds from now must end on the loop's clock: then, or
    at the request's ``deadline`` if that comes first (None: no end)."""
    if limit is None:
        return deadline
    end = asyncio.get_running_loop().time() + limit
    return end if deadline is None or end < deadline else deadline


def _past(deadline: float | None) -> bool:
    """Whether the request's ``deadline`` has come: a phase's timer that fired then is the
    request's ``TimeoutError``, not the phase's own httpx timeout."""
    return deadline is not None and asyncio.get_running_loop().time() >= deadline


def _buffered(reader: asyncio.StreamReader) -> bytes | bytearray:
    """The bytes ``reader`` has received and not handed out (its ``read`` returns them without
    waiting, so no timer is armed for it). asyncio keeps them in ``_buffer``, not public; where
    it is not there, nothing is taken as buffered and every read is timed."""
    buffer = getattr(reader, "_buffer", b"")
    return buffer if isinstance(buffer, bytes | bytearray) else b""


def _header(line: bytes) -> tuple[bytes, bytes]:
    name, colon, value = line.partition(b":")
    if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
        raise httpx.RemoteProtocolError(f"malformed response header line: {line[:80]!r}")
    return name, value.strip(b" \t")


def _connection_close(headers: Sequence[tuple[bytes, bytes]], http10: bool) -> bool:
    tokens = [
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    ]
    if http10:
        return b"keep-alive" not in tokens
    return b"close" in tokens


def _framing(
    no_body: bool, close: bool, status: int, headers: list[tuple[bytes, bytes]], http10: bool
) -> tuple[int | None, bool, bool]:
    """How the body ends: (Content-Length or None, chunked, connection reusable after it).
    ``no_body``: the request was HEAD; ``close``: the request said ``Connection: close``."""
    keep = not close and not _connection_close(headers, http10)
    if no_body or status in _NO_BODY_STATUS:
        return 0, False, keep
    encodings = [v for n, v in headers if n.lower() == b"transfer-encoding"]
    if encodings:
        if b",".join(encodings).split(b",")[-1].strip().lower() == b"chunked":
            return None, True, keep
        return None, False, False  # delimited by the close of the connection
    lengths = {v.strip() for n, v in headers if n.lower() == b"content-length"}
    if not lengths:
        return None, False, False  # no framing: the body ends when the server closes
    length = next(iter(lengths))
    if len(lengths) > 1 or not length.isdigit() or len(length) > 18:
        raise httpx.RemoteProtocolError(f"bad Content-Length: {sorted(lengths)!r}")
    return int(length), False, keep


class _Body(httpx.AsyncByteStream):
    """A response body read lazily from its connection; returns or closes it at the end."""

    def __init__(
        self,
        transport: Http11Transport,
        connection: _Connection,
        framing: tuple[int | None, bool, bool],
        read_timeout: float | None,
        deadline: float | None = None,
    ) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
        self._length, self._chunked, self._keep = framing
        self._read_timeout = read_timeout
        self._deadline = deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        reader = connection.reader
        try:
            if self._chunked:
                async for part in self._chunks(reader):
                    yield part
            elif self._length is not None:
                remaining = self._length
                while remaining:
                    part = await self._read(reader, min(remaining, READ_SIZE))
                    if not part:
                        raise httpx.RemoteProtocolError(
                            f"the server closed the connection {remaining} bytes short of "
                            f"the {self._length} its Content-Length said"
                        )
                    remaining -= len(part)
                    yield part
            else:
                while part := await self._read(reader, READ_SIZE):
                    yield part
        except TimeoutError:  # the request's deadline (an OSError, but not the socket's)
            self._close()
            raise
        except OSError as exc:
            self._close()
            raise httpx.ReadError(str(exc) or type(exc).__name__) from exc
        except BaseException:  # a protocol error, a timeout, or the caller stopped early
            self._close()
            raise
        self._done()

    async def _read(self, reader: asyncio.StreamReader, size: int) -> bytes:
        if _buffered(reader):  # returned at once: nothing to time
            return await reader.read(size)
        try:
            async with asyncio.timeout_at(_until(self._read_timeout, self._deadline)):
                return await reader.read(size)
        except TimeoutError as exc:
            if _past(self._deadline):
                raise
            raise httpx.ReadTimeout(f"the server sent nothing for {self._read_timeout} s") from exc

    async def _line(self, reader: asyncio.StreamReader) -> bytes:
        try:
            if b"\r\n" in _buffered(reader):  # returned at once: nothing to time
                line = await reader.readuntil(b"\r\n")
            else:
                async with asyncio.timeout_at(_until(self._read_timeout, self._deadline)):
                    line = await reader.readuntil(b"\r\n")
        except TimeoutError as exc:
            if _past(self._deadline):
                raise
            raise httpx.ReadTimeout(f"the server sent nothing for {self._read_timeout} s") from exc
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError(
                "the server closed the connection in the middle of a chunked body"
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("a chunk size or trailer line is too long") from exc
        return line[:-2]

    async def _chunks(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        while True:
            line = await self._line(reader)
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or not _HEX.issuperset(size_text):
                raise httpx.RemoteProtocolError(f"bad chunk size line: {line[:40]!r}")
            remaining = int(size_text, 16)
            if remaining == 0:
                break
            while remaining:
                part = await self._read(reader, min(remaining, READ_SIZE))
                if not part:
                    raise httpx.RemoteProtocolError(
                        "the server closed the connection in the middle of a chunk"
                    )
                remaining -= len(part)
                yield part
            if await self._line(reader) != b"":
                raise httpx.RemoteProtocolError("a chunk is longer than its size said")
        for _ in range(MAX_HEADERS + 1):  # trailers, ignored
            if await self._line(reader) == b"":
                return
        raise httpx.RemoteProtocolError(f"more than {MAX_HEADERS} trailer lines")

    def _done(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._keep and connection.usable():
            self._transport._give_back(connection)
        else:
            self._transport._discard(connection)
            connection.origin.slots.release()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._transport._discard(connection)
            connection.origin.slots.release()

    async def aclose(self) -> None:
        """Closed before its end, the connection cannot carry another answer: close it."""
        self._close()
