"""Unit tests of the format check (``alert-rules.md`` §2.1): typed records and their reasons."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.records import (
    AttachmentLog,
    ClickLog,
    ImpersonationLog,
    Invalid,
    RejectionLog,
    Valid,
    parse_event_time,
    validate,
)
from tests.unit import samples

ATT, IMP, URL = Category.ATTACHMENT, Category.IMPERSONATION, Category.URL
REJ = Category.REJECTION

#: The smallest record each category accepts; tests add or change one thing at a time.
MINIMAL: dict[Category, dict[str, object]] = {
    ATT: {"date": "2025-03-04T09:12:45+0000", "result": "malicious"},
    IMP: {"id": "MTOKEN:x", "eventTime": "2025-03-04T08:55:19+0000", "taggedMalicious": True},
    URL: {"date": "2025-03-04T10:01:33+0000", "scanResult": "malicious", "url": "https://x.test/"},
    REJ: {"id": "eNpVT1tPx", "created": "2026-11-30T18:56:08+0000"},
}


def record(category: Category, **changes: object) -> bytes:
    """The minimal record of ``category`` with ``changes`` applied (``...`` removes a key)."""
    fields = dict(MINIMAL[category])
    for name, value in changes.items():
        if value is ...:
            fields.pop(name, None)
        else:
            fields[name] = value
    return msgspec.json.encode(fields)


def valid(category: Category, raw: bytes | msgspec.Raw) -> Valid:
    result = validate(category, raw)
    assert isinstance(result, Valid), result
    return result


def invalid(category: Category, raw: bytes) -> str:
    result = validate(category, raw)
    assert isinstance(result, Invalid), result
    return result.reason


# --- the §12 samples ---------------------------------------------------------------------------


def test_attachment_samples_are_valid_with_every_field_read() -> None:
    """Both §12.2 attachment records, cut verbatim from their page, pass with all read fields typed."""
    first = valid(ATT, msgspec.Raw(samples.ATTACHMENT_MALICIOUS))
    second = valid(ATT, samples.ATTACHMENT_SAFE)
    assert first.record == AttachmentLog(
        date="2025-03-04T09:12:45+0000",
        result="malicious",
        senderAddress="billing@invoices-example.net",
        recipientAddress="a.khan@example.com",
        fileName="Remittance_8841.xlsm",
        fileType="application/vnd.ms-excel.sheet.macroEnabled.12",
        fileHash="3b1f0c9d5e7a4b2c8d6e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e",
        messageId="<a91f3c.2210@mail.invoices-example.net>",
        subject="Remittance advice",
        route="inbound",
        actionTriggered="none",
        definition="Default Inbound Attachment Protect Definition",
    )
    assert first.time == datetime(2025, 3, 4, 9, 12, 45, tzinfo=UTC)
    assert isinstance(second.record, AttachmentLog)
    assert (second.record.result, second.record.senderAddress) == ("safe", "<>")
    assert second.time == datetime(2025, 3, 4, 9, 10, 2, tzinfo=UTC)


def test_impersonation_sample_is_valid_with_every_field_read() -> None:
    """The §12.3 impersonation record passes; its nested impersonationResults are not in the way."""
    checked = valid(IMP, samples.IMPERSONATION)
    assert checked.record == ImpersonationLog(
        id="MTOKEN:eNqrSYNTHETIC0001",
        eventTime="2025-03-04T08:55:19+0000",
        taggedMalicious=True,
        senderAddress="ceo.office@examp1e-corp.com",
        recipientAddress="finance@example.com",
        subject="Urgent wire today",
        definition="IP - 2 hits (Hold for Review / User Hold)",
        hits=2,
        identifiers=["similar_internal_domain", "internal_user_name"],
        action="hold",
        taggedExternal=True,
        senderIpAddress="203.0.113.45",
        messageId="<CAF0synthetic123@mail.examp1e-corp.com>",
    )
    assert checked.time == datetime(2025, 3, 4, 8, 55, 19, tzinfo=UTC)


def test_url_samples_are_valid_with_every_field_read() -> None:
    """Both §12.4 click records pass, the empty ttpDefinition of the second kept as ''."""
    click = valid(URL, samples.URL_CLICK)
    entry = valid(URL, samples.URL_ENTRY_SCAN)
    assert click.record == ClickLog(
        date="2025-03-04T10:01:33+0000",
        scanResult="malicious",
        url="https://parcel-notify.example.net/track/9931",
        userEmailAddress="r.singh@example.com",
        fromUserEmailAddress="support@parcel-notify.example.net",
        ttpDefinition="Default Inbound URL Protect Definition",
        creationMethod="User Click",
        reason=None,
        subject="Delivery attempt failed",
        action="warn",
        route="inbound",
        messageId="<77c2e1@parcel-notify.example.net>",
        sendingIp="198.51.100.23",
        category="Phishing & Fraud",
        actions="Block",
        adminOverride="N/A",
        userOverride="None",
        userAwarenessAction="N/A",
    )
    assert click.time == datetime(2025, 3, 4, 10, 1, 33, tzinfo=UTC)
    assert isinstance(entry.record, ClickLog)
    assert (entry.record.ttpDefinition, entry.record.creationMethod) == ("", "Entry Scan")
    assert entry.time == datetime(2025, 3, 4, 10, 5, tzinfo=UTC)


def test_rejection_sample_is_valid_with_every_field_read() -> None:
    """The mta-rejections.md §2.3 rejection passes; the fields nobody reads are not in the way."""
    checked = valid(REJ, samples.REJECTION)
    assert checked.record == RejectionLog(
        id="eNpVT1tPwjAU_i99hSW7dh1RE5iK0SGwOQ28",
        created="2026-11-30T18:56:08+0000",
        description="Invalid Recipient Address",
        info="Invalid Recipient",
        type=14012,
        fromAddress="probe17@203-0-113-5.example",
        toAddress="j.smith@demo.example.com",
        ipAddress="203.0.113.5",
    )
    assert checked.time == datetime(2026, 11, 30, 18, 56, 8, tzinfo=UTC)


def test_a_minimal_rejection_needs_only_its_id_and_time() -> None:
    """``id`` and ``created`` are all a rejection must have; every text field may be absent."""
    checked = valid(REJ, record(REJ))
    assert checked.record == RejectionLog(id="eNpVT1tPx", created="2026-11-30T18:56:08+0000")
    assert isinstance(checked.record, RejectionLog)
    assert (checked.record.info, checked.record.description, checked.record.type) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize("code", [14012, "14012", "0", None])
def test_a_rejection_type_may_be_a_number_or_a_string(code: object) -> None:
    """``type`` is documented as an integer; numbers drift to strings in MTA data, so both pass."""
    checked = valid(REJ, record(REJ, type=code))
    assert isinstance(checked.record, RejectionLog)
    assert checked.record.type == code


# --- event times -------------------------------------------------------------------------------


@pytest.mark.parametrize("category", list(LOG_CATEGORIES))
@pytest.mark.parametrize("suffix", ["+0000", "Z", "+00:00", "-0000", ".000+0000"])
def test_every_utc_spelling_gives_the_same_utc_time(category: Category, suffix: str) -> None:
    """``+0000``, ``Z``, ``+00:00`` (and ``-0000``, fractions) all parse to one aware UTC moment."""
    field = category.time_field
    checked = valid(category, record(category, **{field: "2025-03-04T09:12:45" + suffix}))
    assert checked.time == datetime(2025, 3, 4, 9, 12, 45, tzinfo=UTC)
    assert checked.time.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-04T14:42:45+05:30", datetime(2025, 3, 4, 9, 12, 45, tzinfo=UTC)),
        ("2025-03-04T01:12:45-0800", datetime(2025, 3, 4, 9, 12, 45, tzinfo=UTC)),
        ("2025-03-04T23:12:45-10:00", datetime(2025, 3, 5, 9, 12, 45, tzinfo=UTC)),
        ("2025-03-04T00:12:45.250+0900", datetime(2025, 3, 3, 15, 12, 45, 250_000, tzinfo=UTC)),
    ],
)
def test_a_non_utc_offset_is_converted_to_utc(text: str, expected: datetime) -> None:
    """A time with another offset becomes the same instant in UTC, across a day boundary too."""
    moment = parse_event_time(text)
    assert moment == expected
    assert moment is not None
    assert moment.tzinfo is UTC
    assert (moment.hour, moment.day) == (expected.hour, expected.day)  # not just equal instants
    assert valid(ATT, record(ATT, date=text)).time == expected


@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0))
)
def test_every_spelling_of_any_second_parses_alike(moment: datetime) -> None:
    """For any second, ``+0000``, ``Z``, ``+00:00`` and an equivalent +01:30 time all give that UTC second."""
    plain = moment.strftime("%Y-%m-%dT%H:%M:%S")
    shifted = (moment + timedelta(hours=1, minutes=30)).strftime("%Y-%m-%dT%H:%M:%S+01:30")
    for text in (plain + "+0000", plain + "Z", plain + "+00:00", shifted):
        assert parse_event_time(text) == moment, text
    for category in LOG_CATEGORIES:
        assert (
            valid(category, record(category, **{category.time_field: plain + "+0000"})).time
            == moment
        )


def test_parse_event_time_answers_the_same_twice() -> None:
    """The bounded cache gives the same answer the parse did, for good and bad texts alike."""
    for text in ("2025-03-04T09:12:45+0000", "2025-03-04T09:12:45", "nonsense"):
        assert parse_event_time(text) == parse_event_time(text)
    assert parse_event_time("2025-03-04T09:12:45") is None
    assert parse_event_time("2025-03-04T09:12:45") is None


# --- failures and their reasons ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "raw", "reason"),
    [
        (ATT, record(ATT, result=...), "$.result: required field missing"),
        (ATT, record(ATT, date=...), "$.date: required field missing"),
        (IMP, record(IMP, id=...), "$.id: required field missing"),
        (IMP, record(IMP, eventTime=...), "$.eventTime: required field missing"),
        (IMP, record(IMP, taggedMalicious=...), "$.taggedMalicious: required field missing"),
        (URL, record(URL, url=...), "$.url: required field missing"),
        (URL, record(URL, scanResult=...), "$.scanResult: required field missing"),
        (URL, record(URL, date=...), "$.date: required field missing"),
        (REJ, record(REJ, id=...), "$.id: required field missing"),
        (REJ, record(REJ, created=...), "$.created: required field missing"),
    ],
)
def test_a_missing_required_field_is_named(category: Category, raw: bytes, reason: str) -> None:
    """A record without a field its category needs is refused with that field's path."""
    assert invalid(category, raw) == reason


