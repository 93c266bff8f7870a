"""Conformance adapters of the ``syslog`` sink: one per transport, each against a Python
receiver of that protocol (``syslog_receiver.py``), and one against a real rsyslogd over RELP.

Every unit read back is parsed as RFC 5424 (strictly) and its structured data's ``id`` must
be the id of the alert its MSG carries. Formats checked: ``native``, ``ocsf`` and ``ecs`` (the
MSG is the JSON document) and ``cef`` (the MSG is the CEF line). Faults: RELP can be busy (its
``open`` answered ``500``, as librelp does when it cannot take a session), down (the connection dropped before ``open`` is answered) and refuse (a server that
offers no ``syslog`` command); TLS can be down (a handshake cut) and refuse (a certificate no
configured CA signed); plain TCP and UDP have no way to say busy, and a receiver that is down
there loses what it is sent unseen (the reason for RELP), so they declare no faults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mimecast_connector.alerts import Format
from mimecast_connector.client import RetryPolicy
from mimecast_connector.sinks import Sink
from mimecast_connector.sinks._syslog import SyslogSink, Transport
from tests.fakes import FakeClock
from tests.sinks.adapters import Adapter, AdapterFactory
from tests.sinks.helpers import alert_id
from tests.sinks.syslog_receiver import (
    NO_OPENSSL,
    NO_RSYSLOGD,
    OPENSSL,
    RSYSLOGD,
    Certificates,
    OctetReceiver,
    RelpServer,
    Rsyslogd,
    UdpReceiver,
    certificates,
    parse_5424,
    settled,
)

ATTEMPTS = 3


class SyslogAdapter(Adapter):
    """What every syslog adapter shares: the sink's settings, and reading RFC 5424 back."""

    formats: tuple[Format, ...] = ("native", "ocsf", "ecs", "cef")
    protocol: Transport = "relp"

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port
        self.format: Format = "native"

    def settings(self) -> dict[str, Any]:
        return {}

    def make(self, format: Format) -> Sink:
        self.format = format
        return SyslogSink(
            "127.0.0.1",
            self.port,
            protocol=self.protocol,
            format=format,
            hostname="conformance-host",
            retry=RetryPolicy(attempts=ATTEMPTS, deadline=5.0),
            connect_timeout=2.0,
            timeout=2.0,
            settle=0.02,
            clock=FakeClock(),
            **self.settings(),
        )

    def decoded(self) -> list[Any]:
        found = []
        for unit in self.units():
            message = parse_5424(unit)
            body = message.msg.decode("utf-8")
            alert = body if self.format == "cef" else json.loads(body)
            assert message.params["id"] == alert_id(alert, self.format), unit[:200]
            found.append(alert)
        return found


class RelpAdapter(SyslogAdapter):
    faults = frozenset({"busy", "down", "refuse"})

    def __init__(self, server: RelpServer) -> None:
        super().__init__(server.port)
        self.server = server

    def inject(self, fault: str) -> None:
        if fault == "busy":  # a server short of resources refuses sessions with a 500
            self.server.open_script += ["500", "500"]
        elif fault == "down":
            self.server.open_script += ["drop"] * ATTEMPTS
        else:
            self.server.open_script += ["no-syslog"]

    def units(self) -> list[bytes]:
        return list(self.server.accepted)


class OctetAdapter(SyslogAdapter):
    def __init__(self, receiver: OctetReceiver, certs: Certificates | None = None) -> None:
        super().__init__(receiver.port)
        self.receiver = receiver
        self.certs = certs
        self.protocol = "tls" if certs is not None else "tcp"
        if certs is not None:
            self.faults = frozenset({"down", "refuse"})

    def settings(self) -> dict[str, Any]:
        return {"ca_file": self.certs["ca.pem"]} if self.certs is not None else {}

    def inject(self, fault: str) -> None:
        assert self.certs is not None
        if fault == "down":
            self.receiver.drop_next = ATTEMPTS
        else:
            self.receiver.context = self.certs.server_context(cert="rogue")

    def units(self) -> list[bytes]:
        settled(lambda: len(self.receiver.messages))
        return list(self.receiver.messages)


class UdpAdapter(SyslogAdapter):
    protocol: Transport = "udp"

    def __init__(self, receiver: UdpReceiver) -> None:
        super().__init__(receiver.port)
        self.receiver = receiver

    def settings(self) -> dict[str, Any]:
        return {"allow_loss": True}

    def units(self) -> list[bytes]:
        settled(lambda: len(self.receiver.datagrams))
        return list(self.receiver.datagrams)


class RsyslogAdapter(SyslogAdapter):
    """A real rsyslogd over RELP: its direct queues write a message before answering 200."""

    def __init__(self, server: Rsyslogd) -> None:
        super().__init__(server.ports["relp"])
        self.server = server

    def units(self) -> list[bytes]:
        return self.server.raw()


def _relp(request: pytest.FixtureRequest, tmp: Path) -> Adapter:
    server = RelpServer()
    server.start()
    request.addfinalizer(server.stop)
    return RelpAdapter(server)


def _octets(request: pytest.FixtureRequest, tmp: Path, *, tls: bool) -> Adapter:
    certs = None
    if tls:
        if OPENSSL is None:
            pytest.skip(NO_OPENSSL)
        certs = certificates(request.getfixturevalue("tmp_path_factory"))
    receiver = OctetReceiver(certs.server_context() if certs is not None else None)
    receiver.start()
    request.addfinalizer(receiver.stop)
    return OctetAdapter(receiver, certs)


def _udp(request: pytest.FixtureRequest, tmp: Path) -> Adapter:
    receiver = UdpReceiver()
    request.addfinalizer(receiver.stop)
    return UdpAdapter(receiver)


def _rsyslog(request: pytest.FixtureRequest, tmp: Path) -> Adapter:
    if RSYSLOGD is None:
        pytest.skip(NO_RSYSLOGD)
    server = Rsyslogd(tmp)
    server.start()
    request.addfinalizer(server.stop)
    return RsyslogAdapter(server)


ADAPTERS: dict[str, AdapterFactory] = {
    "syslog-relp": _relp,
    "syslog-tls": lambda request, tmp: _octets(request, tmp, tls=True),
    "syslog-tcp": lambda request, tmp: _octets(request, tmp, tls=False),
    "syslog-udp": _udp,
    "syslog-rsyslog": _rsyslog,
}
