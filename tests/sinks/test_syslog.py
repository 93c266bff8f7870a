"""The syslog sink: the RFC 5424 message, the framing, the settings, RELP's acknowledgements
and resends, TCP's and TLS's connections, UDP's datagrams, secrets, and a real rsyslogd.

The Python receivers (``syslog_receiver.py``) stand in where a fault must be made to order;
rsyslogd (Debian's packages, installed by ``scripts/ensure-rsyslog.sh``) is the real server,
and its tests are skipped, saying why, where it is not installed. Retry waits run on a
FakeClock; only the network's own timeouts (a fraction of a second here) run in real time.
"""

from __future__ import annotations

import asyncio
import os
import random
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pydantic import SecretStr, ValidationError
from structlog.testing import capture_logs

from mimecast_connector import ConfigError
from mimecast_connector._errors import SinkError, SinkRejectedError, SinkUnavailableError
from mimecast_connector.alerts import ONE_ENCODERS, TRUNCATED, Alert
from mimecast_connector.client import RetryPolicy
from mimecast_connector.config import load_config
from mimecast_connector.sinks import make_sink as build_sink
from mimecast_connector.sinks._relp import MAX_TXNR, Broken, FrameReader, RelpSession, frame
from mimecast_connector.sinks._syslog import (
    MessageMaker,
    SyslogSink,
    SyslogSinkConfig,
    Transport,
    _DatagramLink,
    header_field,
    octet_counted,
    sd_escape,
)
from tests.fakes import FakeClock
from tests.sinks.helpers import clicks, mixed
from tests.sinks.syslog_receiver import (
    BUSY,
    DROP,
    NO_OPENSSL,
    NO_RSYSLOGD,
    OK,
    OPENSSL,
    RESET,
    RSYSLOGD,
    SERVERCLOSE,
    SILENT,
    Certificates,
    Delay,
    OctetReceiver,
    RelpServer,
    Rsyslogd,
    UdpReceiver,
    certificates,
    eventually,
    parse_5424,
    settled,
)

POLICY = RetryPolicy(attempts=4, deadline=60.0, initial=0.5, maximum=30.0, floor=0.05)
PID = str(os.getpid())

MakeSink = Callable[..., SyslogSink]


@pytest.fixture
async def make_sink(clock: FakeClock) -> AsyncIterator[MakeSink]:
    """Builds started sinks to 127.0.0.1 on the test's FakeClock; closes them afterwards."""
    made: list[SyslogSink] = []

    def make(port: int, **kwargs: Any) -> SyslogSink:
        settings: dict[str, Any] = {
            "hostname": "test-host",
            "retry": POLICY,
            "connect_timeout": 2.0,
            "timeout": 2.0,
            "settle": 0.02,
            "clock": clock,
            "rng": random.Random(7),
            **kwargs,
        }
        sink = SyslogSink("127.0.0.1", port, **settings)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.aclose()


@pytest.fixture
def relp() -> Iterator[RelpServer]:
    server = RelpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def octets() -> Iterator[OctetReceiver]:
    receiver = OctetReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    if OPENSSL is None:
        pytest.skip(NO_OPENSSL)
    return certificates(tmp_path_factory)


def maker(format: Any = "cef", **kwargs: Any) -> MessageMaker:
    settings: dict[str, Any] = {"hostname": "test-host", "procid": "4242", **kwargs}
    return MessageMaker(format, **settings)


def hostile(alert: Alert) -> Alert:
    """``alert`` with a tenant and a subject that try to end the message and forge another."""
    forged = "\n<13>1 2025-01-01T00:00:00Z forged app - - - FORGED"
    return msgspec.structs.replace(
        alert, tenant='ac"me\\]' + forged, subject="Pay now" + forged + "\r\x00 \u2028 end"
    )


async def started(sink: SyslogSink) -> SyslogSink:
    await sink.start(None)
    return sink


# --- the message ---------------------------------------------------------------------------


def test_each_alert_is_one_rfc_5424_message_carrying_it() -> None:
    """Header fields as RFC 5424 section 6 parses them: PRI local0 + severity, version 1, the alert
    time, host, app, procid, the category as MSGID, our SD element, and the CEF line as MSG."""
    make = maker()
    for alert in mixed():
        message = parse_5424(make(alert))
        assert message.pri == 16 * 8 + {"high": 3, "medium": 4, "low": 5}[alert.severity]
        assert message.version == 1
        assert message.timestamp == alert.time
        assert (message.hostname, message.app, message.procid) == (
            "test-host",
            "mimecast-connector",
            "4242",
        )
        assert message.msgid == alert.category
        assert message.sd == [("mimecast@32473", [("id", alert.id), ("tenant", alert.tenant)])]
        assert message.msg == ONE_ENCODERS["cef"](alert)


@pytest.mark.parametrize(
    ("facility", "severity", "pri"),
    [
        ("local0", "high", 131),
        ("local0", "medium", 132),
        ("local0", "low", 133),
        ("user", "high", 11),
        ("kern", "low", 5),
        ("local7", "medium", 188),
    ],
)
def test_pri_is_the_facility_times_eight_plus_the_severity(
    facility: str, severity: str, pri: int
) -> None:
    """PRI = facility * 8 + severity (high 3 error, medium 4 warning, low 5 notice)."""
    alert = msgspec.structs.replace(clicks(1)[0], severity=severity)
    assert parse_5424(maker(facility=facility)(alert)).pri == pri


