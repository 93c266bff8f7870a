"""SIEM receipt events: batch files read in pieces, and the chain that skips or types each row."""

from __future__ import annotations

import gzip
import json
import random
import zlib
from typing import Any

import msgspec
import pytest

from mimecast_connector.receipts import MAX_RECORD, BadFile, GzipLines, JsonArrayItems
from mimecast_connector.rules import load_table
from mimecast_connector.runner._chain import count, select_fresh
from mimecast_connector.runner._receipt_chain import ReceiptChain

TABLE = load_table()

ROWS: list[dict[str, Any]] = [
    {"n": i, "text": 'a "quoted" ] } , [ { \\ line' * (i % 3), "nested": {"l": [1, {"x": []}]}}
    for i in range(300)
]


def pieces(blob: bytes, size: int) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)]


def read_all(reader: GzipLines | JsonArrayItems, blob: bytes) -> None:
    """Feed ``blob`` whole, then end."""
    reader.feed(blob)
    reader.end()


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
def test_gzip_lines_come_out_whole_however_the_bytes_are_cut(size: int) -> None:
    """Every line of a gzip NDJSON file comes out once, whole, whatever the chunk size."""
    blob = gzip.compress(b"\n".join(json.dumps(r).encode() for r in ROWS) + b"\n\n")
    reader = GzipLines()
    lines = [line for chunk in pieces(blob, size) for line in reader.feed(chunk)]
    lines += reader.end()
    assert [json.loads(line) for line in lines] == ROWS
    assert reader.lines_read == len(ROWS)


def test_concatenated_gzip_members_are_read_on() -> None:
    """A file of several gzip members (appended batches) is one stream of lines."""
    first = gzip.compress(b'{"a":1}\n{"a":2}\n')
    second = gzip.compress(b'{"a":3}')
    reader = GzipLines()
    lines = reader.feed(first + second) + reader.end()
    assert lines == [b'{"a":1}', b'{"a":2}', b'{"a":3}']


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"<html><body>AccessDenied</body></html>", "not gzip"),
        (gzip.compress(b'{"a":1}\n' * 1000)[:-30], "truncated"),
        (b"", "truncated"),
    ],
    ids=["not-gzip", "cut-short", "empty"],
)
def test_a_bad_gzip_file_says_what_is_wrong(blob: bytes, reason: str) -> None:
    """Not gzip, cut short or empty: BadFile with a reason, never a partial silence."""
    with pytest.raises(BadFile, match=reason):
        read_all(GzipLines(), blob)


def test_a_file_without_line_breaks_is_refused_before_it_fills_memory() -> None:
    """A line over MAX_RECORD is refused while reading, not after holding the whole file."""
    compressor = zlib.compressobj(wbits=31)
    reader = GzipLines()
    fed = 0
    with pytest.raises(BadFile, match="not NDJSON"):  # noqa: PT012 - it is the loop that must stop
        while fed < 4 * MAX_RECORD:
            reader.feed(compressor.compress(b"x" * 65536) + compressor.flush(zlib.Z_SYNC_FLUSH))
            fed += 65536
    assert fed <= MAX_RECORD + 65536


@pytest.mark.parametrize("size", [1, 5, 333, 1 << 20])
def test_json_array_rows_come_out_whole_however_the_bytes_are_cut(size: int) -> None:
    """Every element of `data` comes out once, as its own bytes; other keys are skipped."""
    document = json.dumps({"type": "MTA", "data": ROWS, "after": [1, {"b": "]"}]}, indent=1)
    reader = JsonArrayItems()
    rows = [row for chunk in pieces(document.encode(), size) for row in reader.feed(chunk)]
    reader.end()
    assert [json.loads(row) for row in rows] == ROWS
    assert reader.items_read == len(ROWS)


def test_json_array_of_scalars_and_an_empty_array() -> None:
    reader = JsonArrayItems()
    assert reader.feed(b'{"data": [1, "two", null, true]}') == [b"1", b'"two"', b"null", b"true"]
    reader.end()
    empty = JsonArrayItems()
    assert empty.feed(b'{"type":"MTA","data":[]}') == []
    empty.end()


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b'{ "type" : "MTA", "data" : ', "truncated"),
        (b'{"type":"MTA","data":[{"a":1},{"a"', "truncated"),
        (b"", "empty"),
        (b"PK\x03\x04 zip bytes", "not a JSON object"),
        (b'{"data":[]} trailing', "after the end"),
    ],
)
def test_a_bad_json_file_says_what_is_wrong(blob: bytes, reason: str) -> None:
    with pytest.raises(BadFile, match=reason):
        read_all(JsonArrayItems(), blob)


