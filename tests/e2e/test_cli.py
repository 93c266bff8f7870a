"""The command line: exit statuses, summaries, check, status and the demo."""

from __future__ import annotations

import gc
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mimecast_connector import Category, _commands, _heap
from mimecast_connector._cli import main
from tests.e2e.conftest import World, rejection_type

BROKEN = """
[[tenants]]
name = "broken"
base_url = "{url}"
client_id = "nobody"
client_secret = "wrong-secret-canary-77"
"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_run_once_exits_0_and_writes_alerts(world: World) -> None:
    """`run --once` on a healthy config delivers the expected alerts and exits 0."""
    code, out = invoke("run", "--config", str(world.write_config()), "--once")
    assert code == 0, out
    assert len(world.alerts()) == len(world.expected())
    assert "ok" in out


def test_run_once_makes_young_collections_rarer_while_it_runs_only(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-shot run collects the young generation after YOUNG allocations, and leaves the
    collector's thresholds as it found them (the process may go on: here, the tests')."""
    seen: list[tuple[int, int, int]] = []
    run = _commands._run

    async def watched(*args: Any) -> int:
        seen.append(gc.get_threshold())
        return await run(*args)

    monkeypatch.setattr(_commands, "_run", watched)
    before = gc.get_threshold()
    code, out = invoke("run", "--config", str(world.write_config()), "--once")
    assert code == 0, out
    assert seen == [(_heap.YOUNG, *before[1:])]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0  # nothing frozen: the heap is not all the run's


def test_run_once_exits_1_naming_the_failure_and_still_delivers_the_rest(world: World) -> None:
    """A tenant with bad credentials fails alone: exit 1, summary says what to check, acme is delivered."""
    config = world.write_config(extra_tenant=BROKEN.format(url=world.sim.url))
    code, out = invoke("run", "--config", str(config), "--once")
    assert code == 1
    assert "broken/url" in out
    assert "client_secret" in out
    assert "wrong-secret-canary-77" not in out
    assert len(world.alerts()) == len(world.expected())


def test_config_errors_exit_2_listing_every_problem(tmp_path: Path) -> None:
    """A broken config exits 2 before anything runs, with each problem and its key path."""
    path = tmp_path / "bad.toml"
    path.write_text(
        'lookback = "soon"\ntypo = 1\n[[tenants]]\nname = "a"\nclient_id = "x"\n'
        'client_secret = "env:NOT_SET_ANYWHERE_42"\n[[sinks]]\ntype = "webhook"\nurl = "http://siem.example.net/x"\n'
    )
    code, out = invoke("run", "--config", str(path), "--once")
    assert code == 2
    for expected in (
        "lookback",
        "typo: unknown key",
        "tenants[0].client_secret",
        "NOT_SET_ANYWHERE_42",
        "sinks[0].url",
    ):
        assert expected in out


def test_check_authenticates_each_tenant(world: World) -> None:
    """`check` says ok for good credentials and FAILED (exit 1) for bad ones."""
    code, out = invoke("check", "--config", str(world.write_config()))
    assert code == 0, out
    assert "ok" in out
    config = world.write_config(extra_tenant=BROKEN.format(url=world.sim.url))
    code, out = invoke("check", "--config", str(config))
    assert code == 1
    assert "FAILED" in out
    assert "broken" in out


def test_status_shows_checkpoints_and_counts(world: World) -> None:
    """`status` after a run shows each stream's checkpoint and its alert count."""
    config = world.write_config()
    invoke("run", "--config", str(config), "--once")
    code, out = invoke("status", "--config", str(config))
    assert code == 0, out
    alerts = world.alerts()
    per_category = {
        c: sum(1 for a in alerts if a["category"] == c)
        for c in ("attachment", "impersonation", "url", "rejection")
    }
    for category, n in per_category.items():
        block = out.split(f"acme / {category}")[1].split("acme / ")[0]
        assert f"alerts {n}," in block
        assert "checkpoint     20" in block
    # Rejections no phrase matched: counted by their description, with what to do about them.
    unmatched = Counter(
        r["description"] for r in world.made[Category.REJECTION] if rejection_type(r) is None
    )
    block = out.split("acme / rejection")[1]
    assert f"dropped        {sum(unmatched.values())} (unmatched rejection)" in block
    for description, n in unmatched.items():
        assert f"unmatched    {n} ({description})" in block
    assert "[[rejections]]" in block


def test_check_reads_every_category_and_names_each_missing_role(world: World) -> None:
    """`check` reads one page of each category: a tenant without the rejection role fails
    naming that role, and only it; its other categories are fine."""
    sim = world.sim
    limited = sim.add_tenant("limited", roles={Category.ATTACHMENT, Category.URL})
    extra = (
        f'[[tenants]]\nname = "limited"\nbase_url = "{sim.url}"\n'
        f'client_id = "{limited.client_id}"\nclient_secret = "{limited.client_secret}"\n'
    )
    code, out = invoke("check", "--config", str(world.write_config(extra_tenant=extra)))
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2, out
    assert "limited/impersonation" in failed[0]
    assert "Monitoring / Impersonation Protection / Read" in failed[0]
    assert "limited/rejection" in failed[1]
    assert "Monitoring / Rejections / Read" in failed[1]
    assert "ok      acme" in out


def test_status_before_any_run_says_so(world: World) -> None:
    """`status` with no state database yet exits 2 and says to run first."""
    code, out = invoke("status", "--config", str(world.write_config()))
    assert code == 2
    assert "run the connector first" in out


def test_demo_runs_and_stops_by_itself(tmp_path: Path) -> None:
    """`demo --duration` starts the simulator, delivers typed alerts to demo-out in every format
    (the same alerts in each), and exits 0."""
    code, out = invoke("demo", "--out", str(tmp_path / "demo"), "--duration", "4")
    assert code == 0, out
    lines = (tmp_path / "demo" / "alerts.jsonl").read_text().splitlines()
    assert len(lines) > 50
    first = json.loads(lines[0])
    assert first["threatId"].startswith("T")
    assert "alerts delivered" in out
    ids = [json.loads(line)["id"] for line in lines]
    ecs = (tmp_path / "demo" / "alerts.ecs.jsonl").read_text().splitlines()
    assert [json.loads(line)["event"]["id"] for line in ecs] == ids
    cef = (tmp_path / "demo" / "alerts.cef").read_text().splitlines()
    assert [line.rsplit("externalId=", 1)[1] for line in cef] == ids
