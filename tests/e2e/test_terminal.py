"""Text from Mimecast reaches the terminal with its control characters made visible, never obeyed.

A ``fail`` message carrying a screen clear, a window-title OSC, a CR/LF and a spoofed line, a
bidi override and rich markup goes through real ``mimecast-connector`` processes (``run --once``
with both log formats, ``status``, ``check``) against the simulator on loopback. The raw bytes
must not appear in what those processes print; their visible escapes must.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimecast_connector._text import visible
from mimecast_connector.simulator import faults
from tests.e2e.conftest import World

HOSTILE = (
    "bad date\x1b[2J\x1b]0;pwned\x07\r\nFAKE: everything ok [red]styled[/red] \u202eevil\x9b31m"
)
#: Bytes that must never reach the terminal from the message: ESC, BEL, CR, the bidi override, CSI.
RAW = [b"\x1b", b"\x07", b"\r", "\u202e".encode(), "\x9b".encode()]
#: The visible forms that must be printed instead.
SHOWN = [r"\x1b[2J", r"\x1b]0;pwned\x07", r"\r\nFAKE: everything ok", r"\u202e", r"\x9b"]


def cli(*args: str, cwd: Path) -> tuple[int, bytes]:
    """Runs ``python -m mimecast_connector ARGS`` in its own process; exit status and every byte it printed."""
    env = {**os.environ, "COLUMNS": "400", "TERM": "xterm-256color"}
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "mimecast_connector", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def assert_safe(out: bytes) -> None:
    for raw in RAW:
        assert raw not in out, (raw, out[-3000:])
    text = out.decode("utf-8")
    for shown in SHOWN:
        assert shown in text, (shown, text[-3000:])
    assert "[red]styled[/red]" in text  # the markup printed as text, not obeyed
    assert not any(line.startswith("FAKE") for line in text.splitlines())


@pytest.fixture
def poisoned(world: World) -> Path:
    """A config whose every TTP call answers 200 with a fail message carrying terminal escapes."""
    world.sim.inject(faults.FailResponse(code="err_bad\x1b[5m", message=HOSTILE), times=None)
    return world.write_config()


def test_visible_escapes_every_control_and_format_character() -> None:
    """C0, DEL, C1, bidi and other Cf, line separators and lone surrogates become escapes; the rest stays."""
    assert visible("a\x1b[2J\r\n\t\x00\x7f") == r"a\x1b[2J\r\n\t\x00\x7f"
    assert visible("\x9b\u202e\u200b\u2028\ud800") == r"\x9b\u202e\u200b\u2028\ud800"
    assert visible("plain ascii, ünïcödé, 日本, [red]x[/red]") == (
        "plain ascii, ünïcödé, 日本, [red]x[/red]"
    )


def test_run_once_summary_shows_the_fail_message_made_visible(poisoned: Path) -> None:
    """`run --once` prints the failing stream's message with escapes shown, not executed."""
    code, out = cli("run", "--config", str(poisoned), "--once", cwd=poisoned.parent)
    assert code == 1, out[-3000:]
    assert_safe(out)


def test_run_once_console_logs_show_the_fail_message_made_visible(poisoned: Path) -> None:
    """`--log-format console` renders upstream text in log lines with escapes shown too."""
    code, out = cli(
        "run",
        "--config",
        str(poisoned),
        "--once",
        "--log-format",
        "console",
        "--log-level",
        "debug",
        cwd=poisoned.parent,
    )
    assert code == 1, out[-3000:]
    assert_safe(out)


def test_status_shows_the_stored_last_error_made_visible(poisoned: Path) -> None:
    """`status` prints the last error read from the state database with escapes shown."""
    cli("run", "--config", str(poisoned), "--once", cwd=poisoned.parent)
    code, out = cli("status", "--config", str(poisoned), cwd=poisoned.parent)
    assert code == 0, out[-3000:]
    assert b"last error" in out
    assert_safe(out)


def test_check_shows_the_failure_made_visible(poisoned: Path) -> None:
    """`check` prints the failing tenant's error with escapes shown, not executed."""
    code, out = cli("check", "--config", str(poisoned), cwd=poisoned.parent)
    assert code == 1, out[-3000:]
    assert_safe(out)


def test_config_problems_show_hostile_key_names_made_visible(tmp_path: Path) -> None:
    """An unknown key spelled with escapes is listed with them visible: the config is text too."""
    path = tmp_path / "c.toml"
    path.write_text(
        '"x\\u001b[2J\\r\\nFAKE: [red]ok[/red]\\u202e" = 1\n[[tenants]]\nname = "a"\n'
        'client_id = "c"\nclient_secret = "s"\n[[sinks]]\ntype = "jsonl"\npath = "-"\n',
        "utf-8",
    )
    code, out = cli("run", "--config", str(path), "--once", cwd=tmp_path)
    assert code == 2, out
    for raw in RAW[:3] + RAW[3:4]:
        assert raw not in out, out
    text = out.decode("utf-8")
    assert r"x\x1b[2J\r\nFAKE: [red]ok[/red]\u202e: unknown key" in text, text


def test_simulate_banner_and_scenario_errors_show_names_made_visible(tmp_path: Path) -> None:
    """`simulate` prints scenario tenant names, and scenario problems, with escapes shown."""
    name = "t\\u001b[2J\\r\\nFAKE: ok\\u202e"
    broken = tmp_path / "broken.toml"
    broken.write_text(f'[[tenants]]\nname = "{name}"\nhistory = "soon"\n', "utf-8")
    code, out = cli("simulate", "--port", "0", "--scenario", str(broken), cwd=tmp_path)
    assert code == 1, out
    for raw in (b"\x1b", b"\r", "\u202e".encode()):
        assert raw not in out, out
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(f'[[tenants]]\nname = "{name}"\n', "utf-8")
    port_file = tmp_path / "port"
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            *(sys.executable, "-m", "mimecast_connector", "simulate", "--port", "0"),
            *("--port-file", str(port_file), "--scenario", str(scenario)),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the simulator did not start"
            time.sleep(0.05)
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=15)
    out = stdout + stderr
    for raw in (b"\x1b", b"\r", "\u202e".encode()):
        assert raw not in out, out
    assert r"tenant t\x1b[2J\r\nFAKE: ok\u202e" in out.decode("utf-8")
