"""Scenario files: a TOML description of tenants, their data and queued faults, validated whole.

A scenario names the seed, the token lifetime, each tenant (optional credentials, roles, how many
records of each category to generate over ``history`` before now, a rate limit, a live rate) and
``[[faults]]`` (``kind`` is the snake_case fault class name, then its fields, ``times``,
``tenant``, ``category``, ``token_endpoint``). :func:`load_scenario` reads and checks everything
and raises one :class:`ScenarioError` listing every problem with its key path; it builds nothing.
``Simulator.from_scenario`` applies the result. See ``scenarios/demo.toml`` for an example.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, TypedDict, cast

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from mimecast_connector._categories import Category
from mimecast_connector.simulator import faults
from mimecast_connector.simulator._auth import check_secret_key
from mimecast_connector.simulator._injection import check_rule

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_RULE_KEYS = ("kind", "times", "tenant", "category", "token_endpoint")


class ScenarioError(ValueError):
    """A scenario file that cannot be used; ``problems`` lists each as ``key.path: message``."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        listing = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid scenario {source} ({len(self.problems)} problem(s)):\n{listing}")


class Credentials(TypedDict, total=False):
    """The credentials a scenario sets, by ``Simulator.add_tenant`` keyword."""

    client_id: str
    client_secret: str
    app_id: str
    app_key: str
    access_key: str
    secret_key: str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimitSpec(_Strict):
    """A tenant's token bucket (§8.3)."""

    capacity: int = Field(ge=1)
    refill_per_second: float = Field(gt=0)


class RecordCounts(_Strict):
    """How many records of each category to generate."""

    attachment: int = Field(0, ge=0, le=1_000_000)
    impersonation: int = Field(0, ge=0, le=1_000_000)
    url: int = Field(0, ge=0, le=1_000_000)
    rejection: int = Field(0, ge=0, le=1_000_000)


class TenantSpec(_Strict):
    """One tenant of a scenario; absent credentials get their defaults from the name."""

    name: str = Field(min_length=1)
    client_id: str | None = Field(None, min_length=1)
    client_secret: str | None = Field(None, min_length=1)
    app_id: str | None = Field(None, min_length=1)
    app_key: str | None = Field(None, min_length=1)
    access_key: str | None = Field(None, min_length=1)
    secret_key: str | None = Field(None, min_length=1)
    roles: frozenset[Category] | None = None
    records: RecordCounts = RecordCounts()
    history: timedelta = timedelta(hours=24)
    rate_limit: RateLimitSpec | None = None
    live_rate: float | None = Field(None, gt=0)

    @field_validator("history", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        """Accept ``"24h"``, ``"90m"``, ``"7d"``, ``"30s"`` or a combination like ``"1h30m"``."""
        if not isinstance(value, str):
            return value
        parts = _DURATION.findall(value)
        if not parts or _DURATION.sub("", value).strip():
            raise ValueError("expected a duration such as '24h', '90m', '7d' or '1h30m'")
        return timedelta(**{_UNITS[unit]: float(n) for n, unit in parts})

    @field_validator("secret_key")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            check_secret_key(value)
        return value

    def credentials(self) -> Credentials:
        """The credentials the file sets, by ``add_tenant`` keyword."""
        names = ("client_id", "client_secret", "app_id", "app_key", "access_key", "secret_key")
        return cast(Credentials, {n: v for n in names if (v := getattr(self, n)) is not None})


class _ScenarioSpec(_Strict):
    seed: int = 0
    token_lifetime: float = Field(1799.0, gt=0)
    tenants: list[TenantSpec] = Field(min_length=1)
    faults: list[dict[str, Any]] = []


class _RuleSpec(_Strict):
    kind: str
    times: int | Literal["forever"] = 1
    tenant: str | None = None
    category: Category | None = None
    token_endpoint: bool = False


@dataclass(frozen=True, slots=True)
class FaultEntry:
    """A fault to inject, with its filters (``times`` None: until cleared)."""

    fault: faults.Fault
    tenant: str | None
    category: Category | None
    times: int | None
    token_endpoint: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    """A checked scenario, ready for ``Simulator.from_scenario`` to apply."""

    seed: int
    token_lifetime: float
    tenants: tuple[TenantSpec, ...]
    faults: tuple[FaultEntry, ...]


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and check a scenario file; one :class:`ScenarioError` names every problem."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            raw = tomllib.load(file)
    except OSError as exc:
        raise ScenarioError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, [f"not valid TOML: {exc}"]) from None
    problems: list[str] = []
    spec: _ScenarioSpec | None = None
    try:
        spec = _ScenarioSpec.model_validate(raw)
    except ValidationError as exc:
        problems += _describe(exc, ())
    names = _tenant_names(raw.get("tenants"))
    problems += _duplicates(names)
    entries = []
    raw_faults = raw.get("faults")
    for index, item in enumerate(raw_faults if isinstance(raw_faults, list) else []):
        entry = _fault_entry(item, ("faults", index), set(names.values()), problems)
        if entry is not None:
            entries.append(entry)
    if problems or spec is None:
        raise ScenarioError(source, problems)
    return Scenario(spec.seed, spec.token_lifetime, tuple(spec.tenants), tuple(entries))


