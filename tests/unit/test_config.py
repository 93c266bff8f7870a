"""Unit tests of the configuration file: resolved, anchored, frozen, every problem at once, no leaks."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from mimecast_connector import Category, ConfigError
from mimecast_connector.config import (
    DEFAULT_BASE_URL_V2,
    Config,
    JsonlSinkConfig,
    WebhookSinkConfig,
    load_config,
    parse_duration,
)

#: Secret values that must never be shown. Each is used once, somewhere in the files below.
CANARIES = {
    "env": "env-CANARY-1f9a",
    "hook_env": "hook-CANARY-77b2",
    "file": "file-CANARY-c0de",
    "literal": "literal-CANARY-5e5e",
    "secret_key": "c2VjcmV0LUNBTkFSWS1iYXNlNjQ=",  # base64 of secret-CANARY-base64
    "header": "Bearer header-CANARY-a11y",
}
ENVIRON = {"ACME_SECRET": CANARIES["env"], "HOOK_SECRET": CANARIES["hook_env"]}

GOOD = f"""
state = "var/state.db"
dead_letter = "var/dead-letter.jsonl"
lookback = "45m"
page_size = 250
mapping = "mapping.toml"

[[tenants]]
name = "acme"
api = "2.0"
client_id = "cid-acme"
client_secret = "env:ACME_SECRET"
categories = ["attachment", "url"]
start = 2025-03-01T02:00:00+02:00
poll_interval = "2m"

[[tenants]]
name = "globex.eu"
api = "1.0"
base_url = "https://eu-api.mimecast.com/"
app_id = "app-globex"
app_key = "file:secrets/app_key.txt"
access_key = "{CANARIES["literal"]}"
secret_key = "{CANARIES["secret_key"]}"

[[sinks]]
type = "jsonl"
path = "out/alerts.jsonl"

[[sinks]]
type = "jsonl"
path = "-"
format = "ocsf"

[[sinks]]
type = "webhook"
url = "https://siem.example.com/hook"
format = "ocsf"
secret = "env:HOOK_SECRET"
headers = {{ Authorization = "{CANARIES["header"]}" }}
"""


def write(folder: Path, text: str, name: str = "connector.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, "utf-8")
    return path


@pytest.fixture
def good(tmp_path: Path) -> Config:
    """The complete valid file, loaded from a folder that is not the working directory."""
    folder = tmp_path / "etc" / "connector"
    (folder / "secrets").mkdir(parents=True)
    (folder / "secrets" / "app_key.txt").write_text(CANARIES["file"] + "\r\n", "utf-8")
    (folder / "mapping.toml").write_text(
        '[[rows]]\nalertType = "Entry Scan"\nthreatId = "T1566.002"\nthreatName = "Spearphishing Link"\n'
    )
    return load_config(write(folder, GOOD), ENVIRON)


def test_a_broken_mapping_file_is_reported_with_the_other_problems(tmp_path: Path) -> None:
    """The ATT&CK mapping file named by `mapping` is checked at load time, with everything else."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "app_key.txt").write_text("x" * 8)
    (tmp_path / "mapping.toml").write_text(
        '[[rows]]\nalertType = "X"\nthreatId = "T15"\nthreatName = ""\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(
            write(tmp_path, GOOD.replace("lookback = ", 'colour = "red"\nlookback = ')), ENVIRON
        )
    paths = [path for path, _ in caught.value.problems]
    assert "mapping.rows[0].threatId" in paths
    assert "mapping.rows[0].threatName" in paths
    assert "colour" in paths


def test_a_complete_file_loads_both_apis(good: Config) -> None:
    """An API 2.0 and an API 1.0 tenant load with their env:, file: and literal secrets resolved."""
    acme, globex = good.tenants
    assert (acme.name, acme.api, acme.url, acme.client_id) == (
        "acme",
        "2.0",
        DEFAULT_BASE_URL_V2,
        "cid-acme",
    )
    assert acme.client_secret is not None
    assert acme.client_secret.get_secret_value() == CANARIES["env"]
    assert acme.categories == (Category.ATTACHMENT, Category.URL)
    assert acme.start == datetime(2025, 3, 1, tzinfo=UTC)
    assert acme.start.tzinfo is UTC
    assert acme.poll_interval == timedelta(minutes=2)
    assert (globex.api, globex.url, globex.app_id) == (
        "1.0",
        "https://eu-api.mimecast.com",
        "app-globex",
    )
    assert globex.app_key is not None
    assert globex.access_key is not None
    assert globex.secret_key is not None
    assert globex.app_key.get_secret_value() == CANARIES["file"]  # trailing newline removed
    assert globex.access_key.get_secret_value() == CANARIES["literal"]
    assert globex.secret_key.get_secret_value() == CANARIES["secret_key"]
    # Without `categories`: the three TTP logs and the rejection log.
    assert globex.categories == (
        Category.ATTACHMENT,
        Category.IMPERSONATION,
        Category.URL,
        Category.REJECTION,
    )
    assert (acme.keep_unmatched_rejections, globex.keep_unmatched_rejections) == (False, False)
    assert (globex.start, globex.poll_interval) == (None, timedelta(seconds=60))
    assert (good.lookback, good.page_size) == (timedelta(minutes=45), 250)
    # Every secret, the secret key's decoded bytes too, plus the webhook URL (tokens hide there).
    decoded = base64.b64decode(CANARIES["secret_key"]).decode()
    assert sorted(good.secrets()) == sorted(
        [*CANARIES.values(), decoded, "https://siem.example.com/hook"]
    )


