"""Mimecast MTA rejection texts to alert types (``mta-rejections.md`` §1).

A rejection carries a free text (``Anti-Spoofing policy - Inbound not allowed``), worded with
drift: dashes, case, spacing, and when a remote server quotes it a trailing link to Mimecast's
documentation and a bracketed server id. :func:`normalise` takes all of that away; a phrase of
the table (``data/rejection-texts.toml``, a user's ``[[rejections]]`` rows first) is then
searched in it, word-bounded, and the first phrase found gives the alertType and severity.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mimecast_connector.rules._rules import Severity  # (which imports this module's user)

#: A trailing link to Mimecast's documentation, or a trailing bracketed server id: either, in
#: any order, any number of times (``... - https://community.mimecast.com/docs/DOC-1369#550 [x]``).
_TRAILER = re.compile(r"(?:\s*-\s*https?://\S*mimecast\S*|\s*\[[^\]]*\])+$")
_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-"})
_SEVERITIES = ("low", "medium", "high")  # ``Severity``


def normalise(text: str) -> str:
    """Lower-case, en and em dashes made hyphens, whitespace collapsed, and a trailing
    Mimecast link and a trailing ``[...]`` removed."""
    collapsed = " ".join(text.lower().translate(_DASHES).split())
    return _TRAILER.sub("", collapsed).strip()


@dataclass(frozen=True, slots=True)
class RejectionType:
    """What a phrase found in a rejection's text makes of it."""

    phrase: str  # normalised
    alert_type: str
    severity: Severity
    origin: str  # "sophos", "ours" or "user"


@dataclass(frozen=True, slots=True)
class RejectionTexts:
    """The phrases, in the order they are tried."""

    types: tuple[RejectionType, ...]
    _patterns: tuple[tuple[str, re.Pattern[str], RejectionType], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        patterns = tuple(
            (t.phrase, re.compile(rf"(?<!\w){re.escape(t.phrase)}(?!\w)"), t) for t in self.types
        )
        object.__setattr__(self, "_patterns", patterns)

    def classify(self, texts: Iterable[str | None]) -> RejectionType | None:
        """The type of the first of ``texts`` (in the order given: the record's fields by
        precedence) in which a phrase is found; None when no phrase is found in any."""
        for text in texts:
            if not text:
                continue
            normalised = normalise(text)
            for phrase, pattern, found in self._patterns:
                # A plain substring test first: most phrases are not in a given text at all.
                if phrase in normalised and pattern.search(normalised) is not None:
                    return found
        return None


_KEYS = {"phrase", "alertType", "severity", "origin"}


def parse_phrases(
    raw: object, where: str, *, user: bool
) -> tuple[list[RejectionType], list[tuple[str, str]]]:
    """Rows of a ``[[phrases]]`` (the shipped file) or ``[[rejections]]`` (a user's ``mapping``)
    array, and the problems found, each with its key path. A user's rows are ``origin = "user"``
    and may leave ``severity`` out (medium)."""
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, list):
        return [], [(where, "must be an array of tables")]
    rows: list[RejectionType] = []
    seen: set[str] = set()
    allowed = _KEYS - {"origin"} if user else _KEYS
    for index, row in enumerate(raw):
        path = f"{where}[{index}]"
        if not isinstance(row, dict):
            problems.append((path, "must be a table with phrase, alertType and severity"))
            continue
        row = cast(Mapping[str, Any], row)
        problems.extend((f"{path}.{name}", "unknown key") for name in sorted(set(row) - allowed))
        phrase, alert_type = row.get("phrase"), row.get("alertType")
        severity = row.get("severity", "medium" if user else None)
        origin = "user" if user else row.get("origin")
        good = True
        if not isinstance(phrase, str) or not normalise(phrase):
            problems.append((f"{path}.phrase", "must be a non-empty string"))
            good = False
        elif normalise(phrase) in seen:
            problems.append((f"{path}.phrase", f"{phrase!r} appears twice in this file"))
            good = False
        else:
            seen.add(normalise(phrase))
        if not isinstance(alert_type, str) or not alert_type.strip():
            problems.append((f"{path}.alertType", "must be a non-empty string"))
            good = False
        if severity not in _SEVERITIES:
            problems.append((f"{path}.severity", f"must be one of {', '.join(_SEVERITIES)}"))
            good = False
        if origin not in ("sophos", "ours", "user"):
            problems.append((f"{path}.origin", "must be 'sophos' or 'ours'"))
            good = False
        if good:
            assert isinstance(phrase, str)
            assert isinstance(alert_type, str)
            rows.append(
                RejectionType(
                    normalise(phrase),
                    alert_type.strip(),
                    cast("Severity", severity),
                    cast(str, origin),
                )
            )
    return rows, problems


def merged(user: Sequence[RejectionType], default: Sequence[RejectionType]) -> RejectionTexts:
    """A user's phrases first, then the shipped ones (a user's phrase equal to a shipped one
    replaces it)."""
    mine = {t.phrase for t in user}
    return RejectionTexts((*user, *(t for t in default if t.phrase not in mine)))
