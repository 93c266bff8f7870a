"""Unit tests of alerts: golden native output, identity, the OCSF Detection Finding with the
Security Control profile, and the format registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocsf.v1_7_0.events import DetectionFinding
from ocsf.v1_7_0.objects import Attack
from pydantic import BaseModel, SecretStr, ValidationError

from mimecast_connector import Category
from mimecast_connector.alerts import (
    ARRAY_ENCODERS,
    FORMATS,
    LINE_ENCODERS,
    OCSF_VERSION,
    ONE_ENCODERS,
    Alert,
    Format,
    _common,
    alert_id,
    attack_object,
    format_alert_time,
    identity_key,
    to_ocsf,
)
from mimecast_connector.alerts._common import epoch_ms
from mimecast_connector.client import MimecastClient, OAuth2ClientCredentials
from mimecast_connector.records import Valid, validate
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain, Handled, count, select_fresh
from tests.unit import samples

ATT, IMP, URL = Category.ATTACHMENT, Category.IMPERSONATION, Category.URL
REJ = Category.REJECTION
#: Golden native lines, written by hand from alert-rules.md and the §12 samples (the rejection's
#: from the mta-rejections.md §2.3 sample). Their ids are
#: pinned on purpose: BLAKE2b-128 of ``tenant␟category␟`` + key + ``␟0`` (the scheme's version), the key being
#: ``second␟`` + the JSON array of every field the format check decodes but the event time
#: (``alerts._alert.IDENTITY_FIELDS``; for a rejection, Mimecast's ``id`` alone); checked
#: against a stdlib computation when regenerated.
#: Ids are stored in the state database, so a changed id algorithm re-delivers every alert
#: still inside the lookback window after an upgrade: update these files only deliberately.
GOLDEN = Path(__file__).parent / "golden"
#: The OCSF 1.7.0 Security Control profile (attributes, types, enums), from the OCSF schema's
#: own files: the pydantic-ocsf models do not know profile attributes.
SECURITY_CONTROL: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "ocsf-1.7.0-security_control.json").read_text("utf-8")
)
TABLE = load_table()
NATIVE_KEYS = [
    "id", "tenant", "category", "alertType", "threatId", "threatName", "time", "severity",
    "sender", "recipient", "subject", "messageId", "url", "fileName", "fileHash",
    "identifiers", "action", "route", "senderIp", "rejectionType", "rejectionCode",
    "rejectionInfo", "raw",
]  # fmt: skip
#: The three keys only a rejection fills.
REJECTION_KEYS = {"rejectionType", "rejectionCode", "rejectionInfo"}

#: One sample record of each category, on one line, and its golden native alert.
CASES = [
    (ATT, samples.ATTACHMENT_LINE, "native-attachment.jsonl"),
    (IMP, samples.IMPERSONATION_LINE, "native-impersonation.jsonl"),
    (URL, samples.URL_CLICK_LINE, "native-url.jsonl"),
    (REJ, samples.REJECTION_LINE, "native-rejection.jsonl"),
]


def process(
    category: Category, *records: bytes, tenant: str = "acme", keep_unmatched: bool = False
) -> Handled:
    """One page through a fresh chain."""
    chain = Chain(tenant, category, TABLE, keep_unmatched_rejections=keep_unmatched)
    return chain.process([msgspec.Raw(r) for r in records], 0.0)


def alert_of(
    category: Category, record: bytes, tenant: str = "acme", keep_unmatched: bool = False
) -> Alert:
    handled = process(category, record, tenant=tenant, keep_unmatched=keep_unmatched)
    assert not handled.dead, handled.dead
    assert len(handled.alerts) == 1, handled
    return handled.alerts[0]


def id_of(category: Category, record: bytes, tenant: str = "acme") -> str:
    """The id of ``record``, whether it became an alert or was dropped."""
    handled = process(category, record, tenant=tenant)
    assert not handled.dead, handled.dead
    return handled.ids[0][0]


class _RawOnly(msgspec.Struct):
    raw: msgspec.Raw


# --- native: golden files ----------------------------------------------------------------------


@pytest.mark.parametrize(("category", "record", "golden"), CASES)
def test_native_line_matches_the_golden_file(
    category: Category, record: bytes, golden: str
) -> None:
    """The native JSON line of each category's sample record is byte for byte the hand-written golden line."""
    line = LINE_ENCODERS["native"]([alert_of(category, record)])
    assert line == (GOLDEN / golden).read_bytes()


@pytest.mark.parametrize(("category", "record", "golden"), CASES)
def test_native_keys_order_raw_and_time(category: Category, record: bytes, golden: str) -> None:
    """Keys come in the documented order, ``raw`` is the input bytes unchanged, ``time`` is RFC 3339 UTC with Z."""
    line = LINE_ENCODERS["native"]([alert_of(category, record)])
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert list(json.loads(line)) == NATIVE_KEYS
    assert bytes(msgspec.json.decode(line, type=_RawOnly).raw) == record
    when = json.loads(line)["time"]
    assert when.endswith("Z")
    assert datetime.fromisoformat(when).utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("category", "record", "absent"),
    [
        (ATT, samples.ATTACHMENT_LINE, {"url", "identifiers", "senderIp", *REJECTION_KEYS}),
        (
            IMP,
            samples.IMPERSONATION_LINE,
            {"url", "fileName", "fileHash", "route", *REJECTION_KEYS},
        ),
        (URL, samples.URL_CLICK_LINE, {"fileName", "fileHash", "identifiers", *REJECTION_KEYS}),
        (
            REJ,
            samples.REJECTION_LINE,
            {
                "subject",
                "messageId",
                "url",
                "fileName",
                "fileHash",
                "identifiers",
                "action",
                "route",
            },
        ),
    ],
)
def test_native_nulls_are_exactly_what_a_category_lacks(
    category: Category, record: bytes, absent: set[str]
) -> None:
    """A field a category's log has no value for is null; every other field of the sample is filled."""
    native = json.loads(LINE_ENCODERS["native"]([alert_of(category, record)]))
    assert {key for key, value in native.items() if value is None} == absent


