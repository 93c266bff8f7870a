"""What becomes an alert: the safe filter, the alert type, ATT&CK and severity.

``alert-rules.md`` §2.2 to §4, as one plain function per category, built once from the ATT&CK
table (style.md habit 3): the hot path calls it with a validated record and gets either the
reason the record was dropped or the typed verdict, with no branch on configuration.

Severity is ours (the rules page leaves it to the issues), from verdict and action:

=============== =============================================================== ========
category        condition                                                       severity
=============== =============================================================== ========
attachment      ``result`` malicious or unsafe                                  high
attachment      any other kept result (timeout, error, unknown, new values)     medium
url             malicious, a ``User Click`` whose ``action`` is not ``block``    high
url             malicious, blocked, or found by ``Entry Scan`` (no click)       medium
url             any other kept verdict (timeout, error, unknown, new values)    low
impersonation   ``action`` none or empty: the message was delivered             high
impersonation   any other action (hold, bounce, delete ...)                     medium
=============== =============================================================== ========
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

from mimecast_connector._categories import Category
from mimecast_connector.records import AttachmentLog, ClickLog, ImpersonationLog, Record
from mimecast_connector.rules._mapping import AttackTable, Technique

Severity = Literal["low", "medium", "high"]

#: Drop reasons, as counted (``alert-rules.md`` §2.2).
SAFE_ATTACHMENT = "attachment result safe or clean"
CLEAN_URL = "url scanResult clean"
NOT_MALICIOUS_IMPERSONATION = "impersonation not taggedMalicious"
DROP_REASONS = (SAFE_ATTACHMENT, CLEAN_URL, NOT_MALICIOUS_IMPERSONATION)


@dataclass(frozen=True, slots=True)
class Typed:
    """A record that is an alert: its type, ATT&CK row and severity."""

    alert_type: str
    threat_id: str
    threat_name: str
    severity: Severity


#: A category's rules: a drop reason (str) or the typed verdict.
Rules = Callable[[Record], "str | Typed"]


def url_alert_type(record: ClickLog) -> str:
    """``alert-rules.md`` §3 for URL logs."""
    if not record.ttpDefinition:
        return record.creationMethod or "URL Protection"
    return record.reason or record.ttpDefinition


def build_rules(category: Category, table: AttackTable) -> Rules:
    """The rules of ``category``, with ``table`` bound in."""
    lookup = table.lookup
    if category is Category.ATTACHMENT:
        attachment_type = "Unsafe Email Attachment"
        attachment_row = lookup(attachment_type, category)

        def attachment(record: Record) -> str | Typed:
            result = cast(AttachmentLog, record).result.casefold()
            if result in ("safe", "clean"):
                return SAFE_ATTACHMENT
            severity: Severity = "high" if result in ("malicious", "unsafe") else "medium"
            return Typed(
                attachment_type, attachment_row.threat_id, attachment_row.threat_name, severity
            )

        return attachment

    if category is Category.IMPERSONATION:
        impersonation_type = "Impersonation Attempt"
        impersonation_row = lookup(impersonation_type, category)

        def impersonation(record: Record) -> str | Typed:
            record = cast(ImpersonationLog, record)
            if record.taggedMalicious is False:
                return NOT_MALICIOUS_IMPERSONATION
            action = (record.action or "").casefold()
            severity: Severity = "high" if action in ("", "none") else "medium"
            return Typed(
                impersonation_type,
                impersonation_row.threat_id,
                impersonation_row.threat_name,
                severity,
            )

        return impersonation

    rows: dict[str, Technique] = {}  # lookups by alertType, memoised (few distinct values)

    def url(record: Record) -> str | Typed:
        record = cast(ClickLog, record)
        verdict = record.scanResult.casefold()
        if verdict == "clean":
            return CLEAN_URL
        alert_type = url_alert_type(record)
        row = rows.get(alert_type)
        if row is None:
            row = lookup(alert_type, category)
            if len(rows) < 4096:
                rows[alert_type] = row
        severity: Severity
        if verdict != "malicious":
            severity = "low"
        elif (record.creationMethod or "").casefold() == "user click" and (
            record.action or ""
        ).casefold() != "block":
            severity = "high"
        else:
            severity = "medium"
        return Typed(alert_type, row.threat_id, row.threat_name, severity)

    return url
