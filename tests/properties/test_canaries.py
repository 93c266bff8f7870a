"""Canary secrets go nowhere: not in output, exceptions, state, dead letters or alert files.

Every secret of a configuration is a unique canary string, written every way the file allows:
``env:NAME``, ``file:PATH`` and the value itself, for an API 2.0 tenant, an API 1.0 tenant, a
tenant whose secret is wrong, and a webhook sink's secret, header and URL path. Whole
``run --once`` commands (and ``status``) go through the command line at ``--log-level debug``
against the simulator, healthy and failing: wrong credentials, Mimecast error bodies and
``fail`` entries that quote the secrets back, a receiver that refuses every batch with 400.
Afterwards every output line and exception, and every byte of every file the connector wrote
(the state database with its -wal and -shm, the lock file, the dead-letter file, the alert
files) is searched for every canary. The receiver legitimately gets the webhook secret's HMAC,
the header and the URL; what it received is not searched.
"""

from __future__ import annotations

import base64
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner, Result

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector._cli import main
from mimecast_connector.simulator import Simulator, faults
from tests.sinks.receiver import Answer, Receiver


def canary(kind: str) -> str:
    return f"CANARY-{kind}-{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Canaries:
    v2_secret: str = field(default_factory=lambda: canary("v2-client-secret"))
    v1_app_key: str = field(default_factory=lambda: canary("v1-app-key"))
    v1_access_key: str = field(default_factory=lambda: canary("v1-access-key"))
    v1_secret_raw: str = field(default_factory=lambda: canary("v1-secret-key-bytes"))
    wrong_secret: str = field(default_factory=lambda: canary("wrong-client-secret"))
    hook_secret: str = field(default_factory=lambda: canary("webhook-secret"))
    hook_header: str = field(default_factory=lambda: canary("webhook-header"))
    hook_path: str = field(default_factory=lambda: canary("webhook-url-path"))

    @property
    def v1_secret_key(self) -> str:
        """The API 1.0 secret key as Mimecast shows it: base64 (of a canary, itself searched)."""
        return base64.b64encode(self.v1_secret_raw.encode()).decode()

    def all(self) -> list[str]:
        return [
            self.v2_secret,
            self.v1_app_key,
            self.v1_access_key,
            self.v1_secret_raw,
            self.v1_secret_key,
            self.wrong_secret,
            self.hook_secret,
            self.hook_header,
            self.hook_path,
        ]


@dataclass
class Setup:
    folder: Path
    config: Path
    secret_files: list[Path]
    environ: dict[str, str]
    sim: Simulator
    receiver: Receiver
    canaries: Canaries


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    c = Canaries()
    now = datetime.now(UTC).replace(microsecond=0)
    receiver = Receiver()
    receiver.start()
    with Simulator(seed=11) as sim:
        v2 = sim.add_tenant("v2", client_secret=c.v2_secret)
        v1 = sim.add_tenant(
            "v1",
            app_key=c.v1_app_key,
            access_key=c.v1_access_key,
            secret_key=c.v1_secret_key,
        )
        wrong = sim.add_tenant("wrong")  # its real secret is not the canary the config has
        for tenant in (v2, v1, wrong):
            for category in LOG_CATEGORIES:
                tenant.generate(category, 15, start=now - timedelta(hours=2), end=now)
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        files = {
            "app_key": c.v1_app_key,
            "secret_key": c.v1_secret_key,
            "header": c.hook_header,
        }
        for name, value in files.items():
            (secrets / name).write_text(value + "\n", "utf-8")
        environ = {
            "CANARY_V2_SECRET": c.v2_secret,
            "CANARY_V1_ACCESS": c.v1_access_key,
            "CANARY_HOOK_SECRET": c.hook_secret,
        }
        start = (now - timedelta(hours=3)).isoformat()
        config = tmp_path / "config.toml"
        config.write_text(
            f"""state = "state/connector.db"
dead_letter = "state/dead-letter.jsonl"
lookback = "30m"
page_size = 5

[[tenants]]
name = "v2"
api = "2.0"
base_url = "{sim.url}"
client_id = "{v2.client_id}"
client_secret = "env:CANARY_V2_SECRET"
start = "{start}"

[[tenants]]
name = "v1"
api = "1.0"
base_url = "{sim.url}"
app_id = "{v1.app_id}"
app_key = "file:secrets/app_key"
access_key = "env:CANARY_V1_ACCESS"
secret_key = "file:{secrets / "secret_key"}"
start = "{start}"

[[tenants]]
name = "wrong"
base_url = "{sim.url}"
client_id = "{wrong.client_id}"
client_secret = "{c.wrong_secret}"
start = "{start}"

[[sinks]]
type = "jsonl"
path = "out/alerts.jsonl"

[[sinks]]
type = "jsonl"
path = "out/alerts.ocsf.jsonl"
format = "ocsf"

[[sinks]]
type = "webhook"
url = "{receiver.url("/hook/" + c.hook_path)}"
format = "ocsf"
secret = "env:CANARY_HOOK_SECRET"
headers = {{ Authorization = "file:secrets/header" }}
""",
            "utf-8",
        )
        try:
            yield Setup(tmp_path, config, list(secrets.iterdir()), environ, sim, receiver, c)
        finally:
            receiver.stop()
            structlog.reset_defaults()  # the CLI pointed structlog at CliRunner's stream