def test_native_array_is_the_golden_lines_as_one_array() -> None:
    """The array encoder writes the same objects, in order, as one JSON array; lines concatenate."""
    alerts = [alert_of(category, record) for category, record, _ in CASES]
    goldens = [(GOLDEN / golden).read_bytes() for _, _, golden in CASES]
    assert (
        ARRAY_ENCODERS["native"](alerts)
        == b"[" + b",".join(g.rstrip(b"\n") for g in goldens) + b"]"
    )
    assert LINE_ENCODERS["native"](alerts) == b"".join(goldens)
    assert LINE_ENCODERS["native"]([]) == b""
    assert ARRAY_ENCODERS["native"]([]) == b"[]"


@pytest.mark.parametrize(
    ("category", "record"),
    [(ATT, samples.ATTACHMENT_MALICIOUS), (IMP, samples.IMPERSONATION), (URL, samples.URL_CLICK)],
)
def test_raw_keeps_the_verbatim_bytes_of_a_multi_line_record(
    category: Category, record: bytes
) -> None:
    """A record with line breaks between its tokens (the §12 texts as printed) keeps them in ``raw``."""
    array = ARRAY_ENCODERS["native"]([alert_of(category, record)])
    assert bytes(msgspec.json.decode(array, type=list[_RawOnly])[0].raw) == record


async def test_a_multi_line_record_still_encodes_as_one_line() -> None:
    """Records with line breaks between tokens (the §12 texts as printed) still give one line per alert.

    The client guarantees it: a raw CR or LF in a page can only be whitespace between tokens, and
    it is replaced by a space before the records are handed on.
    """
    page = (
        b'{"meta":{"status":200,"pagination":{}},"data":[{"impersonationLogs":['
        + samples.IMPERSONATION
        + b']}],\n"fail":[]}'
    )

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t0ken", "expires_in": 1800})
        return httpx.Response(200, content=page)

    auth = OAuth2ClientCredentials("cid", SecretStr("secret"))
    async with MimecastClient(
        tenant="acme", base_url="https://api.services.mimecast.com", auth=auth,
        transport=httpx.MockTransport(answer),
    ) as client:  # fmt: skip
        end = datetime.now(UTC)
        pages = [p async for p in client.pages(IMP, end - timedelta(hours=1), end)]
    assert b"\n" in samples.IMPERSONATION
    handled = Chain("acme", IMP, TABLE).process(pages[0].records, 0.0, utf8=pages[0].utf8)
    line = LINE_ENCODERS["native"](handled.alerts)
    assert line.count(b"\n") == 1
    assert json.loads(line)["raw"] == json.loads(samples.IMPERSONATION)


def test_the_entry_scan_sample_alert() -> None:
    """The §12.4 Entry Scan record is a medium alert typed by creationMethod, with the URL Protection row."""
    alert = alert_of(URL, samples.URL_ENTRY_SCAN_LINE)
    assert (alert.alertType, alert.threatId, alert.threatName, alert.severity) == (
        "Entry Scan",
        "T1598.003",
        "Spearphishing Link",
        "medium",
    )
    assert (alert.sender, alert.recipient, alert.route) == (
        "it@example.com",
        "ops@example.com",
        "internal",
    )


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2025, 3, 4, 9, 12, 45, tzinfo=UTC), "2025-03-04T09:12:45Z"),
        (datetime(2025, 3, 4, 9, 12, 45, 120_000, tzinfo=UTC), "2025-03-04T09:12:45.120Z"),
        (datetime(2025, 3, 4, 9, 12, 45, 999_999, tzinfo=UTC), "2025-03-04T09:12:45.999Z"),
        (datetime(2025, 3, 4, 11, 12, 45, tzinfo=UTC).astimezone(), "2025-03-04T11:12:45Z"),
    ],
)
def test_alert_time_is_rfc3339_utc_with_z(moment: datetime, text: str) -> None:
    """Alert times are UTC with Z, with milliseconds only when the event had a fraction."""
    assert format_alert_time(moment) == text


# --- identity ----------------------------------------------------------------------------------


def reserialize(record: bytes, order: list[int], time_suffix: str, indent: int | None) -> bytes:
    """``record`` with its keys in ``order``, its time's offset spelled ``time_suffix``."""
    fields = list(json.loads(record).items())
    out = {}
    for index in order:
        key, value = fields[index]
        if key in ("date", "eventTime", "created"):
            value = value.removesuffix("+0000") + time_suffix
        out[key] = value
    return json.dumps(out, indent=indent, ensure_ascii=False).encode()


@pytest.mark.parametrize(("category", "record", "golden"), CASES)
def test_the_same_record_always_gets_the_same_id(
    category: Category, record: bytes, golden: str
) -> None:
    """The same record read twice, by separate chains, gets the same id (the golden file's)."""
    expected = json.loads((GOLDEN / golden).read_bytes())["id"]
    assert id_of(category, record) == id_of(category, record) == expected


