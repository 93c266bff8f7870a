"""HTTP-level behaviour: status codes for roles, paths, methods and bodies; keep-alive; the log."""

from __future__ import annotations

import http.client
import json
import socket
from datetime import timedelta

import httpx
import pytest

from mimecast_connector import Category
from mimecast_connector.simulator import SimTenant, Simulator
from tests.fakes import FakeClock
from tests.simulator._helpers import ALL_TIME, NOW, post_logs, records_of, token_for


def test_tenant_without_the_role_gets_403(sim: Simulator, http: httpx.Client) -> None:
    """A category outside the tenant's roles is 403 ``app_forbidden`` (§3.2); the others work."""
    tenant = sim.add_tenant("limited", roles={Category.ATTACHMENT})
    token = token_for(http, tenant)
    denied = post_logs(http, Category.URL, token, ALL_TIME)
    assert denied.status_code == 403
    assert denied.json() == {
        "fail": [
            {"code": "app_forbidden", "message": "Forbidden to perform the requested operation"}
        ]
    }
    assert post_logs(http, Category.ATTACHMENT, token, ALL_TIME).status_code == 200


def test_unknown_path_is_404(acme: SimTenant, http: httpx.Client) -> None:
    """A path that is neither /oauth/token nor a TTP log endpoint is 404, whatever the method."""
    token = token_for(http, acme)
    headers = {"Authorization": f"Bearer {token}"}
    assert http.post("/api/ttp/dlp/get-logs", json={}, headers=headers).status_code == 404
    assert http.get("/").status_code == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_non_post_on_a_log_endpoint_is_405(http: httpx.Client, method: str) -> None:
    """The TTP endpoints are POST only: anything else is 405 with ``Allow: POST`` (§8.2)."""
    response = http.request(method, Category.URL.path)
    assert (response.status_code, response.headers["allow"]) == (405, "POST")


def test_head_gets_headers_without_a_body(sim: Simulator) -> None:
    """HEAD is answered (405 here) with headers only: the next response follows them directly."""
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            f"HEAD {Category.URL.path} HTTP/1.1\r\nHost: sim\r\n\r\n"
            "GET /nowhere HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"Content-Length: " in head
    assert rest.startswith(b"HTTP/1.1 404 ")