def test_structured_data_escapes_quote_backslash_and_bracket() -> None:
    """A tenant with ``"``, ``\\`` and ``]`` is escaped as RFC 5424 section 6.3.3 says, and reads back whole."""
    alert = msgspec.structs.replace(clicks(1)[0], tenant='a"b\\c]d')
    raw = maker()(alert)
    assert b'tenant="a\\"b\\\\c\\]d"]' in raw
    assert parse_5424(raw).params["tenant"] == 'a"b\\c]d'
    assert sd_escape('"\\]') == '\\"\\\\\\]'


def test_header_fields_are_printable_ascii_within_their_limits() -> None:
    """Spaces, controls and non-ASCII are dropped, lengths cut (HOSTNAME 255, APP-NAME 48), and an
    empty field is the NILVALUE ``-``."""
    assert header_field("bad host\n\u00e9x", 255) == "badhostx"
    assert header_field("h" * 300, 255) == "h" * 255
    assert header_field("", 48) == "-"
    assert header_field(None, 48) == "-"
    message = parse_5424(maker(hostname="x" * 300, app_name="a b" * 40)(clicks(1)[0]))
    assert message.hostname == "x" * 255
    assert len(message.app) == 48


def test_structured_data_can_be_left_out_and_a_bom_asked_for() -> None:
    """``structured_data = false`` writes ``-``; ``utf8_bom`` starts MSG with the UTF-8 BOM."""
    alert = clicks(1)[0]
    message = parse_5424(maker(structured_data=False, utf8_bom=True)(alert))
    assert message.sd == []
    assert message.msg == b"\xef\xbb\xbf" + ONE_ENCODERS["cef"](alert)
    assert parse_5424(maker()(alert)).msg.startswith(b"CEF:0|")


@pytest.mark.parametrize("format", ["native", "ocsf", "ecs"])
def test_a_json_format_makes_the_msg_one_json_document(format: Any) -> None:
    """With a JSON format the MSG is exactly that format's one-alert document."""
    alert = mixed()[1]
    assert parse_5424(maker(format=format)(alert)).msg == ONE_ENCODERS[format](alert)


# --- framing -------------------------------------------------------------------------------


def test_octet_counting_counts_utf8_bytes() -> None:
    """RFC 6587's count is the message's length in bytes, not in characters."""
    assert octet_counted("é✓".encode()) == b"5 \xc3\xa9\xe2\x9c\x93"
    assert octet_counted(b"") == b"0 "


async def test_tcp_messages_are_octet_counted_exactly(
    make_sink: MakeSink, octets: OctetReceiver
) -> None:
    """Multi-byte subjects arrive whole over TCP: the receiver's strict count parser reads exactly
    the bytes made, three batches on one connection."""
    batches = [
        [msgspec.structs.replace(a, subject="Überweisung ✓ 🚀 " * (i + 1)) for a in clicks(3)]
        for i in range(3)
    ]
    sink = await started(make_sink(octets.port, protocol="tcp"))
    for batch in batches:
        await sink.deliver(batch)
    made = maker(hostname="test-host", procid=PID)
    want = [made(a) for batch in batches for a in batch]
    settled(lambda: len(octets.messages))
    assert octets.messages == want
    assert octets.errors == []
    assert octets.connections == 1


async def test_a_line_break_inside_a_message_does_not_split_it(
    make_sink: MakeSink, octets: OctetReceiver
) -> None:
    """A raw line feed in the SD (a hostile tenant) and an escaped one in the CEF subject stay
    inside their message: the count says where it ends, so nothing forged starts a message."""
    batch = [hostile(a) for a in clicks(2)]
    sink = await started(make_sink(octets.port, protocol="tcp"))
    await sink.deliver(batch)
    settled(lambda: len(octets.messages))
    assert len(octets.messages) == 2
    for message, alert in zip(octets.messages, batch, strict=True):
        assert b"\n<13>1 2025-01-01T00:00:00Z forged" in message  # raw, in the SD param
        assert b"Pay now\\n<13>1" in message  # escaped by CEF in the MSG
        assert parse_5424(message).params["id"] == alert.id


async def test_udp_sends_one_datagram_per_message(make_sink: MakeSink) -> None:
    """Over UDP each message, hostile line breaks and all, is one datagram, unsplit."""
    receiver = UdpReceiver()
    try:
        batch = [hostile(a) for a in clicks(3)]
        sink = await started(make_sink(receiver.port, protocol="udp", allow_loss=True))
        await sink.deliver(batch)
        settled(lambda: len(receiver.datagrams))
        made = maker(hostname="test-host", procid=PID)
        assert receiver.datagrams == [made(a) for a in batch]
    finally:
        receiver.stop()


async def test_udp_to_a_closed_port_is_sent_without_retries(
    make_sink: MakeSink, clock: FakeClock
) -> None:
    """UDP to a port nothing listens on: the batch counts as sent (``allow_loss``), with no retry
    wait, whatever the kernel reports (its ICMP answers are rate-limited, so maybe nothing)."""
    receiver = UdpReceiver()
    port = receiver.port
    receiver.stop()  # nothing listens there now
    sink = await started(make_sink(port, protocol="udp", allow_loss=True))
    with capture_logs() as logs:
        assert await sink.deliver(clicks(50)) is None
    assert clock.sleeps == []
    assert {log["event"] for log in logs} <= {"sink_losing_datagrams"}


