"""The dashboard: a read-only web page over the state store (``mimecast-connector dashboard``,
and ``/`` of a run's metrics port).

Every configured tenant's streams with their health, lag and last error (paged and searched
server-side: thousands of tenants cost a browser one page), alerts over time by log, an
ATT&CK heat map, the top alert types, senders and recipients of the last 24 hours, and the
dropped and dead-lettered counts. It reads the state read-only (``_source``), never writes
it, and is served by the run's small HTTP server (``observe``) under its token rule.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from mimecast_connector._errors import StateError
from mimecast_connector._logging import redact
from mimecast_connector.config import Config
from mimecast_connector.dashboard._data import Board, Tenant
from mimecast_connector.dashboard._source import Source, open_source
from mimecast_connector.dashboard._web import PUBLIC, routes
from mimecast_connector.observe import Request, Response, Route
from mimecast_connector.rules import load_table
from mimecast_connector.state import StreamState


class Dashboard:
    """The dashboard's routes over the state ``config`` names (``observe.Pages``).

    The state is opened on the first request (a run's metrics server starts before it is
    needed), read-only; until it can be read each page says why (503).
    """

    public = PUBLIC

    def __init__(
        self,
        config: Config,
        *,
        source: Source | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        table = load_table(config.mapping)
        names: dict[str, str] = {}
        for technique in table.rows.values():
            names.setdefault(technique.threat_id, technique.threat_name)
        state = config.state if isinstance(config.state, Path) else config.state.url
        self._lazy = _Lazy(source, state if isinstance(state, Path) else state.get_secret_value())
        self._secrets = config.secrets()
        board = Board(
            self._lazy,
            [Tenant(t.name, t.api, tuple(c.value for c in t.categories)) for t in config.tenants],
            names=names,
            secrets=self._secrets,
            clock=clock,
        )
        self._routes = {
            path: (route if path in PUBLIC or path.startswith("/static/") else self._told(route))
            for path, route in routes(board, title=str(config.state)).items()
        }

    @property
    def routes(self) -> Mapping[str, Route]:
        return self._routes

    def _told(self, route: Route) -> Route:
        """``route``, answering 503 with the reason while the state cannot be read."""

        async def answer(request: Request) -> Response:
            try:
                return await route(request)
            except StateError as exc:
                text = redact(str(exc), self._secrets)
                return Response(503, f"the state cannot be read: {text}\n".encode())

        return answer

    async def aclose(self) -> None:
        await self._lazy.aclose()


class _Lazy:
    """A ``Source`` opened on first use (again after a failure to open)."""

    def __init__(self, source: Source | None, state: Path | str) -> None:
        self._source = source
        self._state = state
        self._opening = asyncio.Lock()

    async def _get(self) -> Source:
        async with self._opening:
            if self._source is None:
                self._source = await open_source(self._state)
            return self._source

    async def streams(self, *, counters: bool = True) -> list[StreamState]:
        return await (await self._get()).streams(counters=counters)

    async def alert_series(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[int, str, int]]:
        return await (await self._get()).alert_series(since_hour, tenant)

    async def technique_counts(
        self, since_hour: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await (await self._get()).technique_counts(since_hour, tenant)

    async def top_alert_types(
        self, since_hour: int, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await (await self._get()).top_alert_types(since_hour, limit, tenant)

    async def top_parties(
        self, since_hour: int, role: str, limit: int, tenant: str | None = None
    ) -> list[tuple[str, int]]:
        return await (await self._get()).top_parties(since_hour, role, limit, tenant)

    async def aclose(self) -> None:
        if self._source is not None:
            await self._source.aclose()
            self._source = None


__all__ = ["Board", "Dashboard", "Source", "Tenant", "open_source"]
