"""Typed, validated log records (TTP and rejection). Import from here; the modules beside it are private."""

from __future__ import annotations

from mimecast_connector.records._models import (
    AttachmentLog,
    Checker,
    ClickLog,
    ImpersonationLog,
    Invalid,
    Record,
    RejectionLog,
    Stamp,
    Valid,
    check_utf8,
    format_utc,
    make_checker,
    parse_event_time,
    stamp,
    validate,
)

__all__ = [
    "AttachmentLog",
    "Checker",
    "ClickLog",
    "ImpersonationLog",
    "Invalid",
    "Record",
    "RejectionLog",
    "Stamp",
    "Valid",
    "check_utf8",
    "format_utc",
    "make_checker",
    "parse_event_time",
    "stamp",
    "validate",
]