class RefusingSocket:
    """A datagram socket whose sends number ``refused`` raise ECONNREFUSED, as the kernel does
    once for an earlier datagram that met "port unreachable"."""

    def __init__(self, refused: set[int]) -> None:
        self.refused = refused
        self.calls = 0
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.calls += 1
        if self.calls in self.refused:
            raise ConnectionRefusedError(111, "Connection refused")
        self.sent.append(data)
        return len(data)

    def gettimeout(self) -> float:
        return 0.0


async def test_a_port_unreachable_report_is_logged_and_the_datagram_sent_again() -> None:
    """ECONNREFUSED on a send reports an earlier datagram lost (allowed): it is logged, and the
    datagram whose send it stopped is sent again, so every one leaves."""
    sock = RefusingSocket({2, 5})
    link = _DatagramLink(sock, 1.0, "syslog:udp://h:514")  # type: ignore[arg-type]
    with capture_logs() as logs:
        assert await link.send([b"a", b"b", b"c", b"d"]) == 4
    assert sock.sent == [b"a", b"b", b"c", b"d"]
    assert [(log["event"], log["refusals"]) for log in logs] == [("sink_losing_datagrams", 2)]


async def test_a_message_over_the_cap_is_sent_shortened_and_logged(
    make_sink: MakeSink, relp: RelpServer
) -> None:
    """An alert whose message is longer than ``max_message_bytes`` (a 100,000-character URL,
    which anyone can mail) is sent cut to fit, in its format and marked, not refused: a refusal
    stopped delivery for every tenant until a person raised the limit, and a receiver with a
    smaller limit of its own would cut the message unseen, its alert id last. The others of
    the batch go as they are; the log names the alert, never its text."""
    batch = clicks(3)
    secret_url = "https://evil.example/" + "x" * 100_000
    batch[1] = msgspec.structs.replace(batch[1], url=secret_url)
    sink = await started(make_sink(relp.port, protocol="relp", max_message_bytes=2_000))
    with capture_logs() as logs:
        assert await sink.deliver(batch) is None
    messages = [parse_5424(m).msg for m in relp.received]
    assert len(relp.received) == 3
    assert all(len(m) <= 2_000 for m in relp.received)
    assert messages[0] == ONE_ENCODERS["cef"](batch[0])
    assert messages[2] == ONE_ENCODERS["cef"](batch[2])
    shortened = messages[1].decode()
    assert shortened.endswith(f"externalId={batch[1].id}")
    assert "request=https://evil.example/xxx" in shortened
    assert f"{TRUNCATED} " in shortened
    [log] = [entry for entry in logs if entry["event"] == "alert_shortened"]
    assert (log["alert"], log["bytes"] > 100_000, log["limit"]) == (batch[1].id, True, 2_000)
    assert "evil.example" not in repr(logs)


async def test_a_cap_below_an_alerts_own_fields_is_refused_and_nothing_sent(
    make_sink: MakeSink, relp: RelpServer
) -> None:
    """When even the alert's id, type and time with every text cut are longer than
    ``max_message_bytes`` (an OCSF finding in 600 bytes), the batch is refused before anything
    is sent, naming the alert and what to change."""
    batch = clicks(3)
    sink = await started(
        make_sink(relp.port, protocol="relp", max_message_bytes=600, format="ocsf")
    )
    with pytest.raises(
        SinkRejectedError, match=f"alert {batch[0].id} is .* over max_message_bytes"
    ):
        await sink.deliver(batch)
    assert relp.received == []


# --- settings ------------------------------------------------------------------------------


def settings(**kwargs: Any) -> SyslogSinkConfig:
    return SyslogSinkConfig.model_validate({"type": "syslog", "host": "siem.example", **kwargs})


def test_udp_is_refused_without_allow_loss() -> None:
    """``protocol = "udp"`` alone is a configuration error that says UDP guarantees nothing; with
    ``allow_loss = true`` it is accepted (and the sink class refuses it alike)."""
    with pytest.raises(ValidationError, match="no delivery guarantee") as caught:
        settings(protocol="udp")
    assert "allow_loss = true" in str(caught.value)
    assert settings(protocol="udp", allow_loss=True).allow_loss
    with pytest.raises(ValueError, match="allow_loss"):
        SyslogSink("127.0.0.1", 514, protocol="udp")