@pytest.mark.parametrize(
    ("category", "raw", "reason"),
    [
        (IMP, record(IMP, hits="two"), "$.hits: expected int | null, got str"),
        (ATT, record(ATT, date=12345), "$.date: expected str, got int"),
        (IMP, record(IMP, identifiers=[1]), "$.identifiers[0]: expected str, got int"),
        (
            IMP,
            record(IMP, identifiers="internal_user_name"),
            "$.identifiers: expected array | null, got str",
        ),
        (IMP, record(IMP, taggedMalicious="true"), "$.taggedMalicious: expected bool, got str"),
        (ATT, record(ATT, fileName=7), "$.fileName: expected str | null, got int"),
        (URL, record(URL, url=None), "$.url: expected str, got null"),
        (URL, record(URL, ttpDefinition=["x"]), "$.ttpDefinition: expected str | null, got array"),
        (REJ, record(REJ, info=550), "$.info: expected str | null, got int"),
        (REJ, record(REJ, description={"a": 1}), "$.description: expected str | null, got object"),
        (REJ, record(REJ, type=14012.5), "$.type: expected int | str | null, got float"),
        (REJ, record(REJ, type=True), "$.type: expected int | str | null, got bool"),
        (REJ, record(REJ, id=None), "$.id: expected str, got null"),
        (
            REJ,
            record(REJ, ipAddress=["203.0.113.5"]),
            "$.ipAddress: expected str | null, got array",
        ),
    ],
)
def test_a_wrong_json_type_is_named_with_its_path(
    category: Category, raw: bytes, reason: str
) -> None:
    """A read field of the wrong JSON type is refused as ``$.path: expected X, got Y``."""
    assert invalid(category, raw) == reason