def test_both_sink_types_load(good: Config) -> None:
    """jsonl and webhook sinks load with their formats, the webhook secret and headers resolved."""
    jsonl, stdout, webhook = good.sinks
    assert isinstance(jsonl, JsonlSinkConfig)
    assert isinstance(stdout, JsonlSinkConfig)
    assert (jsonl.format, stdout.path, stdout.format) == ("native", "-", "ocsf")
    assert isinstance(webhook, WebhookSinkConfig)
    assert (webhook.url, webhook.format) == ("https://siem.example.com/hook", "ocsf")
    assert webhook.secret is not None
    assert webhook.secret.get_secret_value() == CANARIES["hook_env"]
    assert {k: v.get_secret_value() for k, v in webhook.headers.items()} == {
        "Authorization": CANARIES["header"]
    }


def test_relative_paths_are_anchored_at_the_config_folder(good: Config, tmp_path: Path) -> None:
    """state, dead_letter, mapping and a jsonl path are relative to the file's folder, not the cwd."""
    folder = (tmp_path / "etc" / "connector").resolve()
    assert Path.cwd() != folder
    assert good.state == folder / "var" / "state.db"
    assert good.dead_letter == folder / "var" / "dead-letter.jsonl"
    assert good.mapping == folder / "mapping.toml"
    assert isinstance(good.sinks[0], JsonlSinkConfig)
    assert good.sinks[0].path == str(folder / "out" / "alerts.jsonl")


def test_absolute_paths_and_defaults(tmp_path: Path) -> None:
    """An absolute path is kept; unset paths default under the config folder; secrets may be file:-absolute."""
    secret = tmp_path / "elsewhere" / "secret"
    secret.parent.mkdir()
    secret.write_text("s3cret\n", "utf-8")
    text = f"""
dead_letter = "{tmp_path / "abs" / "dead.jsonl"}"
[[tenants]]
name = "t"
client_id = "c"
client_secret = "file:{secret}"
[[sinks]]
type = "jsonl"
path = "{tmp_path / "abs" / "alerts.jsonl"}"
"""
    config = load_config(write(tmp_path / "cfg", text), {})
    folder = (tmp_path / "cfg").resolve()
    assert config.state == folder / "state" / "connector.db"
    assert config.dead_letter == tmp_path / "abs" / "dead.jsonl"
    assert config.mapping is None
    assert (config.lookback, config.page_size) == (timedelta(minutes=30), 500)
    assert isinstance(config.sinks[0], JsonlSinkConfig)
    assert config.sinks[0].path == str(tmp_path / "abs" / "alerts.jsonl")
    assert config.tenants[0].client_secret is not None
    assert config.tenants[0].client_secret.get_secret_value() == "s3cret"


def test_the_config_is_frozen(good: Config) -> None:
    """A loaded configuration cannot be changed afterwards."""
    with pytest.raises(ValidationError):
        good.page_size = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        good.tenants[0].name = "other"  # type: ignore[misc]


def test_secrets_never_appear_in_repr_or_json(good: Config) -> None:
    """No secret value shows in repr, str or the JSON dump of the configuration."""
    shown = [repr(good), str(good), good.model_dump_json(), repr(good.model_dump())]
    for text in shown:
        for canary in CANARIES.values():
            assert canary not in text
    assert "**********" in good.model_dump_json()


