"""The ``cef`` format: golden lines per category (reviewed by hand when written), and every
field read back unchanged by an independent CEF parser, for hostile and arbitrary text.

The parser is ``cefp`` (PyPI), which undoes the escapes of *Implementing ArcSight CEF*
(rev. 25): ``\\|`` and ``\\\\`` in the header; ``\\\\``, ``\\=``, ``\\r`` and ``\\n`` in the
extension. It is not our code and was not written for this connector.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import cefp  # type: ignore[import-untyped]
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.alerts import (
    ARRAY_ENCODERS,
    LINE_ENCODERS,
    ONE_ENCODERS,
    Alert,
    format_alert_time,
)
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain
from tests.unit import samples

GOLDEN = Path(__file__).parent / "golden"
TABLE = load_table()
VERSION = version("mimecast-connector")
SEVERITY = {"low": "3", "medium": "5", "high": "8"}

CASES = [
    (Category.ATTACHMENT, samples.ATTACHMENT_LINE),
    (Category.IMPERSONATION, samples.IMPERSONATION_LINE),
    (Category.URL, samples.URL_CLICK_LINE),
    (Category.REJECTION, samples.REJECTION_LINE),
]


def alert_of(category: Category, record: bytes) -> Alert:
    (alert,) = Chain("acme", category, TABLE).process([msgspec.Raw(record)], 0.0).alerts
    return alert


def parse(line: bytes) -> dict[str, Any]:
    """One CEF line as the independent parser reads it."""
    parsed: dict[str, Any] = cefp.parse(line.decode("utf-8"))
    return parsed


def header_text(value: str) -> str:
    """What a header field should read back as: line breaks (not allowed there) are spaces."""
    return value.replace("\r", " ").replace("\n", " ")


def epoch_ms(alert_time: str) -> int:
    return (datetime.fromisoformat(alert_time) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        milliseconds=1
    )


def expected_extension(alert: Alert) -> dict[str, str]:
    """The extension a parser should find, written from the README's table, not the encoder."""
    refusal = None
    if alert.rejectionType is not None or alert.rejectionInfo is not None:
        code = alert.rejectionCode and f"code {alert.rejectionCode}"
        details = ", ".join(p for p in (alert.rejectionType, code) if p)
        refusal = f"Rejected ({details})" if details else "Rejected"
        refusal = f"{refusal}: {alert.rejectionInfo}" if alert.rejectionInfo else refusal
    ip = alert.senderIp
    pairs: dict[str, str | None] = {
        "rt": str(epoch_ms(alert.time)),
        "cat": alert.category,
        "act": alert.action,
        "suser": alert.sender,
        "duser": alert.recipient,
        "src": ip if ip is not None and ":" not in ip else None,
        "c6a2Label": "Source IPv6 Address" if ip is not None and ":" in ip else None,
        "c6a2": ip if ip is not None and ":" in ip else None,
        "msg": alert.subject if alert.subject is not None else refusal,
        "request": alert.url,
        "fname": alert.fileName,
        "fileHash": alert.fileHash,
        "reason": refusal,
        "cs1Label": "threatId",
        "cs1": alert.threatId,
        "cs2Label": "threatName",
        "cs2": alert.threatName,
        "cs3Label": "tenant",
        "cs3": alert.tenant,
        "cs4Label": "messageId" if alert.messageId is not None else None,
        "cs4": alert.messageId,
        "cs5Label": "identifiers" if alert.identifiers is not None else None,
        "cs5": None if alert.identifiers is None else ", ".join(alert.identifiers),
        "cs6Label": "route" if alert.route is not None else None,
        "cs6": alert.route,
        "externalId": alert.id,
    }
    return {key: value for key, value in pairs.items() if value is not None}


def assert_round_trips(alert: Alert) -> None:
    """The alert's CEF line, read by the parser, gives back every field (header line breaks
    as spaces), and stays one line."""
    line = ONE_ENCODERS["cef"](alert)
    assert b"\n" not in line
    assert b"\r" not in line
    parsed = parse(line)
    assert parsed["version"] == "0"
    assert parsed["device"] == {
        "vendor": "Mimecast",
        "product": "Email Security Cloud Gateway",
        "version": VERSION,
        "event_class_id": header_text(alert.threatId),
    }
    assert parsed["name"] == header_text(alert.alertType)
    assert parsed["severity"] == SEVERITY[alert.severity]
    assert parsed["extension"] == expected_extension(alert)


def test_every_category_has_a_golden_file() -> None:
    """No category is left without a CEF golden file."""
    assert [category for category, _ in CASES] == list(LOG_CATEGORIES)
    for category in LOG_CATEGORIES:
        assert (GOLDEN / f"cef-{category.value}.cef").is_file()


@pytest.mark.parametrize(
    ("category", "record"), CASES, ids=lambda v: v.value if isinstance(v, Category) else ""
)
def test_cef_output_matches_its_golden_file(category: Category, record: bytes) -> None:
    """The CEF line of each category's sample is byte for byte its golden line (the golden
    file says ``@VERSION@`` for the connector's version)."""
    golden = (GOLDEN / f"cef-{category.value}.cef").read_bytes()
    want = golden.replace(b"@VERSION@", VERSION.encode())
    assert LINE_ENCODERS["cef"]([alert_of(category, record)]) == want


