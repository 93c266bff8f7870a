"""``mimecast-connector dashboard`` refuses what would expose the state."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mimecast_connector._cli import main
from tests.dashboard.conftest import write_config


def test_a_non_loopback_address_without_a_token_is_refused(tmp_path: Path) -> None:
    """--listen 0.0.0.0 with no metrics_token and no --token-file: exit 2 naming both ways out, before anything listens."""
    config = write_config(tmp_path, ["acme"])
    result = CliRunner().invoke(
        main, ["dashboard", "--config", str(config), "--listen", "0.0.0.0:0"]
    )
    assert result.exit_code == 2, result.output
    assert "not a loopback address, and no token" in result.output
    assert "metrics_token" in result.output
    assert "--token-file" in result.output


def test_a_short_token_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    """A token file of 5 characters: exit 2, saying how long a token must be, never its text."""
    config = write_config(tmp_path, ["acme"])
    token = tmp_path / "token"
    token.write_text("abcde\n")
    result = CliRunner().invoke(
        main,
        ["dashboard", "--config", str(config), "--listen", "0.0.0.0:0", "--token-file", str(token)],
    )
    assert result.exit_code == 2, result.output
    assert "at least 16 characters" in result.output
    assert "abcde" not in result.output


def test_a_bad_listen_value_says_what_it_must_be(tmp_path: Path) -> None:
    config = write_config(tmp_path, ["acme"])
    result = CliRunner().invoke(main, ["dashboard", "--config", str(config), "--listen", "nowhere"])
    assert result.exit_code == 2
    assert "must be host:port" in result.output


def test_no_state_yet_is_said_before_listening(tmp_path: Path) -> None:
    """A state file that does not exist yet: exit 2, 'run the connector first'."""
    config = write_config(tmp_path, ["acme"])
    result = CliRunner().invoke(main, ["dashboard", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "run the connector first" in result.output