def test_settings_that_cannot_work_are_all_named_at_once() -> None:
    """allow_loss off udp, TLS files without TLS, a key without its certificate, RELP keys off
    RELP: one error naming each."""
    with pytest.raises(ValidationError) as caught:
        settings(
            protocol="tcp",
            allow_loss=True,
            ca_file="ca.pem",
            key_file="k.pem",
            relp_window=8,
            relp_tls=True,
        )
    text = str(caught.value)
    for words in (
        "allow_loss is for protocol 'udp' only",
        "ca_file needs TLS",
        "key_file needs TLS",
        "key_file needs cert_file",
        "relp_window is for protocol 'relp' only",
        "relp_tls is for protocol 'relp' only",
    ):
        assert words in text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hostname", "has space"),
        ("hostname", "h" * 256),
        ("hostname", "h\u00e9"),
        ("app_name", "a" * 49),
        ("facility", "local8"),
        ("host", "siem.example/path"),
        ("host", ""),
        ("port", 0),
        ("relp_window", 0),
        ("max_message_bytes", 100),
    ],
)
def test_a_header_or_connection_setting_out_of_bounds_is_refused(key: str, value: Any) -> None:
    """Values RFC 5424 or a socket cannot carry are refused when the configuration is read."""
    extra = {"protocol": "relp"} if key == "relp_window" else {}
    with pytest.raises(ValidationError, match=key):
        settings(**{key: value}, **extra)


def test_the_defaults() -> None:
    """TLS on port 6514, CEF, local0, structured data on, no BOM; RELP 2514, TCP and UDP 514."""
    found = settings()
    assert (found.protocol, found.port, found.format, found.facility) == (
        "tls",
        None,
        "cef",
        "local0",
    )
    assert (found.structured_data, found.utf8_bom, found.relp_window) == (True, False, 128)
    ports: list[tuple[Transport, int]] = [("tls", 6514), ("relp", 2514), ("tcp", 514)]
    for protocol, port in ports:
        assert SyslogSink("h", protocol=protocol).name == f"syslog:{protocol}://h:{port}"
    assert SyslogSink("h", protocol="udp", allow_loss=True).name == "syslog:udp://h:514"
    assert SyslogSink("h", protocol="relp", relp_tls=True).name == "syslog:relp+tls://h:2514"


