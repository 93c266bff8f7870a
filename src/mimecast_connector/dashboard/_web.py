"""The dashboard's pages and endpoints, as routes of the small HTTP server (``observe``).

* ``/``: the page, rendered here: the charts, the heat map, the top lists and the drops as
  HTML and inline SVG (every text from the state escaped), and the streams table's frame,
  which ``static/dashboard.js`` fills from ``/api/streams``, page by page, with the search
  box and the health filter (it writes text nodes only, never HTML).
* ``/api/streams?page=&size=&q=&health=``: one page of tenants (``Board.streams_page``).
* ``/api/charts[?tenant=]``: what the charts show, as JSON.
* ``/login`` and ``/static/…``: the login form and the files the page loads.

The token rule is the server's (``observe._server``). Every page is sent with a Content
Security Policy that allows scripts and styles from this server only (none inline), so text
that slipped through as markup still could not run.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Mapping
from importlib import resources
from typing import Any

import msgspec

from mimecast_connector.dashboard._data import HOURLY, PAGE_SIZE, Board
from mimecast_connector.observe import Request, Response, Route

_HTML = "text/html; charset=utf-8"
_JSON = "application/json"
_SECURITY = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_STATIC = {
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/static/login.js": ("login.js", "text/javascript; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
#: Open to anyone: the login form and what it loads (no data in any of them).
PUBLIC = frozenset({"/login", "/static/login.js", "/static/dashboard.css"})
#: Categories in the charts' order (their CSS classes are ``c-<name>``).
_CATEGORIES = ("attachment", "impersonation", "url", "rejection")

_encode = msgspec.json.Encoder().encode


def _e(value: object) -> str:
    """Text from anywhere, as HTML text or an attribute value."""
    return html.escape(str(value), quote=True)


def _static(name: str) -> bytes:
    return resources.files("mimecast_connector.dashboard").joinpath("static", name).read_bytes()


def _query(request: Request) -> dict[str, str]:
    """The query's parameters, the first of each, bounded in length."""
    parsed = urllib.parse.parse_qs(request.query[:2000], keep_blank_values=True)
    return {k: v[0][:200] for k, v in parsed.items() if v}


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def routes(board: Board, *, title: str) -> dict[str, Route]:
    """The dashboard's routes over ``board``; ``title`` names the state shown (no secret)."""

    async def page(request: Request) -> Response:
        tenant = _query(request).get("tenant") or None
        charts = await board.charts(tenant)
        body = render(charts, title=title, tenant=tenant)
        return Response(200, body.encode(), _HTML, _SECURITY)

    async def streams(request: Request) -> Response:
        q = _query(request)
        document = await board.streams_page(
            page=_int(q.get("page"), 1),
            size=_int(q.get("size"), PAGE_SIZE),
            q=q.get("q", ""),
            states=[s for s in q.get("health", "").split(",") if s],
        )
        return Response(200, _encode(document), _JSON, _SECURITY)

    async def charts(request: Request) -> Response:
        tenant = _query(request).get("tenant") or None
        return Response(200, _encode(await board.charts(tenant)), _JSON, _SECURITY)

    async def login(request: Request) -> Response:
        return Response(200, _LOGIN.encode(), _HTML, _SECURITY)

    out: dict[str, Route] = {
        "/": page,
        "/api/streams": streams,
        "/api/charts": charts,
        "/login": login,
    }
    for path, (name, kind) in _STATIC.items():
        body = _static(name)

        async def serve(request: Request, body: bytes = body, kind: str = kind) -> Response:
            return Response(200, body, kind, _SECURITY)

        out[path] = serve
    return out


# --- the page ------------------------------------------------------------------------------------

