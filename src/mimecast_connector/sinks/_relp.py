"""The RELP client of the ``syslog`` sink: rsyslog's Reliable Event Logging Protocol.

Written from the protocol's specification (librelp's ``doc/relp.md``, version 0 as librelp
speaks it). Every frame is ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``; the client opens a
session (``open`` with its offers, answered ``rsp`` ``200 OK`` and the server's offers), then
sends each message as a ``syslog`` command, which the server answers ``rsp`` with ``200 OK``
once it has taken it (or ``500 ...``). Transaction numbers start at 1 on every connection and
rise by one per command (the server checks it); answers come in the order of the commands. A
*window* of commands may wait for their answers at once. ``txnr`` 0 is for hints: a server
says ``serverclose`` before it hangs up. ``close`` ends a session.

This module only speaks the protocol on a connection it is given; the sink
(:mod:`._syslog`) connects, retries and decides what counts as delivered: a message is
acknowledged once its ``200`` came back, and nothing else is.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

#: The protocol version spoken (librelp's current one, and the only one it accepts).
RELP_VERSION = 0
#: The largest answer data accepted (an ``open`` answer's offers are a few hundred bytes).
MAX_ANSWER_DATA = 64 * 1024
#: The largest transaction number; the next one after it is 1 (the specification's latch).
MAX_TXNR = 999_999_999

_HEADER = re.compile(rb"(\d{1,9}) ([A-Za-z]{1,32}) (\d{1,9})([ \n])")
#: The longest a header can be: 9 digits, 32 letters, 9 digits, three separators.
_HEADER_MAX = 9 + 1 + 32 + 1 + 9 + 1
_READ_SIZE = 64 * 1024


class Broken(Exception):
    """The connection cannot go on: ``done`` messages of the call were acknowledged (RELP) or
    sent (UDP) first. The ``syslog`` sink's other transports raise it too.

    ``refused`` marks a server that will never take this client's messages (it offers no
    ``syslog`` command, or another protocol version): a configuration fault, not retried.
    """

    def __init__(self, problem: str, done: int = 0, *, refused: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.done = done
        self.refused = refused


@dataclass(frozen=True, slots=True)
class Frame:
    txnr: int
    command: bytes
    data: bytes


def frame(txnr: int, command: bytes, data: bytes) -> bytes:
    """One RELP frame."""
    if not data:
        return b"%d %b 0\n" % (txnr, command)
    return b"%d %b %d %b\n" % (txnr, command, len(data), data)


def offers(software: str) -> bytes:
    """The ``open`` command's data: our protocol version, who we are, and the one command we use."""
    return f"relp_version={RELP_VERSION}\nrelp_software={software}\ncommands=syslog".encode()


def parse_offers(text: bytes) -> dict[str, list[str]]:
    """Offers (``name=value,value`` a line) as a dict of their values."""
    found: dict[str, list[str]] = {}
    for line in text.split(b"\n"):
        if not line:
            continue
        name, _, values = line.decode("utf-8", "replace").partition("=")
        found[name.strip()] = [v.strip() for v in values.split(",")] if values else []
    return found


def shown(data: bytes, limit: int = 80) -> str:
    """A server's words for a message: printable ASCII only, cut to ``limit`` characters."""
    text = "".join(c if " " <= c <= "~" else "?" for c in data[:limit].decode("ascii", "replace"))
    return text + ("..." if len(data) > limit else "")


