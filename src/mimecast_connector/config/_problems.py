"""Configuration problems as a reader wants them: the key path, the value that was wrong, and
what was expected (``tenants[1].api: "3.0" is not one of "2.0", "1.0"``).

:func:`problems` turns a pydantic :class:`~pydantic.ValidationError` into ``(key path,
message)`` pairs for :class:`~mimecast_connector._errors.ConfigError`. It walks the model
along each error's location, so the path names only keys a user wrote (never pydantic's union
branches), an unknown key can list the keys allowed beside it, and a secret is known as one.

A value is quoted only when it cannot be a secret: never for a ``SecretStr`` field, a key named
like a secret, a token, a password, a key, a URL (services put tokens in them) or the state
(a PostgreSQL URL holds a password), anything under ``headers``, or an unknown key (a misspelt
``client_secrte`` is still a secret). Those show as :data:`HIDDEN`. A table or an array is
named, never printed; a long text is cut (``…``) and its control characters shown as escapes.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import annotated_types
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from mimecast_connector._text import visible

__all__ = ["HIDDEN", "problems", "quoted"]

#: What a secret's value is shown as.
HIDDEN = "<hidden>"
#: Quoted text longer than this is cut.
MAX_SHOWN = 60
#: Key names whose values are never quoted (matched anywhere in any key of the path).
_SECRET_NAME = re.compile(
    r"secret|token|password|passwd|key|credential|auth|url|dce|headers|state", re.IGNORECASE
)
#: Type errors: what was expected, by pydantic's error type.
_EXPECTED = {
    "string_type": "a string (in quotes)",
    "string_unicode": "a string (in quotes)",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "int_parsing_size": "an integer small enough to use",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false (without quotes)",
    "bool_parsing": "true or false (without quotes)",
    "list_type": "an array",
    "tuple_type": "an array",
    "set_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "datetime_type": "a date and time with a zone, such as 2026-11-01T00:00:00Z",
    "datetime_parsing": "a date and time with a zone, such as 2026-11-01T00:00:00Z",
    "datetime_from_date_parsing": "a date and time with a zone, such as 2026-11-01T00:00:00Z",
    "date_type": "a date such as 2026-11-01",
    "date_parsing": "a date such as 2026-11-01",
    "date_from_datetime_parsing": "a date such as 2026-11-01",
    "path_type": "a path",
    "url_type": "a URL",
    "url_parsing": "a URL",
}
#: Our own validators' messages that read on after a quoted value ("30d" must be at most 7d).
_READS_ON = re.compile(r"^(must|is|needs|names|has|contains|cannot|does|should)\b")


def quoted(value: Any) -> str:
    """``value`` as the configuration spells it: text in double quotes (cut to
    :data:`MAX_SHOWN` characters, control characters escaped), booleans ``true``/``false``,
    numbers and times as written; a table or an array only named, never printed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= 40 else text[:40] + "…"
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(str(value), repr(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, str):
        cut = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"
        return '"' + visible(cut.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return "a value of another type"


@dataclass
class _Place:
    """Where an error's location leads in the model."""

    path: str
    #: The model the path ends in, whose keys an unknown key was looked for among (None: not
    #: a model, or not known).
    model: type[BaseModel] | None
    #: The field the location ends at (None: a list item, a table, or unknown).
    field: FieldInfo | None
    #: The models a union at the end of the path could take (a discriminated ``[[sinks]]``).
    choices: list[type[BaseModel]]
    secret: bool
    #: A branch of a union was named in the location (several errors may share the path).
    union: bool


def _args(annotation: Any) -> Iterable[Any]:
    """The types inside ``annotation``: list items, union members, Annotated's first argument."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return typing.get_args(annotation)[:1]
    return typing.get_args(annotation)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """Every model reachable inside ``annotation`` (not inside another model)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in _args(annotation) for m in _models(arg)]


def _holds(annotation: Any, wanted: type) -> bool:
    if annotation is wanted:
        return True
    return any(_holds(arg, wanted) for arg in _args(annotation))


def _is_dict(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping) or annotation is dict:
        return True
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_is_dict(arg) for arg in _args(annotation))
    return False


def _tags(model: type[BaseModel]) -> tuple[Any, ...]:
    """The ``type`` values a model of a discriminated union is chosen by."""
    field = model.model_fields.get("type")
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return ()
    return typing.get_args(field.annotation)


def _place(root: type[BaseModel], loc: Sequence[str | int], unknown: bool) -> _Place:
    """Walk ``loc`` from ``root``: the path a user reads, and what lies at its end."""
    path = ""
    model: type[BaseModel] | None = root
    field: FieldInfo | None = None
    annotation: Any = None
    choices: list[type[BaseModel]] = []
    secret = False
    union = False

    def add(key: str) -> None:
        nonlocal path, secret
        path += f".{key}" if path else key
        secret = secret or bool(_SECRET_NAME.search(key))

    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(part, int):
            path += f"[{part}]"
            field = None
            continue
        if model is not None and part in model.model_fields:
            field = model.model_fields[part]
            annotation = field.annotation
            add(part)
            secret = secret or _holds(annotation, SecretStr)
            choices = _models(annotation)
            model = choices[0] if len(choices) == 1 else None
            continue
        chosen = [m for m in choices if part == m.__name__ or part in _tags(m)]
        if chosen:  # a union's branch: not a key the user wrote
            model = chosen[0]
            choices, field = [], None
            union = union or part == chosen[0].__name__
            continue
        if (last and unknown) or _is_dict(annotation):
            add(part)  # an unknown key, or a table's own key (a header's name)
            field = None
            continue
        union = True  # pydantic's name for a branch of a union of plain types: skipped
    return _Place(path, model, field, choices, secret, union)


