"""Output formats: ``native`` (our own JSON) and ``ocsf`` (an OCSF Detection Finding).

Each format is an encoder from a batch of :class:`Alert` to bytes, built once. ``native`` is the
alert struct as it is, one JSON object per alert; the ``raw`` record is written back as the
exact bytes Mimecast sent. ``ocsf`` is a Detection Finding (``class_uid`` 2004) of OCSF
:data:`OCSF_VERSION`, with the raw record as a JSON string in ``raw_data``.

ATT&CK in OCSF: a ``TA…`` id is a tactic; ``T….…`` a sub-technique, written with its parent
technique; ``T…`` a technique.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

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

_FEATURES = {
    "attachment": "Targeted Threat Protection - Attachment Protection",
    "impersonation": "Targeted Threat Protection - Impersonation Protection",
    "url": "Targeted Threat Protection - URL Protection",
    "rejection": "Gateway - Rejected and Deferred Messages",
    "receipt": "SIEM - Receipt Events",
}
#: The log each category comes from: OCSF ``metadata.log_name`` and the finding's data source.
_LOGS = {
    "rejection": ("gateway/rejection", "Mimecast rejection log"),
    "receipt": ("siem/receipt", "Mimecast SIEM receipt events"),
}
_PRODUCT_NAME = "Mimecast Email Security, Cloud Gateway"


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
    time: int
    message: str
    metadata: _Metadata
    finding_info: _Finding
    evidences: list[_Evidence]
    raw_data: str
    status_detail: str | UnsetType = UNSET
    observables: list[_Observable] | UnsetType = UNSET


def _attack(threat_id: str, threat_name: str) -> _Attack:
    if _TACTIC.fullmatch(threat_id):
        return _Attack(tactic=_Uid(threat_id, threat_name))
    sub = _SUB_TECHNIQUE.fullmatch(threat_id)
    if sub is not None:
        parent = _Uid(sub.group(1), PARENT_TECHNIQUES.get(sub.group(1)))
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
    feature = _Named(_FEATURES.get(category, category))
    log_name, source = _LOGS.get(category, (f"ttp/{category}", f"Mimecast TTP {category} log"))
    return [category], [source], _Product(_PRODUCT_NAME, "Mimecast", feature), log_name


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High")}


def _epoch_ms(alert_time: str) -> int:
    """Exact integer milliseconds (a float product can lose one)."""
    return (datetime.fromisoformat(alert_time) - _EPOCH) // _MILLISECOND


def _finding(alert: Alert) -> _DetectionFinding:
    when = _epoch_ms(alert.time)
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
    finding = _Finding(
        alert.id,
        alert.alertType,
        types,
        _attacks(alert.threatId, alert.threatName),
        when,
        when,
        sources,
    )
    if alert.identifiers:
        finding.desc = "Impersonation identifiers: " + ", ".join(alert.identifiers)
    elif alert.rejectionInfo or alert.rejectionType:
        finding.desc = _rejection_text(alert)
    severity_id, severity = _SEVERITY[alert.severity]
    return _DetectionFinding(
        severity_id=severity_id,
        severity=severity,
        time=when,
        message=f"{alert.alertType}: {alert.subject}" if alert.subject else alert.alertType,
        metadata=_Metadata(OCSF_VERSION, alert.id, alert.tenant, log_name, product),
        finding_info=finding,
        evidences=[evidence],
        raw_data=bytes(alert.raw).decode("utf-8", "replace"),
        status_detail=UNSET if alert.action is None else f"Mimecast action: {alert.action}",
        observables=observables or UNSET,
    )


def _rejection_text(alert: Alert) -> str:
    """``Rejected (Invalid Recipient Address, code 14012): Invalid Recipient``."""
    code = alert.rejectionCode and f"code {alert.rejectionCode}"
    details = ", ".join(part for part in (alert.rejectionType, code) if part)
    head = f"Rejected ({details})" if details else "Rejected"
    return f"{head}: {alert.rejectionInfo}" if alert.rejectionInfo else head


def _encode_one(alert: Alert) -> bytes:
    return _encoder.encode(_finding(alert))


def to_ocsf(alert: Alert) -> dict[str, Any]:
    """One alert as an OCSF Detection Finding (what ``ocsf`` writes, as plain Python)."""
    document: dict[str, Any] = msgspec.json.decode(_encode_one(alert))
    return document


BatchEncoder = Callable[[Sequence[Alert]], bytes]


def encode_native_lines(alerts: Sequence[Alert]) -> bytes:
    """``native``, one JSON object a line."""
    return _encoder.encode_lines(alerts)


def encode_ocsf_lines(alerts: Sequence[Alert]) -> bytes:
    """``ocsf``, one JSON object a line."""
    return _encoder.encode_lines([_finding(a) for a in alerts])


def encode_native_array(alerts: Sequence[Alert]) -> bytes:
    """``native``, one JSON array of the batch."""
    return _encoder.encode(list(alerts))


def encode_ocsf_array(alerts: Sequence[Alert]) -> bytes:
    """``ocsf``, one JSON array of the batch."""
    return _encoder.encode([_finding(a) for a in alerts])


LINE_ENCODERS: dict[Format, BatchEncoder] = {
    "native": encode_native_lines,
    "ocsf": encode_ocsf_lines,
}
ARRAY_ENCODERS: dict[Format, BatchEncoder] = {
    "native": encode_native_array,
    "ocsf": encode_ocsf_array,
}