@settings(max_examples=60, deadline=None)
@given(
    case=st.sampled_from(CASES),
    data=st.data(),
    suffix=st.sampled_from(["+0000", "Z", "+00:00", "-00:00"]),
    indent=st.sampled_from([None, 1, 4]),
)
def test_any_key_order_and_time_spelling_gives_the_same_id(
    case: tuple[Category, bytes, str], data: st.DataObject, suffix: str, indent: int | None
) -> None:
    """A record re-serialized with its keys in any order and its UTC offset spelled any way keeps its id."""
    category, record, _ = case
    size = len(json.loads(record))
    order = data.draw(st.permutations(range(size)))
    again = reserialize(record, order, suffix, indent)
    assert id_of(category, again) == id_of(category, record)


@pytest.mark.parametrize(("category", "record", "golden"), CASES)
def test_chain_ids_are_the_public_identity_functions(
    category: Category, record: bytes, golden: str
) -> None:
    """The chain's hot path computes the ids that identity_key and alert_id define."""
    checked = validate(category, record)
    assert isinstance(checked, Valid)
    key = identity_key(category, checked.record, int(checked.time.timestamp()))
    handled = process(category, record)
    assert [id_ for id_, _ in handled.ids] == [alert_id("acme", category, key)]


def test_two_attachments_of_one_message_get_different_ids() -> None:
    """Two files of one message (same messageId and date) are two alerts with two ids."""
    other = json.loads(samples.ATTACHMENT_LINE)
    other.update(fileName="Remittance_8841.pdf", fileHash="ab" * 32, fileType="application/pdf")
    handled = process(ATT, samples.ATTACHMENT_LINE, json.dumps(other).encode())
    assert len(handled.alerts) == 2
    assert handled.alerts[0].id != handled.alerts[1].id


def test_two_users_clicking_one_url_get_different_ids() -> None:
    """Clicks of one URL of one message by two users in the same second are two alerts."""
    other = json.loads(samples.URL_CLICK_LINE)
    other["userEmailAddress"] = "j.doe@example.com"
    handled = process(URL, samples.URL_CLICK_LINE, json.dumps(other).encode())
    assert len({alert.id for alert in handled.alerts}) == 2


def test_impersonation_ids_follow_mimecasts_id() -> None:
    """Two impersonation logs differing only in Mimecast's id get different ids."""
    other = json.loads(samples.IMPERSONATION_LINE)
    other["id"] = "MTOKEN:eNqrSYNTHETIC0002"
    assert id_of(IMP, json.dumps(other).encode()) != id_of(IMP, samples.IMPERSONATION_LINE)


def test_a_rejection_is_identified_by_mimecasts_id_and_its_second() -> None:
    """A rejection's id follows Mimecast's ``id`` and the second it was created, nothing else:
    Mimecast rewording the refusal, or a fraction of that second, is still the same event."""
    original = id_of(REJ, samples.REJECTION_LINE)
    same = [
        rejection(info="invalid recipient - https://community.mimecast.com/docs/DOC-1369#550"),
        rejection(description="Recipient Validation", type="14012"),
        rejection(fromAddress="<>", toAddress="x@demo.example.com", ipAddress="198.51.100.9"),
        rejection(created="2026-11-30T18:56:08.750Z"),
        rejection(created="2026-11-30T19:56:08+01:00"),
    ]
    for record in same:
        assert id_of(REJ, record) == original, record
    other = [
        rejection(id="eNpVT1tPwjAU_i99hSW7dh1RE5iK0SGwOQ29"),
        rejection(created="2026-11-30T18:56:09+0000"),
    ]
    for record in other:
        assert id_of(REJ, record) != original, record
    assert id_of(REJ, samples.REJECTION_LINE, tenant="globex") != original


@pytest.mark.parametrize(("category", "record", "golden"), CASES)
def test_a_record_served_twice_is_one_alert(category: Category, record: bytes, golden: str) -> None:
    """Byte-identical records, in one page or across pages, share one id and select_fresh keeps one."""
    chain = Chain("acme", category, TABLE)
    first = chain.process([msgspec.Raw(record), msgspec.Raw(record)], 0.0)
    next_page = chain.process([msgspec.Raw(record)], 0.0)
    assert len({id_ for id_, _ in first.ids + next_page.ids}) == 1
    fresh = select_fresh(first, set())
    assert len(fresh.ids) == 1
    assert len(fresh.alerts) == 1
    assert select_fresh(next_page, {id_ for id_, _ in fresh.ids}).ids == []


@pytest.mark.parametrize(("category", "record", "golden"), CASES)
def test_different_tenants_get_different_ids(
    category: Category, record: bytes, golden: str
) -> None:
    """The same record in two tenants is two alerts."""
    assert id_of(category, record, tenant="acme") != id_of(category, record, tenant="globex")


def test_a_safe_record_has_an_id_too() -> None:
    """Dropped records get ids (the runner remembers them), counted as dropped with their reason."""
    handled = process(ATT, samples.ATTACHMENT_MALICIOUS, samples.ATTACHMENT_SAFE)
    assert len(handled.alerts) == 1
    assert handled.dropped == [(handled.ids[1][0], "attachment result safe or clean")]
    assert handled.ids[1][1] == datetime(2025, 3, 4, 9, 10, 2, tzinfo=UTC).timestamp()
    assert handled.newest == datetime(2025, 3, 4, 9, 12, 45, tzinfo=UTC).timestamp()


