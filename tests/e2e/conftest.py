"""Shared set-up of the end-to-end tests: a simulator, a tenant with data, a config file."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from mimecast_connector import Category
from mimecast_connector._categories import DEFAULT_CATEGORIES
from mimecast_connector.config import Config, load_config
from mimecast_connector.simulator import SimTenant, Simulator

NOW = datetime.now(UTC).replace(microsecond=0)
START = NOW - timedelta(hours=3)
#: The streams of the world's tenant: it names no categories, so it reads the default ones.
CATEGORIES = DEFAULT_CATEGORIES
COUNTS = {
    Category.ATTACHMENT: 150,
    Category.IMPERSONATION: 80,
    Category.URL: 400,
    Category.REJECTION: 300,
}

#: The rejection phrases (issue 9: the six Sophos names, then ours), written out again here:
#: normalised phrase -> alertType, in the order they are tried.
REJECTION_PHRASES = (
    ("ip temporarily blacklisted", "IP Temporarily Blacklisted"),
    ("submitter failed to authenticate", "Submitter failed to authenticate"),
    ("anti-spoofing policy - inbound not allowed", "Anti-Spoofing policy - Inbound not allowed"),
    ("invalid recipient", "Invalid Recipient"),
    ("exceeding outbound thread limit", "Exceeding outbound thread limit"),
    (
        "message bounced due to content examination policy",
        "Message bounced due to Content Examination Policy",
    ),
    ("incorrect authentication data", "Submitter failed to authenticate"),
    ("virus signature detection", "Virus Signature Detected"),
    ("spf sender invalid", "SPF Sender Invalid"),
    ("dkim sender invalid", "DKIM Sender Invalid"),
    ("dmarc sender invalid", "DMARC Sender Invalid"),
    ("rbl", "Sender IP on a Block List"),
    ("envelope blocked - user entry", "Envelope Blocked - User Entry"),
    ("envelope blocked - policy entry", "Envelope Blocked - Policy Entry"),
    ("host network not allowed", "Host Network Not Allowed"),
    ("mail loop detected", "Mail Loop Detected"),
    ("this route requires tls", "TLS Required"),
    ("too many recipients", "Too Many Recipients"),
)


def rejection_type(record: dict[str, Any]) -> str | None:
    """The alertType of a rejection (its info, then its description), or None if unmatched."""
    return texts_type([record.get("info"), record.get("description")])


def texts_type(texts: list[Any]) -> str | None:
    """The alertType of the first of ``texts`` that holds a phrase, or None."""
    for text in texts:
        if not isinstance(text, str):
            continue
        text = " ".join(text.lower().replace("\u2013", "-").replace("\u2014", "-").split())
        while True:  # a trailing link to Mimecast's KB and a trailing [server id], any order
            stripped = re.sub(r"\s*-\s*https?://\S*mimecast\S*$|\s*\[[^\]]*\]$", "", text)
            if stripped == text:
                break
            text = stripped
        for phrase, alert_type in REJECTION_PHRASES:
            if re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text):
                return alert_type
    return None


def expected_kept(category: Category, record: dict[str, Any]) -> bool:
    """alert-rules.md section 2.2, written out independently of the code under test."""
    if category is Category.REJECTION:
        return rejection_type(record) is not None
    if category is Category.ATTACHMENT:
        return str(record["result"]).lower() not in ("safe", "clean")
    if category is Category.URL:
        return str(record["scanResult"]).lower() != "clean"
    return record["taggedMalicious"] is not False


def expected_type(category: Category, record: dict[str, Any]) -> str:
    """alert-rules.md section 3, written out independently of the code under test."""
    if category is Category.ATTACHMENT:
        return "Unsafe Email Attachment"
    if category is Category.IMPERSONATION:
        return "Impersonation Attempt"
    if category is Category.REJECTION:
        return str(rejection_type(record))
    if not record.get("ttpDefinition"):
        return str(record.get("creationMethod") or "URL Protection")
    return str(record.get("reason") or record["ttpDefinition"])


def canonical(record: Any) -> str:
    return json.dumps(record, sort_keys=True, ensure_ascii=False)


@dataclass
class World:
    sim: Simulator
    tenant: SimTenant
    made: dict[Category, list[dict[str, Any]]]
    tmp: Path

    def write_config(
        self,
        api: str = "2.0",
        *,
        extra_tenant: str = "",
        sinks: str | None = None,
        name: str = "config.toml",
    ) -> Path:
        t = self.tenant
        if api == "2.0":
            creds = f'client_id = "{t.client_id}"\nclient_secret = "{t.client_secret}"'
        else:
            creds = (
                f'app_id = "{t.app_id}"\napp_key = "{t.app_key}"\n'
                f'access_key = "{t.access_key}"\nsecret_key = "{t.secret_key}"'
            )
        sinks = sinks or (
            '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.jsonl"\n\n'
            '[[sinks]]\ntype = "jsonl"\npath = "out/alerts.ocsf.jsonl"\nformat = "ocsf"\n'
        )
        path = self.tmp / name
        path.write_text(
            f'state = "state/connector.db"\ndead_letter = "state/dead-letter.jsonl"\n'
            f'lookback = "30m"\npage_size = 100\n\n'
            f'[[tenants]]\nname = "acme"\napi = "{api}"\nbase_url = "{self.sim.url}"\n{creds}\n'
            f'start = "{START.isoformat()}"\n\n{extra_tenant}\n{sinks}',
            "utf-8",
        )
        return path

    def config(self, api: str = "2.0", **kwargs: Any) -> Config:
        return load_config(self.write_config(api, **kwargs), {})

    def expected(self) -> dict[str, str]:
        """canonical raw record -> expected alertType, for every record that must become an alert."""
        out: dict[str, str] = {}
        for category, records in self.made.items():
            for record in records:
                if expected_kept(category, record):
                    out[canonical(record)] = expected_type(category, record)
        return out

    def alerts(self, name: str = "out/alerts.jsonl") -> list[dict[str, Any]]:
        path = self.tmp / name
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with Simulator(seed=21) as sim:
        tenant = sim.add_tenant("acme")
        made = {
            c: tenant.generate(c, count=n, start=START, end=NOW - timedelta(minutes=1))
            for c, n in COUNTS.items()
        }
        yield World(sim, tenant, made, tmp_path)


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (the soaks: CI runs them briefly); ``scripts/`` goes
    on ``sys.path`` so that one script may import another."""
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    if str(scripts) not in sys.path:
        sys.path.insert(0, str(scripts))
    spec = importlib.util.spec_from_file_location(name, scripts / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
