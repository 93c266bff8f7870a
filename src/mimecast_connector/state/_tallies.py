"""Senders and recipients counted, as both stores keep them: one JSON object a row.

A page's alerts name as many addresses as they are alerts (mostly one each), and a row per
address would cost the commit one b-tree insert per alert. So a tenant has, for each hour and
role, one row whose ``counts`` is the JSON object ``{address: n}``: a commit adds its group's
addresses to it (``group_parties``, then ``merge_parties`` of the row kept and the new
counts). A read decodes the rows of the hours asked for and adds them up, so it reads a row
per tenant, hour and role however often they were polled (a row per commit, as the first
release kept them, made the dashboard's 24 hours of 3,000 tenants millions of rows). Rows of
one key that are several (an older release's, or two workers' first commits of an hour at
once) are still summed right, and folded into one by the next commit that adds to them.

A row is added to while it is under :data:`PARTY_ROW_BYTES`; past that a commit starts a new
one. A tenant hit by a campaign with 100,000 recipients in an hour would otherwise have one
row of megabytes decoded, re-encoded and written again by every commit of that hour.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from mimecast_connector.state._protocol import HOURS_KEPT, PARTY_HOURS_KEPT, Commit

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, int]).decode


#: The size under which a row is still added to (its JSON, in bytes: about 2,000 addresses).
PARTY_ROW_BYTES = 64 * 1024

#: A row's key: (epoch hour, role, tenant).
PartyKey = tuple[int, str, str]
#: A row of a tenant's alert counts: (epoch hour, tenant, category, alertType, technique); and
#: of all tenants' (the same less the tenant).
HourKey = tuple[int, str, str, str, str]
TotalKey = tuple[int, str, str, str]


def group_tallies(
    commits: Iterable[Commit],
) -> tuple[dict[HourKey, int], dict[TotalKey, int], int | None]:
    """A group's alert counts of the hours still kept, summed by row (each written once by the
    group, however many of its commits count it): each tenant's, all tenants' totals, and the
    newest ``hour_now`` (None: no commit counted any)."""
    hours: dict[HourKey, int] = {}
    totals: dict[TotalKey, int] = {}
    hour_now: int | None = None
    for c in commits:
        tallies = c.tallies
        if tallies is None:
            continue
        now = tallies.hour_now
        hour_now = now if hour_now is None else max(hour_now, now)
        category = tallies.category
        for (hour, alert_type, technique), n in tallies.hours.items():
            if hour >= now - HOURS_KEPT:
                key = (hour, c.tenant, category, alert_type, technique)
                hours[key] = hours.get(key, 0) + n
                total = (hour, category, alert_type, technique)
                totals[total] = totals.get(total, 0) + n
    return hours, totals, hour_now


def group_parties(commits: Iterable[Commit]) -> dict[PartyKey, dict[str, int]]:
    """The senders and recipients a group of commits adds, by row, of the hours still kept."""
    added: dict[PartyKey, dict[str, int]] = {}
    for c in commits:
        if c.tallies is None:
            continue
        kept = c.tallies.hour_now - PARTY_HOURS_KEPT
        for (hour, role), counts in c.tallies.parties.items():
            if hour >= kept and counts:
                into = added.setdefault((hour, role, c.tenant), {})
                get = into.get
                for address, n in counts.items():
                    into[address] = get(address, 0) + n
    return added


def _decoded(row: bytes) -> dict[str, int] | None:
    """A row's counts; None for a row that is not such JSON (a hand-edited state, a bug): it
    is left where it is and not counted, rather than failing every commit of its key."""
    try:
        return _decode(row)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def merge_parties(rows: Sequence[bytes], added: Mapping[str, int]) -> tuple[bytes, list[int]]:
    """One row's ``counts``: those of the ``rows`` kept for its key, plus ``added``; and the
    indexes of the rows folded into it (every one that decodes: the caller replaces those)."""
    total: dict[str, int] = {}
    folded: list[int] = []
    for index, row in enumerate(rows):
        counts = _decoded(row)
        if counts is None:
            continue
        folded.append(index)
        if total:
            get = total.get
            for address, n in counts.items():
                total[address] = get(address, 0) + n
        else:
            total = counts
    if not total:
        return _encode(added), folded
    get = total.get
    for address, n in added.items():
        total[address] = get(address, 0) + n
    return _encode(total), folded


def ranked_parties(rows: Iterable[bytes], limit: int) -> list[tuple[str, int]]:
    """The ``limit`` addresses with the most alerts over ``rows`` (``merge_parties``'s),
    most first, then by address."""
    total: dict[str, int] = {}
    get = total.get
    for row in rows:
        for address, n in (_decoded(row) or {}).items():
            total[address] = get(address, 0) + n
    return heapq.nsmallest(limit, total.items(), key=lambda item: (-item[1], item[0]))
