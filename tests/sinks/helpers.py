"""Real alerts for the sink tests, made by the chain from the spec's sample records."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from mimecast_connector import Category
from mimecast_connector.alerts import ONE_ENCODERS, Alert, Format, to_ecs, to_ocsf
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain
from tests.unit import samples

_TABLE = load_table()


def alerts_of(category: Category, *records: bytes) -> list[Alert]:
    """``records`` through a fresh chain; every one must become an alert."""
    handled = Chain("acme", category, _TABLE).process([msgspec.Raw(r) for r in records], 0.0)
    assert len(handled.alerts) == len(records), handled.dropped
    return handled.alerts


def clicks(count: int, *, start: int = 0) -> list[Alert]:
    """``count`` distinct URL-click alerts: the §12 click with message ids ``<m{i}@example.com>``."""
    base = json.loads(samples.URL_CLICK_LINE)
    records = [
        json.dumps({**base, "messageId": f"<m{i}@example.com>"}).encode()
        for i in range(start, start + count)
    ]
    return alerts_of(Category.URL, *records)


def mixed() -> list[Alert]:
    """One alert of every kind of record the samples hold: attachment, impersonation, two URL,
    rejection."""
    return [
        *alerts_of(Category.ATTACHMENT, samples.ATTACHMENT_LINE),
        *alerts_of(Category.IMPERSONATION, samples.IMPERSONATION_LINE),
        *alerts_of(Category.URL, samples.URL_CLICK_LINE, samples.URL_ENTRY_SCAN_LINE),
        *alerts_of(Category.REJECTION, samples.REJECTION_LINE),
    ]


def expected(alerts: list[Alert], format: Format) -> list[Any]:
    """What a receiver should decode from ``alerts`` in ``format``, built without the batch
    encoders: each alert on its own (``cef``: its line as a string, as a JSON array holds it)."""
    if format == "ocsf":
        return [json.loads(json.dumps(to_ocsf(a))) for a in alerts]
    if format == "ecs":
        return [json.loads(json.dumps(to_ecs(a))) for a in alerts]
    if format == "cef":
        return [ONE_ENCODERS["cef"](a).decode() for a in alerts]
    return [{**msgspec.structs.asdict(a), "raw": json.loads(bytes(a.raw))} for a in alerts]


_CEF_ID = re.compile(r" externalId=([0-9a-f]{32})$")


def alert_id(decoded: Any, format: Format) -> str:
    """The alert id of one decoded alert: ``id`` (native), ``finding_info.uid`` (ocsf),
    ``event.id`` (ecs), or a CEF line's ``externalId`` (last on the line)."""
    if format == "ocsf":
        return str(decoded["finding_info"]["uid"])
    if format == "ecs":
        return str(decoded["event"]["id"])
    if format == "cef":
        found = _CEF_ID.search(decoded.rstrip("\n"))
        assert found is not None, decoded
        return found.group(1)
    return str(decoded["id"])
