"""The product's rules: safe filter, alert type, ATT&CK mapping, severity.

Import from here; the modules beside it are private.
"""

from __future__ import annotations

from mimecast_connector.rules._mapping import (
    CATEGORY_DEFAULT_TYPE,
    AttackTable,
    Technique,
    load_table,
)
from mimecast_connector.rules._rejections import RejectionTexts, RejectionType, normalise
from mimecast_connector.rules._rules import (
    CLEAN_URL,
    DROP_REASONS,
    NOT_MALICIOUS_IMPERSONATION,
    SAFE_ATTACHMENT,
    UNMATCHED_REJECTION,
    RejectionClassifier,
    Rules,
    Severity,
    Typed,
    build_rules,
    rejection_classifier,
    split_reason,
    url_alert_type,
)

__all__ = [
    "CATEGORY_DEFAULT_TYPE",
    "CLEAN_URL",
    "DROP_REASONS",
    "NOT_MALICIOUS_IMPERSONATION",
    "SAFE_ATTACHMENT",
    "UNMATCHED_REJECTION",
    "AttackTable",
    "RejectionClassifier",
    "RejectionTexts",
    "RejectionType",
    "Rules",
    "Severity",
    "Technique",
    "Typed",
    "build_rules",
    "load_table",
    "normalise",
    "rejection_classifier",
    "split_reason",
    "url_alert_type",
]
