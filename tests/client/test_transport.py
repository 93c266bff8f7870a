"""Http11Transport against small asyncio servers on 127.0.0.1, scripted by each test.

Each server counts the connections it accepted, so reuse and its limits are checked from the
server's side; each handler answers one request at a time on its connection.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from mimecast_connector import ApiError
from mimecast_connector.client import (
    ClientOptions,
    HmacSigner,
    HttpPool,
    MimecastClient,
    RetryPolicy,
)
from mimecast_connector.client._transport import Http11Transport, _head

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


class Server:
    """An asyncio server on 127.0.0.1; ``handler`` runs once per connection."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.active = 0
        self.most_active = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/path?q=1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await self.handler(reader, writer, self)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None when the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def answering(*responses: bytes, keep_open: bool = True) -> Handler:
    """Answer each request on a connection with the next response, the last one repeating."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        count = 0
        while await server.read_request(reader) is not None:
            writer.write(responses[min(count, len(responses) - 1)])
            await writer.drain()
            count += 1
            if not keep_open:
                return

    return handle


def ok(body: bytes = b"hello", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


async def get(transport: Http11Transport, url: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport) as client:
        return await client.get(url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def transport() -> AsyncIterator[Http11Transport]:
    t = Http11Transport()
    yield t
    await t.aclose()


def client_of(transport: Http11Transport, **timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(timeouts.get("all", 5.0), **timeouts_of(timeouts)),
    )


def timeouts_of(given: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in given.items() if k != "all"}


# --- keep-alive and framing ------------------------------------------------------------------


async def test_sequential_requests_share_one_keep_alive_connection(
    transport: Http11Transport,
) -> None:
    """Five requests one after another: the server accepts one connection and sees five requests."""
    async with Server(answering(ok())) as server, client_of(transport) as client:
        for _ in range(5):
            response = await client.post(server.url, content=b"body-bytes")
            assert response.status_code == 200
            assert response.content == b"hello"
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_the_request_is_sent_as_built_with_host_target_and_body(
    transport: Http11Transport,
) -> None:
    """The request line carries path and query; Host, Content-Length and the body are as httpx built them."""
    async with Server(answering(ok())) as server, client_of(transport) as client:
        await client.post(server.url, content=b"0123456789", headers={"X-Test": "yes"})
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /path?q=1 HTTP/1.1"
    assert f"host: 127.0.0.1:{server.port}".encode() in [line.lower() for line in lines]
    assert b"content-length: 10" in [line.lower() for line in lines]
    assert b"x-test: yes" in [line.lower() for line in lines]
    assert body == b"0123456789"


async def test_a_streamed_request_body_is_sent_chunked() -> None:
    """An async-iterator body without a length goes out with chunked framing the server can read."""
    seen: list[bytes] = []

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        body = b""
        while (size := int((await reader.readuntil(b"\r\n"))[:-2], 16)) != 0:
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
        seen.append(body)
        writer.write(ok())
        await writer.drain()

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defg"

    transport = Http11Transport()
    async with Server(handle) as server, client_of(transport) as client:
        response = await client.post(server.url, content=parts())
    assert response.status_code == 200
    assert seen == [b"abcdefg"]


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n"
)


@pytest.mark.parametrize(
    "response",
    [ok(b"hello, world"), CHUNKED],
    ids=["content-length", "chunked"],
)
async def test_bodies_framed_by_length_or_chunks_arrive_whole_and_keep_the_connection(
    transport: Http11Transport, response: bytes
) -> None:
    """Content-Length and chunked bodies read to their end; a second request reuses the connection."""
    async with Server(answering(response)) as server, client_of(transport) as client:
        for _ in range(2):
            assert (await client.get(server.url)).content == b"hello, world"
    assert server.connections == 1


async def test_a_body_until_close_is_read_and_the_connection_not_reused(
    transport: Http11Transport,
) -> None:
    """No length, no chunks: the body ends at the server's close, and the next request connects anew."""
    response = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    async with (
        Server(answering(response, keep_open=False)) as server,
        client_of(transport) as client,
    ):
        for _ in range(2):
            assert (await client.get(server.url)).content == b"all of it"
    assert server.connections == 2


