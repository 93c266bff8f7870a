"""The ``syslog`` sink: each alert one RFC 5424 message, over RELP, TLS, TCP or (if loss is
accepted) UDP.

The message::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [mimecast@32473 id="..." tenant="..."] MSG

``PRI`` is facility * 8 + severity (``high`` 3 error, ``medium`` 4 warning, ``low`` 5 notice);
``TIMESTAMP`` the alert's time (RFC 3339, UTC); ``HOSTNAME`` the setting or this machine's
FQDN; ``APP-NAME`` ``mimecast-connector``; ``PROCID`` this process's id; ``MSGID`` the category;
the structured data carries the alert's stable id and its tenant (``32473`` is the example
enterprise number RFC 5612 sets aside for documentation: the element is ours by convention,
not registered); ``MSG`` the alert in the sink's format (``cef`` by default, or ``native``,
``ocsf``, ``ecs`` JSON), UTF-8, with no BOM unless ``utf8_bom`` asks for one. Header fields are
cut to RFC 5424's lengths, printable US-ASCII, ``-`` when empty.

Transports, and what *acknowledged* means for each (the checkpoint moves only then):

* ``relp``: rsyslog's Reliable Event Logging Protocol (:mod:`._relp`); every message must be
  answered ``200 OK``. A ``500``, a timeout or a broken connection: the unanswered messages
  are sent again on a new connection, so a message can arrive twice (at least once; the id in
  the structured data is stable). Optionally over TLS (``relp_tls``).
* ``tls`` (RFC 5425) and ``tcp`` (RFC 6587 octet counting, ``<length> <message>``): written to
  the socket and flushed. TCP syslog has no receipt: a connection the server drops can lose
  what it had not yet read, and nothing tells the sender. What can be seen is used: a
  connection the server closed between batches is replaced before writing, a new connection
  is watched for ``settle`` seconds (0.25) for a server that takes it only to hang up (a
  sender it does not allow, a client certificate TLS 1.3 refuses after the handshake), and a
  write that fails sends the whole batch again. Prefer ``relp``.
* ``udp`` (RFC 5426), only with ``allow_loss = true``: one datagram per message, sent;
  a datagram can be lost without anyone knowing (a port found unreachable is logged).

Failures to connect or to deliver are retried with backoff (:class:`RetryPolicy`: attempts in a
row without progress, and a deadline since the last progress); past them the batch is not
acknowledged (:class:`SinkUnavailableError`) and the runner sends it again later. A server
certificate that fails verification, a RELP server that does not take syslog messages, and a
message longer than ``max_message_bytes`` even once shortened are refusals a person must fix
(:class:`SinkRejectedError`). A longer message is sent shortened (``alerts.shorten``: the record and
the longest texts cut, marked truncated) and logged as ``alert_shortened``: one email with a huge
subject must not stop delivery for every tenant.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import ssl
import typing
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal, Protocol, Self

import structlog
from pydantic import Field, SecretStr, field_validator, model_validator

from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import SinkRejectedError, SinkUnavailableError
from mimecast_connector._fields import path_text, secret_str
from mimecast_connector.alerts import ONE_ENCODERS, Alert, Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._limit import within
from mimecast_connector.sinks._registry import SinkKind, SinkSettings
from mimecast_connector.sinks._relp import Broken, RelpSession

_log = structlog.get_logger("mimecast_connector.sinks")

Transport = Literal["relp", "tls", "tcp", "udp"]
Facility = Literal[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "clock",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
]  # fmt: skip
#: RFC 5424 section 6.2.1's facility codes, by the names syslog daemons give them.
FACILITIES: dict[str, int] = {name: code for code, name in enumerate(typing.get_args(Facility))}
#: Alert severity -> RFC 5424 severity: error, warning, notice.
SEVERITIES: dict[str, int] = {"high": 3, "medium": 4, "low": 5}
DEFAULT_PORTS: dict[str, int] = {"relp": 2514, "tls": 6514, "tcp": 514, "udp": 514}
#: Our structured-data element: ``mimecast`` at the documentation enterprise number (RFC 5612).
SD_ID = "mimecast@32473"
APP_NAME = "mimecast-connector"
#: The most a UDP datagram over IPv4 can carry.
UDP_MAX = 65_507
DEFAULT_MAX_MESSAGE = 64 * 1024
#: RFC 5424 section 6.1: every receiver takes at least this much.
MIN_MESSAGE = 480
MAX_MESSAGE = 16 * 1024 * 1024
#: Bytes written before waiting for the socket to take them (TCP and TLS).
_DRAIN_EVERY = 256 * 1024
BOM = b"\xef\xbb\xbf"


def _software() -> str:
    try:
        return f"mimecast-connector,{version('mimecast-connector')}"
    except PackageNotFoundError:  # a source tree never installed
        return "mimecast-connector"


# --- the message ---------------------------------------------------------------------------


def sd_escape(value: str) -> str:
    """An SD-PARAM value as RFC 5424 section 6.3.3 writes it: ``"``, ``\\`` and ``]`` escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_field(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII (33-126) only, at most ``limit`` characters, and
    ``-`` (the NILVALUE) when nothing is left."""
    text = "".join(c for c in value or "" if "!" <= c <= "~")[:limit]
    return text or "-"


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting framing (RFC 5425 over TLS): the byte length, a space, the bytes."""
    return b"%d %b" % (len(message), message)


