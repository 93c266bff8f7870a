"""Logging: structlog, JSON lines on stderr by default, every secret redacted on the way out.

The redaction processor is built once with the secrets of the loaded configuration and
runs last before rendering, so no event, whoever wrote it, can carry a secret out.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, Literal, TextIO

import structlog

from mimecast_connector._text import visible_event

LogFormat = Literal["json", "console"]


def _ordered(secrets: Iterable[str]) -> list[str]:
    """The secrets worth redacting (4 characters or longer), longest first."""
    return sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)


def _replace(text: str, ordered: list[str]) -> str:
    for secret in ordered:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (4 characters or longer) replaced by ``***``."""
    return _replace(text, _ordered(secrets))


def redactor(secrets: Iterable[str]) -> structlog.types.Processor:
    """A processor that replaces every secret (4 characters or longer) with ``***``."""
    values = _ordered(secrets)

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            return _replace(value, values)
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(scrub(v) for v in value)
        if isinstance(value, BaseException):
            return scrub(f"{type(value).__name__}: {value}")
        return value

    def process(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not values:
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
