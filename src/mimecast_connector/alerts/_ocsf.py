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

from collections.abc import Sequence
from typing import Any, NamedTuple

import msgspec

from mimecast_connector.alerts._alert import Alert
from mimecast_connector.alerts._common import (
    PRODUCT_NAME,
    VENDOR,
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

_encode = msgspec.json.Encoder().encode


# The document is written from a template: bytes with the JSON of everything that does not
# vary within one shape of alert (the class, the category's log and product, the verdict and
# its ATT&CK placement, Mimecast's outcome, which optional parts are there) and a slot for each
# of the alert's own values (id, tenant, time, people, subject, URL, file, the record), each
# encoded once however often it is written. A shape's template is made on its first alert and
# kept; an alert then costs one encode per value and one formatting. (Building a tree of msgspec
# Structs per alert and encoding that cost twice as much: 7-10 us an alert in page-sized
# batches against 5-6.) Key order is the order written below; an absent value is not written
# (no nulls). ``tests/unit/test_ocsf_shapes.py`` holds every shape to a plain reference, the
# golden files and the OCSF model tests hold the format.

_SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High")}

#: What each observable is: name, OCSF type id, type name.
_OBSERVABLES = {
    "sender": ("email.from", 5, "Email Address"),
    "recipient": ("email.to", 5, "Email Address"),
    "url": ("url.url_string", 6, "URL String"),
    "hash": ("file.hashes.value", 8, "Hash"),
    "ip": ("src_endpoint.ip", 2, "IP Address"),
}


def _attack(threat_id: str, threat_name: str) -> dict[str, Any]:
    placed = attack_id(threat_id, threat_name)
    if placed.kind == "tactic":
        return {"tactic": {"uid": threat_id, "name": threat_name}}
    if placed.parent is not None:
        parent: dict[str, str] = {"uid": placed.parent}
        if placed.parent_name is not None:
            parent["name"] = placed.parent_name
        return {"technique": parent, "sub_technique": {"uid": threat_id, "name": threat_name}}
    return {"technique": {"uid": threat_id, "name": threat_name}}


def attack_object(threat_id: str, threat_name: str) -> dict[str, Any]:
    """The OCSF ``attack`` object of one ATT&CK id."""
    return _attack(threat_id, threat_name)


def _slot(name: str) -> bytes:
    """Where a value goes in a template being made: its name between two NUL bytes, which
    JSON text never holds raw (encoded text writes them ``\\u0000``)."""
    return b"\0%b\0" % name.encode()


class _Shape(NamedTuple):
    """What a template is made of; the presence flags say which optional parts are written."""

    category: str
    alert_type: str
    threat_id: str
    threat_name: str
    severity: str
    action: str | None
    sender: bool  # not None: written in the email
    sender_seen: bool  # not empty: an observable too
    recipient: bool
    recipient_seen: bool
    subject: bool
    subject_in_message: bool
    message_id: bool
    url: bool
    file: bool  # a file name or a hash (even empty)
    hash: bool  # a hash that is not empty
    ip: bool
    desc: bool


def _object(members: list[tuple[str, bytes]]) -> bytes:
    return b"{%b}" % b",".join(b'"%b":%b' % (key.encode(), value) for key, value in members)


def _template(shape: _Shape) -> bytes:
    """The finding of one shape, with a :func:`_slot` where each alert's values go."""
    log_name, source = log_of(shape.category)
    severity_id, severity = _SEVERITY[shape.severity]
    did = outcome(shape.category, shape.action)
    time = _slot("time")
    attacks = _encode([_attack(shape.threat_id, shape.threat_name)])
    message = _encode(shape.alert_type)
    if shape.subject_in_message:
        message = message[:-1] + b": " + _slot("message")
    product = {
        "name": PRODUCT_NAME,
        "vendor_name": VENDOR,
        "feature": {"name": feature(shape.category)},
    }
    metadata = [
        ("version", _encode(OCSF_VERSION)), ("profiles", _encode(PROFILES)), ("uid", _slot("uid")),
        ("tenant_uid", _slot("tenant")), ("log_name", _encode(log_name)), ("product", _encode(product)),
    ]  # fmt: skip
    finding = [
        ("uid", _slot("uid")), ("title", _encode(shape.alert_type)),
        ("types", _encode([shape.category])), ("attacks", attacks), ("first_seen_time", time),
        ("last_seen_time", time), ("data_sources", _encode([source])),
    ]  # fmt: skip
    if shape.desc:
        finding.append(("desc", _slot("desc")))
    email: list[tuple[str, bytes]] = []
    evidence: list[tuple[str, bytes]] = [("email", b"")]
    observables: list[bytes] = []

    def observe(kind: str, value: bytes) -> None:
        name, type_id, type_name = _OBSERVABLES[kind]
        observables.append(
            _object([("name", _encode(name)), ("type_id", b"%d" % type_id),
                     ("type", _encode(type_name)), ("value", value)])
        )  # fmt: skip

    if shape.sender:
        email.append(("from", _slot("sender")))
        if shape.sender_seen:
            observe("sender", _slot("sender"))
    if shape.recipient:
        email.append(("to", b"[%b]" % _slot("recipient")))
        if shape.recipient_seen:
            observe("recipient", _slot("recipient"))
    if shape.subject:
        email.append(("subject", _slot("subject")))
    if shape.message_id:
        email.append(("message_uid", _slot("message_id")))
    if shape.url:
        url = _object([("url_string", _slot("url"))])
        email.append(("urls", b"[%b]" % url))
        evidence.append(("url", url))
        observe("url", _slot("url"))
    if shape.file:
        file = [("name", _slot("file_name")), ("type_id", b"1"), ("type", _encode("Regular File"))]
        if shape.hash:
            file_hash = [
                ("algorithm_id", b"3"),
                ("algorithm", _encode("SHA-256")),
                ("value", _slot("hash")),
            ]
            file.append(("hashes", b"[%b]" % _object(file_hash)))
            observe("hash", _slot("hash"))
        email.append(("files", b"[%b]" % _object(file)))
        evidence.append(("file", _object(file)))
    if shape.ip:
        evidence.append(("src_endpoint", _object([("ip", _slot("ip"))])))
        observe("ip", _slot("ip"))
    evidence[0] = ("email", _object(email))
    document = [
        ("activity_id", b"1"), ("activity_name", _encode("Create")),
        ("category_uid", b"2"), ("category_name", _encode("Findings")),
        ("class_uid", b"2004"), ("class_name", _encode("Detection Finding")),
        ("type_uid", b"200401"), ("type_name", _encode("Detection Finding: Create")),
        ("severity_id", b"%d" % severity_id), ("severity", _encode(severity)),
        ("status_id", b"1"), ("status", _encode("New")), ("is_alert", b"true"),
        ("action_id", b"%d" % did.action_id), ("action", _encode(did.action)),
        ("disposition_id", b"%d" % did.disposition_id), ("disposition", _encode(did.disposition)),
        ("time", time), ("message", message), ("metadata", _object(metadata)),
        ("finding_info", _object(finding)), ("attacks", attacks),
        ("evidences", b"[%b]" % _object(evidence)), ("raw_data", _slot("raw")),
    ]  # fmt: skip
    if shape.action is not None:
        document.append(("status_detail", _encode(f"Mimecast action: {shape.action}")))
    if observables:
        document.append(("observables", b"[%b]" % b",".join(observables)))
    return _object(document)


#: Every slot a finding can have, in the order they are written (the order of the values
#: :func:`_finding` gives); a shape writes some of them (checked when this module loads).
_SLOTS = (
    "time", "message", "uid", "tenant", "uid", "time", "time", "desc",  # top, metadata, finding
    "sender", "recipient", "subject", "message_id", "url", "file_name", "hash",  # email
    "url", "file_name", "hash", "ip", "raw",  # the rest of the evidence, the record
    "sender", "recipient", "url", "hash", "ip",  # observables
)  # fmt: skip


def _compile(shape: _Shape) -> bytes:
    """The shape's template with positional slots, one for each of :data:`_SLOTS`: ``%b``
    where the shape writes that value, ``%.0b`` (which writes nothing) where it does not, so
    that every alert passes the same values in the same order (positional formatting is a
    third faster than by name, which makes a key for every slot)."""
    chunks = _template(shape).replace(b"%", b"%%").split(b"\0")  # text, name, ..., text
    text, names = chunks[0::2], [name.decode() for name in chunks[1::2]]
    compiled = [text[0]]
    written = 0
    for slot in _SLOTS:
        if written < len(names) and names[written] == slot:
            written += 1
            compiled += (b"%b", text[written])
        else:
            compiled.append(b"%.0b")
    if written != len(names):
        raise AssertionError(f"slots {names} are not in the order of _SLOTS")
    return b"".join(compiled)


#: Templates by shape, bounded: the verdicts and actions in a shape are few, but actions are
#: text from the records. Past the bound a shape's template is made for each of its alerts.
_templates: dict[tuple[object, ...], bytes] = {}


def _template_of(shape: _Shape) -> bytes:
    template = _compile(shape)
    if len(_templates) < 4096:
        _templates[shape] = template
    return template


_compile(_Shape("url", "", "T1566", "", "low", "", *[True] * 12))  # every slot, in order

#: Descriptions (encoded) by what they say, bounded: rejection reasons repeat across a batch.
_descriptions: dict[tuple[object, ...], bytes] = {}


def _description(alert: Alert) -> bytes:
    identifiers = alert.identifiers
    key = (alert.rejectionType, alert.rejectionCode, alert.rejectionInfo, *(identifiers or ()))
    found = _descriptions.get(key)
    if found is None:
        text = description(alert)
        found = b"" if text is None else _encode(text)
        if len(_descriptions) < 4096:
            _descriptions[key] = found
    return found


def _finding(alert: Alert) -> bytes:
    """One alert's Detection Finding, as JSON."""
    sender, recipient, subject = alert.sender, alert.recipient, alert.subject
    message_id, url, ip = alert.messageId, alert.url, alert.senderIp
    file_name, file_hash = alert.fileName, alert.fileHash
    desc = (
        _description(alert)
        if alert.identifiers or alert.rejectionInfo or alert.rejectionType
        else b""
    )
    file = file_name is not None or file_hash is not None
    # A plain tuple equal to its _Shape (a NamedTuple is three times slower to make).
    shape = (
        alert.category, alert.alertType, alert.threatId, alert.threatName, alert.severity,
        alert.action, sender is not None, bool(sender), recipient is not None, bool(recipient),
        subject is not None, bool(subject), message_id is not None, url is not None, file,
        bool(file_hash), ip is not None, bool(desc),
    )  # fmt: skip
    template = _templates.get(shape) or _template_of(_Shape(*shape))
    # Each value once, b"" where the shape does not write it; in the order of _SLOTS.
    time = b"%d" % epoch_ms(alert.time)
    uid = _encode(alert.id)
    subject_ = b"" if subject is None else _encode(subject)
    sender_ = b"" if sender is None else _encode(sender)
    recipient_ = b"" if recipient is None else _encode(recipient)
    url_ = b"" if url is None else _encode(url)
    name = _encode(file_name or "") if file else b""
    hash_ = _encode(file_hash) if file_hash else b""
    ip_ = b"" if ip is None else _encode(ip)
    return template % (
        time, subject_[1:], uid, _encode(alert.tenant), uid, time, time, desc,
        sender_, recipient_, subject_, b"" if message_id is None else _encode(message_id),
        url_, name, hash_, url_, name, hash_, ip_, _encode(str(alert.raw, "utf-8", "replace")),
        sender_, recipient_, url_, hash_, ip_,
    )  # fmt: skip


def encode_ocsf_one(alert: Alert) -> bytes:
    """One alert as one OCSF Detection Finding (JSON)."""
    return _finding(alert)


def to_ocsf(alert: Alert) -> dict[str, Any]:
    """One alert as an OCSF Detection Finding (what ``ocsf`` writes, as plain Python)."""
    document: dict[str, Any] = msgspec.json.decode(encode_ocsf_one(alert))
    return document


def encode_ocsf_lines(alerts: Sequence[Alert]) -> bytes:
    """One finding a line."""
    if not alerts:
        return b""
    return b"\n".join([*map(_finding, alerts), b""])  # a line feed after each, one copy


def encode_ocsf_array(alerts: Sequence[Alert]) -> bytes:
    """One JSON array of the batch's findings."""
    return b"[%b]" % b",".join(map(_finding, alerts))
