"""Tenants in ``tenants_dir`` (one file each) and their reload on SIGHUP, without a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

import pytest
from click.testing import CliRunner

from mimecast_connector._cli import main
from mimecast_connector._errors import ConfigError
from mimecast_connector.config import load_config, reload_config
from mimecast_connector.runner import Runner
from mimecast_connector.simulator import Simulator
from tests.fakes import sqlite
from tests.properties.fake_api import FakeMimecast

MAIN = 'state = "state.db"\ndead_letter = "dead.jsonl"\ntenants_dir = "tenants.d"\n\n[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'


def tenant_file(folder: Path, name: str, *, interval: str = "1s", extra: str = "") -> Path:
    path = folder / "tenants.d" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'base_url = "https://api.example.test"\nclient_id = "{name}-id"\n'
        f'client_secret = "{name}-secret-value"\npoll_interval = "{interval}"\n{extra}',
        "utf-8",
    )
    return path


def main_file(folder: Path, text: str = MAIN) -> Path:
    path = folder / "config.toml"
    path.write_text(text, "utf-8")
    return path


def test_tenant_files_load_named_after_their_file_unless_they_say(tmp_path: Path) -> None:
    """Each tenants.d/*.toml is one tenant (name: the file's stem, or its own `name`); the main file's tenants come first."""
    tenant_file(tmp_path, "acme")
    tenant_file(tmp_path, "beta", extra='name = "beta-corp"\n')
    text = (
        MAIN
        + '\n[[tenants]]\nname = "main"\nbase_url = "https://api.example.test"\nclient_id = "m"\nclient_secret = "main-secret"\n'
    )
    config = load_config(main_file(tmp_path, text), {})
    assert [t.name for t in config.tenants] == ["main", "acme", "beta-corp"]
    assert config.sources["acme"].endswith("tenants.d/acme.toml")
    assert "main" not in config.sources


def test_problems_in_tenant_files_are_reported_with_the_file_all_at_once(tmp_path: Path) -> None:
    """At start every problem of every file is listed with the file's name (exit 2 at the CLI); a duplicate name across files is one of them."""
    tenant_file(tmp_path, "acme", extra="client_secrt = 1\n")
    (tmp_path / "tenants.d" / "broken.toml").write_text("not toml [", "utf-8")
    tenant_file(tmp_path, "dup", extra='name = "beta"\n')
    tenant_file(tmp_path, "beta")
    with pytest.raises(ConfigError) as caught:
        load_config(main_file(tmp_path), {})
    keys = [key for key, _ in caught.value.problems]
    folder = str(tmp_path / "tenants.d")
    assert f"{folder}/acme.toml: client_secrt" in keys
    assert f"{folder}/broken.toml" in keys
    assert any(key.startswith(f"{folder}/") and key.endswith(": name") for key in keys)
    result = CliRunner().invoke(main, ["check", "--config", str(tmp_path / "config.toml")])
    assert result.exit_code == 2


def test_a_reload_sets_a_broken_file_aside_and_takes_the_rest(tmp_path: Path) -> None:
    """reload_config: a broken tenant file is named in `broken` with its problems, the other files are read; a broken main file refuses the whole reload."""
    tenant_file(tmp_path, "acme")
    tenant_file(tmp_path, "beta", extra="unknown_key = 1\n")
    found = reload_config(main_file(tmp_path), {})
    assert [t.name for t in found.config.tenants] == ["acme"]
    assert list(found.broken) == [str(tmp_path / "tenants.d" / "beta.toml")]
    main_file(tmp_path, MAIN + "lookback = 5\nbad = 1\n")
    with pytest.raises(ConfigError):
        reload_config(tmp_path / "config.toml", {})


def committed(runner: Runner) -> dict[str, float]:
    """Each tenant's newest last success, from the state store."""
    out: dict[str, float] = {}
    for stream in sqlite(runner).streams():
        if stream.last_success is not None:
            out[stream.tenant] = max(out.get(stream.tenant, 0.0), stream.last_success.timestamp())
    return out


async def test_a_reload_adds_removes_and_changes_tenants_without_a_restart(tmp_path: Path) -> None:
    """Running forever on 1 s intervals: after a reload, an added tenant is polled, a removed one is not any more, a changed one goes on, and a broken file's tenant keeps running as it was."""
    api = FakeMimecast()
    for name in ("acme", "beta", "gamma"):
        tenant_file(tmp_path, name)
    config_path = main_file(tmp_path)
    runner = Runner(load_config(config_path, {}), transport=lambda tenant: api.transport())
    await runner.start()
    stop = asyncio.Event()
    task = asyncio.ensure_future(runner.run_forever(stop))
    try:
        await asyncio.sleep(1.5)
        assert set(committed(runner)) == {"acme", "beta", "gamma"}
        (tmp_path / "tenants.d" / "beta.toml").unlink()
        tenant_file(tmp_path, "delta")
        tenant_file(tmp_path, "acme", interval="2s")
        tenant_file(tmp_path, "gamma", extra="client_secrt = 1\n")  # broken: gamma stays
        found = reload_config(config_path, {})
        done = runner.reload(found.config, found.broken)
        reloaded_at = time.time()
        assert (done.added, done.removed, done.changed) == (["delta"], ["beta"], ["acme"])
        assert done.restart_for == []
        await asyncio.sleep(2.6)
        seen = committed(runner)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await runner.aclose()
    assert runner.died is None
    assert seen["delta"] > reloaded_at, "the added tenant was not polled"
    assert seen["acme"] > reloaded_at + 0.5, "the changed tenant stopped"
    assert seen["gamma"] > reloaded_at + 0.5, "the broken file's tenant stopped"
    assert seen["beta"] < reloaded_at + 0.5, "the removed tenant was still polled"
    assert "delta-secret-value" in runner.secrets


def test_sighup_through_the_reload_command_adds_a_tenant_to_a_running_run(tmp_path: Path) -> None:
    """A real `run` process: a new tenant file plus `mimecast-connector reload` and the new tenant's streams are polled; SIGTERM then ends the run with exit 0."""
    with Simulator(seed=3) as sim:
        first, second = sim.add_tenant("acme"), sim.add_tenant("beta")
        folder = tmp_path / "tenants.d"
        folder.mkdir()

        def write(tenant_name: str, client_id: str, secret: str) -> None:
            (folder / f"{tenant_name}.toml").write_text(
                f'base_url = "{sim.url}"\nclient_id = "{client_id}"\nclient_secret = "{secret}"\n'
                'poll_interval = "1s"\n',
                "utf-8",
            )

        write("acme", first.client_id, first.client_secret)
        config = main_file(tmp_path)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        child = subprocess.Popen(  # noqa: S603 - fixed arguments
            [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert wait_for_tenant(tmp_path / "state.db", "acme"), "the run never polled acme"
            write("beta", second.client_id, second.client_secret)
            result = CliRunner().invoke(main, ["reload", "--config", str(config)])
            assert result.exit_code == 0, result.output
            assert f"asked process {child.pid} to reload" in result.output
            assert wait_for_tenant(tmp_path / "state.db", "beta"), "beta was never polled"
        finally:
            child.send_signal(signal.SIGTERM)
            _, err = child.communicate(timeout=20)
        assert child.returncode == 0, err.decode()[-2000:]
        assert b'"reloaded"' in err
        assert second.client_secret.encode() not in err


def wait_for_tenant(state: Path, tenant: str, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if state.exists():
            try:
                with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
                    row = db.execute(
                        "SELECT count(*) FROM streams WHERE tenant = ? AND last_success IS NOT NULL",
                        (tenant,),
                    ).fetchone()
                if row and row[0] > 0:
                    return True
            except sqlite3.Error:
                pass
        time.sleep(0.2)
    return False


def test_reload_says_when_no_connector_runs(tmp_path: Path) -> None:
    """`reload` with nothing running names the state and exits 1."""
    tenant_file(tmp_path, "acme")
    result = CliRunner().invoke(main, ["reload", "--config", str(main_file(tmp_path))])
    assert result.exit_code == 1
    assert "no connector is running" in result.output


async def test_a_tenant_changed_then_removed_during_its_poll_is_not_polled_again(
    tmp_path: Path,
) -> None:
    """acme's poll is in flight while one reload changes acme and a second removes it: once that poll ends, acme is never polled again and no error is recorded for it."""
    api = FakeMimecast()
    gate = asyncio.Event()
    first_request = asyncio.Event()

    async def wait_for_gate() -> None:
        await gate.wait()

    def hold(number: int) -> Awaitable[None] | None:
        first_request.set()
        return None if gate.is_set() else wait_for_gate()

    api.on_request = hold
    tenant_file(tmp_path, "acme", extra='categories = ["url"]\n')
    config_path = main_file(tmp_path)
    runner = Runner(load_config(config_path, {}), transport=lambda tenant: api.transport())
    await runner.start()
    stop = asyncio.Event()
    task = asyncio.ensure_future(runner.run_forever(stop))
    try:
        await asyncio.wait_for(first_request.wait(), 5)
        tenant_file(tmp_path, "acme", interval="2s", extra='categories = ["url"]\n')
        assert runner.reload(reload_config(config_path, {}).config).changed == ["acme"]
        (tmp_path / "tenants.d" / "acme.toml").unlink()
        tenant_file(tmp_path, "other", extra='categories = ["url"]\n')
        assert runner.reload(reload_config(config_path, {}).config).removed == ["acme"]
        asked = len(api.requests)
        gate.set()
        await asyncio.sleep(2.5)
        acme = [s for s in sqlite(runner).streams() if s.tenant == "acme"]
        other = [s for s in sqlite(runner).streams() if s.tenant == "other"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await runner.aclose()
    assert runner.died is None
    assert all(s.last_error is None for s in acme), [s.last_error for s in acme]
    # After the held poll: only "other" polls (1 s interval, ~2-3 polls in 2.5 s), no acme.
    assert other
    assert other[0].last_success is not None
    assert len(api.requests) - asked <= 4


def test_reload_never_signals_a_process_that_does_not_hold_the_lock(tmp_path: Path) -> None:
    """A note left by a connector killed with SIGKILL names a pid that is now another process's: `reload` refuses, and that process lives on."""
    tenant_file(tmp_path, "acme")
    config = main_file(tmp_path)
    bystander = subprocess.Popen(["sleep", "30"])  # noqa: S607 - a fixed test process
    try:
        (tmp_path / "state.db.lock").write_text(
            f"process {bystander.pid} on {os.uname().nodename} (since 2026-01-01T00:00:00Z)",
            "utf-8",
        )
        result = CliRunner().invoke(main, ["reload", "--config", str(config)])
        assert result.exit_code == 1
        assert "no connector is running" in result.output
        time.sleep(0.2)
        assert bystander.poll() is None, "the bystander was signalled"
    finally:
        bystander.kill()
        bystander.wait()
