"""What the output formats share: ATT&CK ids, Mimecast's logs and products, outcomes, time.

Every format module (``_native``, ``_ocsf``, ``_ecs``, ``_cef``) reads the same facts about an
alert from here, so that one alert says the same thing in every format: which log it came
from, what an ATT&CK id is (a tactic, a technique, or a sub-technique of a parent technique),
what Mimecast did about the message (:func:`outcome`), and the alert time in epoch
milliseconds.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import NamedTuple

from mimecast_connector.alerts._alert import Alert

#: Names of the parent techniques of the sub-techniques in the default table (ATT&CK v18).
PARENT_TECHNIQUES = {
    "T1598": "Phishing for Information",
    "T1566": "Phishing",
}

VENDOR = "Mimecast"
#: The product, as the OCSF documents have named it.
PRODUCT_NAME = "Mimecast Email Security, Cloud Gateway"
#: The product without the vendor: ECS ``observer.product`` and the CEF header's product.
PRODUCT = "Email Security Cloud Gateway"

_FEATURES = {
    "attachment": "Targeted Threat Protection - Attachment Protection",
    "impersonation": "Targeted Threat Protection - Impersonation Protection",
    "url": "Targeted Threat Protection - URL Protection",
    "rejection": "Gateway - Rejected and Deferred Messages",
    "receipt": "SIEM - Receipt Events",
}
#: The log each category comes from: its name and the finding's data source.
_LOGS = {
    "rejection": ("gateway/rejection", "Mimecast rejection log"),
    "receipt": ("siem/receipt", "Mimecast SIEM receipt events"),
}

#: Categories whose every alert is a message Mimecast refused (they carry no action field).
REFUSALS = frozenset({"rejection", "receipt"})


def feature(category: str) -> str:
    """The Mimecast console feature a category's alerts come from."""
    return _FEATURES.get(category, category)


def log_of(category: str) -> tuple[str, str]:
    """``(log name, data source)``: ``("ttp/url", "Mimecast TTP url log")``."""
    return _LOGS.get(category, (f"ttp/{category}", f"Mimecast TTP {category} log"))


# --- ATT&CK --------------------------------------------------------------------------------------

_TACTIC = re.compile(r"TA\d{4}")
_SUB_TECHNIQUE = re.compile(r"(T\d{4})\.(\d{3})")
_ATTACK = "https://attack.mitre.org"


class AttackId(NamedTuple):
    """One ATT&CK id, placed: ``kind`` is ``tactic``, ``technique`` or ``sub_technique``.

    ``parent`` is a sub-technique's technique id (``T1566`` of ``T1566.001``), ``parent_name``
    its name when :data:`PARENT_TECHNIQUES` knows it; both None otherwise.
    """

    kind: str
    id: str
    name: str
    reference: str
    parent: str | None = None
    parent_name: str | None = None
    parent_reference: str | None = None


@functools.lru_cache(maxsize=1024)
def attack_id(threat_id: str, threat_name: str) -> AttackId:
    """What ``threat_id`` is, with its https://attack.mitre.org page."""
    if _TACTIC.fullmatch(threat_id):
        return AttackId("tactic", threat_id, threat_name, f"{_ATTACK}/tactics/{threat_id}/")
    sub = _SUB_TECHNIQUE.fullmatch(threat_id)
    if sub is not None:
        parent, number = sub.groups()
        return AttackId(
            "sub_technique", threat_id, threat_name,
            f"{_ATTACK}/techniques/{parent}/{number}/",
            parent, PARENT_TECHNIQUES.get(parent), f"{_ATTACK}/techniques/{parent}/",
        )  # fmt: skip
    return AttackId("technique", threat_id, threat_name, f"{_ATTACK}/techniques/{threat_id}/")


# --- what Mimecast did ----------------------------------------------------------------------------


class Outcome(NamedTuple):
    """What Mimecast did with the message, in OCSF's words (Security Control profile).

    ``disposition_id`` and ``action_id`` are OCSF enum values; ``disposition`` and ``action``
    their captions (for ``Other``, Mimecast's own word).
    """

    disposition_id: int
    disposition: str
    action_id: int
    action: str


_ALLOWED, _DENIED, _OBSERVED = (1, "Allowed"), (2, "Denied"), (3, "Observed")