BROKEN = """
colour = "blue"
lookback = "half an hour"
page_size = 501

[[tenants]]
name = "acme"
api = "2.0"
base_url = "http://api.services.mimecast.com"
client_id = "cid"
client_secret = "env:MISSING_SECRET"
start = 2025-03-01T00:00:00
poll_interval = "soon"
flavour = "vanilla"

[[tenants]]
name = "acme"
api = "1.0"
app_id = "app"
app_key = "file:no/such/file.txt"
secret_key = "not base64 CANARY-SK-9f!"
client_secrte = "typo-CANARY-3c3c"

[[tenants]]
name = "initech"
api = "2.0"

[[sinks]]
type = "jsonl"
path = "alerts.jsonl"
colour = "red"

[[sinks]]
type = "webhook"
url = "http://siem.example.com/hook"
secret = "hook-CANARY-8d8d"
headers = { "X-Api-Key" = "header-CANARY-4e4e" }

[[sinks]]
type = "carrier-pigeon"
host = "x"
"""
BROKEN_CANARIES = ["CANARY-SK-9f", "typo-CANARY-3c3c", "hook-CANARY-8d8d", "header-CANARY-4e4e"]


def test_every_problem_is_reported_at_once_with_its_path(tmp_path: Path) -> None:
    """One broken file yields one ConfigError listing each problem under its key path."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, BROKEN), {})
    problems = caught.value.problems
    expected = {
        "colour": "unknown key",
        "lookback": "is not a duration",
        "page_size": "501 is out of range: it must be from 1 to 500",
        "tenants[0].base_url": "must use https",
        "tenants[0].client_secret": "environment variable MISSING_SECRET is not set",
        "tenants[0].start": "needs a time zone",
        "tenants[0].poll_interval": "'soon' is not a duration",
        "tenants[0].flavour": "unknown key",
        "tenants[1].name": "'acme' is used by another tenant",
        "tenants[1].app_key": "cannot read file",
        "tenants[1].secret_key": "is not base64",
        "tenants[1].client_secrte": "unknown key",
        "tenants[1].access_key": "is required for API 1.0",
        "tenants[1].base_url": "is required for API 1.0",
        "tenants[2].client_id": "is required for API 2.0",
        "tenants[2].client_secret": "is required for API 2.0",
        "sinks[0].colour": "unknown key",
        "sinks[1].url": "must use https",
        "sinks[2].type": '"carrier-pigeon" is not one of the kinds there are: "jsonl", "webhook",',
    }
    assert sorted(path for path, _ in problems) == sorted(expected)
    for path, message in problems:
        assert expected[path] in message, (path, message)
    text = str(caught.value)
    for path, message in problems:
        assert f"{path}: {message}" in text
    assert str(tmp_path / "no" / "such" / "file.txt") in dict(problems)["tenants[1].app_key"]


def test_broken_file_secrets_never_appear_in_the_error(tmp_path: Path) -> None:
    """Secret values, even under a misspelled key or beside a bad value, stay out of the error."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, BROKEN), {})
    for text in (str(caught.value), repr(caught.value), repr(caught.value.problems)):
        for canary in BROKEN_CANARIES:
            assert canary not in text


@pytest.mark.parametrize(
    ("value", "environ", "file_bytes", "problem"),
    [
        ("env:", {}, None, "'env:' needs the name of an environment variable"),
        ("env:EMPTY", {"EMPTY": ""}, None, "environment variable EMPTY is empty"),
        ("file:s.txt", {}, b"\n", "is empty"),
        ("file:s.txt", {}, b"\xff\xfe secret", "is not UTF-8 text"),
    ],
)
def test_secret_references_that_resolve_to_nothing_are_refused(
    value: str, environ: dict[str, str], file_bytes: bytes | None, problem: str, tmp_path: Path
) -> None:
    """An env: or file: reference naming nothing, or nothing usable, is a problem at the secret's path."""
    if file_bytes is not None:
        (tmp_path / "s.txt").write_bytes(file_bytes)
    text = f'[[tenants]]\nname = "t"\nclient_id = "c"\nclient_secret = "{value}"\n[[sinks]]\ntype = "jsonl"\npath = "-"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ)
    assert len(caught.value.problems) == 1
    path, message = caught.value.problems[0]
    assert path == "tenants[0].client_secret"
    assert problem in message


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:9000", "[::1]:9000", "127.9.9.9"])
def test_plain_http_is_allowed_on_loopback(host: str, tmp_path: Path) -> None:
    """Loopback base_url and webhook url may use http (the simulator and local collectors)."""
    text = f"""
[[tenants]]
name = "sim"
base_url = "http://{host}"
client_id = "c"
client_secret = "s"
[[sinks]]
type = "webhook"
url = "http://{host}/hook"
"""
    config = load_config(write(tmp_path, text), {})
    assert config.tenants[0].url == f"http://{host}"
    assert isinstance(config.sinks[0], WebhookSinkConfig)
    assert config.sinks[0].url == f"http://{host}/hook"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tenants = [", "is not valid TOML"),
        ("", "tenants: is required"),
        (
            'sinks = []\n[[tenants]]\nname = "t"\nclient_id = "c"\nclient_secret = "s"\n',
            "sinks: is an empty array: it needs at least 1",
        ),
    ],
)
def test_unusable_files_are_config_errors(text: str, problem: str, tmp_path: Path) -> None:
    """Bad TOML and missing or empty required tables are reported, not raised raw."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert problem in str(caught.value)


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    """A configuration path that does not exist is one ConfigError naming the path."""
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", {})
    assert caught.value.problems == [
        (
            "",
            f"cannot read the configuration {str(tmp_path / 'absent.toml')!r}: No such file or directory",
        )
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60s", timedelta(seconds=60)),
        ("30m", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("1d", timedelta(days=1)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        (" 5 m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration_units(text: str, expected: timedelta) -> None:
    """Durations take ms, s, m, h and d, with a decimal number."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["5", "m", "1w", "-1s", "1 hour", "PT1H", ""])
