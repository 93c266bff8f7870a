"""The ``ecs`` format: an Elastic Common Schema document of :data:`ECS_VERSION`.

One alert is one ECS document with ``event.kind: alert``: the time in ``@timestamp``, what was
detected in ``event.*`` and ``rule.name``, ATT&CK in ``threat.*`` (a ``TA…`` id is a tactic, a
``T….…`` sub-technique is written under its parent technique, each with its
https://attack.mitre.org reference), the message in ``email.*``, the URL in ``url.*``, the
sending server in ``source.ip``, every address, IP, hash and host again in ``related.*``, and
Mimecast's own fields that have no ECS home under ``mimecast.*`` (native names). The raw record
is ``event.original``, as text. A value the alert does not have is left out, never null.

Field choices (``event.category``, ``event.type``, ``event.severity``) are documented on the
constants below; every name and value is checked against ECS's own field list in the tests.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec
from msgspec import UNSET, UnsetType

from mimecast_connector.alerts._alert import Alert
from mimecast_connector.alerts._common import (
    PRODUCT,
    VENDOR,
    attack_id,
    description,
    log_of,
    outcome,
    raw_text,
)

ECS_VERSION = "9.4.0"

#: ``event.severity``: the risk scores Elastic's detection rules give these severities.
SEVERITY = {"low": 21, "medium": 47, "high": 73}

#: ``event.category``: every alert is about an email and is a threat-protection detection
#: (``intrusion_detection``); an attachment alert is also ``malware``.
_CATEGORIES = {"attachment": ["email", "intrusion_detection", "malware"]}
_DEFAULT_CATEGORIES = ["email", "intrusion_detection"]

#: ``event.type``: always ``info``; ``denied`` when Mimecast stopped the message (blocked,
#: held, bounced, deleted, rejected), ``allowed`` when it let it through (allowed, released).
_TYPES = {1: ["info", "allowed"], 2: ["info", "denied"]}
_INFO = ["info"]

_encoder = msgspec.json.Encoder()


class _Ecs(msgspec.Struct, gc=False):
    version: str


class _Event(msgspec.Struct, gc=False, kw_only=True):
    kind: str = "alert"
    category: list[str]
    type: list[str]
    action: str | UnsetType = UNSET
    id: str
    dataset: str
    module: str = "mimecast"
    provider: str
    severity: int
    reason: str | UnsetType = UNSET
    original: str


class _Rule(msgspec.Struct, gc=False):
    name: str


class _Ref(msgspec.Struct, gc=False, kw_only=True):
    """A tactic, technique or sub-technique: ECS makes each of these fields an array."""

    id: list[str]
    name: list[str] | UnsetType = UNSET
    reference: list[str]


class _Technique(msgspec.Struct, gc=False, kw_only=True):
    id: list[str]
    name: list[str] | UnsetType = UNSET
    reference: list[str]
    subtechnique: _Ref | UnsetType = UNSET


class _Threat(msgspec.Struct, gc=False, kw_only=True):
    framework: str = "MITRE ATT&CK"
    tactic: _Ref | UnsetType = UNSET
    technique: _Technique | UnsetType = UNSET


class _Address(msgspec.Struct, gc=False):
    address: list[str]


class _Hash(msgspec.Struct, gc=False):
    sha256: str


class _File(msgspec.Struct, gc=False, kw_only=True):
    name: str | UnsetType = UNSET
    hash: _Hash | UnsetType = UNSET


class _Attachment(msgspec.Struct, gc=False):
    file: _File


class _Email(msgspec.Struct, gc=False, kw_only=True):
    from_: _Address | UnsetType = msgspec.field(default=UNSET, name="from")
    to: _Address | UnsetType = UNSET
    subject: str | UnsetType = UNSET
    message_id: str | UnsetType = UNSET
    direction: str | UnsetType = UNSET
    attachments: list[_Attachment] | UnsetType = UNSET


class _Url(msgspec.Struct, gc=False, kw_only=True):
    full: str
    original: str
    domain: str | UnsetType = UNSET


class _Source(msgspec.Struct, gc=False):
    ip: str


class _Related(msgspec.Struct, gc=False, kw_only=True):
    user: list[str] | UnsetType = UNSET
    ip: list[str] | UnsetType = UNSET
    hash: list[str] | UnsetType = UNSET
    hosts: list[str] | UnsetType = UNSET


class _Observer(msgspec.Struct, gc=False):
    vendor: str
    product: str


class _Organization(msgspec.Struct, gc=False):
    name: str


class _Mimecast(msgspec.Struct, gc=False, kw_only=True):
    """What ECS has no field for, under the native format's names."""

    tenant: str
    category: str
    threatId: str
    threatName: str
    identifiers: list[str] | UnsetType = UNSET
    route: str | UnsetType = UNSET
    rejectionType: str | UnsetType = UNSET
    rejectionCode: str | UnsetType = UNSET
    rejectionInfo: str | UnsetType = UNSET


class _Document(msgspec.Struct, gc=False, kw_only=True):
    timestamp: str = msgspec.field(name="@timestamp")
    ecs: _Ecs
    message: str
    event: _Event
    rule: _Rule
    threat: _Threat
    email: _Email | UnsetType = UNSET
    url: _Url | UnsetType = UNSET
    source: _Source | UnsetType = UNSET
    related: _Related | UnsetType = UNSET
    observer: _Observer
    organization: _Organization
    mimecast: _Mimecast