def test_a_null_optional_field_is_accepted() -> None:
    """An optional field that is null is as good as absent."""
    checked = valid(ATT, record(ATT, fileName=None, fileHash=None))
    assert isinstance(checked.record, AttachmentLog)
    assert checked.record.fileName is None


@pytest.mark.parametrize("category", list(LOG_CATEGORIES))
def test_an_unparseable_time_is_refused_with_its_value(category: Category) -> None:
    """A time that is not a date (month 13, hour 99) is refused, quoting the value."""
    field = category.time_field
    raw = record(category, **{field: "2025-13-45T99:00:00+0000"})
    assert invalid(category, raw) == (
        f"$.{field}: not a valid time with a UTC offset: '2025-13-45T99:00:00+0000'"
    )


@pytest.mark.parametrize("category", list(LOG_CATEGORIES))
@pytest.mark.parametrize("text", ["2025-03-04T09:12:45", "2025-03-04 09:12:45", "2025-03-04"])
def test_a_time_without_offset_is_refused(category: Category, text: str) -> None:
    """A local time is refused rather than guessed: its zone could move the alert by hours."""
    field = category.time_field
    assert invalid(category, record(category, **{field: text})) == (
        f"$.{field}: not a valid time with a UTC offset: {text!r}"
    )


def test_a_long_bad_time_is_shortened_in_the_reason() -> None:
    """A huge unparseable time is cut to 64 characters in the reason, not copied whole."""
    reason = invalid(ATT, record(ATT, date="9" * 10_000))
    assert reason == f"$.date: not a valid time with a UTC offset: {'9' * 61 + '...'!r}"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[1, 2]", "$: expected object, got array (a record must be an object)"),
        (b'"a string"', "$: expected object, got str (a record must be an object)"),
        (b"null", "$: expected object, got null (a record must be an object)"),
        (b"42", "$: expected object, got int (a record must be an object)"),
    ],
)
def test_a_record_that_is_not_an_object_is_refused(raw: bytes, reason: str) -> None:
    """Any JSON value but an object is refused at ``$``."""
    assert invalid(ATT, raw) == reason