def test_parse_duration_refuses_other_spellings(text: str) -> None:
    """Anything else is refused, with the accepted forms in the message."""
    with pytest.raises(ValueError, match="is not a duration such as"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "problem"), [('"0.5s"', "at least 1s"), ('"-1s"', "not a duration")]
)
def test_poll_interval_must_be_a_second_or_more(value: str, problem: str, tmp_path: Path) -> None:
    """A poll interval under one second is refused."""
    text = f'[[tenants]]\nname = "t"\nclient_id = "c"\nclient_secret = "s"\npoll_interval = {value}\n[[sinks]]\ntype = "jsonl"\npath = "-"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert [(p, problem in m) for p, m in caught.value.problems] == [
        ("tenants[0].poll_interval", True)
    ]


@pytest.mark.parametrize(
    ("setting", "path", "problem"),
    [
        ('categories = ["rejection", "spam"]', "tenants[0].categories[1]", "rejection"),
        ("categories = []", "tenants[0].categories", "at least one of"),
        ('categories = ["url", "url"]', "tenants[0].categories", "twice"),
        (
            'keep_unmatched_rejections = "yes"',
            "tenants[0].keep_unmatched_rejections",
            '"yes" is not true or false',
        ),
    ],
)
def test_categories_and_keep_unmatched_rejections_are_checked(
    setting: str, path: str, problem: str, tmp_path: Path
) -> None:
    """An unknown or repeated category, none at all, or a non-boolean keep flag is refused,
    naming its key and what is allowed."""
    text = (
        f'[[tenants]]\nname = "t"\nclient_id = "c"\nclient_secret = "s"\n{setting}\n'
        '[[sinks]]\ntype = "jsonl"\npath = "-"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), {})
    assert [p for p, _ in caught.value.problems] == [path]
    assert problem in caught.value.problems[0][1]


def test_keep_unmatched_rejections_and_the_rejection_category_load(tmp_path: Path) -> None:
    """`categories = ["rejection"]` and `keep_unmatched_rejections = true` are taken."""
    text = (
        '[[tenants]]\nname = "t"\nclient_id = "c"\nclient_secret = "s"\n'
        'categories = ["rejection"]\nkeep_unmatched_rejections = true\n'
        '[[sinks]]\ntype = "jsonl"\npath = "-"\n'
    )
    tenant = load_config(write(tmp_path, text), {}).tenants[0]
    assert (tenant.categories, tenant.keep_unmatched_rejections) == ((Category.REJECTION,), True)


def test_two_outputs_on_one_file_are_refused(tmp_path: Path) -> None:
    """Two jsonl sinks (or a sink and the dead-letter file) naming one file would cut each other's writes."""
    path = tmp_path / "c.toml"
    path.write_text(
        'dead_letter = "out/a.jsonl"\n[[tenants]]\nname = "a"\nclient_id = "x"\nclient_secret = "y"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out/a.jsonl"\n[[sinks]]\ntype = "jsonl"\npath = "./out/a.jsonl"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert [p for p, _ in caught.value.problems] == ["sinks[0].path", "sinks[1].path"]


def test_webhook_header_values_must_be_ascii_on_one_line(tmp_path: Path) -> None:
    """A header value that HTTP cannot carry is a config error, not a crash at the first batch."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[[tenants]]\nname = "a"\nclient_id = "x"\nclient_secret = "y"\n'
        '[[sinks]]\ntype = "webhook"\nurl = "https://siem.example.net/x"\nheaders = { Authorization = "Bearer t\\u00f6k" }\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert caught.value.problems[0][0] == "sinks[0].headers"
    assert "ASCII" in caught.value.problems[0][1]
