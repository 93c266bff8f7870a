"""The ``ecs`` format: every field an ECS 9.4.0 field of its type, only values ECS allows,
golden files per category (reviewed by hand when written), and agreement with ``native``.

The field list and the allowed values are ECS's own (``tests/data/ecs-9.4.0-*.txt``, derived
from ``generated/ecs/ecs_flat.yml`` of elastic/ecs at tag v9.4.0; their header says how).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.alerts import ECS_VERSION, LINE_ENCODERS, Alert, to_ecs
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain
from mimecast_connector.runner._receipt_chain import ReceiptChain
from tests.unit import samples

DATA = Path(__file__).parents[1] / "data"
GOLDEN = Path(__file__).parent / "golden"
TABLE = load_table()


def _lines(name: str) -> Iterator[list[str]]:
    for line in (DATA / name).read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            yield line.split(" ")


#: ECS field name -> (type, whether ECS makes its value an array).
FIELDS: dict[str, tuple[str, bool]] = {
    name: (kind, rest == ["array"]) for name, kind, *rest in _lines("ecs-9.4.0-fields.txt")
}
#: ECS field name -> allowed value -> its expected ``event.type`` values (event.category only).
ALLOWED: dict[str, dict[str, list[str]]] = {}
for _name, _value, *_expected in _lines("ecs-9.4.0-allowed-values.txt"):
    ALLOWED.setdefault(_name, {})[_value] = _expected[0].split(",") if _expected else []

STRINGS = {"keyword", "constant_keyword", "wildcard", "match_only_text", "text"}
INTEGERS = {"long", "integer", "short", "byte", "unsigned_long"}
NUMBERS = INTEGERS | {"float", "double", "scaled_float", "half_float"}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")


def type_problem(name: str, kind: str, value: object) -> str | None:
    """Why ``value`` is not a JSON value of ECS type ``kind``, or None."""
    if kind in STRINGS:
        ok = isinstance(value, str)
    elif kind in NUMBERS:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok = ok and (kind not in INTEGERS or isinstance(value, int))
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "date":
        ok = isinstance(value, str) and RFC3339.fullmatch(value) is not None
        ok = ok and datetime.fromisoformat(str(value)).tzinfo is not None
    elif kind == "ip":
        try:
            ipaddress.ip_address(str(value))
            ok = isinstance(value, str)
        except ValueError:
            ok = False
    else:
        return f"{name}: ECS type {kind} has no check here"
    return None if ok else f"{name}: {value!r} is not of ECS type {kind}"


def problems(document: dict[str, Any]) -> list[str]:
    """Every way ``document`` leaves ECS 9.4.0: a leaf that is not an ECS field (``mimecast.*``
    is ours), a value not of the field's type, a list where ECS has no array or a lone value
    where it has one, a value not in a field's allowed values, an ``event.type`` that none of
    the ``event.category`` values expects, or a category none of whose expected types is there."""
    found: list[str] = []

    def walk(value: object, name: str) -> None:
        if isinstance(value, dict) and FIELDS.get(name, ("",))[0] != "nested":
            for key, item in value.items():
                walk(item, f"{name}.{key}" if name else key)
            return
        if value is None:
            found.append(f"{name}: null")
            return
        if name.startswith("mimecast."):
            return
        if name not in FIELDS:
            found.append(f"{name}: not an ECS {ECS_VERSION} field")
            return
        kind, array = FIELDS[name]
        if isinstance(value, list) != array:
            found.append(f"{name}: {'a list' if isinstance(value, list) else 'a lone value'}")
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            found.append(f"{name}: an empty list")
        for item in items:
            if kind in ("nested", "object"):
                if not isinstance(item, dict):
                    found.append(f"{name}: {item!r} is not an object")
                    continue
                for key, child in item.items():
                    walk(child, f"{name}.{key}")
                continue
            problem = type_problem(name, kind, item)
            if problem:
                found.append(problem)
            elif name in ALLOWED and item not in ALLOWED[name]:
                found.append(f"{name}: {item!r} is not an allowed value")

    walk(document, "")
    event = document.get("event", {})
    categories = [c for c in event.get("category", []) if c in ALLOWED["event.category"]]
    expected = {t: c for c in categories for t in ALLOWED["event.category"][c]}
    for kind in event.get("type", []):
        if kind not in expected:
            found.append(f"event.type: {kind!r} is expected by none of {categories}")
    for category in categories:
        if not set(ALLOWED["event.category"][category]) & set(event.get("type", [])):
            found.append(f"event.category: {category!r} has none of its expected event types")
    return found


def alerts_of(category: Category, *records: bytes, keep: bool = False) -> list[Alert]:
    chain = Chain("acme", category, TABLE, keep_unmatched_rejections=keep)
    handled = chain.process([msgspec.Raw(r) for r in records], 0.0)
    assert len(handled.alerts) == len(records), handled
    return handled.alerts


def changed(record: bytes, **fields: object) -> bytes:
    """``record`` with ``fields`` set (``...`` removes one)."""
    out = json.loads(record)
    for key, value in fields.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return json.dumps(out).encode()


def receipt() -> Alert:
    """A receipt rejection with two recipients and a subject."""
    row = {
        "aggregateId": "agg1", "processingId": "proc1", "accountId": "CDEMO01",
        "timestamp": 1_764_580_012_345, "action": "Rej", "subtype": "Rej", "type": "receipt",
        "senderEnvelope": "billing@paypa1-secure.example", "senderIp": "2001:db8::17",
        "recipients": ["a@demo.example.com", "b@demo.example.com"], "subject": "Invoice",
        "messageId": "<r1@paypa1-secure.example>", "rejectionType": "Anti-Spoofing Lockout",
        "rejectionCode": "550", "rejectionInfo": "Anti-Spoofing policy - Inbound not allowed",
    }  # fmt: skip
    (alert,) = ReceiptChain("acme", "2.0", TABLE).process([msgspec.json.encode(row)], 0.0).alerts
    return alert


CASES = [
    (Category.ATTACHMENT, samples.ATTACHMENT_LINE),
    (Category.IMPERSONATION, samples.IMPERSONATION_LINE),
    (Category.URL, samples.URL_CLICK_LINE),
    (Category.REJECTION, samples.REJECTION_LINE),
]

#: Every category's sample, and the variants that fill or empty other fields.
ALERTS = [
    *(alerts_of(category, record)[0] for category, record in CASES),
    *alerts_of(Category.URL, samples.URL_ENTRY_SCAN_LINE),  # sending IP "Internal IP": none
    *alerts_of(Category.URL, changed(samples.URL_CLICK_LINE, action="block", route=...)),
    *alerts_of(Category.URL, changed(samples.URL_CLICK_LINE, url="http://[::1", sendingIp=...)),
    *alerts_of(
        Category.ATTACHMENT,
        changed(samples.ATTACHMENT_LINE, fileHash=..., actionTriggered="user release, none"),
    ),
    *alerts_of(
        Category.IMPERSONATION,
        changed(samples.IMPERSONATION_LINE, identifiers=[], senderAddress=..., subject=""),
    ),
    *alerts_of(
        Category.REJECTION,
        changed(samples.REJECTION_LINE, description="Greylisting", info=..., type=...),
        keep=True,
    ),
    receipt(),
]


def test_the_field_list_is_ecs_9_4_0_and_the_pinned_version() -> None:
    """The data files are ECS 9.4.0's, and the format writes that version."""
    head = (DATA / "ecs-9.4.0-fields.txt").read_text("utf-8").splitlines()[0]
    assert "ECS 9.4.0" in head
    assert "tag v9.4.0" in head
    assert ECS_VERSION == "9.4.0"
    assert FIELDS["@timestamp"] == ("date", False)
    assert FIELDS["threat.technique.subtechnique.id"] == ("keyword", True)
    assert FIELDS["email.attachments"] == ("nested", True)
    assert ALLOWED["event.category"]["email"] == ["info"]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: f"{a.category}-{a.threatId}")
