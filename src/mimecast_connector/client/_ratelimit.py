"""Pacing one tenant's calls so that Mimecast's quota is spent evenly, not run into.

Mimecast counts its quota per API user, across every endpoint (``mimecast-api.md`` §8.3), so
one :class:`RateLimiter` serves all three categories of a tenant. It learns from the
``X-RateLimit-*`` headers of every response:

* while ``Remaining`` is above the low-water mark, calls go out at once;
* at or below it, calls are spaced by the time Mimecast needs to put one call back
  (``X-RateLimit-Reset``), so the bucket drains no faster than it fills;
* at zero, or after a 429, every call of the tenant waits until the reset.

Waits are capped at ``max_wait``; the client's retry deadline bounds how often that happens.
"""

from __future__ import annotations

from collections.abc import Mapping

from mimecast_connector._clock import Clock, SystemClock

#: ``X-RateLimit-Reset`` values above this are absolute epoch milliseconds (year 2001 onwards);
#: below it they are the documented relative milliseconds. Some clients read it as absolute.
_EPOCH_MS_FLOOR = 1e12
#: Values between this and the floor above are absolute epoch seconds.
_EPOCH_S_FLOOR = 1e9


def parse_reset(
    value: str | None, *, now: float, default: float = 1.0, cap: float = 300.0
) -> float:
    """Seconds to wait for an ``X-RateLimit-Reset`` header value, within ``[0, cap]``.

    The documented meaning is milliseconds until at least one call is put back; a value that
    can only be an absolute epoch time (in ms or s) is read as one. ``now`` is wall-clock
    epoch seconds. A missing or unreadable value gives ``default``.
    """
    if value is None:
        return default
    try:
        number = float(value.strip())
    except ValueError:
        return default
    if number != number or number < 0:  # NaN or negative
        return default
    if number >= _EPOCH_MS_FLOOR:
        seconds = number / 1000.0 - now
    elif number >= _EPOCH_S_FLOOR:
        seconds = number - now
    else:
        seconds = number / 1000.0
    return min(max(seconds, 0.0), cap)


class RateLimiter:
    """Shared by every category of one tenant; single event loop, no locks needed."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        low_water: float = 0.1,
        max_wait: float = 300.0,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self._low_water = low_water
        self._max_wait = max_wait
        self._limit: int | None = None
        self._remaining: int | None = None
        self._interval = 0.0  # seconds between calls while pacing
        self._blocked_until = 0.0  # monotonic
        self._next_slot = 0.0  # monotonic: when the next paced call may go
        self.waited = 0.0  # total seconds spent waiting, for metrics

    async def acquire(self) -> float:
        """Wait until the next call may go, and count it against the known remaining quota;
        return the seconds waited (0.0 when the call went at once)."""
        now = self._clock.monotonic()
        start = max(now, self._blocked_until)
        if self._pacing():
            start = max(start, self._next_slot)
            self._next_slot = start + self._interval
        if self._remaining is not None:
            # Count the call now, so that concurrent callers see the quota shrink before
            # the responses arrive.
            self._remaining = max(0, self._remaining - 1)
        delay = min(start - now, self._max_wait)
        if delay > 0:
            self.waited += delay
            await self._clock.sleep(delay)
            return delay
        return 0.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the quota from the ``X-RateLimit-*`` headers of a response."""
        limit = _int(headers.get("x-ratelimit-limit"))
        remaining = _int(headers.get("x-ratelimit-remaining"))
        if limit is not None:
            self._limit = limit
        if remaining is None:
            return
        self._remaining = remaining
        reset = parse_reset(
            headers.get("x-ratelimit-reset"), now=self._clock.time(), cap=self._max_wait
        )
        self._interval = reset
        if remaining <= 0:
            self.block(reset)

    def block(self, seconds: float) -> None:
        """Hold every call of this tenant for ``seconds`` (after a 429 or an empty quota)."""
        until = self._clock.monotonic() + min(max(seconds, 0.0), self._max_wait)
        self._blocked_until = max(self._blocked_until, until)
        self._remaining = None if self._remaining is None else 0

    def quota(self) -> tuple[int | None, int | None, float]:
        """What the headers last said: calls remaining, the limit, and the seconds Mimecast
        needs to put one call back (None, None while no header was seen)."""
        return self._remaining, self._limit, self._interval

    def _pacing(self) -> bool:
        if self._remaining is None or self._interval <= 0:
            return False
        floor = max(1.0, (self._limit or 0) * self._low_water)
        return self._remaining <= floor


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
