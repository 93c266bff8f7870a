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
rejection       the severity of the phrase found (``data/rejection-texts.toml``)  per row
rejection       no phrase found, kept by ``keep_unmatched_rejections``          low
=============== =============================================================== ========

A rejection whose text holds no phrase is dropped (:data:`UNMATCHED_REJECTION`) unless the
tenant keeps them; its ``description`` travels with the drop reason, after a ``\x1f``, so that
the counters say which texts a user might want to add (:func:`split_reason`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

from mimecast_connector._categories import Category
from mimecast_connector.records import (
    AttachmentLog,
    ClickLog,
    ImpersonationLog,
    Record,
    RejectionLog,
)
from mimecast_connector.rules._mapping import CATEGORY_DEFAULT_TYPE, AttackTable

Severity = Literal["low", "medium", "high"]

#: Drop reasons, as counted (``alert-rules.md`` §2.2).
SAFE_ATTACHMENT = "attachment result safe or clean"
CLEAN_URL = "url scanResult clean"
NOT_MALICIOUS_IMPERSONATION = "impersonation not taggedMalicious"
UNMATCHED_REJECTION = "unmatched rejection"
DROP_REASONS = (SAFE_ATTACHMENT, CLEAN_URL, NOT_MALICIOUS_IMPERSONATION, UNMATCHED_REJECTION)

#: How many distinct unmatched descriptions one stream's rules name; the rest are "(other)".
#: Mimecast's descriptions are a few dozen categories, but a hostile or broken server could send
#: a new one per record, and each would become a counter row.
MAX_UNMATCHED_LABELS = 64
MAX_LABEL_LENGTH = 80


def split_reason(reason: str) -> tuple[str, str | None]:
    """A drop reason and the detail it carries (an unmatched rejection's description)."""
    head, sep, detail = reason.partition("\x1f")
    return head, (detail if sep else None)


@dataclass(frozen=True, slots=True)
class Typed:
    """A record that is an alert: its type, ATT&CK row and severity."""

    alert_type: str
    threat_id: str
    threat_name: str
    severity: Severity


#: A category's rules: a drop reason (str) or the typed verdict.
Rules = Callable[[Record], "str | Typed"]


def _verdicts(table: AttackTable, category: Category) -> Callable[[str, Severity], Typed]:
    """The verdict of an alertType and severity, with its ATT&CK row (its category's default
    row when it has none). Verdicts are immutable and few (an alertType times three
    severities): built once and shared instead of allocated per record."""
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

    return verdict


def url_alert_type(record: ClickLog) -> str:
    """``alert-rules.md`` §3 for URL logs."""
    if not record.ttpDefinition:
        return record.creationMethod or "URL Protection"
    return record.reason or record.ttpDefinition


def build_rules(
    category: Category, table: AttackTable, *, keep_unmatched_rejections: bool = False
) -> Rules:
    """The rules of ``category``, with ``table`` bound in."""
    verdict = _verdicts(table, category)

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

    if category is Category.REJECTION:
        classify = rejection_classifier(
            table, verdict, keep_unmatched_rejections=keep_unmatched_rejections
        )

        def rejection(record: Record) -> str | Typed:
            r = cast(RejectionLog, record)
            return classify((r.info, r.description), r.description)

        return rejection

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


#: ``(texts by precedence, label) -> drop reason or verdict``: see :func:`rejection_classifier`.
RejectionClassifier = Callable[[tuple["str | None", ...], "str | None"], "str | Typed"]


def rejection_classifier(
    table: AttackTable,
    verdict: Callable[[str, Severity], Typed] | None = None,
    *,
    keep_unmatched_rejections: bool = False,
) -> RejectionClassifier:
    """What a rejection's texts make of it, wherever the rejection comes from (the rejection
    log: ``info``, then ``description``; a SIEM receipt: ``rejectionInfo``, then ``virusFound``,
    then ``receiptErrors``): the verdict of the first phrase found in them, else ``MTA
    Rejection`` (kept) or the unmatched drop reason carrying ``label`` (its description).

    The same few texts repeat all day, so what a tuple of texts gave is remembered (bounded).
    ``verdict`` shares a caller's memo of verdicts; by default the classifier has its own.
    """
    if verdict is None:
        verdict = _verdicts(table, Category.REJECTION)
    classify = table.rejections.classify
    kept = (
        verdict(CATEGORY_DEFAULT_TYPE[Category.REJECTION], "low")
        if keep_unmatched_rejections
        else None
    )
    memo: dict[tuple[tuple[str | None, ...], str | None], str | Typed] = {}
    labels: dict[str, str] = {}

    def unmatched(description: str | None) -> str:
        label = " ".join((description or "").split())[:MAX_LABEL_LENGTH] or "(no description)"
        reason = labels.get(label)
        if reason is None:
            if len(labels) >= MAX_UNMATCHED_LABELS:
                label = "(other)"
            reason = labels.setdefault(label, f"{UNMATCHED_REJECTION}\x1f{label}")
        return reason

    def classifier(texts: tuple[str | None, ...], label: str | None) -> str | Typed:
        key = (texts, label)
        found = memo.get(key)
        if found is None:
            kind = classify(texts)
            if kind is not None:
                found = verdict(kind.alert_type, kind.severity)
            else:
                found = kept or unmatched(label)
            if len(memo) < 4096:
                memo[key] = found
        return found

    return classifier