def test_every_field_is_an_ecs_field_of_its_type_with_allowed_values(alert: Alert) -> None:
    """Every leaf outside ``mimecast.*`` is an ECS 9.4.0 field, of a JSON type its ECS type
    takes (a list exactly where ECS makes an array), with values ECS allows; no null anywhere."""
    document = to_ecs(alert)
    assert problems(document) == []
    assert document["ecs"] == {"version": ECS_VERSION}
    assert document["event"]["kind"] == "alert"


def test_the_ecs_checks_can_fail() -> None:
    """The check finds a misspelled field, a wrong type, a lone value for an array, a list for
    a single value, a value ECS does not allow, an event type no category expects, and a null."""
    document = to_ecs(ALERTS[2])
    document["email"]["subjekt"] = "x"
    document["event"]["severity"] = "high"
    document["source"]["ip"] = "Internal IP"
    document["related"]["user"] = "a@example.com"
    document["rule"]["name"] = ["a", "b"]
    document["event"]["category"] = ["email", "phishing"]
    document["event"]["type"] = ["info", "denied"]
    document["@timestamp"] = "2025-03-04 10:01:33"
    document["mimecast"]["route"] = None
    assert sorted(problems(document)) == sorted(
        [
            "@timestamp: '2025-03-04 10:01:33' is not of ECS type date",
            "email.subjekt: not an ECS 9.4.0 field",
            "event.severity: 'high' is not of ECS type long",
            "source.ip: 'Internal IP' is not of ECS type ip",
            "related.user: a lone value",
            "rule.name: a list",
            "event.category: 'phishing' is not an allowed value",
            "event.type: 'denied' is expected by none of ['email']",
            "mimecast.route: null",
        ]
    )


