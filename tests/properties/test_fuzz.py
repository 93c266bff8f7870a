"""Fuzzing the format check and the encoders with hypothesis.

(a) The format check (``records.validate``, ``make_checker`` and the chain around them) takes
    anything a page can carry, arbitrary JSON values, record-shaped objects with arbitrary
    field values, arbitrary bytes, and answers Valid or Invalid (the chain: an alert, a drop
    or a dead letter) without raising.
(b) The encoders take alerts built from valid records whose string fields are arbitrary
    unicode (control characters, right-to-left marks, emoji, line and paragraph separators;
    lone surrogates excluded, which JSON text in UTF-8 cannot carry): the output always parses
    as JSON, line encoders write one line per alert, ``raw`` round-trips to the input record,
    and every OCSF finding validates against the OCSF 1.7.0 Detection Finding model.

Every category is fuzzed, the rejection log too (records shaped like ``mta-rejections.md`` §2.3).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ocsf.v1_7_0.events import DetectionFinding

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.alerts import ARRAY_ENCODERS, LINE_ENCODERS, Format, to_ocsf
from mimecast_connector.records import Invalid, Valid, make_checker, validate
from mimecast_connector.rules import DROP_REASONS, load_table, split_reason
from mimecast_connector.runner import Chain
from tests.unit.samples import ATTACHMENT_LINE, IMPERSONATION_LINE, REJECTION_LINE, URL_CLICK_LINE

TABLE = load_table()
SAMPLES = {
    Category.ATTACHMENT: ATTACHMENT_LINE,
    Category.IMPERSONATION: IMPERSONATION_LINE,
    Category.URL: URL_CLICK_LINE,
    Category.REJECTION: REJECTION_LINE,
}
FIELDS = {category: sorted(json.loads(raw)) for category, raw in SAMPLES.items()}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_category_is_fuzzed() -> None:
    """A category without a sample here would be left out of the record-shaped fuzzing."""
    assert list(SAMPLES) == list(LOG_CATEGORIES)


# --- (a) the format check --------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=16,
)

# Times as Mimecast writes them, as other ISO 8601 writers do, and as nobody should.
time_texts = st.one_of(
    st.text(max_size=40),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S+0000")),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()),  # no offset: refused
    st.sampled_from(["", "2025-02-30T10:00:00+0000", "2025-03-04T24:00:00Z", "yesterday"]),
)


@st.composite
def record_like(draw: st.DrawFn, category: Category) -> dict[str, Any]:
    """The category's sample record with some fields replaced, removed, or added."""
    record: dict[str, Any] = json.loads(SAMPLES[category])
    for name in draw(st.lists(st.sampled_from(FIELDS[category]), max_size=4, unique=True)):
        change = draw(st.sampled_from(["replace", "remove", "time"]))
        if change == "remove":
            record.pop(name, None)
        elif change == "time":
            record[name] = draw(time_texts)
        else:
            record[name] = draw(json_values)
    record.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
    return record


def check_answer(category: Category, raw: bytes) -> None:
    """validate and the checker answer without raising, in their documented shapes."""
    answer = validate(category, raw)
    assert isinstance(answer, Valid | Invalid)
    if isinstance(answer, Invalid):
        assert answer.reason.startswith("$")
    else:
        assert answer.time.tzinfo is not None
        assert answer.time.utcoffset() == timedelta(0)
    checked = make_checker(category)(raw)
    if isinstance(checked, str):
        assert checked.startswith("$")
    else:
        _, (epoch, utc) = checked
        assert utc.endswith("Z")
        assert isinstance(answer, Valid)
        assert abs(answer.time.timestamp() - epoch) < 1e-3