def test_a_syslog_table_loads_anchored_with_its_secret(tmp_path: Path) -> None:
    """A ``[[sinks]]`` table of type syslog is read (relative TLS files made relative to the
    configuration's folder, the key password from the environment), listed among the secrets,
    and built as a SyslogSink."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[[tenants]]\nname = "t"\nclient_id = "i"\nclient_secret = "s"\n'
        '[[sinks]]\ntype = "syslog"\nhost = "siem.example"\nprotocol = "relp"\n'
        'relp_tls = true\nca_file = "tls/ca.pem"\ncert_file = "/etc/c.pem"\n'
        'key_file = "tls/k.pem"\nkey_password = "env:KEY_PASS"\nformat = "ocsf"\n'
    )
    loaded = load_config(config, environ={"KEY_PASS": "CANARY-loaded-pass"})
    [sink] = loaded.sinks
    assert isinstance(sink, SyslogSinkConfig)
    assert sink.ca_file == str(tmp_path / "tls/ca.pem")
    assert sink.cert_file == "/etc/c.pem"
    assert sink.key_file == str(tmp_path / "tls/k.pem")
    assert "CANARY-loaded-pass" in loaded.secrets()
    assert "CANARY-loaded-pass" not in repr(sink)
    built = build_sink(sink)
    assert isinstance(built, SyslogSink)
    assert (built.name, built.format) == ("syslog:relp+tls://siem.example:2514", "ocsf")
    config.write_text(config.read_text().replace('protocol = "relp"', 'protocol = "udp"'))
    with pytest.raises(ConfigError, match="no delivery guarantee"):
        load_config(config, environ={"KEY_PASS": "x"})


# --- RELP ----------------------------------------------------------------------------------


async def test_relp_opens_a_session_and_every_message_is_answered(
    make_sink: MakeSink, relp: RelpServer
) -> None:
    """``open`` offers relp_version=0, relp_software and commands=syslog; each message is a
    ``syslog`` command with the next txnr (the server checks), answered 200; ``aclose`` says
    ``close``."""
    batch = mixed()
    sink = await started(make_sink(relp.port, protocol="relp"))
    assert await sink.deliver(batch) is None
    await sink.aclose()
    eventually(lambda: bool(relp.sessions) and relp.sessions[0].closed_politely, what="close")
    [session] = relp.sessions
    assert session.offers["relp_version"] == ["0"]
    assert session.offers["commands"] == ["syslog"]
    assert session.offers["relp_software"][0] == "mimecast-connector"
    assert session.commands == ["open", *["syslog"] * len(batch), "close"]
    made = maker(hostname="test-host", procid=PID)
    assert relp.accepted == [made(a) for a in batch]
    assert relp.errors == []


async def test_relp_keeps_at_most_the_window_waiting(make_sink: MakeSink, relp: RelpServer) -> None:
    """With ``relp_window = 4`` and a server that answers only once the client stops sending, the
    client stops at exactly 4 unanswered commands, and every message is delivered."""
    relp.hold = 0.1
    batch = clicks(10)
    sink = await started(make_sink(relp.port, protocol="relp", relp_window=4))
    await sink.deliver(batch)
    assert relp.most_waiting == 4
    assert len(relp.accepted) == 10


async def test_relp_is_not_acknowledged_until_answered(
    make_sink: MakeSink, relp: RelpServer, clock: FakeClock
) -> None:
    """A server that takes messages but never answers: every try waits its timeout, the retries
    are bounded, and the batch is not acknowledged."""
    relp.script = [SILENT] * 3
    sink = await started(
        make_sink(relp.port, protocol="relp", timeout=0.2, retry=RetryPolicy(attempts=3))
    )
    with pytest.raises(
        SinkUnavailableError, match=r"after 3 tries \(no RELP answer within 0.2 s\)"
    ):
        await sink.deliver(clicks(2))
    assert len(clock.sleeps) == 2
    assert relp.connections == 3
    assert relp.accepted == []


async def test_a_500_resends_from_the_refused_message(
    make_sink: MakeSink, relp: RelpServer, clock: FakeClock
) -> None:
    """A ``500`` for the second message: a new session resends from it (the ones after it, already
    answered, come again: at least once), after one backoff wait; nothing is lost."""
    relp.script = [OK, BUSY]
    batch = clicks(5)
    made = maker(hostname="test-host", procid=PID)
    sink = await started(make_sink(relp.port, protocol="relp"))
    with capture_logs() as logs:
        await sink.deliver(batch)
    want = [made(a) for a in batch]
    # The first message, answered before the refusal, is never sent again; the refused one and
    # every one after it come again, in order, on the new session. Those the old session still
    # took after the refusal may arrive before or among them (the server's threads decide).
    assert relp.accepted.count(want[0]) == 1
    assert set(relp.accepted) == set(want)
    resent = iter(relp.accepted)
    assert all(message in resent for message in want[1:])  # want[1:] in order, as a subsequence
    assert relp.connections == 2
    assert len(clock.sleeps) == 1
    assert [log["problem"] for log in logs] == [
        "the server answered RELP '500 queue full, try again'"
    ]


async def test_a_connection_dropped_mid_window_is_resent_on_a_new_one(
    make_sink: MakeSink, relp: RelpServer
) -> None:
    """The server hangs up at the third message without answering it: the first two were
    answered and are not sent again; the rest go on a new session; each arrives once."""
    relp.script = [OK, OK, DROP]
    batch = clicks(6)
    made = maker(hostname="test-host", procid=PID)
    sink = await started(make_sink(relp.port, protocol="relp"))
    await sink.deliver(batch)
    assert relp.accepted == [made(a) for a in batch]
    assert relp.connections == 2
    assert relp.received[3] == made(batch[2])  # the second session starts at the third


async def test_a_reset_mid_window_loses_nothing(make_sink: MakeSink, relp: RelpServer) -> None:
    """The server resets the connection at the third message: answers it had sent can be lost
    with it, so the client resends from the first answer it did not read; every message
    arrives, in order of first arrival, some perhaps twice (at least once)."""
    relp.script = [OK, OK, RESET]
    batch = clicks(6)
    made = maker(hostname="test-host", procid=PID)
    sink = await started(make_sink(relp.port, protocol="relp"))
    await sink.deliver(batch)
    assert list(dict.fromkeys(relp.accepted)) == [made(a) for a in batch]
    assert relp.connections == 2


async def test_slow_answers_within_the_timeout_are_waited_for(
    make_sink: MakeSink, relp: RelpServer, clock: FakeClock
) -> None:
    """Answers that take a while, but less than the timeout, need no retry."""
    relp.script = [Delay(0.2), Delay(0.2)]
    sink = await started(make_sink(relp.port, protocol="relp", timeout=2.0))
    await sink.deliver(clicks(3))
    assert len(relp.accepted) == 3
    assert (relp.connections, clock.sleeps) == (1, [])


async def test_a_serverclose_between_batches_costs_no_retry(
    make_sink: MakeSink, relp: RelpServer, clock: FakeClock
) -> None:
    """A server that says ``serverclose`` after a batch: the next batch goes on a new session at
    once, without a backoff wait, and arrives once."""
    relp.script = [SERVERCLOSE]
    sink = await started(make_sink(relp.port, protocol="relp"))
    first, second = clicks(1), clicks(2, start=1)
    await sink.deliver(first)
    await sink.deliver(second)
    made = maker(hostname="test-host", procid=PID)
    assert relp.accepted[-2:] == [made(a) for a in second]
    assert relp.connections == 2
    assert clock.sleeps == []


async def test_a_server_that_takes_no_syslog_is_refused_for_good(
    make_sink: MakeSink, relp: RelpServer, clock: FakeClock
) -> None:
    """A RELP server whose ``open`` answer offers no ``syslog`` command is a configuration error,
    not retried."""
    relp.open_script = ["no-syslog"]
    sink = await started(make_sink(relp.port, protocol="relp"))
    with pytest.raises(SinkRejectedError, match="does not offer the syslog command"):
        await sink.deliver(clicks(1))
    assert (relp.connections, clock.sleeps) == (1, [])


async def test_relp_retries_stop_at_the_deadline(
    make_sink: MakeSink, relp: RelpServer, clock: FakeClock
) -> None:
    """A server refusing every session: retries stop before the waits would pass the deadline."""
    relp.open_script = ["500"] * 10
    policy = RetryPolicy(attempts=100, deadline=3.0, initial=1.0, maximum=1.0, floor=1.0)
    sink = await started(make_sink(relp.port, protocol="relp", retry=policy))
    with pytest.raises(SinkUnavailableError, match="refused the session"):
        await sink.deliver(clicks(1))
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert relp.connections == 4


async def test_progress_renews_the_retry_budget(make_sink: MakeSink, relp: RelpServer) -> None:
    """A server that drops the session after every two answers still takes a long batch with
    ``attempts = 2``: each try that got answers starts the count again; each message once."""
    relp.script = [OK, OK, DROP] * 6
    batch = clicks(10)
    made = maker(hostname="test-host", procid=PID)
    sink = await started(make_sink(relp.port, protocol="relp", retry=RetryPolicy(attempts=2)))
    await sink.deliver(batch)
    assert relp.accepted == [made(a) for a in batch]


async def test_transaction_numbers_rise_by_one_and_wrap_to_one() -> None:
    """Each command takes the next txnr; after 999,999,999 comes 1 (the specification's latch)."""
    unused: Any = None
    session = RelpSession(asyncio.StreamReader(), unused, window=1, timeout=1.0, software="t")
    assert [session._next_txnr() for _ in range(3)] == [1, 2, 3]
    session._txnr = MAX_TXNR
    assert [session._next_txnr() for _ in range(2)] == [MAX_TXNR, 1]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"1 rsp 6 200 OK", "closed the connection"),  # no trailer: the stream ends inside
        (b"1 rsp 6 200 OKX", "trailing line feed"),
        (b"1 rsp 0 x\n", "does not match"),
        (b"1 rsp x 0\n", "not a RELP frame"),
        (b"1 rsp 99999999 ", "at most 65536"),
        (b"x" * 60, "not a RELP frame"),
        (b"1 rsp 3\n", "does not match"),
    ],
)
async def test_a_malformed_answer_breaks_the_session(data: bytes, problem: str) -> None:
    """Frames are read by the specification and bounded: anything else ends the session."""
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    with pytest.raises(Broken, match=problem):
        await FrameReader(reader).next()