def test_every_category_has_a_golden_file() -> None:
    """No category is left without an ECS golden file."""
    assert [category for category, _ in CASES] == list(LOG_CATEGORIES)
    for category in LOG_CATEGORIES:
        assert (GOLDEN / f"ecs-{category.value}.json").is_file()


@pytest.mark.parametrize(
    ("category", "record"), CASES, ids=lambda v: v.value if isinstance(v, Category) else ""
)
def test_ecs_output_matches_its_golden_file(category: Category, record: bytes) -> None:
    """The ECS line of each category's sample equals its golden file, key for key, in order."""
    got = json.loads(LINE_ENCODERS["ecs"](alerts_of(category, record)))
    want = json.loads((GOLDEN / f"ecs-{category.value}.json").read_text("utf-8"))
    assert got == want
    assert json.dumps(got) == json.dumps(want)  # the same key order, at every level


SEVERITY = {"low": 21, "medium": 47, "high": 73}


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: f"{a.category}-{a.threatId}")
def test_ecs_and_native_say_the_same_thing(alert: Alert) -> None:
    """The same alert in ``ecs`` and ``native``: id, time, sender, recipient, subject, message
    id, URL, file, sending IP, action, severity, ATT&CK id and name, tenant and raw record."""
    native = json.loads(LINE_ENCODERS["native"]([alert]))
    ecs = to_ecs(alert)
    email = ecs.get("email", {})
    assert ecs["event"]["id"] == native["id"]
    assert ecs["@timestamp"] == native["time"]
    assert email.get("from", {}).get("address") == (
        [native["sender"]] if native["sender"] else None
    )
    recipients = email.get("to", {}).get("address")
    assert (", ".join(recipients) if recipients else None) == (native["recipient"] or None)
    assert email.get("subject") == native["subject"]
    assert email.get("message_id") == (native["messageId"] or None)
    assert email.get("direction") == native["route"]
    assert ecs.get("url", {}).get("full") == native["url"]
    assert ecs.get("url", {}).get("original") == native["url"]
    files = [a["file"] for a in email.get("attachments", [])]
    assert [f.get("name") for f in files] == ([native["fileName"]] if native["fileName"] else [])
    hashes = [f["hash"]["sha256"] for f in files if "hash" in f]
    assert hashes == ([native["fileHash"]] if native["fileHash"] else [])
    assert ecs.get("source", {}).get("ip") == native["senderIp"]
    assert ecs["event"].get("action") == native["action"]
    assert ecs["event"]["severity"] == SEVERITY[native["severity"]]
    threat = ecs["threat"]
    placed = threat.get("tactic") or threat["technique"].get("subtechnique") or threat["technique"]
    assert (placed["id"], placed["name"]) == ([native["threatId"]], [native["threatName"]])
    assert ecs["rule"]["name"] == native["alertType"]
    assert ecs["organization"]["name"] == ecs["mimecast"]["tenant"] == native["tenant"]
    assert ecs["event"]["dataset"] == f"mimecast.{native['category']}"
    assert json.loads(ecs["event"]["original"]) == native["raw"]
    related = ecs.get("related", {})
    assert set(related.get("user", [])) == {
        *([native["sender"]] if native["sender"] else []),
        *(recipients or []),
    }
    assert related.get("ip") == ([native["senderIp"]] if native["senderIp"] else None)
    assert related.get("hash") == (hashes or None)


