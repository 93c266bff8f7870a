"""The client against servers that misbehave: empty pages that go on, trickling bodies, bad TLS.

Each test sets up one hostile server (the simulator with a fault, an in-process httpx transport,
or a loopback socket server) and checks that the client neither loses records silently nor
exceeds its bounds, and that its message says what happened.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest
from pydantic import SecretStr

from mimecast_connector import (
    ApiError,
    Category,
    PaginationError,
    UnavailableError,
    UpstreamFormatError,
)
from mimecast_connector.client import (
    ClientOptions,
    MimecastClient,
    OAuth2ClientCredentials,
    RetryPolicy,
)
from mimecast_connector.simulator import Simulator, faults
from tests.fakes import FakeClock

END = datetime.now(UTC).replace(microsecond=0)
START = END - timedelta(hours=2)
T0 = 1_764_000_000


async def collect(client: MimecastClient, category: Category = Category.URL) -> list[bytes]:
    return [bytes(r) async for p in client.pages(category, START, END) for r in p.records]


# --- defect 5: empty pages that still carry next --------------------------------------------


@pytest.mark.parametrize("empty_pages", [1, 3])
async def test_empty_pages_with_next_are_followed_to_the_end(empty_pages: int) -> None:
    """Against the simulator, pages 2..k empty with a fresh next: all 400 records still arrive."""
    with Simulator(seed=21) as sim:
        tenant = sim.add_tenant("acme")
        tenant.generate(Category.URL, count=400, start=START, end=END)
        auth = OAuth2ClientCredentials(tenant.client_id, SecretStr(tenant.client_secret))
        options = ClientOptions(page_size=50)
        async with MimecastClient(
            tenant="acme", base_url=sim.url, auth=auth, options=options
        ) as client:
            expected = await collect(client)
            pages = client.pages(Category.URL, START, END)
            first = await anext(pages)
            sim.inject(faults.EmptyPageWithNext(), times=empty_pages)
            rest = [bytes(r) async for p in pages for r in p.records]
    records = [bytes(r) for r in first.records] + rest
    assert len(expected) == 400
    assert records == expected


def paged_server(pages: list[list[dict[str, str]]]) -> Callable[[httpx.Request], httpx.Response]:
    """Serve ``pages`` in order, each with a fresh next token until the last."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        sent = msgspec.json.decode(request.content)["meta"]["pagination"].get("pageToken")
        index = 0 if sent is None else int(sent.removeprefix("tok-"))
        pagination: dict[str, object] = {"pageSize": 2}
        if index + 1 < len(pages):
            pagination["next"] = f"tok-{index + 1}"
        body = {
            "meta": {"status": 200, "pagination": pagination},
            "data": [{"clickLogs": pages[index]}],
            "fail": [],
        }
        return httpx.Response(200, content=msgspec.json.encode(body))

    return handle


def record(n: int) -> dict[str, str]:
    return {
        "date": "2025-11-24T15:00:00+0000",
        "scanResult": "malicious",
        "url": f"https://{n}.test",
    }


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], **options: object
) -> MimecastClient:
    clock = FakeClock(start=float(T0))
    return MimecastClient(
        tenant="acme",
        base_url="https://api.example.test",
        auth=OAuth2ClientCredentials("cid", SecretStr("s3cret-value"), clock=clock),
        options=ClientOptions(**options),  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
        clock=clock,
    )


async def test_empty_pages_between_full_ones_lose_nothing() -> None:
    """A server whose pages 2..5 are empty with fresh next tokens: the records after them arrive."""
    pages = [[record(1), record(2)], [], [], [], [], [record(3)], [], [record(4)]]
    async with mock_client(paged_server(pages)) as client:
        records = await collect(client)
    assert [msgspec.json.decode(r)["url"] for r in records] == [
        f"https://{n}.test" for n in (1, 2, 3, 4)
    ]


