"""The dashboard over HTTP: its token rules, its endpoints, its escaping, and that it never
writes the state."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter

from mimecast_connector.config import Config
from mimecast_connector.dashboard import Dashboard
from mimecast_connector.observe import MetricsServer, registry_text
from tests.dashboard.conftest import HOSTILE, HOUR, SECRET, TOKEN

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def client(server: MetricsServer) -> httpx.AsyncClient:
    assert server.address is not None
    host, port = server.address
    return httpx.AsyncClient(base_url=f"http://{host}:{port}", follow_redirects=False)


async def test_without_the_token_pages_redirect_to_login_and_endpoints_answer_401(
    server: MetricsServer,
) -> None:
    """A browser asking for the page is sent to /login, a script gets 401; /login and what it loads are open; /metrics is not there."""
    async with client(server) as http:
        page = await http.get("/", headers={"Accept": "text/html,*/*"})
        assert (page.status_code, page.headers["location"]) == (303, "/login")
        for path in ("/", "/api/streams", "/api/charts", "/static/dashboard.js", "/session"):
            assert (await http.get(path)).status_code == 401, path
        login = await http.get("/login")
        assert login.status_code == 200
        assert 'id="token"' in login.text
        assert "acme" not in login.text
        assert (await http.get("/static/login.js")).status_code == 200
        assert (await http.get("/metrics", headers=BEARER)).status_code == 404
        wrong = await http.get("/api/streams", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_the_token_as_a_header_or_the_session_cookie_opens_everything(
    server: MetricsServer,
) -> None:
    """/session with the token sets an HttpOnly, SameSite=Strict cookie that is not the token; the cookie then opens the page; a forged cookie does not."""
    async with client(server) as http:
        assert (await http.get("/", headers=BEARER)).status_code == 200
        session = await http.get("/session", headers=BEARER)
        assert session.status_code == 204
        cookie = session.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert TOKEN not in cookie
        value = cookie.split(";")[0].split("=", 1)[1]
        assert len(value) == 64
        # The cookie alone opens the page and the endpoints (httpx keeps it).
        assert http.cookies.get("mc_dashboard") == value
        assert (await http.get("/api/streams")).status_code == 200
        assert (await http.get("/")).status_code == 200
        # A cookie alone does not make a new session.
        assert (await http.get("/session")).status_code == 401
    async with client(server) as http:
        forged = hashlib.sha256(TOKEN.encode()).hexdigest()
        http.cookies.set("mc_dashboard", forged)
        assert (await http.get("/api/streams")).status_code == 401


async def test_the_streams_endpoint_shows_the_failing_tenant_first_with_its_advice(
    server: MetricsServer,
) -> None:
    """Failing streams first, then never-polled ones, then collecting; the health filter keeps only failing; no secret anywhere."""
    async with client(server) as http:
        answer = await http.get("/api/streams", headers=BEARER)
        assert answer.headers["content-type"] == "application/json"
        data = answer.json()
        assert [t["tenant"] for t in data["tenants"]] == ["globex", "acme"]
        globex = {s["category"]: s for s in data["tenants"][0]["streams"]}
        assert globex["attachment"]["state"] == "failing"
        assert "client_id and client_secret" in globex["attachment"]["advice"]
        assert globex["url"]["state"] == "configured"
        acme = {s["category"]: s for s in data["tenants"][1]["streams"]}
        assert acme["url"]["state"] == "collecting"
        assert 100 <= acme["url"]["lag_seconds"] < 300
        assert (acme["url"]["alerts"], acme["url"]["dropped"]) == (11, 7)
        assert data["states"] == {
            "configured": 6,
            "authenticated": 0,
            "collecting": 1,
            "degraded": 0,
            "failing": 1,
        }
        failing = (await http.get("/api/streams?health=failing", headers=BEARER)).json()
        assert [
            (t["tenant"], [s["category"] for s in t["streams"]]) for t in failing["tenants"]
        ] == [("globex", ["attachment"])]
        assert SECRET not in answer.text


async def test_the_page_escapes_a_hostile_sender_and_shows_the_charts(
    server: MetricsServer,
) -> None:
    """A sender address holding a script tag is in the page as escaped text only; the heat map, top lists, drops and charts hold what was committed; the page forbids inline scripts."""
    async with client(server) as http:
        page = await http.get("/", headers=BEARER)
    html = page.text
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;@evil.example" in html
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'data-technique="T1598.003" data-count="9"' in html
    assert 'data-technique="T1566" data-count="2"' in html
    assert '<span class="name">Spearphishing Link</span>' in html
    assert 'data-tactic="TA0043"' in html  # T1598 is Reconnaissance
    assert 'id="dead-total">2<' in html
    assert 'id="dropped-total">8<' in html
    async with client(server) as http:
        charts = (await http.get("/api/charts", headers=BEARER)).json()
    assert charts["top"]["senders"] == [[HOSTILE, 3], ["bad@evil.example", 2]]
    assert charts["top"]["alert_types"] == [["URL Protection", 5]]
    assert sum(charts["hourly"]["counts"]["url"]) == 7  # the last 48 hours
    assert sum(charts["daily"]["counts"]["url"]) == 11  # the last 30 days
    assert charts["hourly"]["counts"]["url"][-1] == 5
    assert charts["drops"]["reasons"] == {"clean": 7, "safe": 1}
    assert charts["hourly"]["starts"][-1] == _iso_hour(HOUR)


async def test_a_tenant_scoped_page_counts_only_that_tenant(server: MetricsServer) -> None:
    """/?tenant=globex: globex has no alerts, so the heat map and the lists are empty."""
    async with client(server) as http:
        charts = (await http.get("/api/charts?tenant=globex", headers=BEARER)).json()
        page = await http.get("/?tenant=globex", headers=BEARER)
    assert charts["heatmap"]["tactics"] == []
    assert charts["top"]["senders"] == []
    assert charts["drops"]["reasons"] == {"safe": 1}
    assert "tenant globex" in page.text


async def test_the_dashboard_never_writes_the_state(config: Config, server: MetricsServer) -> None:
    """Every endpoint read, twice: the state file's bytes and mtime are as before, and nothing is written to its log."""
    assert isinstance(config.state, Path)
    state = config.state
    before = (state.read_bytes(), os.stat(state).st_mtime_ns)
    siblings = sorted(p.name for p in state.parent.iterdir())
    async with client(server) as http:
        for _ in range(2):
            for path in ("/", "/api/streams", "/api/charts", "/?tenant=acme"):
                assert (await http.get(path, headers=BEARER)).status_code == 200
    assert (state.read_bytes(), os.stat(state).st_mtime_ns) == before
    # A reader of a WAL database may make SQLite's shared-memory index and an empty log,
    # as `status` does; nothing is written to the log.
    made = {p.name for p in state.parent.iterdir()} - set(siblings)
    assert made <= {"state.db-wal", "state.db-shm"}
    wal = state.with_name("state.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def _iso_hour(hour: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_on_the_runs_metrics_port_the_metrics_and_the_page_share_the_token(
    config: Config,
) -> None:
    """The run's server with the dashboard: /metrics, /readyz and / each need the token (the session cookie too), /healthz does not."""
    registry = CollectorRegistry()
    Counter("mimecast_connector_test_things", "Things.", registry=registry).inc()
    served = MetricsServer(
        "127.0.0.1",
        0,
        metrics=registry_text(registry),
        not_ready=list,
        total=lambda: 8,
        token=TOKEN,
        dashboard=Dashboard(config),
    )
    await served.start()
    try:
        async with client(served) as http:
            assert (await http.get("/healthz")).status_code == 200
            for path in ("/metrics", "/readyz", "/", "/api/streams"):
                assert (await http.get(path)).status_code == 401, path
            metrics = await http.get("/metrics", headers=BEARER)
            assert "mimecast_connector_test_things_total 1.0" in metrics.text
            assert (await http.get("/readyz", headers=BEARER)).text == "ready: 8 streams\n"
            assert (await http.get("/session", headers=BEARER)).status_code == 204
            page = await http.get("/")
            assert page.status_code == 200
            assert 'id="heatmap"' in page.text
    finally:
        await served.aclose()