# --- the chain -------------------------------------------------------------------------------


def event(n: int, action: str = "Acc", **fields: Any) -> bytes:
    """An API 2.0 receipt event (mta-rejections.md §2.1)."""
    record: dict[str, Any] = {
        "aggregateId": f"agg{n}",
        "processingId": f"proc{n}",
        "accountId": "CDEMO01",
        "timestamp": 1_764_580_012_345 + n,
        "action": action,
        "subtype": action,
        "type": "receipt",
        "direction": "Inbound",
        "senderEnvelope": "billing@paypa1-secure.example",
        "senderHeader": None,
        "senderIp": "198.51.100.23",
        "recipients": "cfo@demo.example.com",
        "messageId": None,
        "subject": None,
        "rejectionType": None,
        "rejectionCode": None,
        "rejectionInfo": None,
        "receiptErrors": None,
        "virusFound": None,
        "numberAttachments": "0",
    }
    record.update(fields)
    return msgspec.json.encode(record)


def spoofed(n: int, **fields: Any) -> bytes:
    base = {
        "rejectionType": "Anti-Spoofing Lockout",
        "rejectionCode": "550",
        "rejectionInfo": "Anti-Spoofing policy \u2013 Inbound not allowed",
    }
    base.update(fields)
    return event(n, "Rej", **base)


def test_accepted_and_held_rows_are_skipped_and_counted_without_ids() -> None:
    """Only rejections become alerts; other actions are counted by name, and get no id."""
    chain = ReceiptChain("acme", "2.0", TABLE)
    lines = [event(1), event(2), event(3, "Hld"), event(4, "Dlv"), spoofed(5)]
    handled = chain.process(lines, 0.0)
    assert handled.skipped == {"accepted": 2, "held": 1, "action dlv": 1}
    assert [a.alertType for a in handled.alerts] == ["Anti-Spoofing policy - Inbound not allowed"]
    assert len(handled.ids) == 1
    counts = count(select_fresh(handled, set()), len(lines))
    assert counts["dropped: accepted"] == 2
    assert counts["dropped: held"] == 1
    assert counts["duplicates"] == 0
    assert counts["alerts"] == 1


def test_a_rejection_alert_carries_the_row() -> None:
    """Sender, recipient, IP, the rejection's kind, code and text; the row as served; the time
    from epoch milliseconds; the id from processingId and the second."""
    chain = ReceiptChain("acme", "2.0", TABLE)
    line = spoofed(7, rejectionCode=550, recipients=["a@demo.example.com", "b@demo.example.com"])
    (alert,) = chain.process([line], 0.0).alerts
    assert (alert.category, alert.severity, alert.threatId) == ("receipt", "high", "T1598.003")
    assert alert.sender == "billing@paypa1-secure.example"
    assert alert.recipient == "a@demo.example.com, b@demo.example.com"
    assert (alert.senderIp, alert.rejectionType, alert.rejectionCode) == (
        "198.51.100.23",
        "Anti-Spoofing Lockout",
        "550",
    )
    assert alert.time == "2025-12-01T09:06:52.352Z"
    assert bytes(alert.raw) == line
    again = chain.process(
        [spoofed(7, rejectionInfo="ANTI-SPOOFING POLICY - INBOUND NOT ALLOWED")], 0.0
    )
    assert again.alerts[0].id == alert.id  # same processingId and second: the same event
    assert chain.process([spoofed(8)], 0.0).alerts[0].id != alert.id


def test_texts_are_tried_in_order_and_unmatched_ones_are_counted_by_rejection_type() -> None:
    chain = ReceiptChain("acme", "2.0", TABLE)
    lines = [
        spoofed(1, rejectionInfo=None, virusFound="Invalid Recipient"),
        spoofed(2, rejectionInfo="", virusFound=None, receiptErrors="Mail loop detected [x]"),
        spoofed(3, rejectionInfo="Greylisting", rejectionType="Greylisting"),
        event(4, "Rej", rejectionCode="0"),
    ]
    handled = chain.process(lines, 0.0)
    assert [a.alertType for a in handled.alerts] == ["Invalid Recipient", "Mail Loop Detected"]
    counts = count(select_fresh(handled, set()), len(lines))
    assert counts["dropped: unmatched rejection"] == 2
    assert counts["unmatched: Greylisting"] == 1
    assert counts["unmatched: (no description)"] == 1
    kept = ReceiptChain("acme", "2.0", TABLE, keep_unmatched_rejections=True)
    assert [a.alertType for a in kept.process(lines[2:], 0.0).alerts] == ["MTA Rejection"] * 2


