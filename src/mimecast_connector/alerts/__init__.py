"""Alerts: the typed, mapped detections, their identity, and their output formats.

Import from here; the modules beside it are private.
"""

from __future__ import annotations

from mimecast_connector.alerts._alert import (
    BUILDERS,
    Alert,
    AlertBuilder,
    alert_id,
    format_alert_time,
    id_prefix,
    identity_getter,
    identity_key,
)
from mimecast_connector.alerts._formats import (
    ARRAY_ENCODERS,
    LINE_ENCODERS,
    OCSF_VERSION,
    BatchEncoder,
    Format,
    attack_object,
    to_ocsf,
)

__all__ = [
    "ARRAY_ENCODERS",
    "BUILDERS",
    "LINE_ENCODERS",
    "OCSF_VERSION",
    "Alert",
    "AlertBuilder",
    "BatchEncoder",
    "Format",
    "alert_id",
    "attack_object",
    "format_alert_time",
    "id_prefix",
    "identity_getter",
    "identity_key",
    "to_ocsf",
]
