"""The committer's counts of a page's delivered alerts (``Commit.tallies``)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from mimecast_connector.alerts import Alert
from mimecast_connector.runner._committer import tally
from mimecast_connector.state import PARTY_CHARS


def alert(time: str, alert_type: str, technique: str, sender: str | None, to: str | None) -> Alert:
    return Alert(
        "id", "acme", "url", alert_type, technique, "name", time, "high", sender, to,
        None, None, None, None, None, None, None, None, None, None, None, None, msgspec.Raw(b"{}"),
    )  # fmt: skip


def hour(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) // 3600


def test_alerts_are_counted_by_hour_type_technique_and_party() -> None:
    """Two hours, two types, senders and recipients (none and empty left out), each counted where it falls."""
    alerts = [
        alert("2026-10-01T12:05:00Z", "URL Protection", "T1598.003", "a@x", "u@acme"),
        alert("2026-10-01T12:59:59.500Z", "URL Protection", "T1598.003", "a@x", "v@acme"),
        alert("2026-10-01T13:00:00Z", "Malicious", "T1566", "b@x", None),
        alert("2026-10-01T12:30:00Z", "Malicious", "T1566", "", "u@acme"),
    ]
    counted = tally("url", alerts, 999)
    h12, h13 = hour("2026-10-01T12:00:00"), hour("2026-10-01T13:00:00")
    assert (counted.category, counted.hour_now) == ("url", 999)
    assert counted.hours == {
        (h12, "URL Protection", "T1598.003"): 2,
        (h12, "Malicious", "T1566"): 1,
        (h13, "Malicious", "T1566"): 1,
    }
    assert counted.parties == {
        (h12, "sender"): {"a@x": 2},
        (h12, "recipient"): {"u@acme": 2, "v@acme": 1},
        (h13, "sender"): {"b@x": 1},
    }


def test_a_huge_address_is_cut_and_those_cut_alike_add_up() -> None:
    """Two addresses that differ only past PARTY_CHARS count as one, cut."""
    long_a = "x" * PARTY_CHARS + "a@evil"
    long_b = "x" * PARTY_CHARS + "b@evil"
    alerts = [alert("2026-10-01T12:00:00Z", "T", "T1", s, None) for s in (long_a, long_b, "c@x")]
    [(key, senders)] = tally("url", alerts, 0).parties.items()
    assert key[1] == "sender"
    assert senders == {"x" * PARTY_CHARS: 2, "c@x": 1}
