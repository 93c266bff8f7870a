"""The chain one page of records goes through: format check, rules, identity, alert.

Built once per tenant and category (style.md habit 3), then called for every page. The hot
path: one typed decode per record, one rule call, one hash, one struct. No I/O here.

Every record gets an id, not only the ones that become alerts: the runner remembers the ids
of everything it handled, so records re-read in the overlap window are recognised whether
they were alerts, dropped as safe, or dead-lettered, and nothing is counted twice.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from hashlib import blake2b

import msgspec

from mimecast_connector._categories import Category
from mimecast_connector.alerts import (
    BUILDERS,
    Alert,
    id_prefix,
    identity_getter,
)
from mimecast_connector.records import check_utf8, make_checker
from mimecast_connector.rules import AttackTable, Rules, build_rules, split_reason

_encoder = msgspec.json.Encoder()


class DeadLetter(msgspec.Struct):
    """One line of the dead-letter file. ``raw`` is the record as received, or, when it is
    not UTF-8, its text with U+FFFD in place of the bytes that are not."""

    tenant: str
    category: str
    reason: str
    raw: msgspec.Raw | str


@dataclass(slots=True)
class Handled:
    """What one page became. ``ids`` lists every record's id with its event time (epoch s).

    ``newest`` and ``oldest`` are the extreme event times of the page's valid records inside
    the window the page was asked for, and ``ordered`` says whether those records came oldest
    first; ``outside`` counts valid records dated outside that window. The runner uses them to
    decide how far the cursor may move (``runner._runner``): only order it has seen proves
    that nothing older is still to come.
    """

    ids: list[tuple[str, float]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead: list[tuple[str, bytes]] = field(default_factory=list)  # id, encoded DeadLetter line
    dropped: list[tuple[str, str]] = field(default_factory=list)  # id, reason
    newest: float | None = None
    oldest: float | None = None
    ordered: bool = True
    outside: int = 0
    too_old: int = 0  # records older than the id memory reaches (set by select_fresh)
    #: Rows counted and forgotten, by drop reason, with no id (receipts that are not rejections).
    skipped: dict[str, int] = field(default_factory=dict)


class Chain:
    """Records of one tenant and category to alerts."""

    def __init__(
        self,
        tenant: str,
        category: Category,
        table: AttackTable,
        *,
        keep_unmatched_rejections: bool = False,
        rules: Rules | None = None,
    ) -> None:
        """``rules``: the category's, built from ``table`` by the caller once for many chains
        (a run's thousands of streams); built here when not given."""
        self.tenant = tenant
        self.category = category
        self._check = make_checker(category)
        if rules is None:
            rules = build_rules(
                category, table, keep_unmatched_rejections=keep_unmatched_rejections
            )
        self._rules = rules
        self._build = BUILDERS[category]
        self._identity = identity_getter(category)
        self._prefix = id_prefix(tenant, category)

    def process(
        self,
        records: list[msgspec.Raw],
        now: float,
        *,
        utf8: bool = True,
        window: tuple[float, float] = (-math.inf, math.inf),
    ) -> Handled:
        """Handle one page. ``now`` stands in as the time of records whose own time is unreadable.

        ``utf8`` is the client's word that the whole page is UTF-8; when it is not, each
        record is checked, and those that are not are dead-lettered. ``window`` is the
        ``[from, to]`` the page was asked for (epoch seconds).
        """
        out = Handled()
        tenant, category, prefix = self.tenant, self.category, self._prefix
        check, rules, build, identity = self._check, self._rules, self._build, self._identity
        ids, alerts, dropped = out.ids, out.alerts, out.dropped
        low, high = window
        newest: float | None = None
        oldest: float | None = None
        previous = -math.inf
        ordered = True
        outside = 0
        for raw in records:
            checked = check(raw) if utf8 else (check_utf8(raw) or check(raw))
            if isinstance(checked, str):
                dead_id = _dead_id(tenant, category.value, raw)
                kept: msgspec.Raw | str = raw
                if not utf8 and check_utf8(raw) is not None:
                    kept = bytes(raw).decode("utf-8", "replace")
                line = _encoder.encode(DeadLetter(tenant, category.value, checked, kept)) + b"\n"
                out.dead.append((dead_id, line))
                ids.append((dead_id, now))
                continue
            record, (epoch, utc) = checked
            if low <= epoch <= high:
                if epoch < previous:
                    ordered = False
                else:
                    previous = epoch
                if newest is None or epoch > newest:
                    newest = epoch
                if oldest is None or epoch < oldest:
                    oldest = epoch
            else:
                outside += 1
            second = int(epoch)
            key = b"%d\x1f%b" % (second, identity(record))
            # Inline for speed; alerts.alert_id defines it (and a test holds the two together).
            id_ = blake2b(b"%b%b\x1f0" % (prefix, key), digest_size=16).hexdigest()
            ids.append((id_, epoch))
            verdict = rules(record)
            if isinstance(verdict, str):
                dropped.append((id_, verdict))
            else:
                alerts.append(build(id_, tenant, record, utc, verdict, raw))
        out.newest, out.oldest, out.ordered, out.outside = newest, oldest, ordered, outside
        return out


def _dead_id(tenant: str, category: str, raw: msgspec.Raw) -> str:
    digest = blake2b(bytes(raw), digest_size=16, person=b"dead-letter")
    digest.update(f"\x1f{tenant}\x1f{category}".encode())
    return digest.hexdigest()


def select_fresh(handled: Handled, known: set[str], horizon: float = -math.inf) -> Handled:
    """What of ``handled`` was not handled before: ids not in ``known``, each once.

    A record can repeat within one page or across pages of one window (Mimecast serving it
    twice); only its first copy counts. A record dated before ``horizon``, the oldest time the
    store still remembers ids for, cannot be told from one delivered long ago: it is counted
    in ``too_old`` and not delivered (only a server that ignores the window sends such).
    """
    out = Handled(
        newest=handled.newest,
        oldest=handled.oldest,
        ordered=handled.ordered,
        outside=handled.outside,
        skipped=handled.skipped,
    )
    seen = set(known)
    for id_, when in handled.ids:
        if when < horizon:
            out.too_old += 1
        elif id_ not in seen:
            seen.add(id_)
            out.ids.append((id_, when))
    fresh = {id_ for id_, _ in out.ids}
    taken: set[str] = set()
    for alert in handled.alerts:
        if alert.id in fresh and alert.id not in taken:
            taken.add(alert.id)
            out.alerts.append(alert)
    for id_, line in handled.dead:
        if id_ in fresh and id_ not in taken:
            taken.add(id_)
            out.dead.append((id_, line))
    for id_, reason in handled.dropped:
        if id_ in fresh and id_ not in taken:
            taken.add(id_)
            out.dropped.append((id_, reason))
    return out


def count(fresh: Handled, fetched: int) -> Counter[str]:
    """The counters of a page: ``fetched`` records, of which ``fresh`` were not handled before."""
    counts: Counter[str] = Counter()
    counts["fetched"] = fetched
    skipped = sum(fresh.skipped.values())
    counts["duplicates"] = fetched - len(fresh.ids) - fresh.too_old - skipped
    if fresh.outside:
        counts["outside_window"] = fresh.outside
    if fresh.too_old:
        counts["too_old"] = fresh.too_old
    counts["alerts"] = len(fresh.alerts)
    counts["dead_lettered"] = len(fresh.dead)
    for reason, n in fresh.skipped.items():
        counts[f"dropped: {reason}"] += n
    for _, reason in fresh.dropped:
        head, detail = split_reason(reason)
        counts[f"dropped: {head}"] += 1
        if detail is not None:  # an unmatched rejection's description, for ``status``
            counts[f"unmatched: {detail}"] += 1
    return counts
