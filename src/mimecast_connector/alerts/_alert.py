"""The alert: one typed, ATT&CK-mapped detection, with a stable identity.

An :class:`Alert` is built from a validated record and its rule verdict. Its fields are the
``native`` output format, in order; ``raw`` is the record's own JSON bytes, which the encoder
writes back unchanged.

Identity (``alert-rules.md`` §5): ``id`` is a hash of the tenant, the category, the event time
in UTC seconds and every field the format check decodes (for an impersonation log that
includes Mimecast's own ``id``; attachments of one message differ by file name and hash, clicks
of one URL by user). A rejection is identified by Mimecast's own ``id`` alone (with its time). The values are hashed as decoded, the time as a number, so ``+0000``,
``Z`` and ``+00:00`` spellings of one moment, key order and whitespace do not matter, and API
1.0 and API 2.0 give the same ids.

Two records equal in all of these are the same record as far as anyone can tell, and get one
id: a record Mimecast serves twice (a page repeated, or shifted by records arriving while a
window is paged) is delivered once. The price: two truly separate events identical in every
field within one second (a double click) are one alert.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from hashlib import blake2b
from operator import attrgetter
from typing import cast

import msgspec

from mimecast_connector._categories import LOG_CATEGORIES, Category
from mimecast_connector.records import (
    AttachmentLog,
    ClickLog,
    ImpersonationLog,
    Record,
    RejectionLog,
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
    senderIp: str | None
    rejectionType: str | None
    rejectionCode: str | None
    rejectionInfo: str | None
    raw: msgspec.Raw


_key_encoder = msgspec.json.Encoder()

#: The fields that tell two records of one category apart, besides the event time: every
#: field the format check decodes. Fields it does not decode are free text or evidence
#: (``tagMap``, ``impersonationResults``) that never differ alone between two events.
IDENTITY_FIELDS: dict[Category, tuple[str, ...]] = {
    **{
        category: tuple(f for f in model.__struct_fields__ if f != category.time_field)
        for category, model in (
            (Category.ATTACHMENT, AttachmentLog),
            (Category.IMPERSONATION, ImpersonationLog),
            (Category.URL, ClickLog),
        )
    },
    # Mimecast's own id names one rejection (mta-rejections.md §2.3); its other fields are the
    # text of the refusal, which Mimecast may reword without it being another event.
    Category.REJECTION: ("id",),
}


@functools.cache
def identity_getter(category: Category) -> Callable[[Record], bytes]:
    """Built once per category and shared: a record's identity fields, encoded (JSON array)
    as bytes."""
    fields = IDENTITY_FIELDS[category]
    getter = attrgetter(*fields)
    encode = _key_encoder.encode
    if len(fields) == 1:  # attrgetter of one name gives the value, not a tuple
        return lambda record: encode((getter(record),))
    return lambda record: encode(getter(record))


_IDENTITY = {category: identity_getter(category) for category in LOG_CATEGORIES}


def identity_key(category: Category, record: Record, epoch: int) -> bytes:
    """The event's second and the fields that make one record of ``category`` distinct."""
    return b"%d\x1f%b" % (epoch, _IDENTITY[category](record))


def id_prefix(tenant: str, category: Category) -> bytes:
    """What every id of one tenant and category is hashed with."""
    return f"{tenant}\x1f{category.value}\x1f".encode()


def alert_id(tenant: str, category: Category, key: bytes) -> str:
    """The stable id: 32 hex characters of BLAKE2b-128 over tenant, category and key."""
    return _digest(id_prefix(tenant, category), key)


def _digest(prefix: bytes, key: bytes) -> str:
    # The trailing "0" is the version of this id scheme.
    return blake2b(b"%b%b\x1f0" % (prefix, key), digest_size=16).hexdigest()


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
        None, None, None, None, raw,
    )  # fmt: skip


def _impersonation(
    id_: str, tenant: str, record: Record, utc: str, typed: Typed, raw: msgspec.Raw
) -> Alert:
    i = cast(ImpersonationLog, record)
    return Alert(
        id_, tenant, "impersonation", typed.alert_type, typed.threat_id, typed.threat_name,
        utc, typed.severity, i.senderAddress, i.recipientAddress,
        i.subject, i.messageId, None, None, None, i.identifiers, i.action, None,
        ip_or_none(i.senderIpAddress), None, None, None, raw,
    )  # fmt: skip


def _url(id_: str, tenant: str, record: Record, utc: str, typed: Typed, raw: msgspec.Raw) -> Alert:
    u = cast(ClickLog, record)
    return Alert(
        id_, tenant, "url", typed.alert_type, typed.threat_id, typed.threat_name,
        utc, typed.severity, u.fromUserEmailAddress, u.userEmailAddress,
        u.subject, u.messageId, u.url, None, None, None, u.action, u.route,
        ip_or_none(u.sendingIp), None, None, None, raw,
    )  # fmt: skip


def _rejection(
    id_: str, tenant: str, record: Record, utc: str, typed: Typed, raw: msgspec.Raw
) -> Alert:
    r = cast(RejectionLog, record)
    code = r.type if r.type is None or isinstance(r.type, str) else str(r.type)
    return Alert(
        id_, tenant, "rejection", typed.alert_type, typed.threat_id, typed.threat_name,
        utc, typed.severity, r.fromAddress, r.toAddress,
        None, None, None, None, None, None, None, None,
        ip_or_none(r.ipAddress), r.description, code, r.info, raw,
    )  # fmt: skip


@functools.lru_cache(maxsize=4096)
def ip_or_none(value: str | None) -> str | None:
    """``value`` if it is an IPv4 or IPv6 address (as Mimecast wrote it), else None: URL logs
    say ``Internal IP`` for mail from inside, and a field named for an address must hold one
    (a SIEM that types it as an IP would refuse the alert). The record keeps the text."""
    if not value:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


#: The alert builder of each category; category-specific fields are null where a log has none.
BUILDERS: dict[Category, AlertBuilder] = {
    Category.ATTACHMENT: _attachment,
    Category.IMPERSONATION: _impersonation,
    Category.URL: _url,
    Category.REJECTION: _rejection,
}
