"""The alert: one typed, ATT&CK-mapped detection, with a stable identity.

An :class:`Alert` is built from a validated record and its rule verdict. Its fields are the
``native`` output format, in order; ``raw`` is the record's own JSON bytes, which the encoder
writes back unchanged.

Identity (``alert-rules.md`` §5): ``id`` is a hash of the tenant, the category, the event time
in UTC seconds, the fields that tell two events of one message apart, and an occurrence number
(see :class:`IdentityCounter`). Impersonation logs carry Mimecast's own stable ``id``; attachment
logs are told apart by file name and hash, URL logs by clicking user, URL and creation method.
The time is hashed as a number, so ``+0000``, ``Z`` and ``+00:00`` spellings of one moment give
one id, and so do API 1.0 and API 2.0.
"""

from __future__ import annotations

from collections.abc import Callable
from hashlib import blake2b
from operator import attrgetter
from typing import cast

import msgspec

from mimecast_connector._categories import Category
from mimecast_connector.records import (
    AttachmentLog,
    ClickLog,
    ImpersonationLog,
    Record,
    format_utc,
)
from mimecast_connector.rules import Typed


class Alert(msgspec.Struct, gc=False):
    """One alert. Field order is the ``native`` format's key order."""

    id: str
    tenant: str
    category: str
    alertType: str
    threatId: str
    threatName: str
    time: str
    severity: str
    sender: str | None
    recipient: str | None
    subject: str | None
    messageId: str | None
    url: str | None
    fileName: str | None
    fileHash: str | None
    identifiers: list[str] | None
    action: str | None
    route: str | None
    raw: msgspec.Raw


_key_encoder = msgspec.json.Encoder()

#: The fields that tell two events of one category apart, besides the event time.
IDENTITY_FIELDS: dict[Category, tuple[str, ...]] = {
    Category.ATTACHMENT: (
        "messageId",
        "senderAddress",
        "recipientAddress",
        "fileName",
        "fileHash",
        "fileType",
    ),
    Category.IMPERSONATION: ("id",),
    Category.URL: (
        "messageId",
        "userEmailAddress",
        "fromUserEmailAddress",
        "url",
        "creationMethod",
        "action",
    ),
}


def identity_getter(category: Category) -> Callable[[Record], bytes]:
    """Built once per category: a record's identity fields, encoded (JSON array) as bytes."""
    getter = attrgetter(*IDENTITY_FIELDS[category])
    encode = _key_encoder.encode
    if len(IDENTITY_FIELDS[category]) == 1:
        return lambda record: encode((getter(record),))
    return lambda record: encode(getter(record))


_IDENTITY = {category: identity_getter(category) for category in Category}


def identity_key(category: Category, record: Record, epoch: int) -> bytes:
    """The fields that make one event of ``category`` distinct, with its second (impersonation
    logs are identified by Mimecast's ``id`` alone)."""
    fields = _IDENTITY[category](record)
    if category is Category.IMPERSONATION:
        return fields
    return b"%d\x1f%b" % (epoch, fields)


class IdentityCounter:
    """Numbers records that are identical in every identity field, in the order they are read.

    Two clicks of one URL by one user in the same second are two events that no field tells
    apart; the second gets occurrence 1. Counts are kept per second for the seconds within
    ``horizon`` of the newest one read: records arrive oldest first, so identical records are
    never further apart than that, memory stays bounded however long the window, and re-reading
    an overlapping window numbers them the same way again.
    """

    __slots__ = ("_by_second", "_horizon", "_newest")

    def __init__(self, horizon: int = 300) -> None:
        self._horizon = horizon
        self._newest = -1
        self._by_second: dict[int, dict[bytes, int]] = {}

    def occurrence(self, key: bytes, second: int) -> int:
        counts = self._by_second.get(second)
        if counts is None:
            counts = self._by_second[second] = {}
            if second > self._newest:
                self._newest = second
                if len(self._by_second) > 2 * self._horizon:
                    oldest = second - self._horizon
                    self._by_second = {s: c for s, c in self._by_second.items() if s >= oldest}
        seen = counts.get(key, 0)
        counts[key] = seen + 1
        return seen


def id_prefix(tenant: str, category: Category) -> bytes:
    """What every id of one tenant and category is hashed with."""
    return f"{tenant}\x1f{category.value}\x1f".encode()


def alert_id(tenant: str, category: Category, key: bytes, occurrence: int) -> str:
    """The stable id: 32 hex characters of BLAKE2b over tenant, category, key and occurrence."""
    return _digest(id_prefix(tenant, category), key, occurrence)


def _digest(prefix: bytes, key: bytes, occurrence: int) -> str:
    return blake2b(b"%b%b\x1f%d" % (prefix, key, occurrence), digest_size=16).hexdigest()


#: An alert's ``time``: RFC 3339 in UTC with ``Z`` (the records' own formatter).
format_alert_time = format_utc


AlertBuilder = Callable[[str, str, Record, str, Typed, msgspec.Raw], Alert]
"""``(id, tenant, record, event time as RFC 3339 UTC, verdict, raw) -> Alert``, per category."""


def _attachment(
    id_: str, tenant: str, record: Record, utc: str, typed: Typed, raw: msgspec.Raw
) -> Alert:
    a = cast(AttachmentLog, record)
    return Alert(
        id_, tenant, "attachment", typed.alert_type, typed.threat_id, typed.threat_name,
        utc, typed.severity, a.senderAddress, a.recipientAddress,
        a.subject, a.messageId, None, a.fileName, a.fileHash, None, a.actionTriggered, a.route,
        raw,
    )  # fmt: skip


def _impersonation(
    id_: str, tenant: str, record: Record, utc: str, typed: Typed, raw: msgspec.Raw
) -> Alert:
    i = cast(ImpersonationLog, record)
    return Alert(
        id_, tenant, "impersonation", typed.alert_type, typed.threat_id, typed.threat_name,
        utc, typed.severity, i.senderAddress, i.recipientAddress,
        i.subject, i.messageId, None, None, None, i.identifiers, i.action, None,
        raw,
    )  # fmt: skip


def _url(id_: str, tenant: str, record: Record, utc: str, typed: Typed, raw: msgspec.Raw) -> Alert:
    u = cast(ClickLog, record)
    return Alert(
        id_, tenant, "url", typed.alert_type, typed.threat_id, typed.threat_name,
        utc, typed.severity, u.fromUserEmailAddress, u.userEmailAddress,
        u.subject, u.messageId, u.url, None, None, None, u.action, u.route,
        raw,
    )  # fmt: skip


#: The alert builder of each category; category-specific fields are null where a log has none.
BUILDERS: dict[Category, AlertBuilder] = {
    Category.ATTACHMENT: _attachment,
    Category.IMPERSONATION: _impersonation,
    Category.URL: _url,
}
