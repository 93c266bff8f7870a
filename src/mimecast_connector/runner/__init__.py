"""The run: streams polled, records chained into alerts, delivered, committed.

Import from here; the modules beside it are private, but for ``_fleet`` (procrastinate and
psycopg: imported only by a run whose state is PostgreSQL).
"""

from __future__ import annotations

from mimecast_connector.runner._chain import Chain, DeadLetter, Handled, count, select_fresh
from mimecast_connector.runner._runner import (
    DEFAULT_START,
    Reload,
    Runner,
    StreamResult,
    make_auth,
    make_sinks,
)

__all__ = [
    "DEFAULT_START",
    "Chain",
    "DeadLetter",
    "Handled",
    "Reload",
    "Runner",
    "StreamResult",
    "count",
    "make_auth",
    "make_sinks",
    "select_fresh",
]