class FrameReader:
    """Frames from a stream, each bounded: a header of at most 53 bytes, data of at most
    :data:`MAX_ANSWER_DATA`; anything else is a protocol error (:class:`Broken`)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()

    async def _more(self) -> None:
        chunk = await self._reader.read(_READ_SIZE)
        if not chunk:
            raise Broken("the server closed the connection")
        self._buffer += chunk

    async def next(self) -> Frame:
        while True:
            found = _HEADER.match(self._buffer)
            if found is not None:
                break
            if len(self._buffer) >= _HEADER_MAX or b"\n" in self._buffer:
                raise Broken(f"not a RELP frame: {shown(bytes(self._buffer[:40]))!r}")
            await self._more()
        txnr, command, length, separator = int(found[1]), found[2], int(found[3]), found[4]
        if (length == 0) != (separator == b"\n"):
            raise Broken("a RELP frame whose length does not match its data")
        if length > MAX_ANSWER_DATA:
            raise Broken(f"a RELP answer of {length} bytes (at most {MAX_ANSWER_DATA})")
        start = found.end()
        end = start + length + (1 if length else 0)  # the data, then the trailing LF
        while len(self._buffer) < end:
            await self._more()
        if length and self._buffer[end - 1 : end] != b"\n":
            raise Broken("a RELP frame without its trailing line feed")
        data = bytes(self._buffer[start : start + length])
        del self._buffer[:end]
        return Frame(txnr, command.lower(), data)


class RelpSession:
    """One RELP session on an open connection (plain or TLS).

    ``window``: the most commands waiting for their answers; ``timeout``: seconds to wait for
    each answer (and for each write to drain).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        window: int,
        timeout: float,
        software: str,
    ) -> None:
        self._frames = FrameReader(reader)
        self._reader = reader
        self._writer = writer
        self._window = window
        self._timeout = timeout
        self._software = software
        self._txnr = 1
        self.offers: dict[str, list[str]] = {}

    def _next_txnr(self) -> int:
        txnr = self._txnr
        self._txnr = 1 if txnr >= MAX_TXNR else txnr + 1
        return txnr

    @property
    def usable(self) -> bool:
        """False once the server hung up (seen without sending anything)."""
        return not (self._reader.at_eof() or self._writer.is_closing())

    async def _answer(self, txnr: int, done: int) -> bytes:
        """The data of the answer to ``txnr``, within the timeout; hints are passed over,
        ``serverclose`` ends the session."""
        try:
            async with asyncio.timeout(self._timeout):
                while True:
                    got = await self._frames.next()
                    if got.txnr == 0:
                        if got.command == b"serverclose":
                            raise Broken("the server closed the session (serverclose)", done)
                        continue  # another hint: nothing to do with it
                    break
        except Broken as exc:
            exc.done = done
            raise
        except TimeoutError:
            raise Broken(f"no RELP answer within {self._timeout:g} s", done) from None
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise Broken(f"{type(exc).__name__} while waiting for an answer", done) from None
        if got.command != b"rsp":
            raise Broken(f"the server sent {shown(got.command)!r} instead of an answer", done)
        if got.txnr != txnr:
            raise Broken(f"an answer to transaction {got.txnr}, {txnr} was due", done)
        return got.data

    async def _drain(self, done: int) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._writer.drain()
        except TimeoutError:
            raise Broken(f"could not write within {self._timeout:g} s", done) from None
        except OSError as exc:
            raise Broken(f"{type(exc).__name__} while writing", done) from None

    async def open(self) -> None:
        """Offer ``relp_version=0`` and ``commands=syslog``; the server must accept both."""
        txnr = self._next_txnr()
        self._writer.write(frame(txnr, b"open", offers(self._software)))
        await self._drain(0)
        data = await self._answer(txnr, 0)
        status, _, rest = data.partition(b"\n")
        if not status.startswith(b"200"):
            raise Broken(f"the server refused the session: RELP {shown(status)!r}")
        self.offers = parse_offers(rest)
        version = self.offers.get("relp_version", [])
        if version != [str(RELP_VERSION)]:
            raise Broken(
                f"the server offers RELP version {','.join(version) or '(none)'}, "
                f"this client speaks {RELP_VERSION}",
                refused=True,
            )
        if "syslog" not in self.offers.get("commands", []):
            raise Broken(
                "the server does not offer the syslog command (commands="
                f"{','.join(self.offers.get('commands', [])) or 'none'}): is it a RELP "
                "server configured to take syslog messages (rsyslog's imrelp)?",
                refused=True,
            )

    async def send(self, messages: Sequence[bytes]) -> int:
        """Send each message as a ``syslog`` command, at most ``window`` awaiting their
        answers; return once every one was answered ``200``. On any failure raise
        :class:`Broken` with ``done`` = how many, from the first, were answered ``200``
        (answers come in order, so the acknowledged ones are always a prefix)."""
        waiting: deque[int] = deque()
        sent = done = 0
        total = len(messages)
        while done < total:
            while sent < total and len(waiting) < self._window:
                txnr = self._next_txnr()
                self._writer.write(frame(txnr, b"syslog", messages[sent]))
                waiting.append(txnr)
                sent += 1
            await self._drain(done)
            data = await self._answer(waiting[0], done)
            if not data.startswith(b"200"):
                raise Broken(f"the server answered RELP {shown(data)!r}", done)
            waiting.popleft()
            done += 1
        return done

    async def close(self) -> None:
        """Say ``close`` and wait (briefly) for its answer; errors are of no interest now."""
        try:
            async with asyncio.timeout(min(self._timeout, 5.0)):
                txnr = self._next_txnr()
                self._writer.write(frame(txnr, b"close", b""))
                await self._writer.drain()
                await self._answer(txnr, 0)
        except (Broken, OSError, TimeoutError):
            pass