def test_a_page_is_counted_by_kind_and_only_once() -> None:
    """Alerts, drops and dead letters are counted per kind, only for ids not handled before."""
    bad = b'{"date":"yesterday","result":"malicious"}'
    handled = Chain("acme", ATT, TABLE).process(
        [msgspec.Raw(r) for r in (samples.ATTACHMENT_LINE, samples.ATTACHMENT_SAFE, bad)], 1234.0
    )
    ids = [id_ for id_, _ in handled.ids]
    assert len(set(ids)) == 3
    assert handled.ids[2] == (handled.dead[0][0], 1234.0)
    dead = json.loads(handled.dead[0][1])
    assert dead == {
        "tenant": "acme",
        "category": "attachment",
        "reason": "$.date: not a valid time with a UTC offset: 'yesterday'",
        "raw": json.loads(bad),
    }
    assert count(select_fresh(handled, set()), len(ids)) == {
        "fetched": 3,
        "duplicates": 0,
        "alerts": 1,
        "dead_lettered": 1,
        "dropped: attachment result safe or clean": 1,
    }
    assert +count(select_fresh(handled, {ids[0], ids[2]}), len(ids)) == {
        "fetched": 3,
        "duplicates": 2,
        "dropped: attachment result safe or clean": 1,
    }


def test_a_page_of_rejections_counts_what_no_phrase_matched_by_description() -> None:
    """Unmatched rejections count as ``dropped: unmatched rejection`` and, per description, as
    ``unmatched: <description>``; a repeat is a duplicate, not a second unmatched."""
    greylisting = rejection(
        id="eNpVT1tPgrey1",
        description="Greylisting",
        info="Greylisting in action, please come back later",
    )
    page = [
        samples.REJECTION_LINE,  # matched: an alert
        greylisting,
        rejection(
            id="eNpVT1tPgrey2",
            created="2026-11-30T18:57:00+0000",
            description="Greylisting",
            info="greylisting in action, please come back later",
        ),
        rejection(
            id="eNpVT1tPsize1",
            description="Message  Size Limit",  # whitespace collapsed in the counter name
            info="Message exceeds the maximum size limit",
        ),
        rejection(id="eNpVT1tPnone1", description=..., info="Message rejected as spam"),
        greylisting,  # served twice
    ]
    handled = process(REJ, *page)
    ids = [id_ for id_, _ in handled.ids]
    assert len(ids) == 6
    assert len(set(ids)) == 5
    assert count(select_fresh(handled, set()), len(ids)) == {
        "fetched": 6,
        "duplicates": 1,
        "alerts": 1,
        "dead_lettered": 0,
        "dropped: unmatched rejection": 4,
        "unmatched: Greylisting": 2,
        "unmatched: Message Size Limit": 1,
        "unmatched: (no description)": 1,
    }
    # Only ids not handled before count: the alert and the first greylisting are known.
    assert +count(select_fresh(handled, {ids[0], ids[1]}), len(ids)) == {
        "fetched": 6,
        "duplicates": 3,
        "dropped: unmatched rejection": 3,
        "unmatched: Greylisting": 1,
        "unmatched: Message Size Limit": 1,
        "unmatched: (no description)": 1,
    }
    # A tenant that keeps unmatched rejections gets them as alerts, and no unmatched counters.
    kept = process(REJ, *page, keep_unmatched=True)
    assert +count(select_fresh(kept, set()), len(ids)) == {
        "fetched": 6,
        "duplicates": 1,
        "alerts": 5,
    }
    assert [a.alertType for a in kept.alerts[1:]] == ["MTA Rejection"] * 5


def test_a_record_that_is_not_utf8_never_breaks_the_ocsf_batch() -> None:
    """On a page the client flags as not UTF-8, the bad record is dead-lettered and OCSF encodes."""
    raw = b'{"date":"2025-03-04T09:12:45+0000","result":"malicious","details":"\xff"}'
    records = [msgspec.Raw(samples.ATTACHMENT_LINE), msgspec.Raw(raw)]
    handled = Chain("acme", ATT, TABLE).process(records, 0.0, utf8=False)
    assert len(handled.alerts) == 1
    assert len(handled.dead) == 1
    dead = json.loads(handled.dead[0][1])
    assert dead["reason"].startswith("$: not valid JSON (not UTF-8")
    assert "\ufffd" in dead["raw"]
    LINE_ENCODERS["ocsf"](handled.alerts)


# --- OCSF --------------------------------------------------------------------------------------


