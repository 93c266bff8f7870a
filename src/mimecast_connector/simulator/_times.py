"""Time strings as the simulator reads and writes them, in one place.

Three formats meet here (``shared/docs/mimecast-api.md``): record and filter times in ISO 8601
with an offset (§4.1: ``+0000``, ``Z`` and ``+00:00`` all occur; records are always written with
``+0000``), and the API 1.0 ``x-mc-date`` header in RFC 1123 style ending ``UTC`` or ``GMT`` (§2.1).
The SIEM logs add three (``mta-rejections.md`` §2.1, §2.2): API 1.0 rows written in any offset
(``2021-10-19T07:06:40+0100``), presigned-link expiry times with milliseconds and ``Z``, and
day-granular ``YYYY-MM-DD`` filters. Everything is UTC epoch seconds inside the simulator.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})")
_MONTHS = {  # literal, not calendar.month_abbr: that one follows the process locale
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_MC_DATE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) "
    r"(\d{2}):(\d{2}):(\d{2}) (?:UTC|GMT)"
)


_MINUTES: dict[int, str] = {}  # minute -> "YYYY-MM-DDTHH:MM:"; strftime is the slow part
_MINUTES_LIMIT = 100_000


def format_time(epoch: float) -> str:
    """``epoch`` as a record time string, e.g. ``2025-03-04T09:12:45+0000``."""
    minute, second = divmod(math.floor(epoch), 60)
    prefix = _MINUTES.get(minute)
    if prefix is None:
        if len(_MINUTES) >= _MINUTES_LIMIT:
            _MINUTES.clear()
        prefix = _MINUTES[minute] = time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))
    return f"{prefix}{second:02d}+0000"


def parse_time(value: object) -> float | None:
    """Epoch seconds of an ISO 8601 date-time with an offset, or None if it is not one."""
    if not isinstance(value, str) or _ISO.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:  # the shape is right but a part is out of range: month 13, hour 99
        return None


def parse_mc_date(value: str) -> float | None:
    """Epoch seconds of an ``x-mc-date`` value (``Tue, 24 Nov 2015 12:50:11 UTC``), or None."""
    match = _MC_DATE.fullmatch(value)
    if match is None or match[2] not in _MONTHS:
        return None
    day, month, year, hour, minute, second = match.groups()
    try:
        moment = datetime(
            int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError:
        return None
    return moment.timestamp()


def epoch_of(moment: datetime) -> float:
    """Epoch seconds of an aware datetime; a naive one is refused rather than guessed at."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment!r} has no time zone; pass an aware datetime (UTC)")
    return moment.timestamp()


_DAY_SECONDS = 86_400
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def format_offset_time(epoch: float, offset_minutes: int) -> str:
    """``epoch`` as an API 1.0 SIEM row time in the given UTC offset: ``2021-10-19T07:06:40+0100``."""
    local = math.floor(epoch) + offset_minutes * 60
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(local))}{sign}{hours:02d}{minutes:02d}"


def format_iso_ms(epoch: float) -> str:
    """``epoch`` as ``2026-06-05T11:50:06.389Z``, the way SIEM link expiries are written."""
    millis = math.floor(epoch * 1000)
    seconds, ms = divmod(millis, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{ms:03d}Z"


def day_of(epoch: float) -> int:
    """The UTC day number (days since 1970-01-01) that ``epoch`` falls on."""
    return math.floor(epoch) // _DAY_SECONDS


def parse_day(value: object) -> int | None:
    """The UTC day number of a ``YYYY-MM-DD`` string, or None if it is not one."""
    if not isinstance(value, str) or _DAY.fullmatch(value) is None:
        return None
    try:
        moment = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:  # month 13, day 32
        return None
    return day_of(moment.timestamp())