async def test_a_gzip_body_is_decoded_by_httpx(transport: Http11Transport) -> None:
    """Content-Encoding: gzip reaches the caller decoded."""
    packed = gzip.compress(b'{"data": []}' * 100)
    async with (
        Server(answering(ok(packed, b"Content-Encoding: gzip\r\n"))) as server,
        client_of(transport) as client,
    ):
        response = await client.get(server.url)
    assert response.content == b'{"data": []}' * 100


@pytest.mark.parametrize("header", [b"Connection: close\r\n", b"Connection: keep-alive, close\r\n"])
async def test_connection_close_from_the_server_is_honoured(
    transport: Http11Transport, header: bytes
) -> None:
    """A response saying Connection: close is not reused: two requests, two connections."""
    async with (
        Server(answering(ok(extra=header), keep_open=False)) as server,
        client_of(transport) as client,
    ):
        for _ in range(2):
            assert (await client.get(server.url)).content == b"hello"
    assert server.connections == 2


async def test_connection_close_from_the_request_is_honoured(transport: Http11Transport) -> None:
    """A request saying Connection: close does not leave its connection idle for the next."""
    async with Server(answering(ok())) as server, client_of(transport) as client:
        for _ in range(2):
            await client.get(server.url, headers={"Connection": "close"})
    assert server.connections == 2


async def test_an_http_1_0_answer_without_keep_alive_is_not_reused(
    transport: Http11Transport,
) -> None:
    """HTTP/1.0 defaults to close (as the stdlib http.server answers): each request connects anew."""
    response = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with Server(answering(response)) as server, client_of(transport) as client:
        for _ in range(2):
            assert (await client.get(server.url)).content == b"ok"
    assert server.connections == 2


async def test_100_continue_is_skipped_and_head_and_204_have_no_body(
    transport: Http11Transport,
) -> None:
    """A 1xx head before the answer is skipped; HEAD and 204 answers end at their head and keep the connection."""
    responses = (
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"),
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",  # to HEAD: no body follows
        b"HTTP/1.1 204 No Content\r\n\r\n",
        ok(b"last"),
    )
    async with Server(answering(*responses)) as server, client_of(transport) as client:
        assert (await client.get(server.url)).content == b"after"
        head = await client.head(server.url)
        assert (head.status_code, head.content) == (200, b"")
        assert (await client.get(server.url)).status_code == 204
        assert (await client.get(server.url)).content == b"last"
    assert server.connections == 1


# --- the retry-once path ---------------------------------------------------------------------


async def one_then_close(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
) -> None:
    """Answer one request, then drop the connection while the client holds it idle (after
    promising keep-alive)."""
    await server.read_request(reader)
    writer.write(ok())
    await writer.drain()
    await asyncio.sleep(0.05)


async def test_a_connection_the_server_closed_while_idle_is_retried_once_on_a_fresh_one() -> None:
    """The server closes each connection after one answer: the stale idle one is skipped, every request succeeds."""

    transport = Http11Transport()
    try:
        async with Server(one_then_close) as server, client_of(transport) as client:
            for _ in range(3):
                assert (await client.get(server.url)).content == b"hello"
                await asyncio.sleep(0.1)  # the server has closed it by now
    finally:
        await transport.aclose()
    assert server.connections == 3
    assert len(server.requests) == 3


async def test_a_reused_connection_is_retried_once_when_the_close_races_the_request() -> None:
    """The server reads the second request then closes without a byte: retried on a fresh connection."""

    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.read_request(reader)
        writer.write(ok())
        await writer.drain()
        await server.read_request(reader)  # the reused request: read, never answered

    transport = Http11Transport()
    try:
        async with Server(one_answer_per_connection) as server, client_of(transport) as client:
            assert (await client.get(server.url)).content == b"hello"
            assert (await client.get(server.url)).content == b"hello"
    finally:
        await transport.aclose()
    assert server.connections == 2
    assert len(server.requests) == 3  # first, the unanswered one, and its one retry