_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mimecast-connector: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body class="login"><main>
<h1>mimecast-connector dashboard</h1>
<form id="login"><label for="token">Token (<code>metrics_token</code>, or the dashboard's
<code>--token-file</code>)</label>
<input id="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
<p id="login-error" role="alert"></p></form>
</main><script src="/static/login.js"></script></body></html>
"""


def render(charts: Mapping[str, Any], *, title: str, tenant: str | None) -> str:
    """The whole page: the charts' HTML and SVG from ``charts`` (``Board.charts``), and the
    frame of the streams table."""
    scope = f"tenant {_e(tenant)}" if tenant else "all tenants"
    back = ' · <a href="/">all tenants</a>' if tenant else ""
    drops = charts["drops"]
    top = charts["top"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mimecast-connector dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body>
<header><h1>mimecast-connector</h1><p>state {_e(title)} · {scope}{back} ·
generated {_e(charts["generated_at"])} (charts are at most 30 s old)</p></header>
<main>
<section id="streams-section"><h2>Streams</h2>
<div id="state-counts" class="counts"></div>
<form id="filters" role="search">
<input id="search" type="search" placeholder="tenant name contains…" aria-label="Search tenants">
<select id="health" aria-label="Health">
<option value="">every state</option>
<option value="failing,degraded">only failing or degraded</option>
<option value="failing">only failing</option>
<option value="degraded">only degraded</option>
<option value="configured,authenticated">not collecting yet</option>
<option value="collecting">only collecting</option>
</select>
<span id="paging"><button type="button" id="prev">&lsaquo; previous</button>
<span id="page-info"></span><button type="button" id="next">next &rsaquo;</button></span>
</form>
<table id="streams"><thead><tr><th>tenant</th><th>log</th><th>health</th><th>since</th>
<th>reason / what to do</th><th>lag</th><th>last success</th><th>last error</th>
<th>alerts</th><th>dropped</th><th>dead letters</th></tr></thead>
<tbody id="streams-body"><tr><td colspan="11">loading…</td></tr></tbody></table>
</section>
<section id="over-time"><h2>Alerts over time by log</h2>
{_legend(charts)}
<h3>per hour, last {HOURLY} hours</h3>{_bars(charts["hourly"], "hourly")}
<h3>per day, last 30 days</h3>{_bars(charts["daily"], "daily")}
</section>
<section id="attack"><h2>ATT&amp;CK heat map, last 30 days</h2>{_heatmap(charts["heatmap"])}</section>
<section id="top"><h2>Last 24 hours</h2><div class="tops">
{_top("Top alert types", "top-types", top["alert_types"])}
{_top("Top senders", "top-senders", top["senders"])}
{_top("Top recipients", "top-recipients", top["recipients"])}
</div></section>
<section id="drops"><h2>Dropped and dead-lettered</h2>{_drops(drops)}</section>
</main>
<script src="/static/dashboard.js"></script></body></html>
"""


def _legend(charts: Mapping[str, Any]) -> str:
    present = set(charts["hourly"]["counts"]) | set(charts["daily"]["counts"])
    names = [c for c in _CATEGORIES if c in present] + sorted(present - set(_CATEGORIES))
    if not names:
        return '<p class="empty">No alerts delivered in the last 30 days.</p>'
    items = "".join(f'<li><span class="swatch c-{_e(c)}"></span>{_e(c)}</li>' for c in names)
    return f'<ul class="legend">{items}</ul>'


