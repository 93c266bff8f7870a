"""An alert cut down to fit a sink's limit on one message, instead of a batch refused.

A sink with a limit per message (syslog's ``max_message_bytes``, a Kafka broker's
``message.max.bytes``) cannot carry an alert whose encoding is longer. Refusing it stops
delivery for every tenant until a person raises the limit, and one email with a subject or a
URL of a few hundred kilobytes (anyone can send one) would do that; a receiver's own limit
(rsyslog's ``maxMessageSize``) may not be ours to raise. So such an alert is sent shortened,
in the same format, and marked as such:

1. the record as Mimecast sent it (``raw``) is replaced by ``{"truncated": true, "bytes": N}``;
2. if that is not enough, every text taken from the record (subject, URL, file name,
   addresses, message id, identifiers, rejection texts, action, route) longer than a bound
   is cut there and ends in :data:`TRUNCATED`; the bound is the largest that fits, found by
   bisection on the encoded length (escaping included).

The alert's id, tenant, time, type, technique and severity are never changed, so a SIEM still
deduplicates and maps it. If even bound 0 does not fit, nothing can: the caller refuses.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from mimecast_connector.alerts._alert import Alert

#: What ends a text that was cut.
TRUNCATED = "…[truncated]"

#: The alert's fields that hold text taken from a record, one value each (``senderIp`` is an
#: address, checked and short: cut, it would be refused where an IP field is typed).
_TEXTS = (
    "sender",
    "recipient",
    "subject",
    "messageId",
    "url",
    "fileName",
    "action",
    "route",
    "rejectionType",
    "rejectionCode",
    "rejectionInfo",
)


def _cut(text: str, bound: int) -> str:
    return text if len(text) <= bound else text[:bound] + TRUNCATED


def _identifiers(items: list[str], bound: int) -> list[str]:
    """At most ``bound`` characters of identifiers in all (each cut to it), then the mark."""
    kept: list[str] = []
    room = bound
    for item in items:
        if room <= 0:
            kept.append(TRUNCATED)
            break
        kept.append(_cut(item, room))
        room -= len(item)
    return kept


def _bounded(alert: Alert, bound: int) -> Alert:
    changes: dict[str, object] = {
        name: _cut(value, bound)
        for name in _TEXTS
        if isinstance(value := getattr(alert, name), str) and len(value) > bound
    }
    if alert.identifiers is not None and sum(map(len, alert.identifiers)) > bound:
        changes["identifiers"] = _identifiers(alert.identifiers, bound)
    return msgspec.structs.replace(alert, **changes) if changes else alert


def shorten(alert: Alert, encode: Callable[[Alert], bytes], limit: int) -> bytes | None:
    """``encode(alert)`` if it is at most ``limit`` bytes; else the encoding of the alert
    shortened as the module says, as long as possible within ``limit``; None if even the
    shortest does not fit."""
    encoded = encode(alert)
    if len(encoded) <= limit:
        return encoded
    stub = b'{"truncated":true,"bytes":%d}' % len(alert.raw)
    alert = msgspec.structs.replace(alert, raw=msgspec.Raw(stub))
    encoded = encode(alert)
    if len(encoded) <= limit:
        return encoded
    longest = max(
        (len(v) for name in _TEXTS if isinstance(v := getattr(alert, name), str)), default=0
    )
    longest = max(longest, sum(map(len, alert.identifiers or ())))
    best = encode(_bounded(alert, 0))
    if len(best) > limit:
        return None
    low, high = 0, longest  # ``low`` fits; the full texts (``longest``) did not
    while high - low > 1:
        middle = (low + high) // 2
        candidate = encode(_bounded(alert, middle))
        if len(candidate) <= limit:
            low, best = middle, candidate
        else:
            high = middle
    return best
