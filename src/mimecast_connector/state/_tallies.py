"""Senders and recipients counted, as both stores keep them: one JSON object a row.

A page's alerts name as many addresses as they are alerts (mostly one each), and a row per
address would cost the commit one b-tree insert per alert. So each commit keeps, for each
hour and role, one row whose ``counts`` is the JSON object ``{address: n}``; a read decodes
the rows of the hours asked for and adds them up (the dashboard asks once a minute at most).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, int]).decode


def encode_parties(counts: Mapping[str, int]) -> bytes:
    """One row's ``counts``."""
    return _encode(counts)


def ranked_parties(rows: Iterable[bytes], limit: int) -> list[tuple[str, int]]:
    """The ``limit`` addresses with the most alerts over ``rows`` (``encode_parties``'s),
    most first, then by address."""
    total: dict[str, int] = {}
    get = total.get
    for row in rows:
        for address, n in _decode(row).items():
            total[address] = get(address, 0) + n
    return heapq.nsmallest(limit, total.items(), key=lambda item: (-item[1], item[0]))
