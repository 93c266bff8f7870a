"""Scenario files: a good one builds the simulator it describes; a broken one names every problem."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.simulator import ScenarioError, Simulator
from tests.simulator._helpers import ALL_TIME, post_logs, token_for, token_form

GOOD = """
seed = 11
token_lifetime = 600

[[tenants]]
name = "acme"
client_id = "acme-client"
client_secret = "acme-secret"
records = { attachment = 5, impersonation = 4, url = 30, rejection = 6 }
history = "2h"
rate_limit = { capacity = 20, refill_per_second = 5.0 }

[[tenants]]
name = "beta"
roles = ["url"]
records = { url = 3 }
history = "1d12h"
live_rate = 50.0

[[faults]]
kind = "http_status"
status = 502
times = 2
tenant = "acme"
category = "url"

[[faults]]
kind = "rate_limited"
reset_ms = 750
token_endpoint = true
"""

BROKEN = """
seed = "seven"
token_lifetime = -1

[[tenants]]
name = "acme"
records = { url = "many", dlp = 3 }
history = "soon"
roles = ["url", "spam"]
secret_key = "not base64!"

[[tenants]]
name = "acme"
rate_limit = { capacity = 0 }

[[faults]]
kind = "explode"

[[faults]]
kind = "slow"
seconds = "long"
tenant = "nobody"

[[faults]]
kind = "malformed"
token_endpoint = true
colour = "red"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_scenario_builds_what_it_describes(tmp_path: Path) -> None:
    """Seed, lifetime, credentials, roles, record counts, limits, live rate and faults all apply."""
    sim = Simulator.from_scenario(write(tmp_path, GOOD))
    acme, beta = sim.tenant("acme"), sim.tenant("beta")
    assert sim.seed == 11
    assert (acme.client_id, acme.client_secret) == ("acme-client", "acme-secret")
    assert [len(acme.records(c)) for c in LOG_CATEGORIES] == [5, 4, 30, 6]
    assert [len(beta.records(c)) for c in LOG_CATEGORIES] == [0, 0, 3, 0]
    assert (acme.roles, beta.roles) == (frozenset(Category), frozenset({Category.URL}))
    assert acme.bucket is not None
    assert (acme.bucket.capacity, acme.bucket.refill_per_second) == (20, 5.0)
    assert not beta.live, "live streams wait for start()"
    with sim, httpx.Client(base_url=sim.url) as http:
        assert beta.live
        form = token_form(acme)
        limited = http.post("/oauth/token", data=form)
        assert (limited.status_code, limited.headers["x-ratelimit-reset"]) == (429, "750")
        assert http.post("/oauth/token", data=form).json()["expires_in"] == 600
        token = token_for(http, acme)
        statuses = [post_logs(http, Category.URL, token, ALL_TIME).status_code for _ in range(3)]
        assert statuses == [502, 502, 200]
    assert not beta.live


def test_scenario_history_dates_the_records_and_overrides_apply(tmp_path: Path) -> None:
    """Records are generated over ``history`` before now; ``seed`` and ``live_rate`` override."""
    before = time.time()
    sim = Simulator.from_scenario(write(tmp_path, GOOD), seed=3, live_rate=1.0)
    after = time.time()
    assert sim.seed == 3
    times = [
        datetime.strptime(r["date"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        for r in sim.tenant("acme").records(Category.URL)
    ]
    assert before - 2 * 3600 - 1 <= min(times) < before - 3600
    assert max(times) <= after
    with sim:
        assert sim.tenant("acme").live, "live_rate=1.0 applies to every tenant"


def test_broken_scenario_lists_every_problem_with_its_key_path(tmp_path: Path) -> None:
    """One ScenarioError names each problem by key path, so a user fixes the file in one pass."""
    with pytest.raises(ScenarioError) as caught:
        Simulator.from_scenario(write(tmp_path, BROKEN))
    problems = caught.value.problems
    for path in (
        "seed:",
        "token_lifetime:",
        "tenants[0].records.url:",
        "tenants[0].records.dlp:",
        "tenants[0].history:",
        "tenants[0].roles[1]:",
        "tenants[0].secret_key:",
        "tenants[1].rate_limit.capacity:",
        "tenants[1].rate_limit.refill_per_second:",
        "tenants[1].name: duplicate tenant name 'acme'",
        "faults[0].kind: unknown fault kind 'explode'",
        "faults[1].seconds:",
        "faults[1].tenant: no tenant named 'nobody'",
        "faults[2].colour: not a field of malformed",
        "faults[2]: malformed does not apply to /oauth/token",
    ):
        assert any(p.startswith(path) for p in problems), (path, problems)
    assert len(problems) == 15, problems
    message = str(caught.value)
    assert "15 problem(s)" in message
    assert "tenants[0].history: expected a duration such as '24h'" in message


def test_fault_that_cannot_apply_is_a_problem(tmp_path: Path) -> None:
    """A page fault aimed at /oauth/token is reported with the fault's path."""
    text = '[[tenants]]\nname = "a"\n[[faults]]\nkind = "malformed"\ntoken_endpoint = true\n'
    with pytest.raises(ScenarioError, match=r"faults\[0\]: malformed does not apply"):
        Simulator.from_scenario(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [("seed = [", "not valid TOML"), ("seed = 1\n", "tenants: Field required")],
)
def test_unreadable_or_empty_scenarios_are_clear_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    """Bad TOML, a missing file or a file with no tenants is one readable ScenarioError."""
    with pytest.raises(ScenarioError, match=message):
        Simulator.from_scenario(write(tmp_path, text))
    with pytest.raises(ScenarioError, match="cannot read"):
        Simulator.from_scenario(tmp_path / "missing.toml")


def test_shipped_demo_scenario_loads() -> None:
    """The packaged demo scenario describes one tenant with a day of history and live records."""
    demo = Path(__file__).parents[2] / "src/mimecast_connector/simulator/scenarios/demo.toml"
    sim = Simulator.from_scenario(demo)
    [tenant] = sim.tenants.values()
    assert tenant.name == "demo"
    assert all(tenant.records(c) for c in LOG_CATEGORIES)
    with sim:
        assert tenant.live
