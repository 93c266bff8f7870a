"""SIEM batch files, read as they arrive: line by line, never whole (``mta-rejections.md`` §2.1, §2.2).

A batch file can be large (Elastic's agent ran out of memory reading whole ones), so both readers
here are fed the file's bytes in chunks, as the download delivers them, and hand back complete
records as soon as they are whole; memory holds one chunk and one partial record, whatever the
size of the file.

* :class:`GzipLines`: API 2.0 batch files, gzip-compressed NDJSON (one event a line). Concatenated
  gzip members are read on; a blank line is skipped.
* :class:`JsonArrayItems`: API 1.0 SIEM files, one JSON document ``{"type": "MTA", "data": [...]}``
  whose ``data`` elements are the rows: each element's bytes, split by a scan that tracks strings
  and nesting (nothing is decoded here).

Each raises :class:`BadFile` with a reason a person can act on when the bytes are not what they
should be: not gzip, cut short (a truncated file), not the documented JSON shape, or a record
larger than :data:`MAX_RECORD` (a file without line breaks is not NDJSON).
"""

from __future__ import annotations

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


_QUOTE, _BACKSLASH, _COMMA = 0x22, 0x5C, 0x2C
_OPENERS, _CLOSERS = b"[{", b"]}"
_SPACE = b" \t\r\n"


class JsonArrayItems:
    """``{"type": "MTA", "data": [ row, row, ... ]}`` in, each row's bytes out.

    The scan keeps its state across chunks: inside a string or not, escaped or not, the nesting
    depth, and where the current row began. Rows are the elements of the top-level object's
    ``data`` array (depth 2); other top-level keys are skipped.
    """

    __slots__ = (
        "_buffer",
        "_depth",
        "_done",
        "_escaped",
        "_in_data",
        "_in_string",
        "_key",
        "_start",
        "_started",
        "items_read",
    )  # fmt: skip

    def __init__(self) -> None:
        self._buffer = bytearray()  # the bytes of the row in progress (or of a key)
        self._depth = 0
        self._escaped = False
        self._in_string = False
        self._in_data = False
        self._key = bytearray()  # the last string read at depth 1: the key of what follows
        self._start = False  # a row has begun
        self._started = False  # the document's "{" was seen
        self._done = False
        self.items_read = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The rows completed by ``chunk``."""
        out: list[bytes] = []
        buffer = self._buffer
        depth, in_string, escaped, start = self._depth, self._in_string, self._escaped, self._start
        in_data, key = self._in_data, self._key
        for byte in chunk:
            if self._done:
                if byte not in _SPACE:
                    raise BadFile("bytes after the end of the JSON document")
                continue
            if start:
                buffer.append(byte)
            if in_string:
                if not start and depth == 1:
                    key.append(byte)
                if escaped:
                    escaped = False
                elif byte == _BACKSLASH:
                    escaped = True
                elif byte == _QUOTE:
                    in_string = False
                continue
            if byte in _SPACE:
                continue
            if not self._started:
                if byte != 0x7B:  # "{"
                    raise BadFile('not a JSON object: expected {"type": "MTA", "data": [...]}')
                self._started = True
                depth = 1
                continue
            if byte == _QUOTE:
                in_string = True
                if depth == 1:
                    key.clear()
                    key.append(byte)
                elif in_data and depth == 2 and not start:
                    start = True
                    buffer.append(byte)
            elif byte in _OPENERS:
                if depth == 1 and byte == 0x5B and bytes(key) == b'"data"':
                    in_data = True
                elif in_data and depth == 2 and not start:
                    start = True
                    buffer.append(byte)
                depth += 1
            elif byte in _CLOSERS:
                depth -= 1
                if depth == 0:
                    self._done = True
                elif in_data and depth == 1:  # the data array closes
                    if start:
                        out.append(self._take(buffer[:-1]))
                        start = False
                    in_data = False
            elif byte == _COMMA and in_data and depth == 2 and start:
                out.append(self._take(buffer[:-1]))
                start = False
            elif in_data and depth == 2 and not start:  # a number, true, false, null
                start = True
                buffer.append(byte)
            if start and len(buffer) > MAX_RECORD:
                raise BadFile(f"a row longer than {MAX_RECORD // (1024 * 1024)} MiB")
        self._depth, self._in_string, self._escaped, self._start = depth, in_string, escaped, start
        self._in_data = in_data
        return out

    def end(self) -> None:
        """Check the document ended; :class:`BadFile` if it was cut short."""
        if not self._done:
            raise BadFile(
                "the file ends inside its JSON document: truncated"
                if self._started
                else "the file is empty"
            )

    def _take(self, row: bytearray) -> bytes:
        taken = bytes(row).rstrip()
        self._buffer.clear()
        self.items_read += 1
        return taken