async def test_no_retry_once_bytes_of_an_answer_were_read() -> None:
    """A reused connection that sends half a head then closes fails; the request is not sent again."""

    async def half_second_answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.read_request(reader)
        writer.write(ok())
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200")
        await writer.drain()

    transport = Http11Transport()
    try:
        async with Server(half_second_answer) as server, client_of(transport) as client:
            await client.get(server.url)
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(server.url)
    finally:
        await transport.aclose()
    assert len(server.requests) == 2
    assert server.connections == 1


async def test_a_fresh_connection_closed_without_an_answer_is_not_retried(
    transport: Http11Transport,
) -> None:
    """On a new connection there is no stale-idle excuse: one request, RemoteProtocolError."""

    async def read_and_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.read_request(reader)

    async with Server(read_and_close) as server, client_of(transport) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await client.get(server.url)
    assert server.connections == 1


# --- malformed answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n",
    ],
    ids=["short-content-length", "short-chunk", "bad-chunk-size", "chunk-longer-than-size"],
)
async def test_a_truncated_or_misframed_body_is_a_remote_protocol_error(
    transport: Http11Transport, response: bytes
) -> None:
    """A body shorter than promised, or with bad chunk framing, fails as RemoteProtocolError."""
    async with (
        Server(answering(response, keep_open=False)) as server,
        client_of(transport) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)
    assert transport.open_connections == 0


