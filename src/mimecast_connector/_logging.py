"""Logging: structlog, JSON lines on stderr by default, every secret redacted on the way out.

The redaction processor is built once with the secrets of the loaded configuration and
runs last before rendering, so no event, whoever wrote it, can carry a secret out. It and
:func:`redact` (used by the client and the runner for error messages) are one implementation,
:class:`Redactor`, which knows every encoding a secret can take in a message.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO
from urllib.parse import quote, quote_plus, urlsplit

import structlog

from mimecast_connector._text import visible_event

LogFormat = Literal["json", "console"]


_MIN_LENGTH = 4  # shorter values are not redacted: they would blank out ordinary words
_WINDOW = _MIN_LENGTH  # every form is at least this long, so its first characters index it
_LINEAR_MAX = 512  # up to this many forms a plain scan is cheaper per event (measured)
_URL_PIECE = 16
_MASK = "***"
_HEX = re.compile(r"%[0-9A-F]{2}")
_JSON_U = re.compile(r"\\u[0-9a-f]{4}")


def forms(secret: str) -> set[str]:
    """Every form ``secret`` can take in a message, the value itself included.

    Form and URL encodings (``quote`` and ``quote_plus``, with and without ``/`` kept, hex in
    upper and lower case); JSON string escaping (``ensure_ascii`` on and off, ``/`` escaped or
    not, ``\\u`` hex in both cases, and escaped twice, as a JSON body quoted inside a JSON
    string); base64, standard and URL-safe, without padding, of the value's UTF-8 bytes and,
    when the value is itself base64 (an API 1.0 Secret Key), of the bytes it decodes to; for a
    URL, its path and its long path segments and query values (see :func:`_url_parts`).
    """
    out = {secret}
    for safe in ("", "/"):
        out.add(quote(secret, safe=safe))
        out.add(quote_plus(secret, safe=safe))
    out |= {_HEX.sub(lambda m: m.group().lower(), f) for f in out if "%" in f}
    for ensure_ascii in (True, False):
        escaped = json.dumps(secret, ensure_ascii=ensure_ascii)[1:-1]
        out |= {escaped, escaped.replace("/", "\\/"), json.dumps(escaped)[1:-1]}
        out.add(_JSON_U.sub(lambda m: "\\u" + m.group()[2:].upper(), escaped))
    out |= _url_parts(secret)
    out |= _base64_forms(secret.encode())
    try:
        decoded = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) >= 3:
        out |= _base64_forms(decoded)
    return {f for f in out if len(f) >= _MIN_LENGTH}


def _url_parts(secret: str) -> set[str]:
    """For a URL (a webhook's, whose path may hold a token): its path with the query, the
    path alone, and each path segment or query value, when 16 characters or longer (shorter
    ones are words such as ``/api`` or ``hook``, which would blank out ordinary text)."""
    if "://" not in secret:
        return set()
    parts = urlsplit(secret)
    if not parts.netloc:
        return set()
    values = [v for _, _, v in (q.partition("=") for q in parts.query.split("&"))]
    pieces = [parts.path, f"{parts.path}?{parts.query}", *parts.path.split("/"), *values]
    return {p for p in pieces if len(p) >= _URL_PIECE}


def _base64_forms(raw: bytes) -> set[str]:
    std = base64.b64encode(raw).decode("ascii").rstrip("=")
    return {std, std.replace("+", "-").replace("/", "_")}


class Redactor:
    """Replaces every form (see :func:`forms`) of every secret of 4 characters or more by ``***``.

    Built once: the forms are computed here, longest first, so that a secret inside a longer
    one cannot leave the rest of the longer one behind. With few forms each text is scanned
    for each form; with many (a fleet's worth of secrets) the forms are indexed by their first
    four characters and each text is cut into four-character windows once, so the cost per
    text follows its length rather than the number of secrets.
    """

    __slots__ = ("_index", "_ordered")

    def __init__(self, secrets: Iterable[str]) -> None:
        every: set[str] = set()
        for secret in secrets:
            if len(secret) >= _MIN_LENGTH:
                every |= forms(secret)
        self._ordered = sorted(every, key=lambda f: (-len(f), f))
        self._index: dict[str, list[str]] | None = None
        if len(self._ordered) > _LINEAR_MAX:
            index: dict[str, list[str]] = {}
            for form in self._ordered:  # each list stays longest first
                index.setdefault(form[:_WINDOW], []).append(form)
            self._index = index

    def __bool__(self) -> bool:
        return bool(self._ordered)

    def __call__(self, text: str) -> str:
        index = self._index
        if index is None:
            candidates = self._ordered
        else:
            if len(text) < _WINDOW:
                return text
            windows = {text[i : i + _WINDOW] for i in range(len(text) - _WINDOW + 1)}
            hits = [index[w] for w in windows & index.keys()]
            if not hits:
                return text
            candidates = (
                hits[0]
                if len(hits) == 1
                else sorted({f for hit in hits for f in hit}, key=lambda f: (-len(f), f))
            )
        for form in candidates:
            if form in text:
                text = text.replace(form, _MASK)
        return text


@functools.lru_cache(maxsize=16)
def _cached(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(secrets)


#: The last tuple asked for and its redactor: a run hands one tuple of every secret to each of
#: its thousands of clients, and hashing it for the cache costs as much as a client.
_last: tuple[tuple[str, ...], Redactor] | None = None


def redactor_of(secrets: Iterable[str]) -> Redactor:
    """The :class:`Redactor` for ``secrets``, built once and shared (the last 16 sets are kept):
    every client of a fleet holds the configuration's secrets, and builds them only once."""
    global _last
    last = _last
    if last is not None and secrets is last[0]:  # a tuple, which cannot have changed
        return last[1]
    key = tuple(secrets)
    found = _cached(key)
    _last = (key, found)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every form of every secret (4 characters or longer) replaced by ``***``."""
    return redactor_of(secrets)(text)


def redactor(secrets: Iterable[str]) -> structlog.types.Processor:
    """A processor that replaces every form of every secret with ``***`` (see :class:`Redactor`)."""
    replace = redactor_of(secrets)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return replace(value)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(scrub(v) for v in value)
        if isinstance(value, BaseException):
            return scrub(f"{type(value).__name__}: {value}")
        return value

    def process(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not replace:
            return event
        return {k: scrub(v) for k, v in event.items()}

    return process


def configure_logging(
    *,
    level: str = "info",
    format: LogFormat = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Set structlog up for the whole process (called once, by the command line)."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # The console renderer prints strings raw: upstream escapes must be shown, not obeyed.
    terminal_safe: list[structlog.types.Processor] = [] if format == "json" else [visible_event]
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redactor(secrets),
            *terminal_safe,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