async def test_an_empty_page_repeating_its_token_is_a_pagination_error() -> None:
    """An empty page whose next was already followed is a loop: PaginationError, not a silent end."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        body = {"meta": {"pagination": {"next": "same"}}, "data": [{"clickLogs": []}], "fail": []}
        return httpx.Response(200, content=msgspec.json.encode(body))

    async with mock_client(handle) as client:
        with pytest.raises(PaginationError):
            await collect(client)


async def test_endless_empty_pages_stop_at_the_page_guard() -> None:
    """Fresh next tokens on empty pages for ever end at max_pages with PaginationError."""
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        calls += 1
        body = {"meta": {"pagination": {"next": f"t{calls}"}}, "data": [], "fail": []}
        return httpx.Response(200, content=msgspec.json.encode(body))

    async with mock_client(handle, max_pages=25) as client:
        with pytest.raises(PaginationError, match="25 pages"):
            await collect(client)
    assert calls == 25


# --- small a: the deadline holds across retries and body reads -------------------------------


class LoopbackServer:
    """A plain-socket HTTP server on 127.0.0.1 whose answers a test scripts, one per connection.

    ``answers`` are callables given the connected socket; the last one repeats. ``connections``
    counts accepted connections (for TLS, handshakes attempted).
    """

    def __init__(
        self,
        answers: list[Callable[[socket.socket], None]],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answers = answers
        self.tls = tls
        self.connections = 0
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            answer = self.answers[min(self.connections, len(self.answers) - 1)]
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn, answer), daemon=True).start()

    def handle(self, conn: socket.socket, answer: Callable[[socket.socket], None]) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
            read_request(conn)
            answer(conn)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


def read_request(conn: socket.socket) -> None:
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)


def trickle(conn: socket.socket) -> None:
    """A 200 that promises 100 kB and sends one byte every 0.1 s: a slowloris body."""
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    for _ in range(600):
        conn.sendall(b" ")
        time.sleep(0.1)


def unavailable(conn: socket.socket) -> None:
    body = b'{"fail":[{"code":"err_busy","message":"try later"}]}'
    conn.sendall(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )


def v1_client(base_url: str, **options: object) -> MimecastClient:
    from mimecast_connector.client import HmacSigner

    auth = HmacSigner(
        app_id="app",
        app_key=SecretStr("app-key-value"),
        access_key=SecretStr("access-key-value"),
        secret_key=SecretStr("c2VjcmV0LWtleS1ieXRlcw=="),
    )
    return MimecastClient(
        tenant="acme",
        base_url=base_url,
        auth=auth,
        options=ClientOptions(**options),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "answers",
    [[trickle], [unavailable, unavailable, trickle]],
    ids=["trickle", "503-503-trickle"],
)
async def test_a_trickling_body_cannot_outlast_the_call_deadline(
    answers: list[Callable[[socket.socket], None]],
) -> None:
    """A slowloris body (after 503s or not) ends the call within retry.deadline plus slack."""
    deadline = 2.0
    options = {
        "retry": RetryPolicy(deadline=deadline, initial=0.1, maximum=0.2),
        "request_deadline": 6.0,  # longer than the call's deadline: the call's must win
        "timeout": httpx.Timeout(connect=2.0, read=1.0, write=2.0, pool=2.0),
    }
    with LoopbackServer(answers) as server:
        async with v1_client(f"http://127.0.0.1:{server.port}", **options) as client:
            started = time.monotonic()
            with pytest.raises(UnavailableError) as caught:
                await collect(client)
            took = time.monotonic() - started
    assert took < deadline + 0.75, f"the call took {took:.2f} s for a {deadline} s deadline"
    assert server.connections == len(answers)  # the premise: every scripted answer was met
    text = str(caught.value)
    assert "did not complete within" in text
    assert "gave up after" in text


# --- small b: a certificate that fails verification ------------------------------------------


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server TLS context with a self-signed certificate for 127.0.0.1, made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    subprocess.run(  # noqa: S603 - fixed arguments, our own temporary paths
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def never(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")


async def test_a_self_signed_certificate_is_a_config_error_tried_once(
    self_signed: ssl.SSLContext,
) -> None:
    """Loopback https with a self-signed certificate: CertificateError naming the host, one try, config fault."""
    options = {"retry": RetryPolicy(initial=0.01, maximum=0.01)}
    with LoopbackServer([never], tls=self_signed) as server:
        async with v1_client(f"https://127.0.0.1:{server.port}", **options) as client:
            with pytest.raises(ApiError) as caught:
                await collect(client)
    error = caught.value
    assert server.connections == 1, repr(error)
    assert error.fault == "config"
    assert not error.retryable
    from mimecast_connector._errors import CertificateError

    assert isinstance(error, CertificateError), repr(error)
    text = str(error)
    assert "127.0.0.1" in text
    assert "certificate" in text
    assert "proxy" in text
    assert "Mimecast said" not in text


# --- small c and d: messages say what happened, and what the user can do ---------------------


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    return handle


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (httpx.ReadTimeout("timed out"), "sent nothing for"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "could not connect"),
        (httpx.RemoteProtocolError("peer closed connection"), "RemoteProtocolError"),
    ],
    ids=["read-timeout", "connect-error", "disconnect"],
)
async def test_a_failure_without_an_answer_does_not_quote_mimecast(
    exc: Exception, words: str
) -> None:
    """No answer, no quote: the message says what happened here, never "Mimecast said"."""
    async with mock_client(raising(exc), retry=RetryPolicy(attempts=2)) as client:
        with pytest.raises(UnavailableError) as caught:
            await collect(client)
    text = str(caught.value)
    assert "Mimecast said" not in text
    assert words in text
    assert "api.example.test" in text
    assert "gave up after 2 tries" in text


async def test_mimecast_is_quoted_only_for_its_own_words() -> None:
    """An error body's fail message is quoted as Mimecast's; a format problem is not."""

    def busy(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        return httpx.Response(503, json={"fail": [{"code": "err_busy", "message": "try later"}]})

    async with mock_client(busy, retry=RetryPolicy(attempts=2)) as client:
        with pytest.raises(UnavailableError, match=r"Mimecast said: err_busy: try later"):
            await collect(client)

    def html(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        return httpx.Response(200, content=b"<html>")

    async with mock_client(html) as client:
        with pytest.raises(UpstreamFormatError) as caught:
            await collect(client)
    assert "Mimecast said" not in str(caught.value)


async def test_the_body_cap_message_names_the_cap_and_a_possible_action() -> None:
    """Over 64 MiB: the message names the 64 MiB cap and page_size, not a max_body_bytes setting."""

    def huge(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        return httpx.Response(200, headers={"Content-Length": str(65 * 1024 * 1024)}, content=b"")

    async with mock_client(huge) as client:
        with pytest.raises(UpstreamFormatError) as caught:
            await collect(client)
    text = str(caught.value)
    assert "64 MiB" in text
    assert "page_size" in text
    assert "max_body_bytes" not in text
    assert "Mimecast said" not in text


async def test_the_token_request_shares_the_deadline_of_the_call_that_needs_it() -> None:
    """A trickling /oauth/token answer cannot stretch the page call past its own deadline."""
    deadline = 2.0
    options = ClientOptions(
        retry=RetryPolicy(deadline=deadline, initial=0.1, maximum=0.2),
        request_deadline=6.0,
        timeout=httpx.Timeout(connect=2.0, read=1.0, write=2.0, pool=2.0),
    )
    with LoopbackServer([trickle]) as server:
        auth = OAuth2ClientCredentials("cid", SecretStr("s3cret-value"))
        base_url = f"http://127.0.0.1:{server.port}"
        async with MimecastClient(
            tenant="acme", base_url=base_url, auth=auth, options=options
        ) as client:
            started = time.monotonic()
            with pytest.raises(UnavailableError, match="oauth/token"):
                await collect(client)
            took = time.monotonic() - started
    assert took < deadline + 0.75, f"the call took {took:.2f} s for a {deadline} s deadline"
