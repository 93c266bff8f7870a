"""SIEM batch files, read as they arrive: line by line, never whole (``mta-rejections.md`` §2.1, §2.2).

A batch file can be large (Elastic's agent ran out of memory reading whole ones), so both readers
here are fed the file's bytes in chunks, as the download delivers them, and hand back complete
records as soon as they are whole; memory holds one chunk and one partial record, whatever the
size of the file.

* :class:`GzipLines`: API 2.0 batch files, gzip-compressed NDJSON (one event a line). Concatenated
  gzip members are read on; a blank line is skipped.
* :class:`JsonArrayItems`: API 1.0 SIEM files, one JSON document ``{"type": "MTA", "data": [...]}``
  whose ``data`` elements are the rows: each element's text, found by the standard library's C
  JSON scanner value by value.

Each raises :class:`BadFile` with a reason a person can act on when the bytes are not what they
should be: not gzip, cut short (a truncated file), not the documented JSON shape, or a record
larger than :data:`MAX_RECORD` (a file without line breaks is not NDJSON).
"""

from __future__ import annotations

import codecs
import json
import zlib

#: The largest record either reader holds while waiting for its end.
MAX_RECORD = 4 * 1024 * 1024


class BadFile(Exception):
    """A batch file that cannot be read to its end: the whole file is dead-lettered."""


