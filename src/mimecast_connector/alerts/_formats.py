"""Output formats: ``native`` (our own JSON) and ``ocsf`` (an OCSF Detection Finding).

Each format is an encoder from a batch of :class:`Alert` to bytes, built once. ``native`` is the
alert struct as it is, one JSON object per alert; the ``raw`` record is written back as the
exact bytes Mimecast sent. ``ocsf`` is a Detection Finding (``class_uid`` 2004) of OCSF
:data:`OCSF_VERSION`, with the raw record as a JSON string in ``raw_data``.

ATT&CK in OCSF: a ``TA…`` id is a tactic; ``T….…`` a sub-technique, written with its parent
technique; ``T…`` a technique.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec

from mimecast_connector.alerts._alert import Alert

OCSF_VERSION = "1.5.0"
Format = Literal["native", "ocsf"]

_encoder = msgspec.json.Encoder()

#: Names of the parent techniques of the sub-techniques in the default table (ATT&CK v18).
PARENT_TECHNIQUES = {
    "T1598": "Phishing for Information",
    "T1566": "Phishing",
}

_TACTIC = re.compile(r"TA\d{4}")
_SUB_TECHNIQUE = re.compile(r"(T\d{4})\.\d{3}")

_SEVERITY_ID = {"low": 2, "medium": 3, "high": 4}
_FEATURES = {
    "attachment": "Targeted Threat Protection - Attachment Protection",
    "impersonation": "Targeted Threat Protection - Impersonation Protection",
    "url": "Targeted Threat Protection - URL Protection",
}
_PRODUCT_NAME = "Mimecast Email Security, Cloud Gateway"


def attack_object(threat_id: str, threat_name: str) -> dict[str, Any]:
    """The OCSF ``attack`` object of one ATT&CK id."""
    if _TACTIC.fullmatch(threat_id):
        return {"tactic": {"uid": threat_id, "name": threat_name}}
    sub = _SUB_TECHNIQUE.fullmatch(threat_id)
    if sub is not None:
        parent: dict[str, Any] = {"uid": sub.group(1)}
        if sub.group(1) in PARENT_TECHNIQUES:
            parent["name"] = PARENT_TECHNIQUES[sub.group(1)]
        return {"technique": parent, "sub_technique": {"uid": threat_id, "name": threat_name}}
    return {"technique": {"uid": threat_id, "name": threat_name}}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)


def _epoch_ms(alert_time: str) -> int:
    """Exact integer milliseconds (a float product can lose one)."""
    return (datetime.fromisoformat(alert_time) - _EPOCH) // _MILLISECOND


def to_ocsf(alert: Alert) -> dict[str, Any]:
    """One alert as an OCSF Detection Finding."""
    when = _epoch_ms(alert.time)
    severity = alert.severity.capitalize()
    email: dict[str, Any] = {}
    if alert.sender is not None:
        email["from"] = alert.sender
    if alert.recipient is not None:
        email["to"] = [alert.recipient]
    if alert.subject is not None:
        email["subject"] = alert.subject
    if alert.messageId is not None:
        email["message_uid"] = alert.messageId
    evidence: dict[str, Any] = {"email": email}
    observables: list[dict[str, Any]] = []
    if alert.sender:
        observables.append(
            {"name": "email.from", "type_id": 5, "type": "Email Address", "value": alert.sender}
        )
    if alert.recipient:
        observables.append(
            {"name": "email.to", "type_id": 5, "type": "Email Address", "value": alert.recipient}
        )
    if alert.url is not None:
        evidence["url"] = {"url_string": alert.url}
        email["urls"] = [{"url_string": alert.url}]
        observables.append(
            {"name": "url.url_string", "type_id": 6, "type": "URL String", "value": alert.url}
        )
    if alert.fileName is not None or alert.fileHash is not None:
        file: dict[str, Any] = {"name": alert.fileName or "", "type_id": 1, "type": "Regular File"}
        if alert.fileHash:
            file["hashes"] = [{"algorithm_id": 3, "algorithm": "SHA-256", "value": alert.fileHash}]
            observables.append(
                {"name": "file.hashes.value", "type_id": 8, "type": "Hash", "value": alert.fileHash}
            )
        evidence["file"] = file
        email["files"] = [file]
    finding: dict[str, Any] = {
        "uid": alert.id,
        "title": alert.alertType,
        "types": [alert.category],
        "attacks": [attack_object(alert.threatId, alert.threatName)],
        "first_seen_time": when,
        "last_seen_time": when,
        "data_sources": [f"Mimecast TTP {alert.category} log"],
    }
    if alert.identifiers:
        finding["desc"] = "Impersonation identifiers: " + ", ".join(alert.identifiers)
    out: dict[str, Any] = {
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": _SEVERITY_ID[alert.severity],
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "is_alert": True,
        "time": when,
        "message": f"{alert.alertType}: {alert.subject}" if alert.subject else alert.alertType,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": alert.id,
            "tenant_uid": alert.tenant,
            "log_name": f"ttp/{alert.category}",
            "product": {
                "name": _PRODUCT_NAME,
                "vendor_name": "Mimecast",
                "feature": {"name": _FEATURES.get(alert.category, alert.category)},
            },
        },
        "finding_info": finding,
        "evidences": [evidence],
        "raw_data": bytes(alert.raw).decode("utf-8", "replace"),
    }
    if alert.action is not None:
        out["status_detail"] = f"Mimecast action: {alert.action}"
    if observables:
        out["observables"] = observables
    return out


BatchEncoder = Callable[[Sequence[Alert]], bytes]


def encode_native_lines(alerts: Sequence[Alert]) -> bytes:
    """``native``, one JSON object a line."""
    return _encoder.encode_lines(alerts)


def encode_ocsf_lines(alerts: Sequence[Alert]) -> bytes:
    """``ocsf``, one JSON object a line."""
    return _encoder.encode_lines([to_ocsf(a) for a in alerts])


def encode_native_array(alerts: Sequence[Alert]) -> bytes:
    """``native``, one JSON array of the batch."""
    return _encoder.encode(list(alerts))


def encode_ocsf_array(alerts: Sequence[Alert]) -> bytes:
    """``ocsf``, one JSON array of the batch."""
    return _encoder.encode([to_ocsf(a) for a in alerts])


LINE_ENCODERS: dict[Format, BatchEncoder] = {
    "native": encode_native_lines,
    "ocsf": encode_ocsf_lines,
}
ARRAY_ENCODERS: dict[Format, BatchEncoder] = {
    "native": encode_native_array,
    "ocsf": encode_ocsf_array,
}
