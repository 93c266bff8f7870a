"""What the dashboard shows, read from the state and shaped as plain documents (the JSON
endpoints send them as they are; the page renders them, escaped).

Two reads, each cached for a few seconds so that a page and its scripts, or many browsers,
cost the store one read: the streams (every configured tenant's streams with their health,
lag, last success and error, and counters) and the charts (alerts by hour and day, by
technique, the top alert types, senders and recipients). The streams list is paged here,
server-side: a browser gets one page of tenants whatever their number.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mimecast_connector._health import State, derived
from mimecast_connector._logging import redactor_of
from mimecast_connector.dashboard._attack import OTHER, TACTICS, tactics_of
from mimecast_connector.dashboard._source import Source
from mimecast_connector.state import StreamState

#: How the streams list is ordered by default: the ones that need a person first.
STATE_ORDER = {
    State.FAILING: 0,
    State.DEGRADED: 1,
    State.CONFIGURED: 2,
    State.AUTHENTICATED: 3,
    State.COLLECTING: 4,
}
#: Tenants a page at most (``size``), and by default.
MAX_PAGE_SIZE, PAGE_SIZE = 200, 50
#: Seconds a read of the streams, and of the charts, is reused.
STREAMS_TTL, CHARTS_TTL = 5.0, 30.0
#: Entries of each top list.
TOP = 10
#: Hours of the hourly chart, days of the daily one.
HOURLY, DAILY = 48, 30


@dataclass(frozen=True, slots=True)
class Tenant:
    """A configured tenant, as the dashboard needs it."""

    name: str
    api: str
    categories: tuple[str, ...]


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def stream_row(
    tenant: Tenant, category: str, s: StreamState | None, now: float, redact: Callable[[str], str]
) -> dict[str, Any]:
    """One stream of the table: health, lag, last success and error, counters."""
    if s is None:
        health = derived(None, None, None)
    else:
        health = s.health or derived(_epoch(s.last_success), _epoch(s.last_error_at), s.last_error)
    counters: Mapping[str, int] = s.counters if s is not None else {}
    cursor = _epoch(s.cursor) if s is not None else None
    return {
        "tenant": tenant.name,
        "category": category,
        "api": tenant.api,
        "state": health.state.value,
        "since": _iso(health.since),
        "reason": redact(health.reason),
        "advice": redact(health.advice) or None,
        "lag_seconds": None if cursor is None else round(max(0.0, now - cursor), 3),
        "last_success": _iso(_epoch(s.last_success)) if s is not None else None,
        "last_error": redact(s.last_error) if s is not None and s.last_error else None,
        "last_error_at": _iso(_epoch(s.last_error_at)) if s is not None else None,
        "alerts": counters.get("alerts", 0),
        "dropped": sum(n for k, n in counters.items() if k.startswith("dropped: ")),
        "dead_lettered": counters.get("dead_lettered", 0),
    }


class Board:
    """The dashboard's data: ``tenants`` (from the configuration) read from ``source``.

    ``names`` gives each threatId's name (the mapping table's); ``secrets`` are redacted from
    every text shown once more (they were when stored); ``clock`` is epoch seconds.
    """

    def __init__(
        self,
        source: Source,
        tenants: Sequence[Tenant],
        *,
        names: Mapping[str, str],
        secrets: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._tenants = list(tenants)
        self._names = names
        #: Built once: a redactor of thousands of tenants' secrets is a big automaton.
        self._redact = redactor_of(secrets)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._rows: list[dict[str, Any]] = []
        self._order: list[tuple[str, list[dict[str, Any]], int]] = []  # tenant, rows, worst
        self._rows_at = -1e18
        #: Each tenant's dropped counts by reason, from the same read as the rows.
        self._reasons: dict[str, dict[str, int]] = {}
        self._charts: dict[str | None, tuple[float, dict[str, Any]]] = {}

    # --- the streams ---------------------------------------------------------------------------

    async def _streams(self) -> list[tuple[str, list[dict[str, Any]], int]]:
        async with self._lock:
            now = self._clock()
            if now - self._rows_at >= STREAMS_TTL:
                stored = {(s.tenant, s.category): s for s in await self._source.streams()}
                by_tenant = []
                rows = []
                reasons: dict[str, dict[str, int]] = {}
                for s in stored.values():
                    for name, n in s.counters.items():
                        if name.startswith("dropped: ") and n:
                            mine_ = reasons.setdefault(s.tenant, {})
                            reason = self._redact(name.removeprefix("dropped: "))
                            mine_[reason] = mine_.get(reason, 0) + n
                for tenant in self._tenants:
                    mine = [
                        stream_row(tenant, c, stored.get((tenant.name, c)), now, self._redact)
                        for c in tenant.categories
                    ]
                    rows.extend(mine)
                    worst = min((STATE_ORDER[State(r["state"])] for r in mine), default=4)
                    by_tenant.append((tenant.name, mine, worst))
                by_tenant.sort(key=lambda item: (item[2], item[0]))
                self._rows, self._order, self._rows_at = rows, by_tenant, now
                self._reasons = reasons
            return self._order

    async def streams_page(
        self, *, page: int = 1, size: int = PAGE_SIZE, q: str = "", states: Sequence[str] = ()
    ) -> dict[str, Any]:
        """One page of tenants, those that need a person first: ``q`` a substring of the
        tenant's name (any case), ``states`` the health states shown (none: all)."""
        order = await self._streams()
        size = max(1, min(size, MAX_PAGE_SIZE))
        known = {state.value for state in State}
        wanted = {s for s in states if s in known}
        needle = q.strip().casefold()
        matched = []
        for name, rows, _ in order:
            if needle and needle not in name.casefold():
                continue
            shown = [r for r in rows if r["state"] in wanted] if wanted else rows
            if shown:
                matched.append({"tenant": name, "streams": shown})
        pages = max(1, -(-len(matched) // size))
        page = max(1, min(page, pages))
        counts = {state.value: 0 for state in State}
        for row in self._rows:
            counts[row["state"]] += 1
        return {
            "generated_at": _iso(self._rows_at),
            "tenants_total": len(order),
            "tenants_matched": len(matched),
            "page": page,
            "pages": pages,
            "size": size,
            "states": counts,
            "tenants": matched[(page - 1) * size : page * size],
        }

    # --- the charts ----------------------------------------------------------------------------

    async def charts(self, tenant: str | None = None) -> dict[str, Any]:
        """Alerts by hour (48 h) and day (30 days) and category, the ATT&CK heat map (30 days),
        the top alert types, senders and recipients (24 h), dropped and dead-lettered counts:
        of every tenant, or of ``tenant``."""
        now = self._clock()
        cached = self._charts.get(tenant)
        if cached is not None and now - cached[0] < CHARTS_TTL:
            return cached[1]
        source = self._source
        hour_now = int(now // 3600)
        day_hour0 = (hour_now // 24 - (DAILY - 1)) * 24  # the first hour of the first day
        series = await source.alert_series(day_hour0, tenant)
        techniques = await source.technique_counts(day_hour0, tenant)
        since_24h = hour_now - 23
        types = await source.top_alert_types(since_24h, TOP, tenant)
        senders = await source.top_parties(since_24h, "sender", TOP, tenant)
        recipients = await source.top_parties(since_24h, "recipient", TOP, tenant)
        order = await self._streams()
        document = {
            "generated_at": _iso(now),
            "tenant": tenant,
            "hourly": _binned(series, hour_now - HOURLY + 1, HOURLY, 1),
            "daily": _binned(series, day_hour0, DAILY, 24),
            "heatmap": self._heatmap(techniques),
            "top": {"alert_types": types, "senders": senders, "recipients": recipients},
            "drops": _drops(
                [r for name, rows, _ in order if tenant in (None, name) for r in rows],
                self._dropped_reasons(tenant),
            ),
        }
        self._charts[tenant] = (now, document)
        return document

    def _dropped_reasons(self, tenant: str | None) -> dict[str, int]:
        """Dropped counts by reason of the configured tenants (or ``tenant``), most first."""
        reasons: dict[str, int] = {}
        for t in self._tenants:
            if tenant in (None, t.name):
                for reason, n in self._reasons.get(t.name, {}).items():
                    reasons[reason] = reasons.get(reason, 0) + n
        return dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))

    def _heatmap(self, techniques: list[tuple[str, int]]) -> dict[str, Any]:
        columns: dict[str, list[dict[str, Any]]] = {}
        for threat_id, n in techniques:
            for tactic in tactics_of(threat_id):
                columns.setdefault(tactic, []).append(
                    {"id": threat_id, "name": self._names.get(threat_id, ""), "count": n}
                )
        ordered = [t for t in [*TACTICS, OTHER] if t in columns]
        return {
            "max": max((n for _, n in techniques), default=0),
            "tactics": [
                {
                    "id": tactic,
                    "name": TACTICS.get(tactic, OTHER),
                    "techniques": sorted(columns[tactic], key=lambda t: (-t["count"], t["id"])),
                }
                for tactic in ordered
            ],
        }


def _binned(
    series: list[tuple[int, str, int]], first_hour: int, bins: int, hours: int
) -> dict[str, Any]:
    """``series`` (hour, category, n) summed into ``bins`` bins of ``hours`` hours from
    ``first_hour``: the bins' start times and each category's counts."""
    counts: dict[str, list[int]] = {}
    for hour, category, n in series:
        index = (hour - first_hour) // hours
        if 0 <= index < bins:
            counts.setdefault(category, [0] * bins)[index] += n
    return {
        "starts": [_iso((first_hour + i * hours) * 3600.0) for i in range(bins)],
        "hours": hours,
        "counts": dict(sorted(counts.items())),
    }


def _drops(rows: list[dict[str, Any]], reasons: dict[str, int]) -> dict[str, Any]:
    worst = sorted(
        (r for r in rows if r["dropped"] or r["dead_lettered"]),
        key=lambda r: (-r["dead_lettered"], -r["dropped"], r["tenant"], r["category"]),
    )
    return {
        "dropped": sum(reasons.values()),
        "reasons": reasons,
        "dead_lettered": sum(r["dead_lettered"] for r in rows),
        "streams": [
            {k: r[k] for k in ("tenant", "category", "dropped", "dead_lettered")}
            for r in worst[:TOP]
        ],
    }