async def test_frames_are_read_as_written() -> None:
    """What :func:`frame` writes, the reader reads back: with data, and without."""
    reader = asyncio.StreamReader()
    reader.feed_data(frame(7, b"rsp", b"200 OK\nx=1") + frame(0, b"serverclose", b""))
    frames = FrameReader(reader)
    first, second = await frames.next(), await frames.next()
    assert (first.txnr, first.command, first.data) == (7, b"rsp", b"200 OK\nx=1")
    assert (second.txnr, second.command, second.data) == (0, b"serverclose", b"")


# --- TCP and TLS ---------------------------------------------------------------------------


async def test_a_connection_the_server_closed_while_idle_is_replaced(
    make_sink: MakeSink, octets: OctetReceiver, clock: FakeClock
) -> None:
    """TCP has no answer: a batch written to a connection the server had closed would vanish.
    The sink sees the server's goodbye and writes the next batch on a new connection, not on
    the old one (which this receiver still reads, to catch it), without a retry."""
    sink = await started(make_sink(octets.port, protocol="tcp"))
    await sink.deliver(clicks(1))
    settled(lambda: len(octets.messages))
    octets.half_close()
    await asyncio.sleep(0.1)  # the network's own time: the goodbye reaches the sink's loop
    second = clicks(2, start=1)
    await sink.deliver(second)
    settled(lambda: len(octets.messages) + len(octets.lost), quiet=0.2)
    assert octets.lost == []
    assert [parse_5424(m).params["id"] for m in octets.messages[1:]] == [a.id for a in second]
    assert octets.connection_of == [1, 2, 2]
    assert clock.sleeps == []


async def test_a_server_that_hangs_up_at_once_is_not_written_to(
    make_sink: MakeSink, octets: OctetReceiver, clock: FakeClock
) -> None:
    """A TCP server that accepts only to close (a sender it does not allow) would swallow the
    batch: the sink waits ``settle`` for that, retries, and delivers once it stays open."""
    octets.drop_next = 2
    sink = await started(make_sink(octets.port, protocol="tcp", settle=0.5))
    await sink.deliver(clicks(2))
    settled(lambda: len(octets.messages))
    assert len(octets.messages) == 2
    assert (octets.connections, len(clock.sleeps)) == (3, 2)


async def test_connection_refused_is_retried_then_not_acknowledged(
    make_sink: MakeSink, octets: OctetReceiver, clock: FakeClock
) -> None:
    """A closed port: bounded retries on the clock, then not acknowledged; once the server listens
    again, the batch arrives."""
    octets.pause()
    sink = await started(make_sink(octets.port, protocol="tcp"))
    batch = clicks(2)
    with pytest.raises(SinkUnavailableError, match=r"after 4 tries \(ConnectionRefusedError"):
        await sink.deliver(batch)
    assert len(clock.sleeps) == 3
    octets.start()
    await sink.deliver(batch)
    settled(lambda: len(octets.messages))
    assert [parse_5424(m).params["id"] for m in octets.messages] == [a.id for a in batch]


