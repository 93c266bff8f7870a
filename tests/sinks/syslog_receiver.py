"""Syslog receivers for the ``syslog`` sink's tests: Python fakes that follow the protocols
closely, a real rsyslogd, a strict RFC 5424 parser, and a test CA.

* :class:`OctetReceiver`: TCP, or TLS (RFC 5425), with RFC 6587 octet counting. It checks the
  framing strictly (``<digits> SP <exactly that many bytes>``; anything else is recorded in
  ``errors`` and the connection closed), and can hang up, refuse connections, or present a
  certificate the client should not trust.
* :class:`RelpServer`: RELP as librelp's server speaks it (``doc/relp.md``): it checks each
  frame's header, length and trailer, that transaction numbers start at 1 and rise by one per
  command, that ``open`` offers ``relp_version`` and ``commands=syslog`` before any ``syslog``
  command, and answers each ``syslog`` command from a script: ``200 OK`` (the default),
  ``500``, a delay, silence, a dropped connection, or a ``serverclose`` hint; it can also hold
  its answers until the client stops sending, to see how many commands the client lets wait.
  It does not implement TLS for RELP, or ``starttls``; rsyslogd is the RELP-over-TLS test.
* :class:`UdpReceiver`: every datagram, as it came.
* :class:`Rsyslogd`: rsyslogd from Debian's packages, run in the foreground on loopback ports
  with its own configuration: imrelp, imtcp, TLS (gtls) listeners, every message written to
  a file twice, raw (``%rawmsg%``) and as rsyslog parsed it (JSON), through direct queues, so
  a message is in the files before its RELP ``200`` is sent.

Servers listen on 127.0.0.1 on ports the system picks, in daemon threads: nothing leaves the
machine.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None
)
OPENSSL = shutil.which("openssl")
NO_RSYSLOGD = "rsyslogd is not installed: run scripts/ensure-rsyslog.sh (Debian's rsyslog, rsyslog-relp, rsyslog-gnutls)"
NO_OPENSSL = "the openssl command is not installed (it makes the test CA): apt-get install openssl"


def eventually(check: Callable[[], bool], *, within: float = 5.0, what: str = "") -> None:
    """Wait (in real time: a network peer's thread is doing the work) until ``check()``."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.005)


def settled(count: Callable[[], int], *, quiet: float = 0.1, within: float = 5.0) -> None:
    """Wait until ``count()`` stops growing for ``quiet`` seconds (what was sent has arrived)."""
    deadline = time.monotonic() + within
    last, since = count(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.01)
        now = count()
        if now != last:
            last, since = now, time.monotonic()


# --- RFC 5424, parsed strictly ------------------------------------------------------------

_HEADER = re.compile(
    rb"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d{0,2}) (?P<timestamp>\S+) (?P<hostname>[!-~]{1,255}) "
    rb"(?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
)
_TIMESTAMP = re.compile(r"-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")
_SD_NAME = re.compile(rb"[!-~]{1,32}", re.ASCII)


@dataclass(frozen=True)
class Syslog:
    """One RFC 5424 message, its fields decoded."""

    pri: int
    version: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    #: (SD-ID, [(name, value), ...]) per element, values unescaped.
    sd: list[tuple[str, list[tuple[str, str]]]]
    msg: bytes

    @property
    def params(self) -> dict[str, str]:
        """The params of the first element (ours), as a dict."""
        return dict(self.sd[0][1]) if self.sd else {}


def _sd_name(data: bytes, at: int, stop: bytes) -> tuple[str, int]:
    end = at
    while end < len(data) and data[end : end + 1] not in stop:
        byte = data[end]
        if byte < 33 or byte > 126 or data[end : end + 1] in b'="]':
            raise ValueError(f"bad SD name character at {end}: {data[end : end + 1]!r}")
        end += 1
    if end == at or end - at > 32:
        raise ValueError(f"bad SD name length at {at}")
    return data[at:end].decode("ascii"), end


def parse_5424(data: bytes) -> Syslog:
    """``data`` as RFC 5424 (section 6), or ValueError saying where it is not."""
    head = _HEADER.match(data)
    if head is None:
        raise ValueError(f"not an RFC 5424 header: {data[:120]!r}")
    pri = int(head["pri"])
    if pri > 191:
        raise ValueError(f"PRI {pri} is over 191")
    timestamp = head["timestamp"].decode("ascii")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise ValueError(f"not an RFC 5424 TIMESTAMP: {timestamp!r}")
    at = head.end()
    sd: list[tuple[str, list[tuple[str, str]]]] = []
    if data[at : at + 1] == b"-":
        at += 1
    else:
        while data[at : at + 1] == b"[":
            sd_id, at = _sd_name(data, at + 1, b" ]")
            params: list[tuple[str, str]] = []
            while data[at : at + 1] == b" ":
                name, at = _sd_name(data, at + 1, b"=")
                if data[at : at + 2] != b'="':
                    raise ValueError(f'expected =" at {at}')
                at += 2
                value = bytearray()
                while True:
                    if at >= len(data):
                        raise ValueError("unterminated PARAM-VALUE")
                    byte = data[at : at + 1]
                    if byte == b"\\" and data[at + 1 : at + 2] in (b'"', b"\\", b"]"):
                        value += data[at + 1 : at + 2]
                        at += 2
                    elif byte == b'"':
                        at += 1
                        break
                    elif byte == b"]":
                        raise ValueError(f"an unescaped ] inside a PARAM-VALUE at {at}")
                    else:
                        value += byte
                        at += 1
                params.append((name, value.decode("utf-8")))
            if data[at : at + 1] != b"]":
                raise ValueError(f"expected ] at {at}")
            at += 1
            sd.append((sd_id, params))
        if not sd:
            raise ValueError(f"no STRUCTURED-DATA at {at}")
    msg = b""
    if at < len(data):
        if data[at : at + 1] != b" ":
            raise ValueError(f"expected a space before MSG at {at}")
        msg = data[at + 1 :]
    return Syslog(
        pri=pri,
        version=int(head["version"]),
        timestamp=timestamp,
        hostname=head["hostname"].decode("ascii"),
        app=head["app"].decode("ascii"),
        procid=head["procid"].decode("ascii"),
        msgid=head["msgid"].decode("ascii"),
        sd=sd,
        msg=msg,
    )


# --- a test CA ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate it signed (``localhost``, ``127.0.0.1``), a client
    certificate whose key is encrypted with :attr:`client_password`, a server certificate for
    another name, and a self-signed server certificate no CA vouches for."""

    folder: Path
    client_password: str = "CANARY-client-key-password-5e1b"

    def __getitem__(self, name: str) -> str:
        return str(self.folder / name)

    def server_context(self, *, cert: str = "server", client_ca: bool = False) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self[f"{cert}.pem"], self[f"{cert}.key"])
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self["ca.pem"])
        return context


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run(  # noqa: S603 - the openssl program, our own arguments
        [OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def make_certificates(folder: Path) -> Certificates:
    """Everything :class:`Certificates` holds, made with the openssl command (EC P-256 keys)."""
    made = Certificates(folder)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
    _openssl(
        "req", "-x509", *ec, "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3",
        "-subj", "/CN=mimecast-connector test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip

    def signed(name: str, subject: str, extensions: str, *key: str) -> None:
        (folder / f"{name}.ext").write_text(
            extensions + "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        _openssl(
            "req", *ec, *(key or ("-nodes",)), "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=folder,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "3", "-extfile", f"{name}.ext",
            cwd=folder,
        )  # fmt: skip

    server = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth"
    signed("server", "/CN=localhost", server + "\nsubjectAltName=DNS:localhost,IP:127.0.0.1")
    signed("other", "/CN=elsewhere.example", server + "\nsubjectAltName=DNS:elsewhere.example")
    signed(
        "client",
        "/CN=mimecast-connector",
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth",
        "-passout",
        f"pass:{made.client_password}",
    )
    _openssl(
        "req", "-x509", *ec, "-nodes", "-keyout", "rogue.key", "-out", "rogue.pem", "-days", "3",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        cwd=folder,
    )  # fmt: skip
    return made


_made: dict[str, Certificates] = {}
_made_lock = threading.Lock()


def certificates(tmp_path_factory: Any) -> Certificates:
    """One test CA per test session (made on first use)."""
    with _made_lock:
        if "ca" not in _made:
            _made["ca"] = make_certificates(tmp_path_factory.mktemp("syslog-ca"))
        return _made["ca"]


# --- the servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class _Server:
    """A threaded TCP listener on 127.0.0.1: one thread per connection."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.connections = 0
        self.errors: list[str] = []
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def pause(self) -> None:
        """Stop listening: connections are refused until :meth:`start` again (same port)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def hang_up(self) -> None:
        """Close every open connection (the listener stays)."""
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def stop(self) -> None:
        self._stopped = True
        self.pause()
        self.hang_up()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            self.handle(conn, number)
        except (OSError, ValueError, EOFError) as exc:
            if not self._stopped:
                self.note(f"connection {number}: {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._open.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def note(self, problem: str) -> None:
        with self._lock:
            self.errors.append(problem)

    def handle(self, conn: socket.socket, number: int) -> None:
        raise NotImplementedError


class _Bytes:
    """Buffered reads from a socket, each bounded."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = bytearray()

    def fill(self) -> bool:
        chunk = self.conn.recv(65536)
        if not chunk:
            return False
        self.buffer += chunk
        return True

    def until(self, stop: bytes, limit: int) -> bytes | None:
        """Bytes up to (not including) ``stop``; None at a clean end of stream."""
        while stop not in self.buffer[: limit + 1]:
            if len(self.buffer) > limit:
                raise ValueError(f"no {stop!r} within {limit} bytes: {bytes(self.buffer[:60])!r}")
            if not self.fill():
                if self.buffer:
                    raise EOFError(f"the stream ended inside a frame: {bytes(self.buffer[:60])!r}")
                return None
        at = self.buffer.index(stop)
        found = bytes(self.buffer[:at])
        del self.buffer[: at + len(stop)]
        return found

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self.fill():
                raise EOFError(f"the stream ended {count - len(self.buffer)} bytes short")
        found = bytes(self.buffer[:count])
        del self.buffer[:count]
        return found


class OctetReceiver(_Server):
    """TCP or TLS syslog with RFC 6587 octet counting; ``messages`` in arrival order."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.context = context
        self.messages: list[bytes] = []
        #: Connections to close at once after accepting them (TLS: before the handshake).
        self.drop_next = 0
        #: The connection each message came on.
        self.connection_of: list[int] = []
        #: Messages that came on a connection after :meth:`half_close`: a real server that
        #: closed it would never have read them (lost).
        self.lost: list[bytes] = []
        self._half_closed: set[int] = set()
        self._conns: dict[int, socket.socket] = {}

    def half_close(self) -> None:
        """Say goodbye (FIN) on every open connection, as a server closing idle ones does, but
        go on reading them, to see whether the client writes there anyway."""
        with self._lock:
            conns = dict(self._conns)
            self._half_closed.update(conns)
        for conn in conns.values():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)

    def handle(self, conn: socket.socket, number: int) -> None:
        with self._lock:
            drop = self.drop_next > 0
            self.drop_next -= 1 if drop else 0
        if drop:
            return
        if self.context is not None:
            conn = self.context.wrap_socket(conn, server_side=True)
            with self._lock:
                self._open.add(conn)
        with self._lock:
            self._conns[number] = conn
        stream = _Bytes(conn)
        while True:
            length = stream.until(b" ", 10)
            if length is None:
                if isinstance(conn, ssl.SSLSocket):  # answer the client's close_notify
                    with contextlib.suppress(OSError, ValueError):
                        conn.unwrap()
                return
            if not length.isdigit() or length.startswith(b"0"):
                self.note(f"connection {number}: not an octet count: {length!r}")
                return
            message = stream.exactly(int(length))
            with self._lock:
                if number in self._half_closed:
                    self.lost.append(message)
                    continue
                self.messages.append(message)
                self.connection_of.append(number)


class UdpReceiver:
    """Every datagram that arrives, as it came."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            self.datagrams.append(data)

    def stop(self) -> None:
        self._sock.close()


# --- RELP ---------------------------------------------------------------------------------

#: Scripted answers to ``syslog`` commands, one per command (then ``OK``).
OK = "ok"  # 200 OK
BUSY = "500"  # 500 with a reason
DROP = "drop"  # hang up without answering (a FIN; what the client sent after is read, unanswered)
RESET = "reset"  # hang up abruptly (a TCP reset: answers not yet read by the client are lost)
SILENT = "silent"  # read on, answer nothing more on this connection
SERVERCLOSE = "serverclose"  # 200 OK, then the serverclose hint and a hang-up


@dataclass(frozen=True)
class Delay:
    seconds: float


_RELP_HEADER = re.compile(rb"(\d{1,9}) ([A-Za-z]{1,32}) (\d{1,9})")


@dataclass
class RelpConnection:
    """What one connection said."""

    number: int
    offers: dict[str, list[str]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    closed_politely: bool = False


class RelpServer(_Server):
    """A RELP server (librelp's side of ``doc/relp.md``), scripted; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        #: Every syslog message received (answered or not), in order.
        self.received: list[bytes] = []
        #: The messages answered 200 OK.
        self.accepted: list[bytes] = []
        self.script: list[str | Delay] = []
        #: What ``open`` is answered: "ok", "no-syslog" (offers no syslog command), "500",
        #: "drop" (hang up instead); one per connection, then "ok".
        self.open_script: list[str] = []
        #: Hold every answer until the client has sent nothing for this long, then answer all.
        self.hold: float | None = None
        #: The most commands seen waiting for their answers at once.
        self.most_waiting = 0
        self.sessions: list[RelpConnection] = []

    def _frame(self, stream: _Bytes) -> tuple[int, str, bytes] | None:
        header = stream.until(b" ", 9)
        if header is None:
            return None
        if not header.isdigit():
            raise ValueError(f"bad TXNR {header!r}")
        command = stream.until(b" ", 32)
        if command is None:
            raise EOFError("the stream ended inside a frame")
        # DATALEN ends at a space (data follows) or at the trailer (no data).
        digits = bytearray()
        while True:
            byte = stream.exactly(1)
            if byte.isdigit() and len(digits) < 9:
                digits += byte
                continue
            break
        if not digits:
            raise ValueError("no DATALEN")
        length = int(digits)
        if length == 0:
            if byte != b"\n":
                raise ValueError("a zero DATALEN must be followed by the trailer")
            return int(header), command.decode("ascii"), b""
        if byte != b" ":
            raise ValueError(f"DATALEN followed by {byte!r}")
        data = stream.exactly(length)
        if stream.exactly(1) != b"\n":
            raise ValueError("no LF trailer after DATA")
        return int(header), command.decode("ascii"), data

    def _send(self, conn: socket.socket, txnr: int, command: bytes, data: bytes) -> None:
        if data:
            conn.sendall(b"%d %b %d %b\n" % (txnr, command, len(data), data))
        else:
            conn.sendall(b"%d %b 0\n" % (txnr, command))

    def _hang_up(self, conn: socket.socket, stream: _Bytes) -> None:
        """Close our side; read (and ignore) what the client still sends until it closes too, so
        the kernel ends the connection with a FIN, not a reset."""
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(5.0)
        with contextlib.suppress(OSError):
            while stream.fill():
                stream.buffer.clear()

    def handle(self, conn: socket.socket, number: int) -> None:
        session = RelpConnection(number)
        with self._lock:
            self.sessions.append(session)
        stream = _Bytes(conn)
        expected = 1
        opened = silent = False
        held: list[int] = []
        while True:
            if self.hold is not None and held and not stream.buffer:
                readable, _, _ = select.select([conn], [], [], self.hold)
                if not readable:  # the client waits for answers: give them all
                    with self._lock:
                        self.most_waiting = max(self.most_waiting, len(held))
                    for waiting in held:
                        self._send(conn, waiting, b"rsp", b"200 OK")
                    held.clear()
                    continue
            got = self._frame(stream)
            if got is None:
                return
            txnr, command, data = got
            session.commands.append(command)
            if txnr != expected:
                self.note(f"connection {number}: txnr {txnr}, expected {expected}")
                return
            expected += 1
            if command == "open":
                opened = True
                session.offers = {
                    k: v.split(",")
                    for k, _, v in (line.partition("=") for line in data.decode().split("\n"))
                }
                with self._lock:
                    opening = self.open_script.pop(0) if self.open_script else "ok"
                if opening == "drop":
                    return
                if opening == "500":
                    self._send(conn, txnr, b"rsp", b"500 error on connect")
                    continue
                if session.offers.get("relp_version") != [
                    "0"
                ] or "syslog" not in session.offers.get("commands", []):
                    self.note(f"connection {number}: open offered {session.offers}")
                commands = "syslog" if opening == "ok" else "eventlog"
                self._send(
                    conn,
                    txnr,
                    b"rsp",
                    f"200 OK\nrelp_version=0\nrelp_software=fake,1\ncommands={commands}".encode(),
                )
            elif command == "syslog":
                if not opened:
                    self.note(f"connection {number}: syslog before open")
                    return
                with self._lock:
                    self.received.append(data)
                    what = self.script.pop(0) if self.script and not silent else OK
                if silent:
                    continue
                if what == DROP:
                    self._hang_up(conn, stream)
                    return
                if what == RESET:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if what == SILENT:
                    silent = True
                    continue
                if isinstance(what, Delay):
                    time.sleep(what.seconds)
                if what == BUSY:
                    self._send(conn, txnr, b"rsp", b"500 queue full, try again")
                    continue
                with self._lock:
                    self.accepted.append(data)
                if self.hold is not None:
                    held.append(txnr)
                    continue
                self._send(conn, txnr, b"rsp", b"200 OK")
                if what == SERVERCLOSE:
                    self._send(conn, 0, b"serverclose", b"")
                    return
            elif command == "close":
                session.closed_politely = True
                self._send(conn, txnr, b"rsp", b"")
                return
            else:
                self.note(f"connection {number}: unknown command {command!r}")
                return


# --- rsyslogd -----------------------------------------------------------------------------

_PARSED = " ".join(
    f'property(outname="{out}" name="{name}" format="jsonf"{extra}) constant(value=",")'
    for out, name, extra in (
        ("pri", "pri", ""),
        ("version", "protocol-version", ""),
        ("timestamp", "timereported", ' dateFormat="rfc3339"'),
        ("hostname", "hostname", ""),
        ("app", "app-name", ""),
        ("procid", "procid", ""),
        ("msgid", "msgid", ""),
        ("sd", "structured-data", ""),
    )
)


@dataclass
class Rsyslogd:
    """rsyslogd in the foreground with listeners on loopback; see the module docstring.

    ``relp``, ``tcp``: plain ports; ``tls``: imtcp over TLS (anonymous client);
    ``mtls``: imtcp over TLS requiring a client certificate the test CA signed; ``relp_tls``:
    imrelp over TLS. The TLS listeners exist only with ``certificates``.
    """

    folder: Path
    certificates: Certificates | None = None
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def raw_file(self) -> Path:
        return self.folder / "raw.log"

    @property
    def parsed_file(self) -> Path:
        return self.folder / "parsed.log"

    def config(self) -> str:
        if not self.ports:
            names = ["relp", "tcp"] + (["tls", "mtls", "relp_tls"] if self.certificates else [])
            self.ports = {name: free_port() for name in names}
        ports = self.ports
        lines = [
            f'global(workDirectory="{self.folder}" maxMessageSize="64k")',
            'main_queue(queue.type="Direct")',
            'module(load="imrelp")',
            'module(load="imtcp")',
            'template(name="raw" type="string" string="%rawmsg%\\n")',
            'template(name="parsed" type="list") { constant(value="{") '
            + _PARSED
            + ' property(outname="msg" name="msg" format="jsonf") constant(value="}\\n") }',
            'ruleset(name="out" queue.type="Direct") {',
            f'  action(type="omfile" file="{self.raw_file}" template="raw" flushOnTXEnd="on")',
            f'  action(type="omfile" file="{self.parsed_file}" template="parsed" flushOnTXEnd="on")',
            "}",
            f'input(type="imrelp" address="127.0.0.1" port="{ports["relp"]}" ruleset="out")',
            f'input(type="imtcp" address="127.0.0.1" port="{ports["tcp"]}" ruleset="out")',
        ]
        certs = self.certificates
        if certs is not None:
            tls = (
                'streamDriver.name="gtls" streamDriver.mode="1" '
                f'streamDriver.CAFile="{certs["ca.pem"]}" '
                f'streamDriver.CertFile="{certs["server.pem"]}" '
                f'streamDriver.KeyFile="{certs["server.key"]}"'
            )
            lines += [
                f'input(type="imtcp" address="127.0.0.1" port="{ports["tls"]}" ruleset="out" '
                f'{tls} streamDriver.authMode="anon")',
                f'input(type="imtcp" address="127.0.0.1" port="{ports["mtls"]}" ruleset="out" '
                f'{tls} streamDriver.authMode="x509/certvalid")',
                f'input(type="imrelp" address="127.0.0.1" port="{ports["relp_tls"]}" '
                f'ruleset="out" tls="on" tls.caCert="{certs["ca.pem"]}" '
                f'tls.myCert="{certs["server.pem"]}" tls.myPrivKey="{certs["server.key"]}" '
                'tls.authMode="certvalid")',
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        assert RSYSLOGD is not None, NO_RSYSLOGD
        conf = self.folder / "rsyslog.conf"
        conf.write_text(self.config())
        self.process = subprocess.Popen(  # noqa: S603 - a fixed program, our own arguments
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.folder / "rsyslogd.pid")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for port in self.ports.values():
            eventually(partial(self._listening, port), what=f"rsyslogd on port {port}")

    def _listening(self, port: int) -> bool:
        if self.process is not None and self.process.poll() is not None:
            out = self.process.stdout.read().decode() if self.process.stdout else ""
            raise AssertionError(f"rsyslogd exited {self.process.returncode}: {out}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def raw(self) -> list[bytes]:
        """Each message rsyslogd wrote, as it received it (control characters as ``#ooo``)."""
        if not self.raw_file.exists():
            return []
        return self.raw_file.read_bytes().splitlines()

    def parsed(self) -> list[dict[str, Any]]:
        """Each message as rsyslogd's own RFC 5424 parser read it."""
        if not self.parsed_file.exists():
            return []
        return [json.loads(line) for line in self.parsed_file.read_bytes().splitlines()]


@contextlib.contextmanager
def rsyslogd(folder: Path, certs: Certificates | None = None) -> Iterator[Rsyslogd]:
    server = Rsyslogd(folder, certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()