def _fault_entry(
    item: object, where: tuple[str | int, ...], tenants: set[str], problems: list[str]
) -> FaultEntry | None:
    """One ``[[faults]]`` table as a :class:`FaultEntry`; problems are appended, not raised."""
    if not isinstance(item, dict):
        problems.append(f"{_path(where)}: expected a table")
        return None
    try:
        rule = _RuleSpec.model_validate({k: v for k, v in item.items() if k in _RULE_KEYS})
    except ValidationError as exc:
        problems += _describe(exc, where)
        return None
    cls = faults.KINDS.get(rule.kind)
    if cls is None:
        known = ", ".join(sorted(faults.KINDS))
        problems.append(
            f"{_path((*where, 'kind'))}: unknown fault kind {rule.kind!r}; one of {known}"
        )
        return None
    if rule.tenant is not None and rule.tenant not in tenants:
        problems.append(f"{_path((*where, 'tenant'))}: no tenant named {rule.tenant!r}")
    fields = {k: v for k, v in item.items() if k not in _RULE_KEYS}
    allowed = {f.name for f in dataclasses.fields(cls)}
    for key in sorted(fields.keys() - allowed):
        expected = ", ".join(sorted(allowed)) or "none"
        problems.append(f"{_path((*where, key))}: not a field of {rule.kind} (fields: {expected})")
    try:
        fault = TypeAdapter(cls).validate_python({k: v for k, v in fields.items() if k in allowed})
    except ValidationError as exc:
        problems += _describe(exc, where)
        return None
    times = None if rule.times == "forever" else rule.times
    try:
        check_rule(fault, category=rule.category, times=times, token_endpoint=rule.token_endpoint)
    except ValueError as exc:
        problems.append(f"{_path(where)}: {exc}")
        return None
    return FaultEntry(fault, rule.tenant, rule.category, times, rule.token_endpoint)


def _tenant_names(raw: object) -> dict[int, str]:
    """Tenant names by position, as far as the raw data has them (for cross-checks)."""
    if not isinstance(raw, list):
        return {}
    return {
        i: t["name"]
        for i, t in enumerate(raw)
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    }


def _duplicates(names: Mapping[int, str]) -> list[str]:
    seen: set[str] = set()
    problems = []
    for index, name in names.items():
        if name in seen:
            problems.append(f"{_path(('tenants', index, 'name'))}: duplicate tenant name {name!r}")
        seen.add(name)
    return problems


def _describe(exc: ValidationError, prefix: tuple[str | int, ...]) -> Iterable[str]:
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        yield f"{_path((*prefix, *error['loc']))}: {message}"


def _path(loc: Iterable[str | int]) -> str:
    """``("tenants", 0, "records", "url")`` as ``tenants[0].records.url``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
