"""Watching a run from outside: its Prometheus metrics and its HTTP endpoints.

Import from here; the modules beside this file are private. ``Metrics`` is fed by the client,
the committer and the runner (``observe._metrics`` says where each number comes from);
``MetricsServer`` serves ``/metrics``, ``/healthz`` and ``/readyz`` on the run's event loop
(``observe._server``). A stream's health itself is ``mimecast_connector._health``.
"""

from __future__ import annotations

from mimecast_connector.observe._metrics import (
    NAMESPACE,
    Metrics,
    SinkWatch,
    StreamRow,
    TenantCalls,
    sink_label,
)
from mimecast_connector.observe._server import (
    MetricsServer,
    Request,
    Response,
    Route,
    registry_text,
)

__all__ = [
    "NAMESPACE",
    "Metrics",
    "MetricsServer",
    "Request",
    "Response",
    "Route",
    "SinkWatch",
    "StreamRow",
    "TenantCalls",
    "registry_text",
    "sink_label",
]
