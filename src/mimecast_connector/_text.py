"""Text for a terminal: what came from outside is shown, never obeyed.

A message from Mimecast, a value read back from the state database or a key from the
configuration file may carry ``ESC[2J`` (clear the screen), an OSC title sequence, a CR/LF that
starts a spoofed line, a C1 control or a bidi override (U+202E) that reorders what follows.
:func:`visible` turns each such character into an escape a reader can see (``\\x1b``, ``\\r``,
``\\u202e``); :func:`shown` wraps the result in a rich :class:`~rich.text.Text`, which rich never
parses as markup, so ``[red]`` from upstream prints as the five characters it is.

Everything the command line prints that it did not write itself goes through one of these, and
so does every value of the console log renderer (:func:`visible_event`). JSON logs need neither:
the JSON encoder escapes every control character itself.
"""

from __future__ import annotations

import unicodedata
from collections.abc import MutableMapping
from typing import Any

from rich.text import Text

__all__ = ["shown", "visible", "visible_event"]

#: Unicode categories that a terminal may act on instead of showing: controls (C0, DEL, C1),
#: format characters (bidi overrides and isolates, zero-width characters), lone surrogates, and
#: the line and paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str, *, keep: str = "") -> str:
    """``text`` with every control, format and separator character written as an escape.

    ``keep`` names characters to leave as they are (the console log renderer keeps ``\\n`` in
    tracebacks). Printable text, including any non-ASCII letter, is unchanged.
    """
    if text.isprintable():  # the common case: nothing a terminal could act on
        return text
    return "".join(
        _escape(c) if c not in keep and unicodedata.category(c) in _HIDDEN else c for c in text
    )


def shown(text: object, style: str = "") -> Text:
    """``str(text)`` made visible, as rich text that is never parsed as markup."""
    return Text(visible(str(text)), style=style)


def _visible_value(value: Any, keep: str = "") -> Any:
    if isinstance(value, str):
        return visible(value, keep=keep)
    if isinstance(value, dict):
        return {k: _visible_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_visible_value(v) for v in value)
    return value


def visible_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor for the console renderer: every string value made visible.

    The rendered ``exception`` keeps its newlines, so a traceback still reads as one.
    """
    return {
        key: _visible_value(value, keep="\n" if key == "exception" else "")
        for key, value in event.items()
    }