_ECS = _Ecs(ECS_VERSION)
_OBSERVER = _Observer(VENDOR, PRODUCT)


@functools.lru_cache(maxsize=1024)
def _threat(threat_id: str, threat_name: str) -> _Threat:
    placed = attack_id(threat_id, threat_name)
    named = [threat_name]
    if placed.kind == "tactic":
        return _Threat(tactic=_Ref(id=[threat_id], name=named, reference=[placed.reference]))
    if placed.parent is None or placed.parent_reference is None:
        return _Threat(
            technique=_Technique(id=[threat_id], name=named, reference=[placed.reference])
        )
    sub = _Ref(id=[threat_id], name=named, reference=[placed.reference])
    parent = _Technique(
        id=[placed.parent],
        name=UNSET if placed.parent_name is None else [placed.parent_name],
        reference=[placed.parent_reference],
        subtechnique=sub,
    )
    return _Threat(technique=parent)


@functools.lru_cache(maxsize=64)
def _per_category(category: str) -> tuple[list[str], str, str]:
    return (
        _CATEGORIES.get(category, _DEFAULT_CATEGORIES),
        f"mimecast.{category}",
        log_of(category)[0],
    )


@functools.lru_cache(maxsize=256)
def _event_type(category: str, action: str | None) -> list[str]:
    return _TYPES.get(outcome(category, action).action_id, _INFO)


def _recipients(alert: Alert) -> list[str]:
    """The recipient, or a receipt's recipients (which its alert joins with ``, ``)."""
    if not alert.recipient:
        return []
    if alert.category == "receipt":
        return [r for r in alert.recipient.split(", ") if r]
    return [alert.recipient]


def _domain(url: str) -> str | None:
    try:
        return urlsplit(url).hostname or None
    except ValueError:  # a malformed bracketed host
        return None


def _document(alert: Alert) -> _Document:
    categories, dataset, provider = _per_category(alert.category)
    event = _Event(
        category=categories,
        type=_event_type(alert.category, alert.action),
        id=alert.id,
        dataset=dataset,
        provider=provider,
        severity=SEVERITY[alert.severity],
        original=raw_text(alert),
    )
    if alert.action is not None:
        event.action = alert.action
    reason = description(alert)
    if reason is not None:
        event.reason = reason
    mimecast = _Mimecast(
        tenant=alert.tenant,
        category=alert.category,
        threatId=alert.threatId,
        threatName=alert.threatName,
    )
    email = _Email()
    related = _Related()
    recipients = _recipients(alert)
    users = list(dict.fromkeys([alert.sender, *recipients] if alert.sender else recipients))
    if users:
        related.user = users
    if alert.sender:
        email.from_ = _Address([alert.sender])
    if recipients:
        email.to = _Address(recipients)
    if alert.subject is not None:
        email.subject = alert.subject
    if alert.messageId:
        email.message_id = alert.messageId
    if alert.route:
        email.direction = alert.route
        mimecast.route = alert.route
    if alert.fileName is not None or alert.fileHash:
        file = _File()
        if alert.fileName is not None:
            file.name = alert.fileName
        if alert.fileHash:
            file.hash = _Hash(alert.fileHash)
            related.hash = [alert.fileHash]
        email.attachments = [_Attachment(file)]
    document = _Document(
        timestamp=alert.time,
        ecs=_ECS,
        message=f"{alert.alertType}: {alert.subject}" if alert.subject else alert.alertType,
        event=event,
        rule=_Rule(alert.alertType),
        threat=_threat(alert.threatId, alert.threatName),
        observer=_OBSERVER,
        organization=_Organization(alert.tenant),
        mimecast=mimecast,
    )
    if alert.url is not None:
        url = _Url(full=alert.url, original=alert.url)
        domain = _domain(alert.url)
        if domain is not None:
            url.domain = domain
            related.hosts = [domain]
        document.url = url
    if alert.senderIp is not None:
        document.source = _Source(alert.senderIp)
        related.ip = [alert.senderIp]
    if alert.identifiers is not None:
        mimecast.identifiers = alert.identifiers
    if alert.rejectionType is not None:
        mimecast.rejectionType = alert.rejectionType
    if alert.rejectionCode is not None:
        mimecast.rejectionCode = alert.rejectionCode
    if alert.rejectionInfo is not None:
        mimecast.rejectionInfo = alert.rejectionInfo
    if email != _EMPTY_EMAIL:
        document.email = email
    if related != _EMPTY_RELATED:
        document.related = related
    return document


_EMPTY_EMAIL = _Email()
_EMPTY_RELATED = _Related()


def encode_ecs_one(alert: Alert) -> bytes:
    """One alert as one ECS document (JSON)."""
    return _encoder.encode(_document(alert))


def to_ecs(alert: Alert) -> dict[str, Any]:
    """One alert as an ECS document (what ``ecs`` writes, as plain Python)."""
    document: dict[str, Any] = msgspec.json.decode(encode_ecs_one(alert))
    return document


def encode_ecs_lines(alerts: Sequence[Alert]) -> bytes:
    """One document a line."""
    return _encoder.encode_lines([_document(a) for a in alerts])


def encode_ecs_array(alerts: Sequence[Alert]) -> bytes:
    """One JSON array of the batch's documents."""
    return _encoder.encode([_document(a) for a in alerts])
