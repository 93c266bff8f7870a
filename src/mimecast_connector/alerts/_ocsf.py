"""The ``ocsf`` format: an OCSF Detection Finding with the Security Control profile.

Each alert is a Detection Finding (``class_uid`` 2004) of OCSF :data:`OCSF_VERSION`, with the
raw record as a JSON string in ``raw_data``. Mimecast is a security control, so the finding
carries the ``security_control`` profile (named in ``metadata.profiles``): ``action_id`` and
``disposition_id`` say what Mimecast did with the message (``_common.outcome``), and the
ATT&CK ``attacks`` are written at the top level as well as in ``finding_info``, as OCSF asks of
a security control's Detection Finding.

ATT&CK in OCSF: a ``TA…`` id is a tactic; ``T….…`` a sub-technique, written with its parent
technique; ``T…`` a technique.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

from mimecast_connector.alerts._alert import Alert
from mimecast_connector.alerts._common import (
    PRODUCT_NAME,
    VENDOR,
    Outcome,
    attack_id,
    description,
    epoch_ms,
    feature,
    log_of,
    outcome,
)

OCSF_VERSION = "1.7.0"
#: The OCSF profiles every finding applies.
PROFILES = ["security_control"]

_encoder = msgspec.json.Encoder()


# The OCSF document as msgspec Structs: encoded as fast as the native alert, never tracked by
# the cyclic garbage collector (nested dicts were: it took most of the time of a batch), and
# with every part that does not depend on the alert built once and shared. Field order is the
# order of the keys in the output; a field left at its default (None) is not written.


class _Uid(msgspec.Struct, gc=False, omit_defaults=True):
    uid: str
    name: str | None = None


class _Attack(msgspec.Struct, gc=False, omit_defaults=True):
    tactic: _Uid | None = None
    technique: _Uid | None = None
    sub_technique: _Uid | None = None


class _Named(msgspec.Struct, gc=False):
    name: str


class _Product(msgspec.Struct, gc=False):
    name: str
    vendor_name: str
    feature: _Named


class _Metadata(msgspec.Struct, gc=False):
    version: str
    profiles: list[str]
    uid: str
    tenant_uid: str
    log_name: str
    product: _Product


class _Hash(msgspec.Struct, gc=False):
    algorithm_id: int
    algorithm: str
    value: str


class _File(msgspec.Struct, gc=False, omit_defaults=True):
    name: str
    type_id: int
    type: str
    hashes: list[_Hash] | None = None


class _Url(msgspec.Struct, gc=False):
    url_string: str


class _Email(msgspec.Struct, gc=False, omit_defaults=True):
    from_: str | None = msgspec.field(default=None, name="from")
    to: list[str] | None = None
    subject: str | None = None
    message_uid: str | None = None
    urls: list[_Url] | None = None
    files: list[_File] | None = None


class _Endpoint(msgspec.Struct, gc=False):
    ip: str


class _Evidence(msgspec.Struct, gc=False, omit_defaults=True):
    email: _Email
    url: _Url | None = None
    file: _File | None = None
    src_endpoint: _Endpoint | None = None


class _Observable(msgspec.Struct, gc=False):
    name: str
    type_id: int
    type: str
    value: str


class _Finding(msgspec.Struct, gc=False, omit_defaults=True):
    uid: str
    title: str
    types: list[str]
    attacks: list[_Attack]
    first_seen_time: int
    last_seen_time: int
    data_sources: list[str]
    desc: str | None = None


class _DetectionFinding(msgspec.Struct, gc=False, kw_only=True):
    """Constant fields have defaults (and are written); optional ones are UNSET (not written)."""

    activity_id: int = 1
    activity_name: str = "Create"
    category_uid: int = 2
    category_name: str = "Findings"
    class_uid: int = 2004
    class_name: str = "Detection Finding"
    type_uid: int = 200401
    type_name: str = "Detection Finding: Create"
    severity_id: int
    severity: str
    status_id: int = 1
    status: str = "New"
    is_alert: bool = True
    action_id: int
    action: str
    disposition_id: int
    disposition: str
    time: int
    message: str
    metadata: _Metadata
    finding_info: _Finding
    attacks: list[_Attack]
    evidences: list[_Evidence]
    raw_data: str
    status_detail: str | UnsetType = UNSET
    observables: list[_Observable] | UnsetType = UNSET


def _attack(threat_id: str, threat_name: str) -> _Attack:
    placed = attack_id(threat_id, threat_name)
    if placed.kind == "tactic":
        return _Attack(tactic=_Uid(threat_id, threat_name))
    if placed.parent is not None:
        parent = _Uid(placed.parent, placed.parent_name)
        return _Attack(technique=parent, sub_technique=_Uid(threat_id, threat_name))
    return _Attack(technique=_Uid(threat_id, threat_name))


def attack_object(threat_id: str, threat_name: str) -> dict[str, Any]:
    """The OCSF ``attack`` object of one ATT&CK id."""
    built: dict[str, Any] = msgspec.to_builtins(_attacks(threat_id, threat_name)[0])
    return built


@functools.lru_cache(maxsize=1024)
def _attacks(threat_id: str, threat_name: str) -> list[_Attack]:
    return [_attack(threat_id, threat_name)]


@functools.lru_cache(maxsize=64)
def _per_category(category: str) -> tuple[list[str], list[str], _Product, str]:
    log_name, source = log_of(category)
    product = _Product(PRODUCT_NAME, VENDOR, _Named(feature(category)))
    return [category], [source], product, log_name


#: Outcomes by (category, action) seen so far, bounded: actions are few, but they are text
#: from the records.
_outcomes: dict[tuple[str, str | None], Outcome] = {}


def _outcome(category: str, action: str | None) -> Outcome:
    key = (category, action)
    found = _outcomes.get(key)
    if found is None:
        found = outcome(category, action)
        if len(_outcomes) < 1024:
            _outcomes[key] = found
    return found


_SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High")}


def _finding(alert: Alert) -> _DetectionFinding:
    when = epoch_ms(alert.time)
    types, sources, product, log_name = _per_category(alert.category)
    email = _Email(
        alert.sender,
        None if alert.recipient is None else [alert.recipient],
        alert.subject,
        alert.messageId,
    )
    evidence = _Evidence(email)
    observables: list[_Observable] = []
    if alert.sender:
        observables.append(_Observable("email.from", 5, "Email Address", alert.sender))
    if alert.recipient:
        observables.append(_Observable("email.to", 5, "Email Address", alert.recipient))
    if alert.url is not None:
        url = _Url(alert.url)
        evidence.url = url
        email.urls = [url]
        observables.append(_Observable("url.url_string", 6, "URL String", alert.url))
    if alert.fileName is not None or alert.fileHash is not None:
        file = _File(alert.fileName or "", 1, "Regular File")
        if alert.fileHash:
            file.hashes = [_Hash(3, "SHA-256", alert.fileHash)]
            observables.append(_Observable("file.hashes.value", 8, "Hash", alert.fileHash))
        evidence.file = file
        email.files = [file]
    if alert.senderIp is not None:
        evidence.src_endpoint = _Endpoint(alert.senderIp)
        observables.append(_Observable("src_endpoint.ip", 2, "IP Address", alert.senderIp))
    attacks = _attacks(alert.threatId, alert.threatName)
    finding = _Finding(alert.id, alert.alertType, types, attacks, when, when, sources)
    if alert.identifiers or alert.rejectionInfo or alert.rejectionType:
        finding.desc = description(alert)
    severity_id, severity = _SEVERITY[alert.severity]
    did = _outcomes.get((alert.category, alert.action)) or _outcome(alert.category, alert.action)
    return _DetectionFinding(
        severity_id=severity_id,
        severity=severity,
        action_id=did.action_id,
        action=did.action,
        disposition_id=did.disposition_id,
        disposition=did.disposition,
        time=when,
        message=f"{alert.alertType}: {alert.subject}" if alert.subject else alert.alertType,
        metadata=_Metadata(OCSF_VERSION, PROFILES, alert.id, alert.tenant, log_name, product),
        finding_info=finding,
        attacks=attacks,
        evidences=[evidence],
        raw_data=bytes(alert.raw).decode("utf-8", "replace"),
        status_detail=UNSET if alert.action is None else f"Mimecast action: {alert.action}",
        observables=observables or UNSET,
    )


def encode_ocsf_one(alert: Alert) -> bytes:
    """One alert as one OCSF Detection Finding (JSON)."""
    return _encoder.encode(_finding(alert))


def to_ocsf(alert: Alert) -> dict[str, Any]:
    """One alert as an OCSF Detection Finding (what ``ocsf`` writes, as plain Python)."""
    document: dict[str, Any] = msgspec.json.decode(encode_ocsf_one(alert))
    return document


def encode_ocsf_lines(alerts: Sequence[Alert]) -> bytes:
    """One finding a line."""
    return _encoder.encode_lines([_finding(a) for a in alerts])


def encode_ocsf_array(alerts: Sequence[Alert]) -> bytes:
    """One JSON array of the batch's findings."""
    return _encoder.encode([_finding(a) for a in alerts])
