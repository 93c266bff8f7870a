"""``mimecast-connector simulate``: serves on loopback, prints how to connect, stops on SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mimecast_connector import Category
from mimecast_connector._cli import main
from mimecast_connector.simulator import Simulator
from tests.simulator._helpers import ALL_TIME, post_logs, records_of, token_for


def test_simulate_serves_until_terminated(tmp_path: Path) -> None:
    """``simulate --port 0 --port-file`` serves tokens and URL logs, then exits 0 on SIGTERM."""
    port_file = tmp_path / "port"
    command = [
        sys.executable,
        "-c",
        "from mimecast_connector._cli import main; main()",
        "simulate",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--seed",
        "3",
    ]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    demo = Simulator().add_tenant("demo")  # default credentials depend on the name alone
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
        port = int(port_file.read_text())
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            token = token_for(http, demo)
            response = post_logs(http, Category.URL, token, ALL_TIME, page_size=5)
            assert len(records_of(response, Category.URL)) == 5
    finally:
        process.terminate()
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert f"listening on http://127.0.0.1:{port} (seed 3" in out
    for secret in (demo.client_id, demo.client_secret, demo.app_id, demo.app_key, demo.secret_key):
        assert secret in out
    assert f"curl -s http://127.0.0.1:{port}/oauth/token" in out
    assert f"curl -s http://127.0.0.1:{port}/api/ttp/url/get-logs" in out
    assert out.rstrip().endswith("simulator stopped")


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "::", "example.com"])  # noqa: S104
def test_simulate_refuses_non_loopback_hosts(host: str) -> None:
    """A host outside 127.0.0.0/8, ::1 and localhost is refused before anything starts."""
    result = CliRunner().invoke(main, ["simulate", "--host", host, "--port", "0"])
    assert result.exit_code == 2
    assert "is not a loopback address" in result.output


def test_simulate_reports_a_broken_scenario(tmp_path: Path) -> None:
    """A broken scenario file ends the command with its list of problems, not a traceback."""
    scenario = tmp_path / "broken.toml"
    scenario.write_text('[[tenants]]\nname = "x"\nhistory = "soon"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["simulate", "--port", "0", "--scenario", str(scenario)])
    assert result.exit_code == 1
    assert "tenants[0].history: expected a duration" in result.output
