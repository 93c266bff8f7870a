"""Typed, validated TTP log records. Import from here; the modules beside it are private."""

from __future__ import annotations

from mimecast_connector.records._models import (
    AttachmentLog,
    ClickLog,
    ImpersonationLog,
    Invalid,
    Record,
    Valid,
    parse_event_time,
    validate,
)

__all__ = [
    "AttachmentLog",
    "ClickLog",
    "ImpersonationLog",
    "Invalid",
    "Record",
    "Valid",
    "parse_event_time",
    "validate",
]