def chain_answer(category: Category, raw: bytes) -> None:
    """The chain turns one record into exactly one alert, drop or dead letter; dead letters
    are one JSON line carrying the record as it came; drops carry a known reason."""
    handled = Chain("acme", category, TABLE).process([msgspec.Raw(raw)], 1_764_000_000.0)
    assert len(handled.ids) == 1
    assert len(handled.alerts) + len(handled.dropped) + len(handled.dead) == 1
    for _, reason in handled.dropped:
        assert split_reason(reason)[0] in DROP_REASONS
    for _, line in handled.dead:
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1
        dead = json.loads(line)
        assert dead["reason"].startswith("$")
        assert dead["raw"] == json.loads(raw)


@FUZZ
@given(category=st.sampled_from(list(LOG_CATEGORIES)), value=json_values)
def test_any_json_value_is_valid_or_invalid(category: Category, value: Any) -> None:
    """An arbitrary JSON value is Valid or Invalid for every category, and the chain places it."""
    raw = json.dumps(value).encode()
    check_answer(category, raw)
    chain_answer(category, raw)


@FUZZ
@given(data=st.data(), category=st.sampled_from(list(LOG_CATEGORIES)))
def test_any_record_shaped_object_is_valid_or_invalid(
    data: st.DataObject, category: Category
) -> None:
    """A real record with fields replaced, removed or added is Valid or Invalid, never an exception."""
    record = data.draw(record_like(category))
    for raw in (
        json.dumps(record).encode(),
        json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass"),
    ):
        check_answer(category, raw)
    chain_answer(category, json.dumps(record).encode())


@FUZZ
@given(category=st.sampled_from(list(LOG_CATEGORIES)), raw=st.binary(max_size=300))
@example(category=Category.URL, raw=b'{"date":"2025-03-04T10:01:33+0000","url":"\xff"}')
@example(category=Category.URL, raw=b"[" * 5000)
@example(category=Category.URL, raw=b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}")
@example(category=Category.URL, raw=b'{"date":"\\ud800"}')
def test_any_bytes_are_valid_or_invalid(category: Category, raw: bytes) -> None:
    """Arbitrary bytes, non-UTF-8 and deeply nested ones included, are Valid or Invalid."""
    check_answer(category, raw)


offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@FUZZ
@given(moment=st.datetimes(timezones=offsets), category=st.sampled_from(list(LOG_CATEGORIES)))
@example(moment=datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-1))),
         category=Category.URL)  # fmt: skip
@example(moment=datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=1))),
         category=Category.ATTACHMENT)  # fmt: skip
def test_any_iso_time_with_any_offset_is_valid_or_invalid(
    moment: datetime, category: Category
) -> None:
    """Every ISO 8601 time with an offset, from year 1 to 9999, is Valid or Invalid as an event time."""
    record: dict[str, Any] = json.loads(SAMPLES[category])
    record[category.time_field] = moment.isoformat()
    check_answer(category, json.dumps(record).encode())


# --- (b) the encoders ------------------------------------------------------------------------

# Any unicode a JSON string in UTF-8 can carry: control characters, RTL overrides, emoji,
# U+2028/U+2029, noncharacters; not lone surrogates (category Cs).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
awkward = st.sampled_from(
    ["\u202eevil\u202c", "\x00\x1f\x7f", "\u2028\u2029\x85", "😀👩‍👩‍👧", "\ufeff", "a\r\nb", "\\"]
)
strings = st.one_of(texts, awkward)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.just(UTC),
)


@st.composite
def valid_records(draw: st.DrawFn, category: Category) -> dict[str, Any]:
    """A record that passes the format check and the safe filter, string fields arbitrary."""
    record: dict[str, Any] = json.loads(SAMPLES[category])
    for name, value in list(record.items()):
        if isinstance(value, str):
            record[name] = draw(strings)
    when = draw(moments)
    record[category.time_field] = when.strftime("%Y-%m-%dT%H:%M:%S") + draw(
        st.sampled_from(["+0000", "Z", "+00:00"])
    )
    if category is Category.IMPERSONATION:
        record["identifiers"] = draw(st.lists(strings, max_size=3))
        record["taggedMalicious"] = True
    elif category is Category.REJECTION:
        # ``type`` a number or any text; ``info`` and ``description`` any text, kept as alerts
        # by ``keep_unmatched_rejections`` (the chain below) when no phrase is found in them.
        record["type"] = draw(st.one_of(st.integers(-(2**63), 2**63 - 1), strings, st.none()))
    elif category is Category.ATTACHMENT:
        if record["result"].strip().casefold() in ("safe", "clean"):
            record["result"] = "malicious"
    elif record["scanResult"].strip().casefold() == "clean":
        record["scanResult"] = "malicious"
    return record


