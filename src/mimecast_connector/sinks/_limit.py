"""A sink's limit on one alert: its encoding, shortened to fit when it is over, or a refusal.

Syslog and Kafka have a largest message (``max_message_bytes``: the receiver's or the
broker's, which refuse or silently cut a longer one). An alert over it (a subject or URL of
hundreds of kilobytes: anyone can mail one) used to be refused, which stops delivery for every
tenant until a person acts. :func:`within` sends it shortened instead (``alerts.shorten``: the
record replaced by a note of its size, then the longest texts cut and marked), logged as
``alert_shortened`` with the alert's id and sizes, never its text; only an alert whose own
fields do not fit is refused. Sentinel's Logs Ingestion API takes 1 MB a call, whatever
``max_body_bytes`` says, so an alert over that alone is shortened to it too. (The other HTTP
sinks' ``max_body_bytes`` is where they split a batch; an alert larger alone goes alone, and the
receiver says whether it takes it: the webhook, HEC and Elasticsearch send an alert their
receiver refuses alone with 413 again shortened to half the refused size.)
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from mimecast_connector._errors import SinkRejectedError
from mimecast_connector.alerts import Alert, shorten

_log = structlog.get_logger("mimecast_connector.sinks")


def within(
    alert: Alert,
    encode: Callable[[Alert], bytes],
    limit: int,
    *,
    sink: str,
    setting: str,
    advice: str = "",
) -> bytes:
    """``encode(alert)`` if it is at most ``limit`` bytes; else the alert shortened to fit,
    logged; :class:`SinkRejectedError` naming ``setting`` (the limit) and ``advice`` (by
    default: raise it) if even the shortest is over."""
    encoded = encode(alert)
    if len(encoded) <= limit:
        return encoded
    shortened = shorten(alert, encode, limit)
    if shortened is None:
        advice = advice or (
            f"raise {setting} (and the receiver's own limit to match) or choose a shorter format"
        )
        raise SinkRejectedError(
            f"alert {alert.id} is {len(encoded)} bytes, and even with its record and texts cut "
            f"it is over {setting} ({limit} bytes for it): {advice}; the batch is not "
            "acknowledged (nothing is dropped)",
            sink=sink,
        )
    _log.warning(
        "alert_shortened",
        sink=sink,
        alert=alert.id,
        tenant=alert.tenant,
        bytes=len(encoded),
        limit=limit,
        reason=f"over {setting}: sent with its record and longest texts cut (marked truncated)",
    )
    return shortened