def extras(value: object, path: str = "$") -> Iterator[str]:
    """Paths of every key the OCSF models did not know, anywhere in a validated tree."""
    if isinstance(value, BaseModel):
        for key in value.__pydantic_extra__ or {}:
            yield f"{path}.{key}"
        for name in type(value).model_fields:
            yield from extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from extras(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from extras(item, f"{path}.{key}")


def profile_problems(finding: dict[str, Any]) -> list[str]:
    """What is wrong with the Security Control profile's attributes in ``finding``: each must
    have its type, an enum id its profile's value and its sibling that value's caption (any
    text for 99, Other), and ``attacks`` must be ATT&CK objects with no unknown key."""
    problems = []
    profile = SECURITY_CONTROL["attributes"]
    if finding.get("metadata", {}).get("profiles") != ["security_control"]:
        problems.append("metadata.profiles does not name security_control")
    for name, value in finding.items():
        if name not in profile:
            continue
        kind = profile[name]["type"]
        if kind == "integer_t" and not (isinstance(value, int) and not isinstance(value, bool)):
            problems.append(f"{name}: not an integer: {value!r}")
        elif kind == "string_t" and not isinstance(value, str):
            problems.append(f"{name}: not a string: {value!r}")
        elif kind == "boolean_t" and not isinstance(value, bool):
            problems.append(f"{name}: not a boolean: {value!r}")
        elif kind == "attack" and not isinstance(value, list):
            problems.append(f"{name}: not a list: {value!r}")
        elif kind == "attack":
            for index, item in enumerate(value):
                for path in extras(Attack.model_validate(item), f"$.{name}[{index}]"):
                    problems.append(f"{path}: not an ATT&CK object key")
        enum = profile[name].get("enum")
        if enum is None:
            continue
        if str(value) not in enum:
            problems.append(f"{name}: {value!r} is not one of {sorted(enum, key=int)}")
            continue
        caption = finding.get(profile[name]["sibling"])
        if (caption != enum[str(value)]) if value != 99 else not caption:
            problems.append(
                f"{profile[name]['sibling']}: {caption!r} is not the caption of {value}"
            )
    return problems


def without_profile(finding: dict[str, Any]) -> dict[str, Any]:
    """``finding`` without the profile attributes that the Detection Finding model lacks."""
    profile, known = SECURITY_CONTROL["attributes"], DetectionFinding.model_fields
    return {k: v for k, v in finding.items() if k in known or k not in profile}


def validated(finding: dict[str, Any]) -> DetectionFinding:
    """``finding`` as a validated OCSF 1.7.0 Detection Finding with the Security Control
    profile and no unknown key anywhere: the profile's own attributes, which the models do not
    know, are checked against the profile (:func:`profile_problems`), the rest by the models."""
    model = DetectionFinding.model_validate(without_profile(finding))
    assert list(extras(model)) == []
    assert profile_problems(finding) == []
    return model


def url_alert(ttp: str, scan: str = "malicious") -> Alert:
    record = json.loads(samples.URL_CLICK_LINE)
    record.update(ttpDefinition=ttp, scanResult=scan)
    return alert_of(URL, json.dumps(record).encode())


def rejection(**changes: object) -> bytes:
    """The §2.3 rejection sample with ``changes`` applied (``...`` removes a key)."""
    record = json.loads(samples.REJECTION_LINE)
    for name, value in changes.items():
        if value is ...:
            record.pop(name, None)
        else:
            record[name] = value
    return json.dumps(record, ensure_ascii=False).encode()


#: Rejection alerts: the §2.3 sample; a drifted Sophos text with its code as a string; a text
#: no phrase matches, kept as MTA Rejection; one with neither info nor code.
REJECTION_ALERTS = [
    alert_of(REJ, samples.REJECTION_LINE),
    alert_of(
        REJ,
        rejection(
            description="Anti-Spoofing Lockout",
            info="ANTI-SPOOFING POLICY \u2013 INBOUND NOT ALLOWED - https://community.mimecast.com/docs/DOC-1369#550",
            type="550",
        ),
    ),
    alert_of(
        REJ,
        rejection(description="Greylisting", info="Greylisting in action", type=14001),
        keep_unmatched=True,
    ),
    alert_of(REJ, rejection(description="Virus Signature Detection", info=..., type=...)),
]

ALL_ALERTS = [
    *(alert_of(category, record) for category, record, _ in CASES if category is not REJ),
    alert_of(URL, samples.URL_ENTRY_SCAN_LINE),
    url_alert("IP Temporarily Blacklisted"),
    url_alert("Submitter failed to authenticate", scan="timeout"),
    *REJECTION_ALERTS,
]


@pytest.mark.parametrize("alert", ALL_ALERTS, ids=lambda a: f"{a.category}-{a.threatId}")
def test_ocsf_output_is_a_valid_detection_finding(alert: Alert) -> None:
    """Every alert's OCSF form validates as an OCSF 1.7.0 Detection Finding with the Security
    Control profile and no unknown key."""
    model = validated(to_ocsf(alert))
    assert model.class_uid == 2004


def test_ocsf_line_and_array_encoders_write_valid_findings() -> None:
    """Both OCSF encoders write the same findings, each valid: one per line, or one array."""
    lines = LINE_ENCODERS["ocsf"](ALL_ALERTS).splitlines()
    array = json.loads(ARRAY_ENCODERS["ocsf"](ALL_ALERTS))
    assert len(lines) == len(array) == len(ALL_ALERTS)
    for line, item, alert in zip(lines, array, ALL_ALERTS, strict=True):
        assert json.loads(line) == item == json.loads(json.dumps(to_ocsf(alert)))
        validated(item)


@pytest.mark.parametrize(
    ("alert", "severity_id", "epoch_ms"),
    [
        (ALL_ALERTS[0], 4, 1_741_079_565_000),
        (ALL_ALERTS[1], 3, 1_741_078_519_000),
        (ALL_ALERTS[5], 2, 1_741_082_493_000),
    ],
    ids=["high", "medium", "low"],
)
def test_ocsf_maps_the_alert_fields(alert: Alert, severity_id: int, epoch_ms: int) -> None:
    """class 2004, finding uid and title, epoch-ms time, severity id, OCSF version and raw text map as documented."""
    finding = to_ocsf(alert)
    model = validated(finding)
    assert (model.class_uid, model.category_uid, model.type_uid) == (2004, 2, 200401)
    assert model.finding_info.uid == alert.id
    assert model.finding_info.title == alert.alertType
    assert finding["time"] == model.time == epoch_ms
    assert model.finding_info.first_seen_time == epoch_ms
    assert finding["severity_id"] == severity_id
    assert model.metadata.version == OCSF_VERSION == "1.7.0"
    assert model.raw_data == bytes(alert.raw).decode("utf-8")
    assert finding["raw_data"].encode() == bytes(alert.raw)


def test_ocsf_attacks_tactic_technique_and_sub_technique() -> None:
    """TA0001 is a tactic only; T1078 a technique only; T1598.003 a sub-technique under technique T1598."""
    tactic, technique, sub = (
        validated(to_ocsf(alert)).finding_info.attacks
        for alert in (ALL_ALERTS[4], ALL_ALERTS[5], ALL_ALERTS[2])
    )
    assert tactic is not None
    assert technique is not None
    assert sub is not None
    assert [a.model_dump(exclude_none=True) for a in tactic] == [
        {"tactic": {"uid": "TA0001", "name": "Initial Access"}}
    ]
    assert [a.model_dump(exclude_none=True) for a in technique] == [
        {"technique": {"uid": "T1078", "name": "Valid Accounts"}}
    ]
    assert [a.model_dump(exclude_none=True) for a in sub] == [
        {
            "technique": {"uid": "T1598", "name": "Phishing for Information"},
            "sub_technique": {"uid": "T1598.003", "name": "Spearphishing Link"},
        }
    ]


@pytest.mark.parametrize(
    ("threat_id", "threat_name", "expected"),
    [
        ("TA0005", "Defense Evasion", {"tactic": {"uid": "TA0005", "name": "Defense Evasion"}}),
        ("T1041", "Exfil", {"technique": {"uid": "T1041", "name": "Exfil"}}),
        (
            "T1566.001",
            "Spearphishing Attachment",
            {
                "technique": {"uid": "T1566", "name": "Phishing"},
                "sub_technique": {"uid": "T1566.001", "name": "Spearphishing Attachment"},
            },
        ),
        (
            "T1204.002",
            "Malicious File",
            {
                "technique": {"uid": "T1204"},
                "sub_technique": {"uid": "T1204.002", "name": "Malicious File"},
            },
        ),
    ],
)
def test_attack_object_by_id_shape(
    threat_id: str, threat_name: str, expected: dict[str, Any]
) -> None:
    """The attack object follows the ID's shape; a parent technique is named only when known."""
    assert attack_object(threat_id, threat_name) == expected


def test_the_ocsf_checks_can_fail() -> None:
    """The validator refuses a wrongly typed field, the extras walk finds a misspelled key, and
    the profile check finds an unknown enum id, a wrong caption, a misspelled ATT&CK key and a
    missing profile name."""
    finding = to_ocsf(ALL_ALERTS[0])
    with pytest.raises(ValidationError, match="time"):
        DetectionFinding.model_validate(without_profile({**finding, "time": "yesterday"}))
    misspelled = {**finding, "finding_info": {**finding["finding_info"], "titel": "x"}}
    assert list(extras(DetectionFinding.model_validate(without_profile(misspelled)))) == [
        "$.finding_info.titel"
    ]
    assert list(extras(DetectionFinding.model_validate(finding))) != [], (
        "the models lack the profile"
    )
    assert profile_problems(finding) == []
    assert profile_problems({**finding, "disposition_id": 28}) == [
        "disposition_id: 28 is not one of ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', "
        "'10', '11', '12', '13', '14', '15', '16', '17', '18', '19', '20', '21', '22', '23', "
        "'24', '25', '26', '27', '99']"
    ]
    assert profile_problems({**finding, "action_id": 3, "action": "Denied"}) == [
        "action: 'Denied' is not the caption of 3"
    ]
    assert profile_problems({**finding, "attacks": [{"tactik": {"uid": "TA0001"}}]}) == [
        "$.attacks[0].tactik: not an ATT&CK object key"
    ]
    assert profile_problems({**finding, "metadata": {**finding["metadata"], "profiles": []}}) == [
        "metadata.profiles does not name security_control"
    ]


def test_ocsf_evidence_carries_the_people_url_and_file() -> None:
    """Sender, recipient, URL, file hash and sending IP appear as evidence and as typed observables."""
    attachment, _, url = (to_ocsf(alert) for alert in ALL_ALERTS[:3])
    email = attachment["evidences"][0]["email"]
    assert (email["from"], email["to"]) == ("billing@invoices-example.net", ["a.khan@example.com"])
    assert attachment["evidences"][0]["file"]["hashes"][0] == {
        "algorithm_id": 3,
        "algorithm": "SHA-256",
        "value": "3b1f0c9d5e7a4b2c8d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e",
    }
    assert {(o["type_id"], o["value"]) for o in url["observables"]} == {
        (5, "support@parcel-notify.example.net"),
        (5, "r.singh@example.com"),
        (6, "https://parcel-notify.example.net/track/9931"),
        (2, "198.51.100.23"),
    }
    assert url["evidences"][0]["src_endpoint"] == {"ip": "198.51.100.23"}
    assert "src_endpoint" not in attachment["evidences"][0]


@pytest.mark.parametrize("when", ["2004-05-25T02:59:13.521+0000", "2039-08-06T02:31:45.549+0000"])
def test_ocsf_time_keeps_every_millisecond(when: str) -> None:
    """OCSF time is the exact epoch millisecond of the event, fractions included."""
    record = json.loads(samples.ATTACHMENT_LINE)
    record["date"] = when
    moment = datetime.fromisoformat(when)
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert to_ocsf(alert_of(ATT, json.dumps(record).encode()))["time"] == expected


@pytest.mark.parametrize(
    ("sending_ip", "expected"),
    [
        ("198.51.100.23", "198.51.100.23"),
        ("2001:db8::17", "2001:db8::17"),
        ("Internal IP", None),
        ("", None),
        ("198.51.100.999", None),
        (None, None),
    ],
)
def test_sender_ip_is_an_address_or_null(sending_ip: str | None, expected: str | None) -> None:
    """``senderIp`` (native) and ``src_endpoint.ip`` (OCSF) carry the record's sending IP only when it is an IPv4 or IPv6 address; ``raw`` keeps the text either way."""
    record = json.loads(samples.URL_CLICK_LINE)
    if sending_ip is None:
        del record["sendingIp"]
    else:
        record["sendingIp"] = sending_ip
    alert = alert_of(URL, json.dumps(record).encode())
    assert alert.senderIp == expected
    evidence = to_ocsf(alert)["evidences"][0]
    assert evidence.get("src_endpoint") == (None if expected is None else {"ip": expected})
    validated(to_ocsf(alert))


def test_rejection_alerts_carry_the_refusal_as_mimecast_wrote_it() -> None:
    """A rejection alert is typed by the phrase found (info first), and carries description,
    code (``type`` as a string) and info unchanged, with the sender, recipient and IP."""
    sample, spoofing, greylisting, virus = REJECTION_ALERTS
    assert (
        sample.category, sample.alertType, sample.threatId, sample.threatName, sample.severity,
    ) == ("rejection", "Invalid Recipient", "TA0005", "Defense Evasion", "low")  # fmt: skip
    assert (sample.sender, sample.recipient, sample.senderIp) == (
        "probe17@203-0-113-5.example",
        "j.smith@demo.example.com",
        "203.0.113.5",
    )
    assert (sample.rejectionType, sample.rejectionCode, sample.rejectionInfo) == (
        "Invalid Recipient Address",
        "14012",
        "Invalid Recipient",
    )
    assert (spoofing.alertType, spoofing.severity) == (
        "Anti-Spoofing policy - Inbound not allowed",
        "high",
    )
    assert spoofing.rejectionCode == "550"
    assert spoofing.rejectionInfo == json.loads(bytes(spoofing.raw))["info"]
    assert (greylisting.alertType, greylisting.threatId, greylisting.severity) == (
        "MTA Rejection",
        "TA0001",
        "low",
    )
    assert (virus.alertType, virus.severity) == ("Virus Signature Detected", "high")
    assert (virus.rejectionType, virus.rejectionCode, virus.rejectionInfo) == (
        "Virus Signature Detection",
        None,
        None,
    )


@pytest.mark.parametrize("code", [14012, "14012"])
def test_a_rejection_code_is_the_type_as_a_string(code: int | str) -> None:
    """``type`` documented as an integer, sometimes a string: the native code is the same text."""
    alert = alert_of(REJ, rejection(type=code))
    assert alert.rejectionCode == "14012"
    assert json.loads(LINE_ENCODERS["native"]([alert]))["rejectionCode"] == "14012"
    assert json.loads(bytes(alert.raw))["type"] == code


def test_ocsf_names_the_rejection_log_and_describes_the_refusal() -> None:
    """Rejection findings name the gateway log, its console feature and data source, and say
    what was refused; TTP findings keep their own log names and no rejection text."""
    findings = [validated(to_ocsf(alert)) for alert in REJECTION_ALERTS]
    for model in findings:
        assert model.metadata.log_name == "gateway/rejection"
        assert model.metadata.product.feature is not None
        assert model.metadata.product.feature.name == "Gateway - Rejected and Deferred Messages"
        assert model.finding_info.data_sources == ["Mimecast rejection log"]
        assert model.finding_info.types == ["rejection"]
        assert model.status_detail is None, "a rejection has no Mimecast action"
    assert [model.finding_info.desc for model in findings] == [
        "Rejected (Invalid Recipient Address, code 14012): Invalid Recipient",
        "Rejected (Anti-Spoofing Lockout, code 550): ANTI-SPOOFING POLICY \u2013 INBOUND NOT "
        "ALLOWED - https://community.mimecast.com/docs/DOC-1369#550",
        "Rejected (Greylisting, code 14001): Greylisting in action",
        "Rejected (Virus Signature Detection)",
    ]
    for alert in ALL_ALERTS[:3]:
        model = validated(to_ocsf(alert))
        assert model.metadata.log_name == f"ttp/{alert.category}"
        assert model.finding_info.data_sources == [f"Mimecast TTP {alert.category} log"]
        assert not (model.finding_info.desc or "").startswith("Rejected")


@pytest.mark.parametrize(
    ("category", "record", "action", "disposition", "action_taken"),
    [
        (ATT, samples.ATTACHMENT_LINE, "none", (15, "Detected"), (3, "Observed")),
        (ATT, samples.ATTACHMENT_LINE, "none, none", (15, "Detected"), (3, "Observed")),
        (ATT, samples.ATTACHMENT_LINE, "user release, none", (9, "Restored"), (1, "Allowed")),
        (IMP, samples.IMPERSONATION_LINE, "hold", (3, "Quarantined"), (2, "Denied")),
        (IMP, samples.IMPERSONATION_LINE, "bounce", (25, "Rejected"), (2, "Denied")),
        (IMP, samples.IMPERSONATION_LINE, "Delete", (5, "Deleted"), (2, "Denied")),
        (IMP, samples.IMPERSONATION_LINE, "smart_folder", (99, "smart_folder"), (0, "Unknown")),
        (URL, samples.URL_CLICK_LINE, "warn", (19, "Alert"), (3, "Observed")),
        (URL, samples.URL_CLICK_LINE, "allow", (1, "Allowed"), (1, "Allowed")),
        (URL, samples.URL_CLICK_LINE, "block", (2, "Blocked"), (2, "Denied")),
        (URL, samples.URL_CLICK_LINE, None, (0, "Unknown"), (0, "Unknown")),
        (REJ, samples.REJECTION_LINE, None, (25, "Rejected"), (2, "Denied")),
    ],
)
def test_ocsf_disposition_and_action_follow_mimecasts_action(
    category: Category,
    record: bytes,
    action: str | None,
    disposition: tuple[int, str],
    action_taken: tuple[int, str],
) -> None:
    """The Security Control disposition and action say what Mimecast did: the documented
    table, an action list read by its first word that is not ``none``, an unknown word as
    Other with Mimecast's word, no action as Unknown, and every rejection as Rejected."""
    fields = json.loads(record)
    key = {ATT: "actionTriggered", IMP: "action", URL: "action"}.get(category)
    if key is not None:
        fields[key] = action
        if action is None:
            del fields[key]
    finding = to_ocsf(alert_of(category, json.dumps(fields).encode()))
    validated(finding)
    assert (finding["disposition_id"], finding["disposition"]) == disposition
    assert (finding["action_id"], finding["action"]) == action_taken


@pytest.mark.parametrize("alert", ALL_ALERTS, ids=lambda a: f"{a.category}-{a.threatId}")
def test_ocsf_applies_the_security_control_profile(alert: Alert) -> None:
    """Every finding names the profile, is an alert, and repeats finding_info.attacks at the top."""
    finding = to_ocsf(alert)
    assert finding["metadata"]["profiles"] == ["security_control"]
    assert finding["is_alert"] is True
    assert finding["attacks"] == finding["finding_info"]["attacks"] != []
    assert {"disposition_id", "disposition", "action_id", "action"} <= finding.keys()


# --- the format registry -----------------------------------------------------------------------


def test_the_format_literal_names_exactly_the_registered_formats() -> None:
    """``Format`` (the Literal mypy and the configuration check) lists the registry's keys, in
    order, and every view of the registry has the same keys and the registry's encoders."""
    assert list(get_args(Format)) == list(FORMATS) == ["native", "ocsf", "ecs", "cef"]
    for name, output in FORMATS.items():
        assert output.name == name
        assert output.description
        assert LINE_ENCODERS[name] is output.lines
        assert ARRAY_ENCODERS[name] is output.array
        assert ONE_ENCODERS[name] is output.one
    assert list(LINE_ENCODERS) == list(ARRAY_ENCODERS) == list(ONE_ENCODERS) == list(FORMATS)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_writes_one_line_per_alert_and_its_three_encoders_agree(name: Format) -> None:
    """``lines`` is ``one`` of each alert plus a line feed, ``one`` holds no line break, and
    ``array`` is a JSON array of the same documents (CEF: of the lines as strings)."""
    output = FORMATS[name]
    ones = [output.one(alert) for alert in ALL_ALERTS]
    for one in ones:
        assert b"\n" not in one
        assert b"\r" not in one
    assert output.lines(ALL_ALERTS) == b"".join(one + b"\n" for one in ones)
    assert output.lines([]) == b""
    assert json.loads(output.array([])) == []
    array = json.loads(output.array(ALL_ALERTS))
    if name == "cef":
        assert array == [one.decode() for one in ones]
    else:
        assert array == [json.loads(one) for one in ones]


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=-14 * 60, max_value=14 * 60),
)
def test_epoch_ms_is_exact_for_alert_times_and_for_offsets(moment: datetime, minutes: int) -> None:
    expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert epoch_ms(format_alert_time(moment)) == expected  # as alerts write it: Z
    elsewhere = moment.astimezone(timezone(timedelta(minutes=minutes)))
    assert epoch_ms(elsewhere.isoformat(timespec="milliseconds")) == expected
    whole = moment.replace(microsecond=0)  # alerts' usual time: the hour cache's path
    assert epoch_ms(format_alert_time(whole)) == expected - moment.microsecond // 1000


