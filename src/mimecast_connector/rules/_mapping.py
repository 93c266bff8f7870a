"""The MITRE ATT&CK table: alertType to threatId and threatName (``alert-rules.md`` §4).

The default table ships as ``data/attack-mapping.toml``; a user's file of the same shape is
merged over it, row by row, matched by alertType after trimming and case-folding. Both are
checked when loaded: ID syntax (``TA0001``, ``T1078``, ``T1598.003``), non-empty names, no
alertType twice in one file. Every problem is reported at once, with its key path.

The same load gives the rejection texts (``data/rejection-texts.toml``, see ``_rejections``),
with a user file's ``[[rejections]]`` rows tried first; every alertType a phrase gives must
have a row in the merged table.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mimecast_connector._categories import Category
from mimecast_connector._errors import ConfigError
from mimecast_connector.rules._rejections import (
    RejectionTexts,
    RejectionType,
    merged,
    parse_phrases,
)

_ID = re.compile(r"TA\d{4}|T\d{4}(\.\d{3})?")

#: The alertType whose row an unknown alertType of each category takes (ours, §4).
CATEGORY_DEFAULT_TYPE: Mapping[Category, str] = {
    Category.ATTACHMENT: "Unsafe Email Attachment",
    Category.IMPERSONATION: "Impersonation Attempt",
    Category.URL: "URL Protection",
    Category.REJECTION: "MTA Rejection",
}


@dataclass(frozen=True, slots=True)
class Technique:
    """One row's answer: an ATT&CK tactic (``TA…``), technique (``T…``) or sub-technique."""

    threat_id: str
    threat_name: str


def key(alert_type: str) -> str:
    """How alertTypes are compared: trimmed and case-folded."""
    return alert_type.strip().casefold()


@dataclass(frozen=True, slots=True)
class AttackTable:
    """The merged table, and which ATT&CK version its default rows were checked against."""

    rows: Mapping[str, Technique]
    attack_version: str
    #: Rejection texts to alertTypes: a user's phrases, then the shipped ones.
    rejections: RejectionTexts = field(default_factory=lambda: RejectionTexts(()))

    def lookup(self, alert_type: str, category: Category) -> Technique:
        """The row of ``alert_type``, or else the row of its category's default alertType."""
        found = self.rows.get(key(alert_type))
        if found is not None:
            return found
        return self.rows[key(CATEGORY_DEFAULT_TYPE[category])]


def load_table(user_file: Path | None = None) -> AttackTable:
    """The default table, with ``user_file``'s rows merged over it."""
    text = (
        resources.files("mimecast_connector")
        .joinpath("data/attack-mapping.toml")
        .read_text("utf-8")
    )
    version, rows, _ = _parse(tomllib.loads(text), "default mapping")
    shipped = _shipped_phrases()
    user_phrases: list[RejectionType] = []
    if user_file is not None:
        try:
            data = tomllib.loads(user_file.read_text("utf-8"))
        except OSError as exc:
            raise ConfigError(
                [("mapping", f"cannot read {str(user_file)!r}: {exc.strerror}")]
            ) from None
        except UnicodeDecodeError:
            raise ConfigError([("mapping", f"{str(user_file)!r} is not UTF-8 text")]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                [("mapping", f"{str(user_file)!r} is not valid TOML: {exc}")]
            ) from None
        user_version, user_rows, user_phrases = _parse(data, "mapping")
        rows.update(user_rows)
        version = user_version or version
    problems = [
        ("mapping", f"the table has no row for {default!r}, which unknown {category} alerts use")
        for category, default in CATEGORY_DEFAULT_TYPE.items()
        if key(default) not in rows
    ]
    rejections = merged(user_phrases, shipped)
    problems.extend(
        (
            "mapping.rejections" if t.origin == "user" else "rejection texts",
            f"the phrase {t.phrase!r} gives the alertType {t.alert_type!r}, which has no row "
            "in the ATT&CK table: add a [[rows]] entry for it to the mapping file",
        )
        for t in rejections.types
        if key(t.alert_type) not in rows
    )
    if problems:
        raise ConfigError(problems)
    return AttackTable(rows, version, rejections)


def _shipped_phrases() -> list[RejectionType]:
    text = (
        resources.files("mimecast_connector")
        .joinpath("data/rejection-texts.toml")
        .read_text("utf-8")
    )
    data = tomllib.loads(text)
    phrases, problems = parse_phrases(data.get("phrases", []), "rejection texts", user=False)
    problems.extend(("rejection texts", f"unknown key {k!r}") for k in set(data) - {"phrases"})
    if problems:
        raise ConfigError(problems)
    return phrases


def _parse(
    data: Mapping[str, Any], where: str
) -> tuple[str, dict[str, Technique], list[RejectionType]]:
    problems: list[tuple[str, str]] = []
    unknown = set(data) - {"attack_version", "rows", "rejections"}
    problems.extend((f"{where}.{name}", "unknown key") for name in sorted(unknown))
    version = data.get("attack_version", "")
    if not isinstance(version, str):
        problems.append((f"{where}.attack_version", "must be a string such as 'v18'"))
        version = ""
    raw_rows = data.get("rows", [])
    if not isinstance(raw_rows, list):
        problems.append((f"{where}.rows", "must be an array of tables ([[rows]])"))
        raw_rows = []
    rows: dict[str, Technique] = {}
    seen: set[str] = set()
    for index, row in enumerate(raw_rows):
        path = f"{where}.rows[{index}]"
        if not isinstance(row, dict):
            problems.append((path, "must be a table with alertType, threatId, threatName"))
            continue
        problems.extend((f"{path}.{name}", "unknown key") for name in sorted(set(row) - _ROW_KEYS))
        alert_type, threat_id, threat_name = (
            row.get(k) for k in ("alertType", "threatId", "threatName")
        )
        good = True
        if not isinstance(alert_type, str) or not alert_type.strip():
            problems.append((f"{path}.alertType", "must be a non-empty string"))
            good = False
        elif key(alert_type) in seen:
            problems.append((f"{path}.alertType", f"{alert_type!r} appears twice in this file"))
        else:
            seen.add(key(alert_type))
        if not isinstance(threat_id, str) or not _ID.fullmatch(threat_id):
            problems.append(
                (f"{path}.threatId", "must be an ATT&CK id like TA0001, T1078 or T1598.003")
            )
            good = False
        if not isinstance(threat_name, str) or not threat_name.strip():
            problems.append((f"{path}.threatName", "must be a non-empty string"))
            good = False
        if good:
            assert isinstance(alert_type, str)
            assert isinstance(threat_id, str)
            assert isinstance(threat_name, str)
            rows[key(alert_type)] = Technique(threat_id, threat_name.strip())
    phrases: list[RejectionType] = []
    if "rejections" in data:
        phrases, phrase_problems = parse_phrases(
            data["rejections"], f"{where}.rejections", user=True
        )
        problems.extend(phrase_problems)
    if problems:
        raise ConfigError(problems)
    return version, rows, phrases


_ROW_KEYS = {"alertType", "threatId", "threatName"}