class MessageMaker:
    """Builds each alert's RFC 5424 message; everything that does not depend on the alert is
    decided once, here."""

    def __init__(
        self,
        format: Format,
        *,
        facility: str = "local0",
        hostname: str,
        app_name: str = APP_NAME,
        procid: str,
        structured_data: bool = True,
        utf8_bom: bool = False,
    ) -> None:
        self._encode = ONE_ENCODERS[format]
        base = FACILITIES[facility] * 8
        self._pri = {sev: b"<%d>1 " % (base + code) for sev, code in SEVERITIES.items()}
        middle = [
            header_field(hostname, 255),
            header_field(app_name, 48),
            header_field(procid, 128),
        ]
        self._middle = (" " + " ".join(middle) + " ").encode("ascii")
        self._msgids: dict[str, bytes] = {}
        self._structured = structured_data
        self._bom = BOM if utf8_bom else b""

    def _msgid(self, category: str) -> bytes:
        found = self._msgids.get(category)
        if found is None:
            found = self._msgids[category] = header_field(category, 32).encode("ascii")
        return found

    def __call__(self, alert: Alert) -> bytes:
        if self._structured:
            sd = f'[{SD_ID} id="{sd_escape(alert.id)}" tenant="{sd_escape(alert.tenant)}"]'
        else:
            sd = "-"
        return b"".join(
            (
                self._pri[alert.severity],
                header_field(alert.time, 64).encode("ascii"),
                self._middle,
                self._msgid(alert.category),
                b" ",
                sd.encode("utf-8"),
                b" ",
                self._bom,
                self._encode(alert),
            )
        )


# --- the connections -----------------------------------------------------------------------


class _Link(Protocol):
    """One open connection of a transport."""

    @property
    def usable(self) -> bool:
        """False once the server was seen to hang up."""
        ...

    async def send(self, units: Sequence[bytes]) -> int:
        """Deliver ``units`` (framed for the transport) by its rule, or raise :class:`Broken`."""
        ...

    async def close(self) -> None:
        """Close politely (RELP says ``close``), within a bound."""
        ...

    def abort(self) -> None:
        """Close at once: the connection is broken, or its state unknown."""
        ...


def _problem(exc: BaseException) -> str:
    """What went wrong, in words that carry no secret (no data, no key material)."""
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