def test_epoch_ms_of_whole_seconds_in_an_hour_seen_before() -> None:
    """Every second of an hour, the hour first parsed from another second of it (then only the
    minutes and seconds are added), and the same seconds a day, a leap day and a century on."""
    for hour in (
        datetime(2025, 3, 4, 9, tzinfo=UTC),
        datetime(2028, 2, 29, 23, tzinfo=UTC),
        datetime(1999, 12, 31, 23, tzinfo=UTC),
        datetime(2125, 7, 1, 0, tzinfo=UTC),
    ):
        epoch_ms(format_alert_time(hour + timedelta(minutes=30)))
        for second in range(0, 3600, 7):
            moment = hour + timedelta(seconds=second)
            expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
            assert epoch_ms(format_alert_time(moment)) == expected, moment


def test_epoch_ms_keeps_a_bounded_number_of_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound the hours known are forgotten, and times are still exact."""
    monkeypatch.setattr(_common, "_HOURS_KEPT", 3)
    monkeypatch.setattr(_common, "_HOUR_MS", {})
    start = datetime(2025, 3, 4, tzinfo=UTC)
    for hours in range(10):
        moment = start + timedelta(hours=hours, minutes=5, seconds=hours)
        expected = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        assert epoch_ms(format_alert_time(moment)) == expected
        assert 1 <= len(_common._HOUR_MS) <= 3


def test_epoch_ms_of_a_fraction_written_in_twenty_characters_keeps_its_milliseconds() -> None:
    """The length of an alert time with whole seconds, but a basic-format time with a fraction:
    its milliseconds are not cut off."""
    assert epoch_ms("20250304T091245.250Z") == 1741079565250
