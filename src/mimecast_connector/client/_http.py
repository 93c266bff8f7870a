"""The HTTP connections of a run, shared by every tenant: one client per Mimecast host.

API 2.0 tenants all talk to one or a few hosts, so a run of 3,000 tenants needs a few
connection pools and TLS contexts, not 3,000 (each ``httpx.AsyncClient`` builds its own TLS
context: ~45 ms and ~0.7 MiB). Credentials, token caches and rate limiters stay per tenant, in
``MimecastClient``; what is shared here carries no tenant's secret.

The policy on requests in flight, stated once: at most ``max_in_flight`` requests are in flight
in the whole process (default 64, spread over each host's pool of keep-alive connections). A
request waits its turn for a slot, first come first served; the wait for a slot is not part of
the request's own timeouts, so a busy process is slow, never failing. A stream paging through a
long window takes one turn per page, so it cannot crowd out the live polls of other tenants.
The one exception: API 2.0 receipt batch files (``_siem.stream_batch_file``) are downloaded
from the storage host their presigned links name without a slot, since each is read as it is
handled (minutes, on a large file) and a slot held that long would crowd out live polls; they
are bounded by that host's connections (``max_in_flight`` per host) and by the pages a run may
hold unwritten (``runner._committer.MAX_PAGES_HELD``).

The HTTP stack, chosen by measurement (issue 8, ``benchmarks/tenants.py``): HTTP/1.1 keep-alive
over :class:`~mimecast_connector.client._transport.Http11Transport`, at most ``max_in_flight``
connections per host, replaced httpx's default transport and HTTP/2. With 1,000 tenants x 3
streams, httpcore's pool (scans over every connection for every request) was most of the
connector's CPU; this transport takes and returns a connection in O(1): ``run --once`` for 1,000
tenants fell from 21 to 9.5 CPU-s (median of 3; the bare-asyncio floor is 0.5) and its start-up
from 7.5 to 1.7 s. ``http2`` stays off. A test transport, when given, is used as it is.
"""

from __future__ import annotations

import asyncio
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urlsplit

import httpx

from mimecast_connector.client._transport import Http11Transport

#: Requests in flight in the whole process, at most.
MAX_IN_FLIGHT = 64


def _no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing: Mimecast's API needs no cookies."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _new_client(transport: httpx.AsyncBaseTransport, timeout: httpx.Timeout) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=transport,
        # Shared by every tenant on the host: a cookie one tenant's answer sets (a load
        # balancer's affinity cookie, say) must never travel with another tenant's request.
        cookies=_no_cookies(),
        timeout=timeout,
        follow_redirects=False,
        verify=True,
        http2=False,  # HTTP/1.1 keep-alive over Http11Transport, measured: see above
        trust_env=False,
    )


class HttpPool:
    """One ``httpx.AsyncClient`` per host (and per test transport), and the in-flight slots.

    ``client(base_url, transport)`` gives the client for that host, built on first use; tenants
    given the same transport object (or none) share it. Close the pool, not the clients.
    """

    def __init__(
        self, *, timeout: httpx.Timeout | None = None, max_in_flight: int = MAX_IN_FLIGHT
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.max_in_flight = max_in_flight
        self.slots = asyncio.Semaphore(max_in_flight)
        self._timeout = timeout or httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=30.0)
        # (client, the test transport it was given or None, our transport when none was)
        self._clients: dict[
            tuple[str, int],
            tuple[httpx.AsyncClient, object, Http11Transport | None],
        ] = {}

    def __repr__(self) -> str:
        return f"HttpPool(hosts={len(self._clients)}, max_in_flight={self.max_in_flight})"

    def client(
        self, base_url: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> httpx.AsyncClient:
        return self._entry(base_url, transport)[0]

    def direct(
        self, base_url: str, transport: httpx.AsyncBaseTransport | None = None
    ) -> Http11Transport | None:
        """The :class:`Http11Transport` of that host's client, for requests made without
        httpx's request and response objects (``Http11Transport.post``); None when a test
        transport was given (those requests go through httpx as usual)."""
        return self._entry(base_url, transport)[2]

    def _entry(
        self, base_url: str, transport: httpx.AsyncBaseTransport | None
    ) -> tuple[httpx.AsyncClient, object, Http11Transport | None]:
        parts = urlsplit(base_url)
        key = (f"{parts.scheme}://{parts.netloc}".lower(), id(transport))
        found = self._clients.get(key)
        if found is None:
            # The transport is kept beside its client, so its id cannot be reused meanwhile.
            if transport is None:
                own = Http11Transport(max_connections=self.max_in_flight)
                found = (_new_client(own, self._timeout), None, own)
            else:
                found = (_new_client(transport, self._timeout), transport, None)
            self._clients[key] = found
        return found

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client, _, _ in clients.values():
            await client.aclose()
