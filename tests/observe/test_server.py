"""The metrics server on loopback: its routes, its token, and its bounds against slow or hostile
clients (spoken to over raw sockets, so that every byte is the test's)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from mimecast_connector.observe import MetricsServer, registry_text
from mimecast_connector.observe._server import accepts_gzip

TOKEN = "s3cret-token-0123456789"


class Ready:
    """What ``/readyz`` is told: the streams that are not ready."""

    def __init__(self) -> None:
        self.waiting: list[str] = []

    def __call__(self) -> list[str]:
        return list(self.waiting)


@pytest.fixture
def ready() -> Ready:
    return Ready()


@pytest.fixture
async def server(ready: Ready) -> AsyncIterator[MetricsServer]:
    registry = CollectorRegistry()
    Counter("mimecast_connector_test_things", "Things.", registry=registry).inc(3)
    served = MetricsServer(
        "127.0.0.1",
        0,
        metrics=registry_text(registry),
        not_ready=ready,
        total=lambda: 4,
        token=TOKEN,
        head_timeout=0.3,
        max_connections=4,
    )
    await served.start()
    try:
        yield served
    finally:
        await served.aclose()


async def exchange(server: MetricsServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw`` on a new connection; the status, headers and body of the answer."""
    assert server.address is not None
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split(" ")[1]), headers, body


def get(path: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: x", *headers]) + "\r\n\r\n").encode()


BEARER = f"Authorization: Bearer {TOKEN}"


async def test_healthz_answers_without_the_token(server: MetricsServer) -> None:
    """/healthz is 200 for anyone: a container's healthcheck carries no secret."""
    status, headers, body = await exchange(server, get("/healthz"))
    assert (status, body) == (200, b"ok\n")
    assert headers["Connection"] == "close"


@pytest.mark.parametrize(
    "header",
    [None, "Authorization: Bearer wrong-token-0123456789", f"Authorization: Basic {TOKEN}"],
    ids=["none", "wrong", "basic"],
)
@pytest.mark.parametrize("path", ["/metrics", "/readyz"])
async def test_every_other_path_needs_the_bearer_token(
    server: MetricsServer, header: str | None, path: str
) -> None:
    """Without the token, with a wrong one or in another scheme: 401 naming the header, never the token."""
    status, headers, body = await exchange(server, get(path, *([header] if header else [])))
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert b"Authorization: Bearer" in body
    assert TOKEN.encode() not in body


async def test_metrics_with_the_token_is_the_registry_in_text_format(server: MetricsServer) -> None:
    """With the token, /metrics is Prometheus' text format of the registry given."""
    status, headers, body = await exchange(server, get("/metrics", BEARER))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"mimecast_connector_test_things_total 3.0" in body


async def test_metrics_are_gzipped_for_a_scraper_that_accepts_it(server: MetricsServer) -> None:
    """Prometheus asks with ``Accept-Encoding: gzip``: the same text, gzipped, and said so; a
    client that does not accept gzip (or refuses it with q=0) gets the plain text."""
    _, plain_headers, plain = await exchange(server, get("/metrics", BEARER))
    assert "Content-Encoding" not in plain_headers
    status, headers, body = await exchange(server, get("/metrics", BEARER, "Accept-Encoding: gzip"))
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Vary"] == "Accept-Encoding"
    assert int(headers["Content-Length"]) == len(body)
    assert gzip.decompress(body) == plain
    _, refused, body = await exchange(
        server, get("/metrics", BEARER, "Accept-Encoding: br, gzip;q=0")
    )
    assert "Content-Encoding" not in refused
    assert body == plain


@pytest.mark.parametrize(
    ("value", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP;q=0.5", True),
        ("*", True),
        ("x-gzip", True),
        ("", False),
        ("identity", False),
        ("br", False),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *;q=1", False),
        ("*;q=0", False),
        ("gzip;q=oops", False),
    ],
)
def test_accept_encoding_is_read_as_rfc_9110_says(value: str, gzipped: bool) -> None:
    assert accepts_gzip(value) is gzipped


async def test_readyz_lists_what_is_not_ready_then_says_ready(
    server: MetricsServer, ready: Ready
) -> None:
    """/readyz is 503 with one line per stream not ready, and 200 once there are none."""
    ready.waiting = ["acme/url: configured (never polled yet)", "acme/attachment: failing (x)"]
    status, _, body = await exchange(server, get("/readyz", BEARER))
    assert status == 503
    assert body.decode().splitlines() == ["not ready: 2 of 4 streams", *ready.waiting]
    ready.waiting = []
    status, _, body = await exchange(server, get("/readyz", BEARER))
    assert (status, body) == (200, b"ready: 4 streams\n")


async def test_methods_other_than_get_and_head_are_refused(server: MetricsServer) -> None:
    """POST is 405 with Allow; HEAD has the headers of GET and no body; a malformed line is 400; an unknown path 404."""
    status, headers, _ = await exchange(server, b"POST /metrics HTTP/1.1\r\n\r\n")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, headers, body = await exchange(server, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert (status, headers["Content-Length"], body) == (200, "3", b"")
    status, _, _ = await exchange(server, b"GET metrics\r\n\r\n")
    assert status == 400
    status, _, _ = await exchange(server, get("/nothing", BEARER))
    assert status == 404


async def test_a_huge_request_head_is_refused(server: MetricsServer) -> None:
    """A head past 8 KiB is 431, not read on."""
    status, _, _ = await exchange(server, get("/healthz", "X-Pad: " + "a" * 20_000))
    assert status == 431


async def test_a_slow_client_is_dropped_and_does_not_wedge_the_others(
    server: MetricsServer,
) -> None:
    """A client that sends half a head and waits is answered 408 and closed after the head timeout; meanwhile others are served."""
    assert server.address is not None
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost:")
        await writer.drain()
        status, _, _ = await exchange(server, get("/healthz"))  # served meanwhile
        assert status == 200
        answer = await asyncio.wait_for(reader.read(), 10)  # EOF once dropped
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_connections_past_the_bound_are_closed_at_once(server: MetricsServer) -> None:
    """With every connection slot held by idle clients, one more is closed without an answer; once they are dropped, the server answers again."""
    assert server.address is not None
    held = [await asyncio.open_connection(*server.address) for _ in range(4)]
    try:
        await asyncio.sleep(0)  # (each accepted connection's task is running by now)
        reader, writer = await asyncio.open_connection(*server.address)
        try:
            writer.write(get("/healthz"))
            try:
                extra = await asyncio.wait_for(reader.read(), 10)
            except ConnectionResetError:
                extra = b""  # aborted: as closed, without an answer
        finally:
            writer.close()
        assert extra == b""
        # The idle ones are dropped after the head timeout (408), which frees their slots.
        for idle_reader, _ in held:
            assert (await asyncio.wait_for(idle_reader.read(), 10)).startswith(b"HTTP/1.1 408")
    finally:
        for _, idle in held:
            idle.close()
    status, _, _ = await exchange(server, get("/healthz"))
    assert status == 200
