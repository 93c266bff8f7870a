"""SIGKILL a real `run` process at random moments, many times: nothing lost, nothing twice."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import load_script


def test_killed_runs_deliver_every_alert_exactly_once(tmp_path: Path) -> None:
    """Seeded SIGKILLs of `run` over live and late data end with the reference set, each id once."""
    soak = load_script("soak")
    report = soak.soak(seconds=20, kill_every=1.0, seed=7, records=2000, folder=tmp_path, say=False)
    assert report.kills >= 5
    assert report.expected > 500
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.alerts == report.expected
