"""Fixtures of the sink tests: a loopback receiver, a clock that sleeps instantly, and a
throwaway CA with a certificate it signed for 127.0.0.1."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import FakeClock
from tests.sinks.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started receiver on 127.0.0.1 that answers 200 unless scripted otherwise."""
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl is not None
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True)  # noqa: S603


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    """A throwaway CA and a certificate it signed for 127.0.0.1, made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign", cwd=tmp_path,
    )  # fmt: skip
    _openssl(
        "req", *curve, "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1",
        cwd=tmp_path,
    )  # fmt: skip
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "1", "-extfile", "san.ext", cwd=tmp_path,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "srv.pem", tmp_path / "srv.key")
    return tmp_path / "ca.pem", context
