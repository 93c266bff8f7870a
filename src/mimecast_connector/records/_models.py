"""Typed records: the format check of ``alert-rules.md`` §2.1, one record at a time.

Each TTP log record is decoded from its own raw JSON into a :mod:`msgspec` struct that names
the fields the pipeline reads, with their JSON types (the rejection log likewise). Fields the pipeline does not read are
not checked here (they stay, untouched, in the raw record that every alert carries), so a new
or odd field Mimecast adds tomorrow cannot turn a real threat into a dead letter.

Required, per category: the event time and the verdict, plus what identifies the event
(the URL of a click, the ``id`` of an impersonation log). Everything else is optional but,
when present and not null, must have its documented type.

:func:`validate` returns a :class:`Valid` record with its event time parsed, or an
:class:`Invalid` with the reason: a JSON path and the problem, for the dead-letter store.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import msgspec

from mimecast_connector._categories import LOG_CATEGORIES, Category


class AttachmentLog(msgspec.Struct, gc=False):
    """``attachmentLogs[]`` (``mimecast-api.md`` §5.3)."""

    date: str
    result: str
    senderAddress: str | None = None
    recipientAddress: str | None = None
    fileName: str | None = None
    fileType: str | None = None
    fileHash: str | None = None
    messageId: str | None = None
    subject: str | None = None
    route: str | None = None
    actionTriggered: str | None = None
    definition: str | None = None


class ImpersonationLog(msgspec.Struct, gc=False):
    """``impersonationLogs[]`` (``mimecast-api.md`` §6.3)."""

    id: str
    eventTime: str
    taggedMalicious: bool
    senderAddress: str | None = None
    recipientAddress: str | None = None
    subject: str | None = None
    definition: str | None = None
    hits: int | None = None
    identifiers: list[str] | None = None
    action: str | None = None
    taggedExternal: bool | None = None
    senderIpAddress: str | None = None
    messageId: str | None = None


class ClickLog(msgspec.Struct, gc=False):
    """``clickLogs[]`` (``mimecast-api.md`` §7.3). ``reason`` is read when present (§11.1)."""

    date: str
    scanResult: str
    url: str
    userEmailAddress: str | None = None
    fromUserEmailAddress: str | None = None
    ttpDefinition: str | None = None
    creationMethod: str | None = None
    reason: str | None = None
    subject: str | None = None
    action: str | None = None
    route: str | None = None
    messageId: str | None = None
    sendingIp: str | None = None
    category: str | None = None
    actions: str | None = None
    adminOverride: str | None = None
    userOverride: str | None = None
    userAwarenessAction: str | None = None


class RejectionLog(msgspec.Struct, gc=False):
    """``rejections[]`` of ``get-rejections`` (``mta-rejections.md`` §2.3).

    ``type`` is documented as an integer (Mimecast's number for the rejection kind); a string
    is taken too, since numbers drift to strings in Mimecast's other MTA data.
    """

    id: str
    created: str
    description: str | None = None
    info: str | None = None
    type: int | str | None = None
    fromAddress: str | None = None
    toAddress: str | None = None
    ipAddress: str | None = None


Record = AttachmentLog | ImpersonationLog | ClickLog | RejectionLog

_TYPES: dict[Category, type[Record]] = {
    Category.ATTACHMENT: AttachmentLog,
    Category.IMPERSONATION: ImpersonationLog,
    Category.URL: ClickLog,
    Category.REJECTION: RejectionLog,
}
DECODERS: dict[Category, msgspec.json.Decoder[Any]] = {
    category: msgspec.json.Decoder(model) for category, model in _TYPES.items()
}


Stamp = tuple[float, str]
"""An event time: ``(epoch seconds, RFC 3339 in UTC with Z)``; a plain tuple, it is per record."""


@dataclass(frozen=True, slots=True)
class Valid:
    """A record that passed the format check."""

    record: Record
    time: datetime  # the event time, in UTC


@dataclass(frozen=True, slots=True)
class Invalid:
    """A record that failed it; ``reason`` is ``"$.path: problem"``."""

    reason: str


_STAMPS: dict[str, Stamp | None] = {}
_HOURS: dict[str, float] = {}
_CACHE_LIMIT = 8192


def stamp(text: str) -> Stamp | None:
    """The :class:`Stamp` of an event-time string, or None if it does not parse.

    ``+0000``, ``Z`` and ``+00:00`` offsets all occur (``alert-rules.md`` §2.1); a time without
    an offset is refused, since guessing its zone could move an alert by hours.

    The hot path: Mimecast writes ``YYYY-MM-DDTHH:MM:SS+0000``. Once one time of an hour has
    been parsed in full, the rest of that hour only needs its minutes and seconds checked and
    added, with no datetime objects. Everything else is parsed in full (and cached).
    """
    if _fast_shape(text):
        hour = _HOURS.get(text[:13])
        if hour is not None:
            offset = _MINUTES_SECONDS.get(text[13:19])  # checks and converts ":MM:SS" at once
            if offset is not None:
                return hour + offset, text[:19] + "Z"
    return _full_stamp(text)


_MINUTES_SECONDS = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)}


def _fast_shape(text: str) -> bool:
    """``YYYY-MM-DDTHH:MM:SS+0000`` or ``…Z`` by length and suffix (the rest is checked later)."""
    length = len(text)
    return (length == 24 and text[19:] == "+0000") or (length == 20 and text[19] == "Z")


def _full_stamp(text: str) -> Stamp | None:
    try:
        return _STAMPS[text]
    except KeyError:
        pass
    try:
        moment: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    result: Stamp | None = None
    if moment is not None and moment.utcoffset() is not None:
        try:
            utc_moment = moment.astimezone(UTC)
            result = (utc_moment.timestamp(), format_utc(utc_moment))
        except (OverflowError, ValueError):  # e.g. 9999-12-31T23:59:59-01:00: past year 9999
            result = None
        if result is not None and _fast_shape(text) and utc_moment.microsecond == 0:
            if len(_HOURS) >= _CACHE_LIMIT:
                _HOURS.clear()
            _HOURS[text[:13]] = result[0] - utc_moment.minute * 60 - utc_moment.second
    if len(_STAMPS) >= _CACHE_LIMIT:
        _STAMPS.clear()
    _STAMPS[text] = result
    return result


def format_utc(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z``: ``2025-03-04T09:12:45Z`` (milliseconds only when there are)."""
    moment = moment.astimezone(UTC)
    if moment.microsecond >= 1000:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_event_time(text: str) -> datetime | None:
    """The UTC datetime of an event-time string, or None if it does not parse (see :func:`stamp`)."""
    found = stamp(text)
    return None if found is None else datetime.fromtimestamp(found[0], UTC)


Checker = Callable[["bytes | msgspec.Raw"], "tuple[Record, Stamp] | str"]
"""A category's format check: the record and its event time, or the reason it failed."""


@functools.cache
def make_checker(category: Category) -> Checker:
    """The format check of ``category``, built once and shared (the hot path calls it per
    record; thousands of streams hold one each)."""
    decode = DECODERS[category].decode
    field = category.time_field
    time_of = attrgetter(field)

    def check(raw: bytes | msgspec.Raw) -> tuple[Record, Stamp] | str:
        try:
            record: Record = decode(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            return decode_failure(exc, raw)
        text: str = time_of(record)
        found = stamp(text)
        if found is None:
            shown = text if len(text) <= 64 else text[:61] + "..."
            return f"$.{field}: not a valid time with a UTC offset: {shown!r}"
        return record, found

    return check


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def decode_failure(exc: msgspec.DecodeError | RecursionError, raw: bytes | msgspec.Raw) -> str:
    """The dead-letter reason of a record msgspec could not decode into its model: a field
    of the wrong type (``$.path: problem``), not JSON, or nested too deeply."""
    if isinstance(exc, msgspec.ValidationError):
        return _reason(str(exc))
    if isinstance(exc, RecursionError):
        return "$: nested too deeply to decode"
    if _SURROGATE.search(bytes(raw)):
        return "$: not valid JSON (a lone UTF-16 surrogate escape such as \\ud800)"
    return f"$: not valid JSON ({exc})"


_CHECKERS = {category: make_checker(category) for category in LOG_CATEGORIES}


def check_utf8(raw: bytes | msgspec.Raw) -> str | None:
    """The dead-letter reason of a record that is not UTF-8 (JSON must be), or None.

    msgspec checks UTF-8 only in the fields it decodes; the client checks whole pages, and a
    page that fails has each record checked with this.
    """
    try:
        bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"$: not valid JSON (not UTF-8 at byte {exc.start})"
    return None


def validate(category: Category, raw: bytes | msgspec.Raw) -> Valid | Invalid:
    """Decode and check one record of ``category`` (UTF-8 included)."""
    problem = check_utf8(raw)
    if problem is not None:
        return Invalid(problem)
    checked = _CHECKERS[category](raw)
    if isinstance(checked, str):
        return Invalid(checked)
    record, found = checked
    return Valid(record, datetime.fromtimestamp(found[0], UTC))


def _reason(message: str) -> str:
    """Turn msgspec's ``Expected `str`, got `int` - at `$.hits``` into ``$.hits: expected str, got int``."""
    problem, sep, where = message.rpartition(" - at ")
    if not sep:
        if message.startswith("Object missing required field"):
            name = message.split("`")[1] if "`" in message else "?"
            return f"$.{name}: required field missing"
        if message.startswith("Expected `object`"):
            return f"$: e{message.replace('`', '')[1:]} (a record must be an object)"
        return f"$: {message.replace('`', '')}"
    path = where.strip("`")
    if problem.startswith("Object missing required field"):
        name = problem.split("`")[1] if "`" in problem else "?"
        return f"{path}.{name}: required field missing"
    return f"{path}: {problem.replace('`', '')[0].lower()}{problem.replace('`', '')[1:]}"
