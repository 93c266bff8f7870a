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
from mimecast_connector.alerts._ecs import ECS_VERSION, to_ecs
from mimecast_connector.alerts._formats import (
    ARRAY_ENCODERS,
    FORMATS,
    LINE_ENCODERS,
    ONE_ENCODERS,
    BatchEncoder,
    Format,
    OneEncoder,
    OutputFormat,
)
from mimecast_connector.alerts._ocsf import OCSF_VERSION, attack_object, to_ocsf
from mimecast_connector.alerts._shorten import TRUNCATED, shorten

__all__ = [
    "ARRAY_ENCODERS",
    "BUILDERS",
    "ECS_VERSION",
    "FORMATS",
    "LINE_ENCODERS",
    "OCSF_VERSION",
    "ONE_ENCODERS",
    "TRUNCATED",
    "Alert",
    "AlertBuilder",
    "BatchEncoder",
    "Format",
    "OneEncoder",
    "OutputFormat",
    "alert_id",
    "attack_object",
    "format_alert_time",
    "id_prefix",
    "identity_getter",
    "identity_key",
    "shorten",
    "to_ecs",
    "to_ocsf",
]