async def _closed(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


class _StreamLink:
    """TCP or TLS: octet-counted messages written and flushed; no receipt exists."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout

    @property
    def usable(self) -> bool:
        # A syslog server sends nothing: an end of stream means it hung up (an idle timeout,
        # a restart). Writing there would vanish, so the sink connects anew first.
        return not (self._reader.at_eof() or self._writer.is_closing())

    async def send(self, units: Sequence[bytes]) -> int:
        pending = 0
        try:
            for unit in units:
                self._writer.write(unit)
                pending += len(unit)
                if pending >= _DRAIN_EVERY:
                    await self._drain()
                    pending = 0
            await self._drain()
        except TimeoutError:
            raise Broken(f"could not write within {self._timeout:g} s") from None
        except OSError as exc:  # a write to a broken connection: what was in flight is unknown
            raise Broken(_problem(exc)) from None
        return len(units)

    async def _drain(self) -> None:
        async with asyncio.timeout(self._timeout):
            await self._writer.drain()
        if self._writer.is_closing():  # asyncio drops writes to a connection it saw closed
            raise Broken("the server closed the connection")

    async def close(self) -> None:
        await _closed(self._writer)

    def abort(self) -> None:
        self._writer.transport.abort()


class _RelpLink:
    """RELP: each message acknowledged by the server."""

    def __init__(self, session: RelpSession, writer: asyncio.StreamWriter) -> None:
        self._session = session
        self._writer = writer

    @property
    def usable(self) -> bool:
        return self._session.usable

    async def send(self, units: Sequence[bytes]) -> int:
        try:
            return await self._session.send(units)
        except OSError as exc:
            raise Broken(_problem(exc)) from None

    async def close(self) -> None:
        await self._session.close()
        await _closed(self._writer)

    def abort(self) -> None:
        self._writer.transport.abort()


class _DatagramLink:
    """UDP: one datagram per message, handed to the kernel; nothing comes back."""

    def __init__(self, sock: socket.socket, timeout: float, name: str) -> None:
        self._sock = sock
        self._timeout = timeout
        self._name = name

    @property
    def usable(self) -> bool:
        return self._sock.fileno() != -1

    async def send(self, units: Sequence[bytes]) -> int:
        done = refused = 0
        try:
            for unit in units:
                try:
                    await self._send(unit)
                except ConnectionRefusedError:
                    # An ICMP "port unreachable" for an earlier datagram, reported on this send
                    # (which it stopped): that one is lost, as allow_loss accepts; send again.
                    refused += 1
                    await self._send(unit)
                done += 1
        except TimeoutError:
            raise Broken(f"could not send within {self._timeout:g} s", done) from None
        except OSError as exc:
            raise Broken(_problem(exc), done) from None
        finally:
            if refused:
                _log.warning(
                    "sink_losing_datagrams",
                    sink=self._name,
                    problem="the server's port is unreachable (nothing listens there?)",
                    refusals=refused,
                )
        return done

    async def _send(self, unit: bytes) -> None:
        async with asyncio.timeout(self._timeout):
            await asyncio.get_running_loop().sock_sendall(self._sock, unit)

    async def close(self) -> None:
        self._sock.close()

    def abort(self) -> None:
        self._sock.close()


# --- the sink ------------------------------------------------------------------------------


class SyslogSink:
    """RFC 5424 messages to a syslog server, one per alert."""

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        protocol: Transport = "tls",
        format: Format = "cef",
        facility: str = "local0",
        hostname: str | None = None,
        app_name: str = APP_NAME,
        structured_data: bool = True,
        utf8_bom: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        key_password: SecretStr | None = None,
        relp_tls: bool = False,
        relp_window: int = 128,
        allow_loss: bool = False,
        max_message_bytes: int | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        timeout: float = 30.0,
        settle: float = 0.25,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if protocol == "udp" and not allow_loss:
            raise ValueError("udp has no delivery guarantee: it needs allow_loss=True")
        if facility not in FACILITIES:
            raise ValueError(f"unknown facility {facility!r}")
        self._host = host
        self._port = port or DEFAULT_PORTS[protocol]
        self._protocol: Transport = protocol
        self._format: Format = format
        self._tls = protocol == "tls" or (protocol == "relp" and relp_tls)
        scheme = "relp+tls" if protocol == "relp" and relp_tls else protocol
        # The name keys the sink in the state store and appears in messages: no secret in it.
        shown = f"[{host}]" if ":" in host else host  # an IPv6 address, as URLs write it
        self.name = f"syslog:{scheme}://{shown}:{self._port}"
        self._maker_settings: dict[str, Any] = {
            "facility": facility,
            "app_name": app_name,
            "structured_data": structured_data,
            "utf8_bom": utf8_bom,
        }
        self._hostname = hostname
        self._maker: MessageMaker | None = None
        self._ca_file = ca_file
        self._cert_file = cert_file
        self._key_file = key_file
        self._key_password = key_password
        self._context: ssl.SSLContext | None = None
        self._window = relp_window
        limit = max_message_bytes or DEFAULT_MAX_MESSAGE
        self._max_message = min(limit, UDP_MAX) if protocol == "udp" else limit
        self.retry = retry or RetryPolicy(attempts=5, deadline=120.0)
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._settle = settle
        self.clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._link: _Link | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SyslogSink({self.name!r}, format={self._format!r})"

    @property
    def format(self) -> Format:
        return self._format

    async def start(self, position: str | None) -> str | None:
        """Load the TLS files and settle the header; connecting waits for the first batch.

        A TLS file that cannot be read, or a key its password does not open, is refused here
        (:class:`SinkRejectedError`), before anything is polled."""
        await self._prepare()
        return None

    def committed(self, position: str | None) -> None:
        """Nothing to do: a syslog server has no position."""

    async def aclose(self) -> None:
        self._closed = True
        await self._drop(graceful=True)

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        if self._closed:
            raise SinkRejectedError("deliver() after aclose()", sink=self.name)
        if not alerts:
            return None
        maker = await self._prepare()
        units: list[bytes] = []
        for alert in alerts:
            message = within(
                alert, maker, self._max_message, sink=self.name, setting="max_message_bytes"
            )
            units.append(octet_counted(message) if self._protocol in ("tcp", "tls") else message)
        await self._send(units)
        return None

    # --- inside -------------------------------------------------------------------------

    async def _prepare(self) -> MessageMaker:
        if self._tls and self._context is None:
            self._context = self._tls_context()
        if self._maker is None:
            hostname = self._hostname or await _fqdn()
            self._maker = MessageMaker(
                self._format, hostname=hostname, procid=str(os.getpid()), **self._maker_settings
            )
        return self._maker

    def _tls_context(self) -> ssl.SSLContext:
        """Verification always on: the system's CAs, or only ``ca_file``'s; the host name checked."""
        try:
            context = ssl.create_default_context(cafile=self._ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise SinkRejectedError(
                f"cannot use ca_file {self._ca_file!r}: {_problem(exc)}", sink=self.name
            ) from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self._cert_file is not None:
            secret = self._key_password
            try:
                context.load_cert_chain(
                    self._cert_file,
                    self._key_file,
                    password=(lambda: secret.get_secret_value()) if secret is not None else None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise SinkRejectedError(
                    f"cannot use the client certificate {self._cert_file!r} and key "
                    f"{self._key_file or self._cert_file!r}: {_problem(exc)} (a wrong "
                    "key_password reads as a bad decrypt)",
                    sink=self.name,
                ) from None
        return context

    async def _send(self, units: list[bytes]) -> None:
        """Deliver ``units`` by the transport's rule, retrying what was not delivered."""
        total = len(units)
        pending: Sequence[bytes] = units
        failures = tries = 0
        since = self.clock.monotonic()
        stale_retry = True
        while True:
            tries += 1
            if self._closed:
                raise SinkRejectedError("deliver() after aclose()", sink=self.name)
            fresh = self._link is None or not self._link.usable
            try:
                link = await self._connected()
                await link.send(pending)
                return
            except Broken as exc:
                problem, done = exc.problem, exc.done
                await self._drop(graceful=False)
            pending = pending[done:]
            if not fresh and not done and stale_retry:
                # A connection kept from an earlier batch that the server closed meanwhile
                # (an idle timeout, a restart, RELP's serverclose): once a batch, a new
                # connection at once, as no answer of this try was seen.
                stale_retry = False
                continue
            if done:  # progress: the retry budget starts again from here
                failures, since = 0, self.clock.monotonic()
            failures += 1
            wait = self.retry.backoff(failures, self._rng)
            elapsed = self.clock.monotonic() - since
            if failures >= self.retry.attempts or elapsed + wait > self.retry.deadline:
                raise SinkUnavailableError(
                    f"not acknowledged after {tries} tries ({problem}); {len(pending)} of "
                    f"the batch's {total} messages unacknowledged: the batch is sent again "
                    "on the next poll",
                    sink=self.name,
                )
            _log.warning(
                "sink_retrying",
                sink=self.name,
                problem=problem,
                attempt=tries,
                pending=len(pending),
                wait_s=round(wait, 3),
            )
            await self.clock.sleep(wait)

    async def _connected(self) -> _Link:
        if self._link is not None and not self._link.usable:
            # Closed by the server while idle: nothing of ours was in it, so no try is used.
            await self._drop(graceful=False)
        if self._link is None:
            self._link = await self._open()
        return self._link

    async def _drop(self, *, graceful: bool) -> None:
        link, self._link = self._link, None
        if link is None:
            return
        if graceful:
            await link.close()
        else:
            link.abort()

    async def _open(self) -> _Link:
        if self._protocol == "udp":
            return await self._open_udp()
        context = self._context if self._tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=context,
                    server_hostname=self._host if context is not None else None,
                    ssl_handshake_timeout=self._connect_timeout if context is not None else None,
                )
        except ssl.SSLCertVerificationError as exc:
            raise SinkRejectedError(
                f"the server's TLS certificate failed verification ({exc.verify_message}); "
                "set ca_file to the CA that signed it, or check that host names the server "
                "the certificate is for (not retried: the certificate will not change)",
                sink=self.name,
            ) from None
        except TimeoutError:
            raise Broken(f"no connection within {self._connect_timeout:g} s") from None
        except (OSError, EOFError) as exc:
            raise Broken(_problem(exc)) from None
        if self._protocol != "relp":
            await self._hung_up_at_once(reader, writer)
            return _StreamLink(reader, writer, self._timeout)
        session = RelpSession(
            reader, writer, window=self._window, timeout=self._timeout, software=_software()
        )
        try:
            await session.open()
        except Broken as exc:
            writer.transport.abort()
            if exc.refused:
                raise SinkRejectedError(
                    f"{exc.problem} (not retried: the server would say the same)", sink=self.name
                ) from None
            raise
        except OSError as exc:
            writer.transport.abort()
            raise Broken(_problem(exc)) from None
        return _RelpLink(session, writer)

    async def _hung_up_at_once(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """TCP and TLS have no answer, so a server that takes a connection only to close it (a
        sender it does not allow; a client certificate TLS 1.3 refuses after the handshake)
        would swallow the batch unseen: wait ``settle`` seconds for such a hang-up first."""
        if self._settle <= 0:
            return
        try:
            async with asyncio.timeout(self._settle):
                early = await reader.read(1)
        except TimeoutError:
            return  # still open: the usual case
        except (OSError, EOFError) as exc:
            writer.transport.abort()
            raise Broken(f"the server closed the connection at once ({_problem(exc)})") from None
        if not early:
            writer.transport.abort()
            hint = "; does it require a client certificate (cert_file)?" if self._tls else ""
            raise Broken(f"the server closed the connection at once{hint}")
        # A syslog server says nothing; a byte it says anyway is of no use to us.

    async def _open_udp(self) -> _Link:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                found = await loop.getaddrinfo(self._host, self._port, type=socket.SOCK_DGRAM)
            family, kind, proto, _, address = found[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                sock.connect(address)  # a datagram socket's connect only sets the peer
            except OSError:
                sock.close()
                raise
        except TimeoutError:
            raise Broken("the host name did not resolve in time") from None
        except OSError as exc:
            raise Broken(_problem(exc)) from None
        return _DatagramLink(sock, self._timeout, self.name)


async def _fqdn() -> str:
    """This machine's fully qualified name (a lookup that may be slow: bounded, off the loop)."""
    try:
        async with asyncio.timeout(5.0):
            return await asyncio.to_thread(socket.getfqdn)
    except TimeoutError:
        return socket.gethostname()


# --- the settings --------------------------------------------------------------------------


def _printable(value: str | None, key: str, limit: int) -> str | None:
    if value is None:
        return None
    if not value or len(value) > limit or any(not "!" <= c <= "~" for c in value):
        raise ValueError(
            f"must be 1 to {limit} printable US-ASCII characters without spaces (RFC 5424's {key})"
        )
    return value


class SyslogSinkConfig(SinkSettings):
    """Alerts as RFC 5424 syslog messages, one per alert."""

    type: Literal["syslog"]
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Transport = "tls"
    format: Format = "cef"
    facility: Facility = "local0"
    hostname: str | None = None
    app_name: str = APP_NAME
    structured_data: bool = True
    utf8_bom: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: SecretStr | None = None
    relp_tls: bool = False
    relp_window: int = Field(default=128, ge=1, le=1024)
    allow_loss: bool = False
    max_message_bytes: int | None = Field(default=None, ge=MIN_MESSAGE, le=MAX_MESSAGE)

    _key_password = field_validator("key_password", mode="before")(secret_str)
    _paths = field_validator("ca_file", "cert_file", "key_file", mode="before")(path_text)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not value or len(value) > 253 or any(not "!" <= c <= "~" for c in value):
            raise ValueError("must be a host name or an IP address (no spaces, at most 253)")
        if value.startswith("[") or "/" in value or "@" in value:
            raise ValueError("must be a bare host name or IP address (no brackets, no URL)")
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        return _printable(value, "HOSTNAME", 255)

    @field_validator("app_name")
    @classmethod
    def _app_name(cls, value: str) -> str:
        checked = _printable(value, "APP-NAME", 48)
        assert checked is not None
        return checked

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Every combination that cannot work, or would be ignored, named at once."""
        problems: list[str] = []
        given = self.model_fields_set
        tls = self.protocol == "tls" or (self.protocol == "relp" and self.relp_tls)
        if self.protocol == "udp" and not self.allow_loss:
            problems.append(
                "protocol 'udp' has no delivery guarantee: a datagram lost on the way is lost "
                "for good and nobody is told. Set allow_loss = true to accept that, or use "
                "'relp' (every message acknowledged) or 'tls'"
            )
        if self.allow_loss and self.protocol != "udp":
            problems.append("allow_loss is for protocol 'udp' only; remove it")
        if "relp_tls" in given and self.protocol != "relp":
            problems.append("relp_tls is for protocol 'relp' only (for TLS use protocol 'tls')")
        if "relp_window" in given and self.protocol != "relp":
            problems.append("relp_window is for protocol 'relp' only")
        if not tls:
            for key in ("ca_file", "cert_file", "key_file", "key_password"):
                if getattr(self, key) is not None:
                    problems.append(
                        f"{key} needs TLS: protocol 'tls', or 'relp' with relp_tls = true"
                    )
        if self.key_file is not None and self.cert_file is None:
            problems.append("key_file needs cert_file (the client certificate it belongs to)")
        if self.key_password is not None and self.cert_file is None:
            problems.append("key_password needs cert_file (and key_file, if the key is apart)")
        if (
            self.protocol == "udp"
            and self.max_message_bytes is not None
            and self.max_message_bytes > UDP_MAX
        ):
            problems.append(f"max_message_bytes: a UDP datagram carries at most {UDP_MAX} bytes")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secrets(self) -> list[str]:
        return [self.key_password.get_secret_value()] if self.key_password is not None else []

    def anchored(self, base_dir: Path) -> Self:
        update = {
            key: str(base_dir / value)
            for key in ("ca_file", "cert_file", "key_file")
            if (value := getattr(self, key)) is not None and not Path(value).is_absolute()
        }
        return self.model_copy(update=update) if update else self


def _build(settings: SyslogSinkConfig) -> Sink:
    return SyslogSink(
        settings.host,
        settings.port,
        protocol=settings.protocol,
        format=settings.format,
        facility=settings.facility,
        hostname=settings.hostname,
        app_name=settings.app_name,
        structured_data=settings.structured_data,
        utf8_bom=settings.utf8_bom,
        ca_file=settings.ca_file,
        cert_file=settings.cert_file,
        key_file=settings.key_file,
        key_password=settings.key_password,
        relp_tls=settings.relp_tls,
        relp_window=settings.relp_window,
        allow_loss=settings.allow_loss,
        max_message_bytes=settings.max_message_bytes,
    )


KIND = SinkKind(
    type="syslog",
    settings=SyslogSinkConfig,
    build=_build,
    protocol="RFC 5424 syslog, one message per alert: RELP, TLS (RFC 5425) or TCP (RFC 6587 "
    "octet counting); UDP only with `allow_loss`",
    acknowledged="RELP: every message answered `200 OK`. TCP, TLS: written and flushed "
    "(no receipt exists). UDP: sent",
    guarantee="RELP: at least once (unanswered messages are sent again; the stable `id` is in "
    "the structured data). TCP, TLS: at least once while the connection holds, but a "
    "connection the server drops loses what was in flight, unseen: use RELP. UDP: loss "
    "accepted",
    order=30,
    tested_against="rsyslogd (Debian's packages) over RELP, TCP and TLS; Python receivers of "
    "RELP, TCP, TLS and UDP for the faults",
)