class GzipLines:
    """Gzip-compressed NDJSON in, complete lines out. ``feed`` what arrives, then ``end``."""

    __slots__ = ("_inflate", "_partial", "lines_read")

    def __init__(self) -> None:
        self._inflate = zlib.decompressobj(wbits=31)
        self._partial = b""
        self.lines_read = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk`` (without their line breaks; blank ones left out)."""
        text = self._inflated(chunk)
        if not text:
            return []
        if self._partial:
            text = self._partial + text
        lines = text.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > MAX_RECORD:
            raise BadFile(
                f"a line longer than {MAX_RECORD // (1024 * 1024)} MiB: not NDJSON "
                "(one event a line)"
            )
        out = [line for line in lines if line.strip()]
        self.lines_read += len(out)
        return out

    def end(self) -> list[bytes]:
        """The last line, once the file's bytes are all in; :class:`BadFile` if it was cut short."""
        if not self._inflate.eof:
            raise BadFile("the file ends inside its gzip stream: truncated")
        last = self._partial.strip()
        self._partial = b""
        if last:
            self.lines_read += 1
            return [last]
        return []

    def _inflated(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        while chunk:
            if self._inflate.eof:  # another gzip member follows (concatenated gzip)
                if not chunk.strip(b"\0"):
                    return b"".join(out)  # trailing padding
                self._inflate = zlib.decompressobj(wbits=31)
            try:
                out.append(self._inflate.decompress(chunk, MAX_RECORD))
            except zlib.error as exc:
                raise BadFile(f"not gzip, or damaged gzip data ({exc})") from None
            chunk = self._inflate.unconsumed_tail or self._inflate.unused_data
        return b"".join(out)


_WHITESPACE = " \t\r\n"
_decoder = json.JSONDecoder()


class _Incomplete(Exception):
    """The buffer ends before the next token does: wait for more bytes."""


class JsonArrayItems:
    """``{"type": "MTA", "data": [ row, row, ... ]}`` in, each row's bytes out.

    Each value is found by the standard library's C scanner (``JSONDecoder.raw_decode``), from
    where the previous one ended, and handed out as the exact text it was in the file; the
    other keys of the document are read past. A value cut by the end of a chunk is tried
    again when more bytes have come. The text is decoded incrementally, so a multi-byte
    character split between chunks is whole again.
    """

    __slots__ = ("_inflate", "_key", "_pos", "_stage", "_text", "items_read")

    def __init__(self) -> None:
        self._inflate = codecs.getincrementaldecoder("utf-8")("strict")
        self._text = ""
        self._pos = 0
        #: What comes next: "start" ("{"), "key", "colon", "value" (of a key other than data),
        #: "open" (data's "["), "first", "row", "next" ("," or "]"), "after" ("," or "}" after
        #: a key's value), "done". A stage is left only once its token is whole.
        self._stage = "start"
        self._key = ""
        self.items_read = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The rows completed by ``chunk``."""
        try:
            self._text = self._text[self._pos :] + self._inflate.decode(chunk)
        except UnicodeDecodeError as exc:
            raise BadFile(f"not UTF-8 text ({exc.reason})") from None
        self._pos = 0
        out: list[bytes] = []
        try:
            self._scan(out)
        except _Incomplete:
            if len(self._text) - self._pos > MAX_RECORD:
                raise BadFile(
                    f"a row longer than {MAX_RECORD // (1024 * 1024)} MiB, or not JSON"
                ) from None
        self.items_read += len(out)
        return out

    def end(self) -> None:
        """Check the document ended; :class:`BadFile` if it was cut short."""
        if self._stage == "start" and not self._text[self._pos :].strip(_WHITESPACE):
            raise BadFile("the file is empty")
        if self._stage != "done":
            try:
                _decoder.raw_decode(self._text, self._pos)
            except json.JSONDecodeError as exc:
                raise BadFile(
                    f"the file ends inside its JSON document: truncated ({exc.msg})"
                ) from None
            raise BadFile("the file ends inside its JSON document: truncated")
        if self._text[self._pos :].strip(_WHITESPACE):
            raise BadFile("bytes after the end of the JSON document")

    def _skip(self) -> str:
        """The next non-blank character (not consumed); _Incomplete at the buffer's end."""
        text, pos = self._text, self._pos
        while pos < len(text) and text[pos] in _WHITESPACE:
            pos += 1
        self._pos = pos
        if pos >= len(text):
            raise _Incomplete
        return text[pos]

    def _value(self) -> int:
        """The end of the JSON value at the position; _Incomplete if it may continue."""
        try:
            _, end = _decoder.raw_decode(self._text, self._pos)
        except json.JSONDecodeError:
            raise _Incomplete from None
        except RecursionError:
            raise BadFile("a row nested too deeply to read") from None
        if end >= len(self._text) and self._text[self._pos] not in '[{"':
            raise _Incomplete  # a number or literal may go on in the next chunk
        return int(end)

    def _scan(self, out: list[bytes]) -> None:
        while True:
            stage = self._stage
            if stage == "done":
                if self._text[self._pos :].strip(_WHITESPACE):
                    raise BadFile("bytes after the end of the JSON document")
                self._pos = len(self._text)
                return
            char = self._skip()
            if stage == "start":
                if char != "{":
                    raise BadFile('not a JSON object: expected {"type": "MTA", "data": [...]}')
                self._pos += 1
                self._stage = "key"
            elif stage == "key":
                if char == "}":
                    self._pos += 1
                    self._stage = "done"
                    continue
                if char != '"':
                    raise BadFile(f"not the documented shape: expected a key, found {char!r}")
                end = self._value()
                self._key = self._text[self._pos : end]
                self._pos = end
                self._stage = "colon"
            elif stage == "colon":
                if char != ":":
                    raise BadFile(f"not the documented shape: expected ':', found {char!r}")
                self._pos += 1
                self._stage = "open" if self._key == '"data"' else "value"
            elif stage == "open":
                if char != "[":
                    raise BadFile("not the documented shape: data is not an array")
                self._pos += 1
                self._stage = "first"
            elif stage == "first":  # the first row, or "]" of an empty array
                if char == "]":
                    self._pos += 1
                    self._stage = "after"
                else:
                    self._stage = "row"
            elif stage == "row":
                end = self._value()
                out.append(self._text[self._pos : end].encode("utf-8"))
                self._pos = end
                self._stage = "next"
            elif stage == "next":  # "," and another row, or "]"
                self._pos += 1
                if char == ",":
                    self._stage = "row"
                elif char == "]":
                    self._stage = "after"
                else:
                    raise BadFile(
                        f"not the documented shape: expected ',' between rows, found {char!r}"
                    )
            elif stage == "value":
                self._pos = self._value()
                self._stage = "after"
            elif stage == "after":
                self._pos += 1
                if char == ",":
                    self._stage = "key"
                elif char == "}":
                    self._stage = "done"
                else:
                    raise BadFile(f"not the documented shape: expected ',' or '}}', found {char!r}")