def _bars(binned: Mapping[str, Any], name: str) -> str:
    """A stacked bar chart as inline SVG: one bar a bin, one colour a category."""
    starts: list[str] = binned["starts"]
    counts: Mapping[str, list[int]] = binned["counts"]
    order = [c for c in _CATEGORIES if c in counts] + sorted(set(counts) - set(_CATEGORIES))
    totals = [sum(counts[c][i] for c in order) for i in range(len(starts))]
    peak = max(totals, default=0) or 1
    width, height, gap = 960, 140, 2
    step = width / max(1, len(starts))
    parts = []
    for i, start in enumerate(starts):
        y = float(height)
        label = ", ".join(f"{c} {counts[c][i]}" for c in order if counts[c][i]) or "none"
        rects = []
        for c in order:
            n = counts[c][i]
            if n:
                h = height * n / peak
                y -= h
                rects.append(
                    f'<rect class="c-{_e(c)}" x="{i * step:.1f}" y="{y:.1f}" '
                    f'width="{max(1.0, step - gap):.1f}" height="{h:.1f}"></rect>'
                )
        parts.append(
            f'<g data-start="{_e(start)}" data-total="{totals[i]}"><title>{_e(start)}: '
            f"{_e(label)}</title>{''.join(rects)}</g>"
        )
    first = _e(starts[0][:16].replace("T", " ")) if starts else ""
    last = _e(starts[-1][:16].replace("T", " ")) if starts else ""
    return (
        f'<svg class="bars" id="{name}" viewBox="0 0 {width} {height + 16}" role="img" '
        f'aria-label="alerts {name}, peak {max(totals, default=0)}">{"".join(parts)}'
        f'<text x="0" y="{height + 14}">{first}</text>'
        f'<text x="{width}" y="{height + 14}" text-anchor="end">{last} (UTC), peak '
        f"{max(totals, default=0)}</text></svg>"
    )


def _heatmap(heatmap: Mapping[str, Any]) -> str:
    tactics = heatmap["tactics"]
    if not tactics:
        return '<p class="empty">No alerts delivered in the last 30 days.</p>'
    peak = heatmap["max"] or 1
    head = "".join(
        f'<th scope="col" data-tactic="{_e(t["id"])}">{_e(t["name"])}'
        f"<small>{_e(t['id']) if t['id'].startswith('TA') else ''}</small></th>"
        for t in tactics
    )
    cells = []
    for t in tactics:
        items = "".join(
            f'<div class="technique heat-{min(5, 1 + (4 * k["count"]) // peak)}" '
            f'data-technique="{_e(k["id"])}" data-count="{k["count"]}">'
            f'<span class="id">{_e(k["id"])}</span> <span class="name">{_e(k["name"])}</span>'
            f' <b class="n">{k["count"]}</b></div>'
            for k in t["techniques"]
        )
        cells.append(f"<td>{items}</td>")
    return (
        f'<table id="heatmap"><thead><tr>{head}</tr></thead>'
        f"<tbody><tr>{''.join(cells)}</tr></tbody></table>"
    )


def _top(heading: str, name: str, rows: list[tuple[str, int]]) -> str:
    if not rows:
        return f'<div><h3>{_e(heading)}</h3><p class="empty" id="{name}">none</p></div>'
    items = "".join(
        f'<li><span class="what">{_e(what)}</span> <b class="n">{n}</b></li>' for what, n in rows
    )
    return f'<div><h3>{_e(heading)}</h3><ol id="{name}">{items}</ol></div>'


def _drops(drops: Mapping[str, Any]) -> str:
    reasons = "".join(
        f'<tr><td class="what">{_e(reason)}</td><td class="n">{n}</td></tr>'
        for reason, n in drops["reasons"].items()
    )
    streams = "".join(
        f'<tr><td><a href="/?tenant={_e(urllib.parse.quote(s["tenant"]))}">{_e(s["tenant"])}'
        f'</a></td><td>{_e(s["category"])}</td><td class="n">{s["dropped"]}</td>'
        f'<td class="n">{s["dead_lettered"]}</td></tr>'
        for s in drops["streams"]
    )
    return (
        f'<p>dropped <b id="dropped-total">{drops["dropped"]}</b> · dead-lettered '
        f'<b id="dead-total">{drops["dead_lettered"]}</b> (records that failed the format '
        "check: the dead-letter file, or the PostgreSQL state's table, holds each with its "
        "error)</p>"
        f'<div class="tops"><div><h3>Dropped by reason</h3><table id="drop-reasons">'
        f"{reasons or '<tr><td>none</td></tr>'}</table></div>"
        f'<div><h3>Streams with the most</h3><table id="drop-streams"><tr><th>tenant</th>'
        f"<th>log</th><th>dropped</th><th>dead letters</th></tr>{streams}</table></div></div>"
    )
