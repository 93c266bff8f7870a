"""SIGKILL a real `run` process at random moments, many times: nothing lost, nothing twice."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_soak() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module
    spec.loader.exec_module(module)
    return module


def test_killed_runs_deliver_every_alert_exactly_once(tmp_path: Path) -> None:
    """Seeded SIGKILLs of `run` over live and late data end with the reference set, each id once."""
    soak = load_soak()
    report = soak.soak(seconds=20, kill_every=1.0, seed=7, records=2000, folder=tmp_path, say=False)
    assert report.kills >= 5
    assert report.expected > 500
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.alerts == report.expected