def test_the_action_is_read_from_any_spelling_and_odd_rows_go_the_slow_way() -> None:
    """`subType` (the stream endpoint's spelling), a spaced key, an escaped value: all found;
    a row that is not JSON is dead-lettered with its reason, and the piece goes on."""
    chain = ReceiptChain("acme", "2.0", TABLE)
    stream = msgspec.json.decode(spoofed(1))
    del stream["action"], stream["subtype"]
    stream["subType"] = "Rej"
    lines = [
        msgspec.json.encode(stream),
        spoofed(2)
        .replace(b'"action":"Rej"', b'"action" : "\\u0052ej"')
        .replace(b'"subtype":"Rej",', b""),
        b'{"processingId": "p", "timestamp": "12x", "action": "Rej"}',
        b"not json at all",
        event(3, "rejected", rejectionInfo="Invalid Recipient"),
    ]
    handled = chain.process(lines, 99.0)
    assert len(handled.alerts) == 3
    reasons = [json.loads(line)["reason"] for _, line in handled.dead]
    assert reasons[0].startswith("$.timestamp: not epoch milliseconds")
    assert reasons[1].startswith("$: not valid JSON")
    assert sorted(when for _, when in handled.ids)[:2] == [99.0, 99.0]  # dead letters: now


def test_api_1_rows_delivery_files_and_row_identity() -> None:
    """1.0: receipt rows typed by RejInfo then Error; a delivery file's rows are never alerts,
    however they read; a row's identity is its bytes."""
    chain = ReceiptChain("acme", "1.0", TABLE)
    row = {
        "acc": "C0A0",
        "datetime": "2021-10-19T07:06:40+0100",
        "Act": "Rej",
        "IP": "203.0.113.5",
        "Sender": "x@evil.example",
        "Rcpt": ["a@demo.example.com"],
        "RejType": "Invalid Recipient Address",
        "RejCode": 550,
        "RejInfo": None,
        "Error": "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
    }
    line = msgspec.json.encode(row)
    accepted = msgspec.json.encode({**row, "Act": "Acc"})
    handled = chain.process([line, accepted], 0.0)
    (alert,) = handled.alerts
    assert (alert.alertType, alert.time, alert.recipient) == (
        "Invalid Recipient",
        "2021-10-19T06:06:40Z",
        "a@demo.example.com",
    )
    assert handled.skipped == {"accepted": 1}
    assert chain.process([line], 0.0).alerts[0].id == alert.id
    assert chain.process([line + b" "], 0.0).alerts[0].id != alert.id
    delivery = chain.process([line, accepted], 0.0, kind="delivery")
    assert (delivery.alerts, delivery.ids, delivery.skipped) == ([], [], {"delivery row": 2})


def test_action_labels_are_bounded() -> None:
    """A server inventing an action per row makes at most MAX_ACTION_LABELS counter names."""
    chain = ReceiptChain("acme", "2.0", TABLE)
    rng = random.Random(5)
    actions = ["".join(rng.choice("abcdefghij") for _ in range(8)) for _ in range(200)]
    handled = chain.process([event(i, a) for i, a in enumerate(actions)], 0.0)
    assert sum(handled.skipped.values()) == 200
    assert len(handled.skipped) <= 33
    assert "action (other)" in handled.skipped


def test_a_nested_action_key_cannot_hide_a_rejection() -> None:
    """`spamProcessingDetail` as an object with its own `action` before the row's: the row is
    read whole, and its own action (Rej) decides."""
    chain = ReceiptChain("acme", "2.0", TABLE)
    record = msgspec.json.decode(spoofed(1))
    row = {"spamProcessingDetail": {"action": "Acc", "spf": {"allow": False}}, **record}
    handled = chain.process([msgspec.json.encode(row)], 0.0)
    assert [a.alertType for a in handled.alerts] == ["Anti-Spoofing policy - Inbound not allowed"]
    accepted = {"spamInfo": "Rejected by nobody", **msgspec.json.decode(event(2))}
    assert chain.process([msgspec.json.encode(accepted)], 0.0).skipped == {"accepted": 1}