#: Mimecast's action words (lower case) and what they mean. ``none`` means the threat was
#: detected and nothing more was done; ``warn`` showed the user a warning page they may click
#: through; ``user release`` is a held message the user let through.
_OUTCOMES: dict[str, Outcome] = {
    "allow": Outcome(1, "Allowed", *_ALLOWED),
    "user release": Outcome(9, "Restored", *_ALLOWED),
    "warn": Outcome(19, "Alert", *_OBSERVED),
    "none": Outcome(15, "Detected", *_OBSERVED),
    "block": Outcome(2, "Blocked", *_DENIED),
    "hold": Outcome(3, "Quarantined", *_DENIED),
    "bounce": Outcome(25, "Rejected", *_DENIED),
    "delete": Outcome(5, "Deleted", *_DENIED),
}
_REFUSED = Outcome(25, "Rejected", *_DENIED)
_UNKNOWN = Outcome(0, "Unknown", 0, "Unknown")


@functools.lru_cache(maxsize=256)
def outcome(category: str, action: str | None) -> Outcome:
    """What Mimecast did, from the alert's category and action.

    A rejection or receipt is a refused message (Rejected, Denied). An action list such as
    an attachment log's ``user release, none`` is read by its first word that is not
    ``none``; ``none`` alone is Detected. A word not in the table is disposition ``Other``
    with Mimecast's word, action Unknown; no action at all is Unknown.
    """
    if category in REFUSALS:
        return _REFUSED
    if action is None:
        return _UNKNOWN
    words = [word for word in (w.strip().lower() for w in action.split(",")) if word]
    acted = [word for word in words if word != "none"]
    if not acted:
        return _OUTCOMES["none"] if words else _UNKNOWN
    known = _OUTCOMES.get(acted[0])
    if known is not None:
        return known
    return Outcome(99, action.strip(), *_UNKNOWN[2:])


# --- text and time --------------------------------------------------------------------------------


def rejection_text(alert: Alert) -> str:
    """``Rejected (Invalid Recipient Address, code 14012): Invalid Recipient``."""
    code = alert.rejectionCode and f"code {alert.rejectionCode}"
    details = ", ".join(part for part in (alert.rejectionType, code) if part)
    head = f"Rejected ({details})" if details else "Rejected"
    return f"{head}: {alert.rejectionInfo}" if alert.rejectionInfo else head


def description(alert: Alert) -> str | None:
    """The impersonation identifiers or the refusal, in words; None for other alerts."""
    if alert.identifiers:
        return "Impersonation identifiers: " + ", ".join(alert.identifiers)
    if alert.rejectionInfo or alert.rejectionType:
        return rejection_text(alert)
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = _EPOCH.toordinal()


#: Milliseconds into its hour of an alert time's ``:MM:SSZ`` (whole seconds, as most are).
_INTO_HOUR = {f":{m:02d}:{s:02d}Z": (m * 60 + s) * 1000 for m in range(60) for s in range(60)}
#: Epoch milliseconds of the hours seen (``YYYY-MM-DDTHH``), bounded: alerts come in time
#: order, so a batch's times share a few hours.
_HOUR_MS: dict[str, int] = {}
_HOURS_KEPT = 8192


def epoch_ms(alert_time: str) -> int:
    """Exact integer milliseconds of an alert time (a float product can lose one).

    An alert time with whole seconds in an hour seen before costs two look-ups (0.35 us
    against 0.7 to parse it)."""
    into = _INTO_HOUR.get(alert_time[13:]) if len(alert_time) == 20 else None
    if into is not None:
        hour = _HOUR_MS.get(alert_time[:13])
        if hour is not None:
            return hour + into
    moment = datetime.fromisoformat(alert_time)
    if alert_time[-1:] == "Z":  # as alerts write it: no offset to apply, no timedelta made
        seconds = (moment.toordinal() - _EPOCH_DAY) * 86_400
        seconds += moment.hour * 3600 + moment.minute * 60 + moment.second
        found = seconds * 1000 + moment.microsecond // 1000
        if into is not None:  # YYYY-MM-DDTHH:MM:SSZ, a time of a new hour
            if len(_HOUR_MS) >= _HOURS_KEPT:
                _HOUR_MS.clear()
            _HOUR_MS[alert_time[:13]] = found - into
        return found
    since = moment - _EPOCH
    return (since.days * 86_400 + since.seconds) * 1000 + since.microseconds // 1000


def raw_text(alert: Alert) -> str:
    """The record as Mimecast sent it, as text (not UTF-8 bytes, if any, replaced)."""
    return bytes(alert.raw).decode("utf-8", "replace")