@pytest.mark.parametrize(
    ("category", "record"), CASES, ids=lambda v: v.value if isinstance(v, Category) else ""
)
def test_each_sample_round_trips_through_the_parser(category: Category, record: bytes) -> None:
    """Every field of each category's sample alert is read back by the independent parser."""
    assert_round_trips(alert_of(category, record))


HOSTILE = [
    "pipe | in the middle and at the end |",
    "equals = and a fake key x cs3=evil suser=attacker@example.com",
    "backslash \\ and \\\\ and \\= and \\| and \\n and a trailing \\",
    "line\nfeed, carriage\rreturn, both\r\n, and CEF:0|forged|header|1|2|3|4|",
    "unicode line\u2028separator, paragraph\u2029separator, next\x85line, vt\x0bff\x0c",
    "NUL\x00inside, tab\tinside, bell\x07",
    "  leading and trailing spaces  ",
    "",
    "=",
    "\\",
    " ",
    "é漢字🙂 \u202e right-to-left override",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_in_every_field_round_trips(text: str) -> None:
    """Pipes, equals signs, backslashes, line breaks, Unicode separators, NUL, spaces and
    forged keys or headers, in every text field, come back unchanged and never break the line."""
    base = alert_of(Category.URL, samples.URL_CLICK_LINE)
    hostile = msgspec.structs.replace(
        base,
        id=text, tenant=text, category=text, alertType=text, threatId=text, threatName=text,
        sender=text, recipient=text, subject=text, messageId=text, url=text, fileName=text,
        fileHash=text, identifiers=[text, text], action=text, route=text, rejectionType=text,
        rejectionCode=text, rejectionInfo=text,
    )  # fmt: skip
    assert_round_trips(hostile)
    lines = LINE_ENCODERS["cef"]([hostile, base])
    assert lines.count(b"\n") == 2
    assert len(list(io.TextIOWrapper(io.BytesIO(lines), encoding="utf-8"))) == 2
    assert [parse(line)["extension"]["externalId"] for line in lines.splitlines()] == [
        text,
        base.id,
    ]


def test_the_round_trip_check_can_fail() -> None:
    """An equals sign left unescaped is misread by the parser (the value is cut and a key
    forged), and the round-trip check sees it."""
    alert = msgspec.structs.replace(
        alert_of(Category.URL, samples.URL_CLICK_LINE), subject="a evil=yes"
    )
    line = ONE_ENCODERS["cef"](alert)
    assert b"msg=a evil\\=yes " in line
    forged = parse(line.replace(b"a evil\\=yes", b"a evil=yes"))["extension"]
    assert (forged["msg"], forged["evil"]) == ("a", "yes")
    assert forged != expected_extension(alert)
    assert parse(line)["extension"] == expected_extension(alert)


def test_an_ipv6_sender_is_c6a2_and_an_ipv4_sender_src() -> None:
    """CEF's ``src`` is IPv4; an IPv6 sending server goes to ``c6a2`` with ArcSight's label."""
    base = alert_of(Category.URL, samples.URL_CLICK_LINE)
    six = parse(ONE_ENCODERS["cef"](msgspec.structs.replace(base, senderIp="2001:db8::17")))
    four = parse(ONE_ENCODERS["cef"](base))["extension"]
    assert (six["extension"]["c6a2"], six["extension"]["c6a2Label"]) == (
        "2001:db8::17",
        "Source IPv6 Address",
    )
    assert "src" not in six["extension"]
    assert four["src"] == "198.51.100.23"


def test_the_array_is_the_lines_as_json_strings() -> None:
    """For a webhook, ``cef`` is a JSON array of the CEF lines, each a string the parser reads."""
    alerts = [alert_of(category, record) for category, record in CASES]
    array = json.loads(ARRAY_ENCODERS["cef"](alerts))
    assert array == LINE_ENCODERS["cef"](alerts).decode().splitlines()
    assert [parse(item.encode())["extension"]["externalId"] for item in array] == [
        a.id for a in alerts
    ]


TEXT = st.text(max_size=40)
OPTIONAL = st.none() | TEXT
IPS = st.none() | st.ip_addresses().map(str)


#: Every field of an alert that the CEF line writes, drawn as any text.
ALERT_TEXTS = st.fixed_dictionaries(
    {
        "id": TEXT, "tenant": TEXT, "category": TEXT, "alertType": TEXT, "threatId": TEXT,
        "threatName": TEXT, "severity": st.sampled_from(sorted(SEVERITY)),
        "sender": OPTIONAL, "recipient": OPTIONAL, "subject": OPTIONAL,
        "messageId": OPTIONAL, "url": OPTIONAL, "fileName": OPTIONAL, "fileHash": OPTIONAL,
        "identifiers": st.none() | st.lists(TEXT, max_size=3), "action": OPTIONAL,
        "route": OPTIONAL, "senderIp": IPS, "rejectionType": OPTIONAL,
        "rejectionCode": OPTIONAL, "rejectionInfo": OPTIONAL,
    }
)  # fmt: skip
MOMENTS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(texts=ALERT_TEXTS, moment=MOMENTS)
def test_any_text_in_any_field_round_trips(texts: dict[str, Any], moment: datetime) -> None:
    """Arbitrary Unicode in every field of an alert is read back by the parser as it was (a
    header line break as a space), on one line, at any time."""
    base = alert_of(Category.URL, samples.URL_CLICK_LINE)
    alert = msgspec.structs.replace(base, time=format_alert_time(moment), **texts)
    assert_round_trips(alert)