async def test_tls_delivers_to_a_server_the_ca_file_vouches_for(
    make_sink: MakeSink, certs: Certificates
) -> None:
    """RFC 5425: octet-counted messages inside TLS, the server checked against ``ca_file``."""
    receiver = OctetReceiver(certs.server_context())
    receiver.start()
    try:
        batch = mixed()
        sink = await started(make_sink(receiver.port, protocol="tls", ca_file=certs["ca.pem"]))
        await sink.deliver(batch)
        settled(lambda: len(receiver.messages))
        made = maker(hostname="test-host", procid=PID)
        assert receiver.messages == [made(a) for a in batch]
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    ("cert", "ca", "words"),
    [
        ("rogue", True, "self-signed certificate"),  # self-signed, and ca_file is another CA
        ("rogue", False, "self-signed certificate"),  # self-signed, the system's CAs
        ("server", False, "unable to get local issuer certificate"),  # the test CA is no system CA
        ("other", True, "address mismatch"),  # signed, but for another name
    ],
)
async def test_tls_verification_refuses_an_unvouched_server(
    make_sink: MakeSink, certs: Certificates, clock: FakeClock, cert: str, ca: bool, words: str
) -> None:
    """Verification is always on: a certificate no trusted CA signed, or for another host, is a
    configuration error naming the reason and ``ca_file``, not retried, and nothing is sent."""
    receiver = OctetReceiver(certs.server_context(cert=cert))
    receiver.start()
    try:
        extra = {"ca_file": certs["ca.pem"]} if ca else {}
        sink = await started(make_sink(receiver.port, protocol="tls", **extra))
        with pytest.raises(SinkRejectedError, match=words) as caught:
            await sink.deliver(clicks(1))
        assert "set ca_file" in str(caught.value)
        assert (receiver.connections, receiver.messages, clock.sleeps) == (1, [], [])
    finally:
        receiver.stop()


async def test_a_client_certificate_with_an_encrypted_key(
    make_sink: MakeSink, certs: Certificates, clock: FakeClock
) -> None:
    """Mutual TLS: the client certificate's key opens with ``key_password`` and the server that
    requires it takes the batch; without it, the server's refusal is seen and not acknowledged."""
    receiver = OctetReceiver(certs.server_context(client_ca=True))
    receiver.start()
    try:
        common = {"protocol": "tls", "ca_file": certs["ca.pem"], "settle": 0.5}
        without = await started(make_sink(receiver.port, retry=RetryPolicy(attempts=2), **common))
        with pytest.raises(SinkUnavailableError):
            await without.deliver(clicks(1))
        assert receiver.messages == []
        sink = await started(
            make_sink(
                receiver.port,
                cert_file=certs["client.pem"],
                key_file=certs["client.key"],
                key_password=SecretStr(certs.client_password),
                **common,
            )
        )
        await sink.deliver(clicks(2))
        settled(lambda: len(receiver.messages))
        assert len(receiver.messages) == 2
    finally:
        receiver.stop()


async def test_unreadable_tls_files_are_refused_at_start(
    make_sink: MakeSink, certs: Certificates, tmp_path: Path
) -> None:
    """A missing ``ca_file`` or a key the password does not open stops ``start`` with a
    configuration error naming the file."""
    missing = make_sink(1, protocol="tls", ca_file=str(tmp_path / "none.pem"))
    with pytest.raises(SinkRejectedError, match="cannot use ca_file"):
        await missing.start(None)
    wrong = make_sink(
        1,
        protocol="tls",
        cert_file=certs["client.pem"],
        key_file=certs["client.key"],
        key_password=SecretStr("not-the-password"),
    )
    with pytest.raises(SinkRejectedError, match=r"client\.key"):
        await wrong.start(None)


# --- secrets -------------------------------------------------------------------------------

CANARY_PASSWORD = "CANARY-syslog-key-password-9d3e"


async def test_no_secret_reaches_errors_reprs_or_logs(
    make_sink: MakeSink, certs: Certificates, octets: OctetReceiver
) -> None:
    """The key password reaches the key file, but no name, repr, error, log or settings repr."""
    octets.pause()
    wrong = make_sink(
        octets.port,
        protocol="tls",
        cert_file=certs["client.pem"],
        key_file=certs["client.key"],
        key_password=SecretStr(CANARY_PASSWORD),
    )
    errors: list[SinkError] = []
    with pytest.raises(SinkRejectedError) as caught:
        await wrong.start(None)
    errors.append(caught.value)
    # The canary was really in play: with the right password, the same key opens.
    right = make_sink(
        octets.port,
        protocol="tls",
        ca_file=certs["ca.pem"],
        cert_file=certs["client.pem"],
        key_file=certs["client.key"],
        key_password=SecretStr(certs.client_password),
        retry=RetryPolicy(attempts=2),
    )
    await right.start(None)
    with capture_logs() as logs, pytest.raises(SinkUnavailableError) as down:
        await right.deliver(clicks(1))
    errors.append(down.value)
    assert logs
    configured = settings(protocol="tls", cert_file="c.pem", key_password=CANARY_PASSWORD, host="h")
    assert configured.secrets() == [CANARY_PASSWORD]
    texts = [wrong.name, repr(wrong), right.name, repr(right), repr(logs), repr(configured)]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    assert [t for t in texts if CANARY_PASSWORD in t or certs.client_password in t] == []


# --- a real rsyslogd -----------------------------------------------------------------------


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslogd]:
    """rsyslogd with plain RELP and TCP listeners, for one test."""
    if RSYSLOGD is None:
        pytest.skip(NO_RSYSLOGD)
    server = Rsyslogd(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_rsyslog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rsyslogd]:
    """rsyslogd with every listener, TLS ones too, shared by this module's tests (GnuTLS takes
    seconds to set up its listeners)."""
    if RSYSLOGD is None:
        pytest.skip(NO_RSYSLOGD)
    if OPENSSL is None:
        pytest.skip(NO_OPENSSL)
    certs = certificates(tmp_path_factory)
    server = Rsyslogd(tmp_path_factory.mktemp("rsyslog-tls"), certs)
    server.start()
    yield server
    server.stop()


