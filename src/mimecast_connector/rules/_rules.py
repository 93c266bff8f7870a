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
from mimecast_connector.rules._mapping import AttackTable

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
    """The rules of ``category``, with ``table`` bound in.

    Verdicts are immutable and few (an alertType times three severities), so they are built
    once and shared instead of allocated per record.
    """
    lookup = table.lookup
    verdicts: dict[tuple[str, Severity], Typed] = {}

    def verdict(alert_type: str, severity: Severity) -> Typed:
        found = verdicts.get((alert_type, severity))
        if found is None:
            row = lookup(alert_type, category)
            found = Typed(alert_type, row.threat_id, row.threat_name, severity)
            if len(verdicts) < 4096:  # alertTypes come from the data: bound the memo
                verdicts[(alert_type, severity)] = found
        return found

    if category is Category.ATTACHMENT:
        high = verdict("Unsafe Email Attachment", "high")
        medium = verdict("Unsafe Email Attachment", "medium")

        def attachment(record: Record) -> str | Typed:
            result = cast(AttachmentLog, record).result.strip().casefold()
            if result == "malicious" or result == "unsafe":
                return high
            if result == "safe" or result == "clean":
                return SAFE_ATTACHMENT
            return medium

        return attachment

    if category is Category.IMPERSONATION:
        delivered = verdict("Impersonation Attempt", "high")
        stopped = verdict("Impersonation Attempt", "medium")

        def impersonation(record: Record) -> str | Typed:
            record = cast(ImpersonationLog, record)
            if record.taggedMalicious is False:
                return NOT_MALICIOUS_IMPERSONATION
            action = record.action
            return delivered if not action or action.casefold() == "none" else stopped

        return impersonation

    def url(record: Record) -> str | Typed:
        record = cast(ClickLog, record)
        scan = record.scanResult.strip().casefold()
        if scan == "clean":
            return CLEAN_URL
        severity: Severity
        if scan != "malicious":
            severity = "low"
        elif (record.creationMethod or "").casefold() == "user click" and (
            record.action or ""
        ).casefold() != "block":
            severity = "high"
        else:
            severity = "medium"
        return verdict(url_alert_type(record), severity)

    return url
