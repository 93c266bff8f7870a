"""``alerts.shorten``: an alert too long for a sink's message limit, shortened in its own format."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimecast_connector import Category
from mimecast_connector.alerts import ONE_ENCODERS, TRUNCATED, Alert, Format, shorten
from tests.sinks.helpers import alerts_of, mixed
from tests.unit import samples

FORMATS: tuple[Format, ...] = ("native", "ocsf", "ecs", "cef")
#: What a SIEM keys and maps an alert by: never changed by shortening.
FIXED = ("id", "tenant", "category", "alertType", "threatId", "threatName", "time", "severity")


def impersonation() -> Alert:
    [alert] = alerts_of(Category.IMPERSONATION, samples.IMPERSONATION_LINE)
    return alert


def huge(alert: Alert, size: int = 200_000) -> Alert:
    """``alert`` with a subject and URL of ``size`` characters (quotes, equals signs, line
    breaks and control characters in them) and a record of about twice that."""
    text = ('a"b=c\\d\n\x01é' * (size // 10 + 1))[:size]
    record = json.dumps({"subject": text, "url": text}).encode()
    return msgspec.structs.replace(alert, subject=text, url=text, raw=msgspec.Raw(record))


def decoded(message: bytes, format: Format) -> dict[str, Any]:
    """A JSON format's document, or a CEF line's extension as key -> value (unescaped)."""
    if format != "cef":
        document: dict[str, Any] = json.loads(message)
        return document
    text = message.decode()
    extension = text.split("|", 7)[7]
    out: dict[str, Any] = {}
    key = None
    value: list[str] = []
    i = 0
    while i < len(extension):  # keys are [A-Za-z0-9]+ before an unescaped "="
        ch = extension[i]
        if ch == "\\":
            value.append({"n": "\n", "r": "\r"}.get(extension[i + 1], extension[i + 1]))
            i += 2
            continue
        if ch == "=":
            head, _, new_key = "".join(value).rpartition(" ")
            if key is not None:
                out[key] = head
            key, value = new_key, []
        else:
            value.append(ch)
        i += 1
    if key is not None:
        out[key] = "".join(value)
    return out


def fixed_of(message: bytes, format: Format, alert: Alert) -> bytes:
    """The encoding of what must survive: the same in the full and the shortened message."""
    document = decoded(message, format)
    if format == "cef":
        return json.dumps([document["externalId"], document["cs3"], document["rt"]]).encode()
    if format == "native":
        return json.dumps([document[k] for k in FIXED]).encode()
    if format == "ocsf":
        return json.dumps(
            [document["finding_info"]["uid"], document["time"], document["severity_id"]]
        ).encode()
    return json.dumps([document["event"]["id"], document["@timestamp"]]).encode()


@pytest.mark.parametrize("format", FORMATS)
def test_an_alert_that_fits_is_encoded_as_it_is(format: Format) -> None:
    """Nothing changes for an alert within the limit: the same bytes as the format's encoder."""
    encode = ONE_ENCODERS[format]
    for alert in mixed():
        assert shorten(alert, encode, 64 * 1024) == encode(alert)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("limit", [4_000, 16_000, 64 * 1024])
def test_a_huge_alert_is_cut_to_the_limit_and_marked(format: Format, limit: int) -> None:
    """A 200,000-character subject and URL: the message is at most the limit, still valid in its
    format, keeps the alert's identity, says it was cut, and uses most of the room."""
    encode = ONE_ENCODERS[format]
    alert = huge(impersonation())
    message = shorten(alert, encode, limit)
    assert message is not None
    assert len(message) <= limit
    assert len(message) > limit * 0.9  # as long as fits, not a stub
    assert fixed_of(message, format, alert) == fixed_of(encode(impersonation()), format, alert)
    assert TRUNCATED in message.decode()
    if format == "native":
        document = decoded(message, format)
        assert document["raw"] == {"truncated": True, "bytes": len(alert.raw)}
        assert document["subject"].endswith(TRUNCATED)
        assert document["subject"].startswith('a"b=c\\d\n\x01é')


def test_the_record_alone_goes_first() -> None:
    """When dropping the record is enough, the texts are left whole."""
    alert = msgspec.structs.replace(
        impersonation(), raw=msgspec.Raw(json.dumps({"x": "y" * 100_000}).encode())
    )
    message = shorten(alert, ONE_ENCODERS["native"], 8_000)
    assert message is not None
    document = json.loads(message)
    assert document["raw"] == {"truncated": True, "bytes": len(alert.raw)}
    assert document["subject"] == alert.subject
    assert TRUNCATED not in message.decode()


def test_identifiers_are_cut_as_a_whole() -> None:
    """Thousands of identifiers are cut to the bound in all, the last one saying so."""
    alert = msgspec.structs.replace(
        impersonation(), identifiers=[f"identifier-{i}" for i in range(20_000)]
    )
    message = shorten(alert, ONE_ENCODERS["native"], 8_000)
    assert message is not None
    assert len(message) <= 8_000
    identifiers = json.loads(message)["identifiers"]
    assert identifiers[:2] == ["identifier-0", "identifier-1"]
    assert identifiers[-1].endswith(TRUNCATED)
    assert len(identifiers) < 1_000


@pytest.mark.parametrize("format", FORMATS)
def test_a_limit_below_the_alerts_fixed_part_gives_none(format: Format) -> None:
    """Nothing fits in fewer bytes than the alert's own id, type and time take: None (the sink
    refuses, saying so)."""
    assert shorten(huge(impersonation()), ONE_ENCODERS[format], 200) is None


@settings(max_examples=60, deadline=None)
@given(
    subject=st.text(min_size=0, max_size=3_000),
    url=st.text(min_size=0, max_size=3_000),
    limit=st.integers(min_value=1_000, max_value=12_000),
    format=st.sampled_from(FORMATS),
)
def test_any_text_is_cut_within_the_limit_or_refused(
    subject: str, url: str, limit: int, format: Format
) -> None:
    """Whatever the texts (any code point, escapes that grow them), the result is at most the
    limit and decodes in its format with the alert's identity, or None only when even the
    shortest alert is too long."""
    encode = ONE_ENCODERS[format]
    alert = msgspec.structs.replace(impersonation(), subject=subject, url=url)
    message = shorten(alert, encode, limit)
    if message is None:
        # The shortest it can be: the record a note of its size, every text just the mark.
        texts = ("sender", "recipient", "subject", "messageId", "url", "action", "route")
        bare = msgspec.structs.replace(
            alert,
            identifiers=[TRUNCATED],
            raw=msgspec.Raw(b'{"truncated":true,"bytes":%d}' % len(alert.raw)),
            **{name: TRUNCATED for name in texts if getattr(alert, name)},
        )
        assert len(encode(bare)) > limit
        return
    assert len(message) <= limit
    assert fixed_of(message, format, alert) == fixed_of(encode(impersonation()), format, alert)