def check_rsyslog(
    server: Rsyslogd, batch: list[Alert], *, once: bool = True, after: int = 0
) -> None:
    """Every alert of ``batch`` is in rsyslogd's file past its first ``after`` lines (exactly
    once if ``once``), each line RFC 5424 by our parser and by rsyslog's, the two agreeing."""
    raw, parsed = server.raw()[after:], server.parsed()[after:]
    assert len(raw) == len(parsed)
    by_id = {a.id: a for a in batch}
    seen: list[str] = []
    for line, theirs in zip(raw, parsed, strict=True):
        ours = parse_5424(line)
        alert = by_id[ours.params["id"]]
        seen.append(alert.id)
        assert theirs["version"] == "1"
        assert int(theirs["pri"]) == ours.pri
        assert (theirs["app"], theirs["msgid"], theirs["procid"]) == (
            "mimecast-connector",
            alert.category,
            PID,
        )
        assert theirs["hostname"] == ours.hostname == "test-host"
        assert f'id="{alert.id}"' in theirs["sd"]
        assert theirs["msg"].encode() == ours.msg
    if once:
        assert sorted(seen) == sorted(by_id)
    else:
        assert set(seen) == set(by_id)


async def test_rsyslogd_gets_every_alert_once_over_relp(
    make_sink: MakeSink, rsyslog: Rsyslogd
) -> None:
    """200 alerts in two batches, 16 waiting at most: rsyslogd wrote each once (its direct queue
    writes before it answers 200), RFC 5424 by both parsers."""
    batch = clicks(200)
    sink = await started(make_sink(rsyslog.ports["relp"], protocol="relp", relp_window=16))
    await sink.deliver(batch[:120])
    await sink.deliver(batch[120:])
    check_rsyslog(rsyslog, batch)
    assert [parse_5424(line).params["id"] for line in rsyslog.raw()] == [a.id for a in batch]


@pytest.mark.parametrize("transport", ["tcp", "tls", "mtls", "relp_tls"])
async def test_rsyslogd_gets_every_alert_over_tcp_and_tls(
    make_sink: MakeSink, tls_rsyslog: Rsyslogd, certs: Certificates, transport: str
) -> None:
    """Plain TCP, TLS checked against ``ca_file``, TLS with a client certificate whose key has a
    password (rsyslog requires it: x509/certvalid), and RELP over TLS (also with the client
    certificate): rsyslogd's GnuTLS takes them, every alert once."""
    client = {
        "cert_file": certs["client.pem"],
        "key_file": certs["client.key"],
        "key_password": SecretStr(certs.client_password),
    }
    settings_of: dict[str, dict[str, Any]] = {
        "tcp": {"protocol": "tcp"},
        "tls": {"protocol": "tls", "ca_file": certs["ca.pem"]},
        "mtls": {"protocol": "tls", "ca_file": certs["ca.pem"], **client},
        "relp_tls": {"protocol": "relp", "relp_tls": True, "ca_file": certs["ca.pem"], **client},
    }
    batch = mixed() + clicks(20)
    before = len(tls_rsyslog.raw())
    sink = await started(make_sink(tls_rsyslog.ports[transport], **settings_of[transport]))
    await sink.deliver(batch)
    settled(lambda: len(tls_rsyslog.raw()))
    check_rsyslog(tls_rsyslog, batch, after=before)


@pytest.mark.parametrize("protocol", ["tcp", "relp"])
async def test_rsyslogd_keeps_a_hostile_message_whole(
    make_sink: MakeSink, rsyslog: Rsyslogd, protocol: Any
) -> None:
    """Line breaks and a forged header inside alerts do not make rsyslogd see another message:
    one line per alert (rsyslog writes the raw line feed as ``#012``), nothing forged."""
    batch = [hostile(a) for a in clicks(3)]
    sink = await started(make_sink(rsyslog.ports[protocol], protocol=protocol))
    await sink.deliver(batch)
    settled(lambda: len(rsyslog.raw()))
    raw = rsyslog.raw()
    assert len(raw) == 3
    assert all(b"#012<13>1 2025-01-01T00:00:00Z forged" in line for line in raw)
    assert not any(line.startswith(b"<13>") for line in raw)
    assert [p["app"] for p in rsyslog.parsed()] == ["mimecast-connector"] * 3


async def test_a_restarted_rsyslogd_gets_the_rest_over_relp(
    make_sink: MakeSink, rsyslog: Rsyslogd, clock: FakeClock
) -> None:
    """rsyslogd stopped between batches: the next batch is not acknowledged (bounded retries);
    once it is back on its port, the batch arrives, and nothing of either batch is lost."""
    first, second = clicks(5), clicks(5, start=5)
    sink = await started(make_sink(rsyslog.ports["relp"], protocol="relp"))
    await sink.deliver(first)
    rsyslog.stop()
    with pytest.raises(SinkUnavailableError):
        await sink.deliver(second)
    rsyslog.start()
    await sink.deliver(second)
    check_rsyslog(rsyslog, first + second, once=False)
