"""The OCSF writer against a plain reference: every shape of alert, every kind of text.

The ``ocsf`` format writes each finding from a template made per shape of alert (which
optional parts it has, its verdict, its action). Here an independent reference builds the same
finding as plain Python from the format's description (README, ``_ocsf``'s docstring), and
hypothesis varies every optional field of real alerts (absent, empty, hostile text: quotes,
backslashes, ``%`` signs that would be format codes in a template, control characters,
non-ASCII); the two must agree value for value and in key order.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from mimecast_connector.alerts import ARRAY_ENCODERS, LINE_ENCODERS, ONE_ENCODERS, Alert, _ocsf
from mimecast_connector.alerts._common import attack_id, description, epoch_ms, outcome
from tests.unit.test_alerts import ALL_ALERTS

SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High")}
LOGS = {"rejection": ("gateway/rejection", "Mimecast rejection log")}
FEATURES = {
    "attachment": "Targeted Threat Protection - Attachment Protection",
    "impersonation": "Targeted Threat Protection - Impersonation Protection",
    "url": "Targeted Threat Protection - URL Protection",
    "rejection": "Gateway - Rejected and Deferred Messages",
}


def attack(alert: Alert) -> dict[str, Any]:
    placed = attack_id(alert.threatId, alert.threatName)
    this = {"uid": alert.threatId, "name": alert.threatName}
    if placed.kind == "tactic":
        return {"tactic": this}
    if placed.parent is None:
        return {"technique": this}
    parent = {"uid": placed.parent}
    if placed.parent_name is not None:
        parent["name"] = placed.parent_name
    return {"technique": parent, "sub_technique": this}


def reference(alert: Alert) -> dict[str, Any]:
    """The finding, built the plain way."""
    log_name, source = LOGS.get(
        alert.category, (f"ttp/{alert.category}", f"Mimecast TTP {alert.category} log")
    )
    when = epoch_ms(alert.time)
    severity_id, severity = SEVERITY[alert.severity]
    did = outcome(alert.category, alert.action)
    attacks = [attack(alert)]
    finding: dict[str, Any] = {
        "uid": alert.id, "title": alert.alertType, "types": [alert.category],
        "attacks": attacks, "first_seen_time": when, "last_seen_time": when,
        "data_sources": [source],
    }  # fmt: skip
    if (alert.identifiers or alert.rejectionInfo or alert.rejectionType) and description(alert):
        finding["desc"] = description(alert)
    email: dict[str, Any] = {}
    evidence: dict[str, Any] = {"email": email}
    observables = []

    def observe(name: str, type_id: int, type_name: str, value: str) -> None:
        observables.append({"name": name, "type_id": type_id, "type": type_name, "value": value})

    if alert.sender is not None:
        email["from"] = alert.sender
    if alert.sender:
        observe("email.from", 5, "Email Address", alert.sender)
    if alert.recipient is not None:
        email["to"] = [alert.recipient]
    if alert.recipient:
        observe("email.to", 5, "Email Address", alert.recipient)
    if alert.subject is not None:
        email["subject"] = alert.subject
    if alert.messageId is not None:
        email["message_uid"] = alert.messageId
    if alert.url is not None:
        email["urls"] = [{"url_string": alert.url}]
        evidence["url"] = {"url_string": alert.url}
        observe("url.url_string", 6, "URL String", alert.url)
    if alert.fileName is not None or alert.fileHash is not None:
        file: dict[str, Any] = {"name": alert.fileName or "", "type_id": 1, "type": "Regular File"}
        if alert.fileHash:
            file["hashes"] = [{"algorithm_id": 3, "algorithm": "SHA-256", "value": alert.fileHash}]
            observe("file.hashes.value", 8, "Hash", alert.fileHash)
        email["files"] = [file]
        evidence["file"] = file
    if alert.senderIp is not None:
        evidence["src_endpoint"] = {"ip": alert.senderIp}
        observe("src_endpoint.ip", 2, "IP Address", alert.senderIp)
    document: dict[str, Any] = {
        "activity_id": 1, "activity_name": "Create", "category_uid": 2,
        "category_name": "Findings", "class_uid": 2004, "class_name": "Detection Finding",
        "type_uid": 200401, "type_name": "Detection Finding: Create",
        "severity_id": severity_id, "severity": severity, "status_id": 1, "status": "New",
        "is_alert": True, "action_id": did.action_id, "action": did.action,
        "disposition_id": did.disposition_id, "disposition": did.disposition, "time": when,
        "message": f"{alert.alertType}: {alert.subject}" if alert.subject else alert.alertType,
        "metadata": {
            "version": "1.7.0", "profiles": ["security_control"], "uid": alert.id,
            "tenant_uid": alert.tenant, "log_name": log_name,
            "product": {
                "name": "Mimecast Email Security, Cloud Gateway", "vendor_name": "Mimecast",
                "feature": {"name": FEATURES[alert.category]},
            },
        },
        "finding_info": finding, "attacks": attacks, "evidences": [evidence],
        "raw_data": bytes(alert.raw).decode("utf-8", "replace"),
    }  # fmt: skip
    if alert.action is not None:
        document["status_detail"] = f"Mimecast action: {alert.action}"
    if observables:
        document["observables"] = observables
    return document


#: Texts a record can carry: format codes, JSON's own quoting, a line break, non-ASCII.
TEXTS = st.sampled_from(
    ["", "x", 'a "quoted" \\ back\\slash', "100% %s %(time)b %%", "line\nbreak\x01", "Ünïcødé ✉"]
)
MAYBE = st.one_of(st.none(), TEXTS)
FIELDS = (
    "sender", "recipient", "subject", "messageId", "url", "fileName", "fileHash", "senderIp",
    "action", "rejectionType", "rejectionCode", "rejectionInfo",
)  # fmt: skip
RAWS = st.sampled_from(
    [
        b'{"a":"b"}',
        b'{\n  "a": "\\"quoted\\" %s"\n}',
        b'{"a":"\xff not utf-8"}',
        b'{"a":"\xc3\xa9"}',
    ]
)


@st.composite
def alerts(draw: st.DrawFn) -> Alert:
    alert = draw(st.sampled_from(ALL_ALERTS))
    changes: dict[str, Any] = {f: draw(MAYBE) for f in FIELDS if draw(st.booleans())}
    if draw(st.booleans()):
        changes["identifiers"] = draw(st.one_of(st.none(), st.lists(TEXTS, max_size=3)))
    if draw(st.booleans()):
        changes["raw"] = msgspec.Raw(draw(RAWS))
    if draw(st.booleans()):
        changes["tenant"] = draw(TEXTS)
    return msgspec.structs.replace(alert, **changes)


@settings(max_examples=400, deadline=None)
@given(alert=alerts())
def test_every_shape_of_alert_is_written_as_the_reference_builds_it(alert: Alert) -> None:
    """Any mix of absent, empty and hostile fields: the same finding, key for key, in order."""
    line = ONE_ENCODERS["ocsf"](alert)
    got = json.loads(line)
    want = reference(alert)
    assert got == want
    assert json.dumps(got) == json.dumps(want)  # the same key order, at every depth


@settings(max_examples=50, deadline=None)
@given(batch=st.lists(alerts(), max_size=8))
def test_lines_and_arrays_hold_the_same_findings(batch: list[Alert]) -> None:
    """A batch as lines (one a line, each ended) and as an array: each alert's finding."""
    one = [ONE_ENCODERS["ocsf"](alert) for alert in batch]
    assert LINE_ENCODERS["ocsf"](batch) == b"".join(line + b"\n" for line in one)
    assert json.loads(ARRAY_ENCODERS["ocsf"](batch)) == [json.loads(line) for line in one]


def test_past_the_template_bound_findings_are_still_right(monkeypatch: Any) -> None:
    """Actions are record text: past the bound on kept templates, each alert gets its own
    template made again, and the findings stay right; the kept ones stay bounded."""
    monkeypatch.setattr(_ocsf, "_templates", {})
    base = ALL_ALERTS[0]
    for n in range(4200):
        alert = msgspec.structs.replace(base, action=f"action {n} %d")
        if n % 500 == 0 or n > 4190:
            assert json.loads(ONE_ENCODERS["ocsf"](alert)) == reference(alert)
        else:
            ONE_ENCODERS["ocsf"](alert)
    assert len(_ocsf._templates) == 4096