def _bound(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range(field: FieldInfo | None) -> tuple[str | None, str | None]:
    """The field's inclusive bounds (from ``Field(ge=…, le=…)``), as text."""
    low = high = None
    for meta in field.metadata if field is not None else ():
        if isinstance(meta, annotated_types.Ge):
            low = _bound(meta.ge)
        elif isinstance(meta, annotated_types.Le):
            high = _bound(meta.le)
    return low, high


def _listed(expected: str) -> str:
    """pydantic's ``'a', 'b' or 'c'`` as ``"a", "b", "c"``."""
    items = re.split(r", | or ", expected)
    return ", ".join(f'"{i[1:-1]}"' if len(i) > 1 and i[0] == i[-1] == "'" else i for i in items)


def _message(error: ErrorDetails, place: _Place, subject: str) -> tuple[str, str]:
    """The (path, message) of one error; ``subject`` is the quoted value or :data:`HIDDEN`."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    path = place.path
    if kind == "missing":
        return path, "is required"
    if kind == "extra_forbidden":
        return path, _unknown(path, place.model)
    if kind in ("literal_error", "enum"):
        return path, f"{subject} is not one of {_listed(str(ctx.get('expected', '')))}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "'type'")).strip("'")
        tags = [str(t) for m in place.choices for t in _tags(m)]
        known = ", ".join(f'"{t}"' for t in tags) or _listed(str(ctx.get("expected_tags", "")))
        path = f"{path}.{key}" if path else key
        if kind == "union_tag_not_found":
            return path, f"is required: one of {known}"
        tag = value.get(key) if isinstance(value, dict) else ctx.get("tag")
        return path, f"{quoted(tag)} is not one of the kinds there are: {known}"
    if kind in _EXPECTED:
        return path, f"{subject} is not {_EXPECTED[kind]}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        low, high = _range(place.field)
        if low is not None and high is not None:
            return path, f"{subject} is out of range: it must be from {low} to {high}"
        words = {
            "greater_than_equal": "at least",
            "less_than_equal": "at most",
            "greater_than": "more than",
            "less_than": "less than",
        }[kind]
        bound = next((v for k, v in ctx.items() if k in ("ge", "le", "gt", "lt")), "")
        return path, f"{subject} is out of range: it must be {words} {_bound(bound)}"
    if kind == "string_too_short":
        if ctx.get("min_length") == 1:
            return path, "must not be empty"
        return path, f"{subject} is too short: at least {ctx.get('min_length')} characters"
    if kind == "string_too_long":
        return path, f"{subject} is too long: at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return path, f"{subject} does not match the pattern {ctx.get('pattern')}"
    if kind == "too_short":
        have, need = ctx.get("actual_length"), ctx.get("min_length")
        shown = "is an empty array" if have == 0 else f"has {have} items"
        return path, f"{shown}: it needs at least {need}"
    if kind == "too_long":
        have, most = ctx.get("actual_length"), ctx.get("max_length")
        return path, f"has {have} items: at most {most} are allowed"
    message = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    scalar = isinstance(value, str | int | float | datetime | date | time)
    if scalar and subject != HIDDEN and _READS_ON.match(message):
        return path, f"{subject} {message}"
    return path, message


def _unknown(path: str, model: type[BaseModel] | None) -> str:
    """An unknown key: the closest allowed key, and every allowed one."""
    if model is None:
        return "unknown key (check its spelling)"
    key = re.split(r"[.\]]", path)[-1]
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f'did you mean "{close[0]}"?' if close else "check its spelling"
    return f"unknown key ({hint}); the keys allowed here are {', '.join(allowed)}"


def problems(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """Every error of ``exc`` (raised validating ``root``) as ``(key path, message)``.

    Errors of one key from the branches of a union (``verify_tls = 5``: neither a boolean nor
    a string) become one message naming every type that was expected.
    """
    out: list[tuple[str, str] | None] = []
    merged: dict[str, tuple[int, str, list[str]]] = {}
    for error in exc.errors(include_url=False):
        place = _place(root, error["loc"], error["type"] == "extra_forbidden")
        subject = HIDDEN if place.secret else quoted(error.get("input"))
        if place.union and error["type"] in _EXPECTED:
            if place.path not in merged:
                merged[place.path] = (len(out), subject, [])
                out.append(None)
            merged[place.path][2].append(_EXPECTED[error["type"]])
            continue
        problem = _message(error, place, subject)
        if problem not in out:
            out.append(problem)
    for path, (index, subject, wanted) in merged.items():
        # A model in a union of scalars is made from text by a validator: not a table to write.
        plain = [re.sub(r" \(.*\)$", "", w) for w in wanted]  # the hints of one type only
        kinds = [w for w in dict.fromkeys(plain) if w != "a table"] or ["a table"]
        out[index] = (path, f"{subject} is not {' or '.join(kinds)}")
    return [problem for problem in out if problem is not None]