@pytest.mark.parametrize("category", list(LOG_CATEGORIES))
@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda good: good[:-5], id="truncated"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: good + b" trailing", id="trailing-garbage"),
        pytest.param(lambda good: good.replace(b'"', b"'"), id="single-quotes"),
    ],
)
def test_invalid_json_is_refused_at_the_root(
    category: Category, spoil: Callable[[bytes], bytes]
) -> None:
    """Bytes that are not JSON (even around a good record) are refused at ``$`` as not valid JSON."""
    assert invalid(category, spoil(record(category))).startswith("$: not valid JSON (")


# --- fields nobody reads -----------------------------------------------------------------------


def test_unknown_fields_of_any_shape_are_accepted() -> None:
    """New fields (scalars, arrays, objects, a 200-deep nest) cannot make a record a dead letter."""
    deep: object = "bottom"
    for level in range(200):
        deep = {f"level{level}": [deep]}
    raw = record(
        URL,
        brandNewField=1,
        advancedPhishingResult={"CredentialTheftBrands": ["x"], "Evidence": [{"a": None}]},
        mimecastEventId=None,
        deep=deep,
    )
    checked = valid(URL, raw)
    assert isinstance(checked.record, ClickLog)
    assert checked.record.url == "https://x.test/"


def test_a_one_megabyte_string_in_an_unread_field_is_accepted() -> None:
    """A 1 MB value in a field the pipeline does not read passes the check."""
    raw = record(ATT, details="M" * (1024 * 1024))
    assert len(raw) > 1024 * 1024
    assert valid(ATT, raw).time == datetime(2025, 3, 4, 9, 12, 45, tzinfo=UTC)


def test_an_unread_field_of_an_unexpected_type_is_accepted() -> None:
    """Fields the pipeline does not read are not type-checked (``details`` as a number, ``tagMap`` a list)."""
    assert valid(ATT, record(ATT, details=5))
    assert valid(URL, record(URL, tagMap=[1, 2], emailPartsDescription="Body"))


def test_a_pathologically_deep_unread_field_does_not_raise() -> None:
    """Even a 100 000-deep nest in an unread field gives Valid or Invalid; it never raises."""
    raw = (
        b'{"date":"2025-03-04T09:12:45+0000","result":"malicious","x":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}"
    )
    assert isinstance(validate(ATT, raw), Valid | Invalid)


def test_bytes_that_are_not_utf8_are_refused() -> None:
    """A record with a byte sequence that is not UTF-8, even in an unread field, is not valid JSON."""
    raw = b'{"date":"2025-03-04T09:12:45+0000","result":"malicious","details":"\xff\xfe"}'
    assert invalid(ATT, raw).startswith("$: not valid JSON")
