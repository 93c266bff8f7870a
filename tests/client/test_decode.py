"""Page decoding: the documented shape, the lenient path for lone surrogates, nothing silently empty."""

from __future__ import annotations

import pytest

from mimecast_connector import Category, UpstreamFormatError
from mimecast_connector.client import MimecastClient
from mimecast_connector.client._client import _GiveUp, _pagination, _records_of

GOOD = b'{"date":"2025-03-04T09:12:45+0000","scanResult":"malicious","url":"https://a.example"}'
BAD = b'{"date":"2025-03-04T09:12:45+0000","scanResult":"malicious","url":"u","subject":"\\ud800"}'


def page(*records: bytes, extra: bytes = b"") -> bytes:
    return (
        b'{"meta":{"pagination":{"next":"n2"}},"data":[{"clickLogs":['
        + b",".join(records)
        + b"]}]"
        + extra
        + b',"fail":[]}'
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"data":"x"}',
        b'{"data":[{"clickLogs":5}]}',
        b'{"data":[{"clickLogs":[{"a":"\\ud800"}]}]',
        b"<html>",
    ],
    ids=["data-not-array", "list-not-array", "truncated-with-surrogate", "html"],
)
def test_bodies_of_the_wrong_shape_are_format_errors_not_empty_pages(body: bytes) -> None:
    """A body that is not the documented page is refused, never read as a page without records."""
    with pytest.raises(_GiveUp) as caught:
        MimecastClient._decode_page(Category.URL, body)
    assert caught.value.verdict.error is UpstreamFormatError


def test_a_lone_surrogate_record_does_not_sink_its_page() -> None:
    """With one record carrying a lone surrogate escape, the page still decodes, records and paging intact."""
    (decoded, utf8), fail = MimecastClient._decode_page(Category.URL, page(GOOD, BAD, GOOD))
    records = _records_of(decoded)
    assert len(records) == 3
    assert _pagination(decoded).next == "n2"
    assert b"\\ud800" in bytes(records[1])
    assert fail == []
    assert utf8


def test_line_breaks_between_tokens_become_spaces() -> None:
    """Raw CR/LF between JSON tokens are replaced, so every record fits on one output line."""
    (decoded, _), _ = MimecastClient._decode_page(Category.URL, page(GOOD.replace(b",", b",\r\n")))
    (record,) = _records_of(decoded)
    assert b"\n" not in bytes(record)
    assert b"\r" not in bytes(record)


def test_a_record_too_deep_to_decode_is_split_out_and_the_rest_survive() -> None:
    """A 100,000-deep record makes the page decoder recurse too far; the page is split without recursion."""
    deep = b"[" * 100_000 + b"]" * 100_000
    tricky = GOOD.replace(b'"https://a.example"', b'"https://a.example/[x],{y}\\"q\\""')
    hostile = GOOD[:-1] + b',"tagMap":' + deep + b"}"
    (decoded, _), fail = MimecastClient._decode_page(Category.URL, page(tricky, hostile, b"7"))
    records = [bytes(r) for r in _records_of(decoded)]
    assert records == [tricky, hostile, b"7"]
    assert _pagination(decoded).next == "n2"
    assert fail == []


def test_a_body_too_deep_outside_the_records_is_still_a_format_error() -> None:
    """Deep nesting in the envelope itself (not in a record) stays an UpstreamFormatError."""
    body = b'{"meta":' + b"[" * 100_000 + b"]" * 100_000 + b',"data":[],"fail":[]}'
    with pytest.raises(_GiveUp) as caught:
        MimecastClient._decode_page(Category.URL, body)
    assert caught.value.verdict.error is UpstreamFormatError