@pytest.mark.parametrize(
    ("threat_id", "threat_name", "expected"),
    [
        (
            "TA0001",
            "Initial Access",
            {
                "tactic": {
                    "id": ["TA0001"],
                    "name": ["Initial Access"],
                    "reference": ["https://attack.mitre.org/tactics/TA0001/"],
                }
            },
        ),
        (
            "T1078",
            "Valid Accounts",
            {
                "technique": {
                    "id": ["T1078"],
                    "name": ["Valid Accounts"],
                    "reference": ["https://attack.mitre.org/techniques/T1078/"],
                }
            },
        ),
        (
            "T1566.001",
            "Spearphishing Attachment",
            {
                "technique": {
                    "id": ["T1566"],
                    "name": ["Phishing"],
                    "reference": ["https://attack.mitre.org/techniques/T1566/"],
                    "subtechnique": {
                        "id": ["T1566.001"],
                        "name": ["Spearphishing Attachment"],
                        "reference": ["https://attack.mitre.org/techniques/T1566/001/"],
                    },
                }
            },
        ),
        (
            "T1204.002",
            "Malicious File",
            {
                "technique": {
                    "id": ["T1204"],
                    "reference": ["https://attack.mitre.org/techniques/T1204/"],
                    "subtechnique": {
                        "id": ["T1204.002"],
                        "name": ["Malicious File"],
                        "reference": ["https://attack.mitre.org/techniques/T1204/002/"],
                    },
                }
            },
        ),
    ],
)
def test_threat_places_the_attack_id_with_its_reference(
    threat_id: str, threat_name: str, expected: dict[str, Any]
) -> None:
    """A TA id is a tactic, a T id a technique, a sub-technique sits under its parent technique
    (named when known), each with its attack.mitre.org page."""
    alert = msgspec.structs.replace(ALERTS[0], threatId=threat_id, threatName=threat_name)
    assert to_ecs(alert)["threat"] == {"framework": "MITRE ATT&CK", **expected}


@pytest.mark.parametrize(
    ("alert", "categories", "types"),
    [
        (ALERTS[0], ["email", "intrusion_detection", "malware"], ["info"]),
        (ALERTS[1], ["email", "intrusion_detection"], ["info", "denied"]),
        (ALERTS[2], ["email", "intrusion_detection"], ["info"]),
        (ALERTS[3], ["email", "intrusion_detection"], ["info", "denied"]),
        (ALERTS[5], ["email", "intrusion_detection"], ["info", "denied"]),
        (ALERTS[7], ["email", "intrusion_detection", "malware"], ["info", "allowed"]),
        (ALERTS[-1], ["email", "intrusion_detection"], ["info", "denied"]),
    ],
    ids=[
        "attachment-none",
        "impersonation-hold",
        "url-warn",
        "rejection",
        "url-block",
        "attachment-released",
        "receipt",
    ],
)
def test_event_category_and_type_follow_the_log_and_mimecasts_action(
    alert: Alert, categories: list[str], types: list[str]
) -> None:
    """Attachments are also malware; ``denied`` when Mimecast stopped the message (held,
    blocked, rejected), ``allowed`` when it let it through, else ``info`` alone."""
    event = to_ecs(alert)["event"]
    assert (event["category"], event["type"]) == (categories, types)


def test_url_domain_and_related_hosts_only_when_the_url_parses() -> None:
    """``url.domain`` (and ``related.hosts``) is the URL's host; a URL that does not parse
    keeps ``url.full`` and ``url.original`` and has no domain."""
    good, bad = to_ecs(ALERTS[5]), to_ecs(ALERTS[6])
    assert good["url"]["domain"] == "parcel-notify.example.net"
    assert good["related"]["hosts"] == ["parcel-notify.example.net"]
    assert bad["url"] == {"full": "http://[::1", "original": "http://[::1"}
    assert "hosts" not in bad["related"]


def test_a_receipt_names_each_recipient_and_an_ipv6_source() -> None:
    """A receipt's recipients (joined in the alert) are separate ``email.to.address`` values."""
    document = to_ecs(ALERTS[-1])
    assert document["email"]["to"]["address"] == ["a@demo.example.com", "b@demo.example.com"]
    assert document["source"]["ip"] == "2001:db8::17"
    assert document["event"]["reason"] == (
        "Rejected (Anti-Spoofing Lockout, code 550): Anti-Spoofing policy - Inbound not allowed"
    )
    assert document["event"]["provider"] == "siem/receipt"