def as_raw(record: dict[str, Any], ascii_only: bool) -> bytes:
    return json.dumps(record, ensure_ascii=ascii_only).encode("utf-8")


def parse(line: bytes) -> Any:
    """Strict JSON from UTF-8 bytes: no raw control characters, no invalid UTF-8."""
    return json.loads(line.decode("utf-8"), strict=True)


@FUZZ
@given(
    data=st.data(),
    category=st.sampled_from(list(LOG_CATEGORIES)),
    count=st.integers(1, 4),
    ascii_only=st.booleans(),
)
def test_encoders_write_parseable_json_for_any_unicode(
    data: st.DataObject, category: Category, count: int, ascii_only: bool
) -> None:
    """Native and OCSF, lines and arrays: JSON that parses, one line an alert, raw equal to the record, OCSF valid."""
    records = [data.draw(valid_records(category)) for _ in range(count)]
    if category is Category.REJECTION:  # one id per record: a rejection is its id and second
        for n, record in enumerate(records):
            record["id"] = f"{n}:{record['id']}"
    raws = [as_raw(r, ascii_only) for r in records]
    chain = Chain("acme", category, TABLE, keep_unmatched_rejections=True)
    handled = chain.process([msgspec.Raw(r) for r in raws], 1_764_000_000.0)
    assert handled.dead == []
    assert handled.dropped == []
    alerts = handled.alerts
    assert len(alerts) == count

    native = LINE_ENCODERS["native"](alerts)
    assert native.endswith(b"\n")
    lines = native.split(b"\n")[:-1]
    assert len(lines) == count
    # A reader in text mode (universal newlines: LF, CR, CRLF) sees the same lines.
    assert len(list(io.TextIOWrapper(io.BytesIO(native), encoding="utf-8"))) == count
    for line, alert, record in zip(lines, alerts, records, strict=True):
        decoded = parse(line)
        assert decoded["raw"] == record
        assert decoded["id"] == alert.id
        assert decoded["subject"] == record.get("subject")
        if category is Category.REJECTION:
            code = record["type"]
            assert decoded["rejectionCode"] == (None if code is None else str(code))
            assert decoded["rejectionInfo"] == record["info"]
            assert decoded["rejectionType"] == record["description"]
            assert (decoded["sender"], decoded["recipient"]) == (
                record["fromAddress"],
                record["toAddress"],
            )
        else:
            assert decoded["rejectionCode"] is None

    ocsf = LINE_ENCODERS["ocsf"](alerts)
    ocsf_lines = ocsf.split(b"\n")[:-1]
    assert len(ocsf_lines) == count
    assert len(list(io.TextIOWrapper(io.BytesIO(ocsf), encoding="utf-8"))) == count
    for line, alert, record in zip(ocsf_lines, alerts, records, strict=True):
        decoded = parse(line)
        assert json.loads(decoded["raw_data"]) == record
        assert decoded["finding_info"]["uid"] == alert.id
        DetectionFinding.model_validate(decoded)
        DetectionFinding.model_validate(to_ocsf(alert))

    formats: tuple[Format, ...] = ("native", "ocsf")
    for fmt in formats:
        array = parse(ARRAY_ENCODERS[fmt](alerts))
        assert isinstance(array, list)
        assert len(array) == count