def invoke(setup: Setup, *args: str) -> tuple[Result, str]:
    """Run the CLI; its result and every piece of text it produced, exception included."""
    result = CliRunner().invoke(main, list(args), env=setup.environ, catch_exceptions=True)
    texts = [result.output, result.stdout, result.stderr]
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        texts.append("".join(traceback.format_exception(*result.exc_info)))
    return result, "\n".join(texts)


def assert_nowhere(setup: Setup, text: str) -> None:
    """No canary in ``text`` nor in any file the connector wrote under the folder."""
    for secret in setup.canaries.all():
        assert secret not in text, f"{secret} in the output"
    inputs = {setup.config, *setup.secret_files}
    written = [p for p in setup.folder.rglob("*") if p.is_file() and p not in inputs]
    names = {p.name for p in written}
    assert {"connector.db", "connector.db.lock", "alerts.jsonl"} <= names, names
    for path in written:
        data = path.read_bytes()
        for secret in setup.canaries.all():
            assert secret.encode() not in data, f"{secret} in {path}"
            assert secret.encode("utf-16-le") not in data, f"{secret} (UTF-16) in {path}"


def echo(secrets: list[str]) -> str:
    words = " ".join(secrets)
    return f'{{"fail":[{{"code":"echo","message":"you sent {words}"}}]}}'


def run_once(setup: Setup) -> tuple[Result, str]:
    return invoke(setup, "run", "--config", str(setup.config), "--once", "--log-level", "debug")


def test_no_canary_leaks_from_a_run_with_a_wrong_tenant(setup: Setup) -> None:
    """A run in which one tenant's secret is wrong leaves no canary in output, state or files."""
    result, text = run_once(setup)
    assert result.exit_code == 1, text
    assert "wrong/" in text
    assert "client_secret" in text
    assert (setup.folder / "out" / "alerts.jsonl").stat().st_size > 0  # the others delivered
    assert setup.receiver.requests  # and the webhook got them
    assert_nowhere(setup, text)
    result, text = invoke(setup, "status", "--config", str(setup.config))
    assert result.exit_code == 0, text
    assert_nowhere(setup, text)


def test_no_canary_leaks_when_mimecast_quotes_each_tenants_secrets_back(setup: Setup) -> None:
    """Error bodies and fail entries quoting a tenant's own secrets, and a webhook 400, leak nothing."""
    c = setup.canaries
    setup.sim.inject(
        faults.HttpStatus(status=401, body=echo([c.v2_secret])),
        tenant="v2",
        category=Category.URL,
        times=None,
    )
    setup.sim.inject(
        faults.HttpStatus(status=401, body=echo([c.wrong_secret])),
        tenant="wrong",
        token_endpoint=True,
        times=None,
    )
    setup.sim.inject(
        faults.FailResponse(code="echo", message=" ".join([c.v1_app_key, c.v1_access_key])),
        tenant="v1",
        category=Category.IMPERSONATION,
        times=None,
    )
    setup.sim.inject(
        faults.HttpStatus(status=403, body=echo([c.v1_secret_key, c.v1_access_key])),
        tenant="v1",
        category=Category.ATTACHMENT,
        times=None,
    )
    setup.receiver.script(*[Answer(400, body=echo(c.all()).encode())] * 50)
    result, text = run_once(setup)
    assert result.exit_code == 1, text
    assert "v2/url" in text
    assert "v1/impersonation" in text
    assert "HTTP 400" in text
    assert_nowhere(setup, text)
    result, text = invoke(setup, "status", "--config", str(setup.config))
    assert_nowhere(setup, text)


def test_no_canary_leaks_when_mimecast_quotes_every_secret_back(setup: Setup) -> None:
    """An error body quoting every secret of the configuration leaks none of them anywhere."""
    setup.sim.inject(
        faults.HttpStatus(status=401, body=echo(setup.canaries.all())),
        tenant="v2",
        category=Category.URL,
        times=None,
    )
    result, text = run_once(setup)
    assert result.exit_code == 1, text
    assert_nowhere(setup, text)