def test_body_that_is_not_json_is_400(acme: SimTenant, http: httpx.Client) -> None:
    """A log request whose body does not parse as JSON is 400."""
    token = token_for(http, acme)
    response = http.post(
        Category.URL.path, content=b"{not json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400
    assert response.json()["fail"][0]["code"] == "err_request_not_json"


def test_connections_are_kept_alive_with_content_length(sim: Simulator, acme: SimTenant) -> None:
    """Several requests, errors included, travel on one HTTP/1.1 connection, each with a length."""
    acme.generate(Category.URL, count=3, start=NOW - timedelta(hours=1), end=NOW)
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        form = (
            f"client_id={acme.client_id}&client_secret={acme.client_secret}"
            "&grant_type=client_credentials"
        )
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        connection.request("POST", "/oauth/token", body=form, headers=form_type)
        answer = connection.getresponse()
        token = json.loads(answer.read())["access_token"]
        sock = connection.sock
        statuses = []
        for path, body in [
            (Category.URL.path, json.dumps({"data": [ALL_TIME]})),
            ("/nowhere", "{}"),
            (Category.URL.path, "{broken"),
            (Category.URL.path, json.dumps({"data": [ALL_TIME]})),
        ]:
            connection.request(
                "POST", path, body=body, headers={"Authorization": f"Bearer {token}"}
            )
            response = connection.getresponse()
            assert response.getheader("Content-Length") == str(len(response.read()))
            statuses.append(response.status)
        assert statuses == [200, 404, 400, 200]
        assert connection.sock is sock  # never reconnected
    finally:
        connection.close()


def test_request_log_records_every_request_in_order(
    sim: Simulator, acme: SimTenant, http: httpx.Client, clock: FakeClock
) -> None:
    """``sim.requests`` lists each request with method, path, headers, body, status and who."""
    token = token_for(http, acme)
    clock.advance(2.0)
    post_logs(http, Category.ATTACHMENT, token, ALL_TIME)
    http.get("/nowhere")
    issued, logs, missing = sim.requests
    assert (issued.method, issued.path, issued.status, issued.tenant) == (
        "POST",
        "/oauth/token",
        200,
        "acme",
    )
    assert issued.json is None
    assert b"grant_type=client_credentials" in issued.body
    assert (logs.status, logs.tenant, logs.category) == (200, "acme", Category.ATTACHMENT)
    assert logs.headers["authorization"] == f"Bearer {token}"
    assert logs.json == {"meta": {"pagination": {}}, "data": [ALL_TIME]}
    assert logs.time - issued.time == pytest.approx(2.0)
    assert (missing.method, missing.status, missing.tenant, missing.category) == (
        "GET",
        404,
        None,
        None,
    )
    sim.clear_requests()
    assert sim.requests == []


def test_request_log_is_bounded() -> None:
    """The log keeps only the most recent ``request_log_limit`` requests."""
    with Simulator(request_log_limit=2) as sim, httpx.Client(base_url=sim.url) as http:
        for path in ("/a", "/b", "/c"):
            http.get(path)
        assert [r.path for r in sim.requests] == ["/b", "/c"]


def test_start_twice_is_refused_and_stop_is_idempotent() -> None:
    """A running simulator cannot start again; stop twice is harmless; ``url`` needs a server."""
    sim = Simulator()
    with pytest.raises(RuntimeError, match="not serving"):
        _ = sim.url
    url = sim.start()
    assert url == sim.url
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(RuntimeError, match="already serving"):
        sim.start()
    sim.stop()
    sim.stop()
    with pytest.raises(httpx.ConnectError), httpx.Client(base_url=url) as http:
        http.get("/")


def test_stop_closes_idle_keep_alive_connections() -> None:
    """After stop, a pooled keep-alive connection is closed rather than left hanging."""
    sim = Simulator()
    tenant = sim.add_tenant("acme")
    tenant.generate(Category.URL, count=2, start=NOW - timedelta(hours=1), end=NOW)
    sim.start()
    with httpx.Client(base_url=sim.url, timeout=2.0) as http:
        token = token_for(http, tenant)
        assert len(records_of(post_logs(http, Category.URL, token, ALL_TIME), Category.URL)) == 2
        sim.stop()
        with pytest.raises(httpx.TransportError):
            post_logs(http, Category.URL, token, ALL_TIME)


def test_ipv6_loopback_is_served() -> None:
    """``host="::1"`` binds IPv6 loopback and the URL brackets the address."""
    with Simulator() as sim:
        sim.stop()
        try:
            url = sim.start(host="::1")
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")
        assert url.startswith("http://[::1]:")
        with httpx.Client(base_url=url) as http:
            assert http.get("/nowhere").status_code == 404


def test_chunked_request_bodies_are_read(acme: SimTenant, http: httpx.Client) -> None:
    """A body sent with ``Transfer-Encoding: chunked`` is read whole and answered."""
    token = token_for(http, acme)
    chunks = iter([b'{"data":', b'[{"from":"2000-01-01T00:00:00Z"}]', b"}"])
    response = http.post(
        Category.URL.path, content=chunks, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    assert response.request.headers["transfer-encoding"] == "chunked"


def test_broken_framing_is_400_and_closes_the_connection(sim: Simulator) -> None:
    """A Content-Length that is not a number is 400, and the server closes the connection."""
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.putrequest("POST", Category.URL.path)
        connection.putheader("Content-Length", "lots")
        connection.endheaders()
        response = connection.getresponse()
        assert (response.status, response.getheader("Connection")) == (400, "close")
        response.read()
    finally:
        connection.close()
    assert sim.requests[-1].status == 400