@pytest.mark.parametrize(
    "response",
    [
        b"SMTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
        b"HTTP/1.1 200 OK\r\n" + b"X-H: v\r\n" * 101 + b"\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
    ids=[
        "protocol",
        "status",
        "no-colon",
        "space-in-name",
        "two-lengths",
        "101-headers",
        "64k-head",
        "101",
    ],
)
async def test_a_malformed_head_is_a_remote_protocol_error(
    transport: Http11Transport, response: bytes
) -> None:
    """Bad status lines, bad header lines, too many or too large headers: RemoteProtocolError, connection closed."""
    async with (
        Server(answering(response, keep_open=False)) as server,
        client_of(transport) as client,
    ):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(server.url)
    assert transport.open_connections == 0


# --- timeouts and the bound --------------------------------------------------------------------


async def silent(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
) -> None:
    await asyncio.sleep(5)


async def test_a_server_that_never_answers_is_a_read_timeout(transport: Http11Transport) -> None:
    """No response head within the read timeout: httpx.ReadTimeout."""
    async with Server(silent) as server, client_of(transport, read=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url)


async def test_a_body_that_stalls_is_a_read_timeout(transport: Http11Transport) -> None:
    """A head, then silence in the middle of the body: httpx.ReadTimeout, connection closed."""

    async def stall(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await asyncio.sleep(5)

    async with Server(stall) as server, client_of(transport, read=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url)
    assert transport.open_connections == 0


async def test_a_tls_handshake_that_never_comes_is_a_connect_timeout(
    transport: Http11Transport,
) -> None:
    """TCP accepted but no TLS handshake within the connect timeout: httpx.ConnectTimeout."""
    async with Server(silent) as server, client_of(transport, connect=0.2) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get(server.url.replace("http:", "https:"))


async def test_a_server_that_reads_nothing_is_a_write_timeout(transport: Http11Transport) -> None:
    """A body larger than the socket buffers to a server that never reads: httpx.WriteTimeout."""
    async with Server(silent) as server, client_of(transport, write=0.3) as client:
        with pytest.raises(httpx.WriteTimeout):
            await client.post(server.url, content=b"x" * (64 * 1024 * 1024))


async def test_no_free_connection_within_the_pool_timeout_is_a_pool_timeout() -> None:
    """One connection allowed and held by an unread response: the next request fails with PoolTimeout."""
    transport = Http11Transport(max_connections=1)
    try:
        async with Server(answering(ok())) as server, client_of(transport, pool=0.2) as client:
            async with client.stream("GET", server.url):
                with pytest.raises(httpx.PoolTimeout):
                    await client.get(server.url)
            assert (await client.get(server.url)).content == b"hello"  # free again after
    finally:
        await transport.aclose()


async def test_more_requests_than_connections_wait_their_turn_and_all_succeed() -> None:
    """Twenty concurrent requests over at most three connections: all 200, the server never sees a fourth."""

    async def slow(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        while await server.read_request(reader) is not None:
            await asyncio.sleep(0.02)
            writer.write(ok())
            await writer.drain()

    transport = Http11Transport(max_connections=3)
    try:
        async with Server(slow) as server, client_of(transport) as client:
            responses = await asyncio.gather(*(client.get(server.url) for _ in range(20)))
    finally:
        await transport.aclose()
    assert [r.status_code for r in responses] == [200] * 20
    assert server.most_active <= 3
    assert server.connections <= 3


async def test_a_response_closed_before_its_end_does_not_give_its_connection_back(
    transport: Http11Transport,
) -> None:
    """Read one chunk of a 1 MiB body, close: the connection is closed and the next request connects anew."""
    async with Server(answering(ok(b"z" * 1024 * 1024))) as server, client_of(transport) as client:
        async with client.stream("GET", server.url) as response:
            async for _ in response.aiter_raw():
                break
        assert transport.open_connections == 0
        assert (await client.get(server.url)).content == b"z" * 1024 * 1024
    assert server.connections == 2


async def test_a_cancelled_request_closes_its_connection(transport: Http11Transport) -> None:
    """Cancelled while waiting for the answer (as the client's deadline does): no connection kept or leaked."""
    async with Server(silent) as server, client_of(transport) as client:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await client.get(server.url)
        assert transport.open_connections == 0


async def test_aclose_closes_every_connection() -> None:
    """Idle and in-use connections alike are closed by aclose."""
    transport = Http11Transport()
    async with Server(answering(ok())) as server, client_of(transport) as client:
        await client.get(server.url)
        async with (
            client.stream("GET", server.url.replace("?q=1", "?q=2")),
            client.stream("GET", server.url),
        ):
            assert transport.open_connections == 2
            await transport.aclose()
            assert transport.open_connections == 0


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 it signed, and a self-signed one, made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make certificates")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=folder)  # noqa: S603

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "ca.key",
        "-out", "ca.pem", "-subj", "/CN=test CA")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", "server.pem", "-extfile", "ext.cnf")  # fmt: skip
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", "self.key",
        "-out", "self.pem", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")  # fmt: skip
    return folder


def server_tls(folder: Path, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / f"{name}.pem", folder / f"{name}.key")
    return context


async def test_tls_to_a_server_the_context_trusts_is_verified_and_kept_alive(
    certificates: Path,
) -> None:
    """With the test CA trusted, https to 127.0.0.1 works, hostname checked, over one connection."""
    trusting = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    transport = Http11Transport(ssl_context=trusting)
    try:
        async with (
            Server(answering(ok()), tls=server_tls(certificates, "server")) as server,
            client_of(transport) as client,
        ):
            for _ in range(3):
                assert (await client.get(server.url)).content == b"hello"
    finally:
        await transport.aclose()
    assert server.connections == 1


async def test_tls_with_an_untrusted_certificate_is_a_connect_error_chained_to_ssl(
    certificates: Path, transport: Http11Transport
) -> None:
    """The default context (certifi) refuses the test CA: ConnectError with the ssl error as its cause."""
    async with (
        Server(answering(ok()), tls=server_tls(certificates, "server")) as server,
        client_of(transport) as client,
    ):
        with pytest.raises(httpx.ConnectError) as caught:
            await client.get(server.url)
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


async def test_a_self_signed_certificate_is_a_certificate_error_through_the_client(
    certificates: Path,
) -> None:
    """MimecastClient over this transport: a self-signed server is CertificateError, a config fault, not retried."""
    from mimecast_connector._errors import CertificateError

    auth = HmacSigner(
        app_id="app",
        app_key=SecretStr("app-key-value"),
        access_key=SecretStr("access-key-value"),
        secret_key=SecretStr("c2VjcmV0LWtleS1ieXRlcw=="),
    )
    transport = Http11Transport()
    async with Server(answering(ok()), tls=server_tls(certificates, "self")) as server:
        async with MimecastClient(
            tenant="acme",
            base_url=f"https://127.0.0.1:{server.port}",
            auth=auth,
            transport=transport,
            options=ClientOptions(retry=RetryPolicy(initial=0.01, maximum=0.01)),
        ) as client:
            with pytest.raises(ApiError) as caught:
                await client.check()
        await transport.aclose()
    assert isinstance(caught.value, CertificateError), repr(caught.value)
    assert caught.value.fault == "config"
    assert not caught.value.retryable


# --- the wiring ------------------------------------------------------------------------------


async def test_the_pool_uses_this_transport_when_no_test_transport_is_given() -> None:
    """HttpPool's client for a real host goes through Http11Transport, bounded by max_in_flight."""
    pool = HttpPool(max_in_flight=7)
    try:
        client = pool.client("https://api.services.mimecast.com")
        transport = client._transport
        assert isinstance(transport, Http11Transport)
        assert repr(transport).endswith("max_connections=7)")
    finally:
        await pool.aclose()


async def test_a_cookie_set_for_one_tenant_never_reaches_another_on_the_shared_client() -> None:
    """Two tenants share one host's client: a Set-Cookie answered to the first is not sent with the second's request (nor kept at all)."""
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=tenantA-secret; Path=/"})

    transport = httpx.MockTransport(answer)
    pool = HttpPool()
    try:
        first = pool.client("https://api.services.mimecast.com", transport)
        second = pool.client("https://api.services.mimecast.com", transport)
        assert first is second, "the premise: both tenants share one client"
        await first.post("https://api.services.mimecast.com/oauth/token")
        await second.post("https://api.services.mimecast.com/api/ttp/url/get-logs")
        assert seen == [None, None]
        assert len(first.cookies.jar) == 0
    finally:
        await pool.aclose()


# --- the client's direct path (Http11Transport.post) ------------------------------------------


async def post(
    transport: Http11Transport,
    server: Server,
    headers: list[tuple[bytes, bytes]],
    deadline: float | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    status, answer, body = await transport.post(
        b"http", "127.0.0.1", server.port, b"/api/x?y=1", headers, b"0123456789", {"read": 5.0},
        deadline,
    )  # fmt: skip
    return status, dict(answer), b"".join([part async for part in body])


def seconds_from_now(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


def head_then_drip(head: bytes, drips: int = 0, every: float = 0.05) -> Handler:
    """Read the request, send ``head`` (and any start of a body), then a byte every ``every``
    seconds ``drips`` times, then nothing."""

    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        await server.read_request(reader)
        writer.write(head)
        for _ in range(drips):
            await writer.drain()
            await asyncio.sleep(every)
            writer.write(b" ")
        await asyncio.sleep(5)

    return handle


async def body_of(
    transport: Http11Transport, server: Server, read: float, deadline_in: float
) -> tuple[int, httpx.AsyncByteStream]:
    """The status and the body, to be read, of a post with that read timeout and a deadline
    ``deadline_in`` seconds from now."""
    status, _, body = await transport.post(
        b"http", "127.0.0.1", server.port, b"/", [(b"Host", b"h")], b"", {"read": read},
        seconds_from_now(deadline_in),
    )  # fmt: skip
    return status, body


async def test_post_past_its_deadline_without_an_answer_is_a_timeout_error(
    transport: Http11Transport,
) -> None:
    """A silent server, a deadline well before the 5 s read timeout: TimeoutError (not
    httpx.ReadTimeout) at the deadline."""
    async with Server(silent) as server:
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError) as caught:
            await post(transport, server, [(b"Host", b"h")], seconds_from_now(0.3))
        took = asyncio.get_running_loop().time() - started
    assert not isinstance(caught.value, httpx.TimeoutException)
    assert 0.25 < took < 2.0


async def test_a_body_trickling_past_the_deadline_is_a_timeout_error_and_not_reused(
    transport: Http11Transport,
) -> None:
    """A byte every 50 ms (each read well within the read timeout) until past the deadline:
    TimeoutError while the body is read, and its connection is closed, not given back."""
    trickle = head_then_drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 1000)
    async with Server(trickle) as server:
        status, body = await body_of(transport, server, read=5.0, deadline_in=0.5)
        assert status == 200
        received: list[bytes] = []

        async def read() -> None:
            async for part in body:
                received.append(part)

        with pytest.raises(TimeoutError) as caught:
            await read()
        assert not isinstance(caught.value, httpx.TimeoutException)
        assert 0 < len(b"".join(received)) < 1000
        assert transport.open_connections == 0


async def test_a_small_answer_arms_one_timer_its_head_and_none_for_its_body(
    transport: Http11Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Head and body arrive together: on a kept-alive connection the head's wait is timed,
    the body (already received) is read without a timer; the answer is whole."""
    timers: list[float | None] = []
    real = asyncio.timeout_at

    def counted(when: float | None) -> asyncio.Timeout:
        timers.append(when)
        return real(when)

    monkeypatch.setattr(asyncio, "timeout_at", counted)
    async with Server(answering(ok(b"x" * 5000))) as server:
        deadline = seconds_from_now(30.0)
        await post(transport, server, [(b"Host", b"h")], deadline)  # connects: a timer more
        timers.clear()
        for _ in range(3):
            assert (await post(transport, server, [(b"Host", b"h")], deadline))[2] == b"x" * 5000
    assert server.connections == 1
    assert len(timers) == 3
    assert all(when is not None and when <= deadline for when in timers)


async def test_a_slow_body_is_still_bounded_by_the_read_timeout_before_the_deadline(
    transport: Http11Transport,
) -> None:
    """The body stalls after its first bytes: httpx.ReadTimeout after the 0.2 s read timeout,
    long before the 30 s deadline (the deadline does not replace the phase's own timeout)."""
    stall = head_then_drip(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    async with Server(stall) as server:
        _, body = await body_of(transport, server, read=0.2, deadline_in=30.0)
        with pytest.raises(httpx.ReadTimeout):
            async for _ in body:
                pass


async def test_post_sends_its_head_as_given_and_keeps_the_connection(
    transport: Http11Transport,
) -> None:
    """post(): request line, given headers and Content-Length as sent; status, headers and body read back; two posts share one connection."""
    async with Server(answering(ok(b"answer", b"X-Reply: 1\r\n"))) as server:
        for _ in range(2):
            status, headers, body = await post(transport, server, [(b"Host", b"h.example")])
            assert (status, headers[b"X-Reply"], body) == (200, b"1", b"answer")
    head, _, sent = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/x?y=1 HTTP/1.1"
    assert lines[1:] == [b"Host: h.example", b"Content-Length: 10"]
    assert sent == b"0123456789"
    assert server.connections == 1


async def test_post_refuses_a_header_with_a_line_break(transport: Http11Transport) -> None:
    """A header value with CR or LF (a hostile token, say) is refused before anything is sent."""
    async with Server(answering(ok())) as server:
        with pytest.raises(httpx.LocalProtocolError):
            await post(transport, server, [(b"Authorization", b"Bearer x\r\nX-Evil: 1")])
    assert server.requests == []


@pytest.mark.parametrize(
    "header",
    [(b"X-A", b"one\rtwo"), (b"X-A", b"one\ntwo"), (b"X-\rA", b"v"), (b"X-\nA", b"v"),
     (b"X-A", b"v\r\n")],
    ids=["CR in a value", "LF in a value", "CR in a name", "LF in a name", "CRLF at the end"],
)  # fmt: skip
def test_a_head_with_a_line_break_anywhere_in_a_header_is_refused(
    header: tuple[bytes, bytes],
) -> None:
    """Every place a CR or LF could hide in a header (among clean ones) is refused."""
    with pytest.raises(httpx.LocalProtocolError):
        _head(b"POST", b"/x", [(b"Host", b"h"), header, (b"Accept", b"*/*")])


def test_a_head_is_written_line_by_line_and_says_whether_it_is_chunked() -> None:
    """Request line, one line a header in order, a blank line; chunked whatever the case."""
    head, chunked = _head(b"POST", b"/x?y=1", [(b"Host", b"h"), (b"X-Chunked", b"chunked")])
    assert (head, chunked) == (
        b"POST /x?y=1 HTTP/1.1\r\nHost: h\r\nX-Chunked: chunked\r\n\r\n",
        False,
    )
    assert _head(b"POST", b"/", [(b"Transfer-Encoding", b"Chunked")])[1] is True
    assert _head(b"GET", b"/", [])[0] == b"GET / HTTP/1.1\r\n\r\n"


async def test_post_on_a_connection_closed_while_idle_is_retried_once() -> None:
    """post() meets a stale idle connection like any request: once more on a fresh one."""

    transport = Http11Transport()
    try:
        async with Server(one_then_close) as server:
            for _ in range(3):
                assert (await post(transport, server, [(b"Host", b"h")]))[2] == b"hello"
                await asyncio.sleep(0.1)
    finally:
        await transport.aclose()
    assert server.connections == 3


def hmac_auth() -> HmacSigner:
    return HmacSigner(
        app_id="app",
        app_key=SecretStr("app-key-value"),
        access_key=SecretStr("access-key-value"),
        secret_key=SecretStr("c2VjcmV0LWtleS1ieXRlcw=="),
    )


async def test_the_client_posts_directly_with_host_agent_and_no_compression_asked() -> None:
    """MimecastClient on a shared pool without a test transport: its request carries Host, our User-Agent and Accept-Encoding identity, and the page is read."""
    page = b'{"meta": {"status": 200}, "data": [], "fail": []}'
    pool = HttpPool()
    try:
        async with Server(answering(ok(page, b"Content-Type: application/json\r\n"))) as server:
            client = MimecastClient(
                tenant="acme",
                base_url=f"http://127.0.0.1:{server.port}",
                auth=hmac_auth(),
                http=pool,
            )
            await client.check()
    finally:
        await pool.aclose()
    head = server.requests[0].partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert f"host: 127.0.0.1:{server.port}".encode() in head
    assert b"user-agent: mimecast-connector" in head
    assert b"accept-encoding: identity" in head
    assert not any(line.startswith(b"cookie") for line in head)


async def test_a_compressed_answer_nobody_asked_for_is_an_upstream_format_error() -> None:
    """A server that gzips although identity was asked: UpstreamFormatError naming the encoding, not a garbled page."""
    from mimecast_connector._errors import UpstreamFormatError

    packed = gzip.compress(b'{"meta": {"status": 200}, "data": [], "fail": []}')
    pool = HttpPool()
    try:
        async with Server(answering(ok(packed, b"Content-Encoding: gzip\r\n"))) as server:
            client = MimecastClient(
                tenant="acme",
                base_url=f"http://127.0.0.1:{server.port}",
                auth=hmac_auth(),
                http=pool,
                options=ClientOptions(retry=RetryPolicy(initial=0.01, maximum=0.01, attempts=2)),
            )
            with pytest.raises(UpstreamFormatError, match=r"compressed.*gzip"):
                await client.check()
    finally:
        await pool.aclose()
