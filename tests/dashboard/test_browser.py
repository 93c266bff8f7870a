"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

A real ``run --once`` against the simulator delivers alerts for one tenant, while a second
tenant's credentials are refused; then the ``dashboard`` command serves the state behind a
token. The browser logs in through the form, and the page must show the techniques of the
alerts delivered (as the jsonl output has them, with their counts), the refused tenant as
failing, and a search box that filters. A screenshot is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, expect, sync_playwright

from mimecast_connector.config import load_config
from tests.dashboard.conftest import HOSTILE, TOKEN, example_commits, fill, write_config
from tests.e2e.conftest import START, World, world  # noqa: F401 - the world fixture

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="chromium not found: `bash scripts/ensure-chromium.sh` installs Debian's package "
    "(make test runs it)",
)


@contextmanager
def dashboard_process(config: Path, *extra: str) -> Iterator[str]:
    """``mimecast-connector dashboard`` on a free loopback port; yields its URL."""
    process = subprocess.Popen(  # noqa: S603 - this Python, our own arguments
        [sys.executable, "-m", "mimecast_connector", "dashboard", "--config", str(config),
         "--listen", "127.0.0.1:0", *extra],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        for line in process.stderr:  # the first line names the address, once it listens
            found = re.search(r"dashboard: (http://\S+/)", line)
            if found:
                yield found.group(1)
                break
        else:
            pytest.fail(f"the dashboard did not start (exit {process.wait()})")
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


@contextmanager
def browser_page() -> Iterator[tuple[Page, list[str]]]:
    """A page of a headless Chromium, and the messages of any dialog it opened (dismissed)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            dialogs: list[str] = []

            def on_dialog(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            yield page, dialogs
        finally:
            browser.close()


def test_the_page_shows_delivered_techniques_a_failing_tenant_and_filters(
    world: World,  # noqa: F811 - the fixture
) -> None:
    """Logged in through the form: the heat map's techniques and counts are the jsonl output's, 'broken' is failing, the search box narrows the table; a screenshot is kept."""
    t = world.tenant
    broken = (
        f'[[tenants]]\nname = "broken"\nbase_url = "{world.sim.url}"\n'
        f'client_id = "{t.client_id}"\nclient_secret = "wrong-secret-00000000"\n'
        f'categories = ["url"]\nstart = "{START.isoformat()}"\n'
    )
    config = world.write_config(extra_tenant=broken)
    ran = subprocess.run(  # noqa: S603 - this Python, our own arguments
        [sys.executable, "-m", "mimecast_connector", "run", "--config", str(config), "--once"],
        cwd=world.tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr[-2000:]  # the broken tenant failed, acme did not
    delivered = Counter(alert["threatId"] for alert in world.alerts())
    assert delivered, "the run delivered alerts"
    token_file = world.tmp / "token"
    token_file.write_text(TOKEN + "\n")
    with (
        dashboard_process(config, "--token-file", str(token_file)) as url,
        browser_page() as (
            page,
            _,
        ),
    ):
        page.goto(url)
        expect(page).to_have_url(re.compile(r"/login$"))
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("body[data-loaded]")).to_have_count(1)
        shown = page.eval_on_selector_all(
            "[data-technique]", "cells => cells.map(c => [c.dataset.technique, c.dataset.count])"
        )
        assert {tech: int(n) for tech, n in shown} == dict(delivered)
        failing = page.locator('tr[data-tenant="broken"][data-category="url"]')
        expect(failing).to_have_attribute("data-state", "failing")
        expect(failing.locator("td.health")).to_have_text("failing")
        expect(failing.locator(".advice")).to_contain_text("client_id and client_secret")
        # Failing first: the first row of the table is broken's.
        expect(page.locator("#streams-body tr").first).to_have_attribute("data-tenant", "broken")
        expect(page.locator('tr[data-tenant="acme"][data-state="collecting"]')).to_have_count(4)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        page.fill("#search", "acm")
        expect(page.locator('#streams-body tr[data-tenant="broken"]')).to_have_count(0)
        expect(page.locator('#streams-body tr[data-tenant="acme"]')).to_have_count(4)
        page.fill("#search", "")
        page.select_option("#health", "failing,degraded")
        expect(page.locator("#streams-body tr")).to_have_count(1)
        expect(page.locator("#streams-body tr")).to_have_attribute("data-tenant", "broken")
        assert TOKEN not in page.content()
    print(f"screenshot: {ARTIFACTS / 'dashboard.png'}")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def test_a_hostile_sender_shows_as_text_and_runs_nothing(tmp_path: Path) -> None:
    """A sender address holding a script tag: the top senders list shows it as text; no dialog opened, no script element came of it."""
    path = write_config(tmp_path, ["acme", "globex"], token=TOKEN)
    state = load_config(path, {}).state
    assert isinstance(state, Path)
    fill(state, example_commits())
    with dashboard_process(path) as url, browser_page() as (page, dialogs):
        page.set_extra_http_headers({"Authorization": f"Bearer {TOKEN}"})
        page.goto(url)
        expect(page.locator("body[data-loaded]")).to_have_count(1)
        expect(page.locator("#top-senders li").first.locator(".what")).to_have_text(HOSTILE)
        assert page.locator("script").count() == 1  # the page's own dashboard.js only
        assert dialogs == []
        expect(page.locator('tr[data-tenant="globex"]').first).to_have_attribute(
            "data-state", "failing"
        )
