"""Configuration problems quote the value that was wrong, and never a secret's."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimecast_connector import ConfigError
from mimecast_connector.config import load_config
from mimecast_connector.config._problems import HIDDEN, MAX_SHOWN, quoted

TENANT = '[[tenants]]\nname = "t"\nclient_id = "c"\nclient_secret = "s"\n'
JSONL = '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'
DCR = "dcr-" + "0" * 32
GUID = "00000000-0000-0000-0000-000000000001"
SENTINEL = (
    '[[sinks]]\ntype = "sentinel"\ndce = "https://dce.example.com/"\n'
    f'dcr_immutable_id = "{DCR}"\nstream = "Custom-Mimecast_CL"\ntenant_id = "{GUID}"\n'
    f'client_id = "{GUID}"\n'
)


def problems(tmp_path: Path, text: str) -> dict[str, str]:
    """The problems of a configuration file holding ``text``, by key path."""
    path = tmp_path / "c.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return dict(caught.value.problems)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (  # a literal
            TENANT.replace('"t"\n', '"t"\napi = "3.0"\n') + JSONL,
            "tenants[0].api",
            '"3.0" is not one of "2.0", "1.0"',
        ),
        (
            TENANT + JSONL + 'format = "xml"\n',
            "sinks[0].format",
            '"xml" is not one of "native", "ocsf", "ecs", "cef"',
        ),
        (  # an enum, in an array
            TENANT + 'categories = ["url", "spam"]\n' + JSONL,
            "tenants[0].categories[1]",
            '"spam" is not one of "attachment", "impersonation", "url", "rejection", "receipt"',
        ),
        (TENANT.replace('"t"', "5") + JSONL, "tenants[0].name", "5 is not a string (in quotes)"),
        (
            TENANT + 'keep_unmatched_rejections = "yes"\n' + JSONL,
            "tenants[0].keep_unmatched_rejections",
            '"yes" is not true or false (without quotes)',
        ),
        (
            TENANT + 'start = "yesterday"\n' + JSONL,
            "tenants[0].start",
            '"yesterday" is not a date and time with a zone, such as 2026-11-01T00:00:00Z',
        ),
        (TENANT + 'categories = "url"\n' + JSONL, "tenants[0].categories", '"url" is not an array'),
        ("tenants = 3\n" + JSONL, "tenants", "3 is not an array"),
        ('page_size = "big"\n' + TENANT + JSONL, "page_size", '"big" is not an integer'),
        (  # a number out of range names the range
            "page_size = 900\n" + TENANT + JSONL,
            "page_size",
            "900 is out of range: it must be from 1 to 500",
        ),
        (
            TENANT + '[[sinks]]\ntype = "syslog"\nhost = "h"\nport = 70000\n',
            "sinks[0].port",
            "70000 is out of range: it must be from 1 to 65535",
        ),
        (  # our own validators' messages read on after the value
            'lookback = "30d"\n' + TENANT + JSONL,
            "lookback",
            '"30d" must be at most 7d',
        ),
        (  # a union of plain types: one message naming each
            TENANT + '[[sinks]]\ntype = "splunk_hec"\nurl = "https://s.example"\ntoken = "t"\n'
            "verify_tls = 5\n",
            "sinks[0].verify_tls",
            "5 is not true or false or a string",
        ),
        (
            TENANT.replace('"t"', '"a b"') + JSONL,
            "tenants[0].name",
            '"a b" does not match the pattern ^[A-Za-z0-9_.-]+$',
        ),
        ("sinks = []\n" + TENANT, "sinks", "is an empty array: it needs at least 1"),
    ],
)
def test_each_kind_of_problem_quotes_the_value(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    """Literals, enums, types, ranges, patterns and our own checks say what was written."""
    found = problems(tmp_path, text)
    assert found.get(key) == message, found


def test_an_unknown_sink_type_is_quoted_and_the_known_ones_listed(tmp_path: Path) -> None:
    """``type = "xml"`` is a problem at ``sinks[0].type`` quoting it and listing every kind;
    a table without ``type`` says it is required, with the same list."""
    found = problems(tmp_path, TENANT + '[[sinks]]\ntype = "xml"\n[[sinks]]\npath = "o"\n')
    kinds = '"jsonl", "webhook", "splunk_hec", "syslog", "elasticsearch", "sentinel", "kafka"'
    assert found == {
        "sinks[0].type": f'"xml" is not one of the kinds there are: {kinds}',
        "sinks[1].type": f"is required: one of {kinds}",
    }


def test_an_unknown_key_is_named_with_the_closest_and_every_allowed_key(tmp_path: Path) -> None:
    """A misspelt key gets "did you mean", and the keys of its own table (a tenant's, a
    jsonl sink's, the file's) are listed; the misspelt key's value is never shown."""
    found = problems(
        tmp_path,
        'colour = "red-CANARY"\n'
        + TENANT
        + 'client_secrte = "CANARY-typo"\n'
        + JSONL
        + 'formt = "ocsf"\n',
    )
    assert found["tenants[0].client_secrte"].startswith(
        'unknown key (did you mean "client_secret"?); the keys allowed here are name, api, '
        "base_url, client_id, client_secret,"
    )
    assert found["sinks[0].formt"] == (
        'unknown key (did you mean "format"?); the keys allowed here are type, path, format'
    )
    assert found["colour"].startswith("unknown key (check its spelling); the keys allowed here")
    assert "tenants_dir" in found["colour"]
    assert "CANARY" not in repr(found)


def test_a_tenant_file_problem_quotes_the_value_under_the_files_name(tmp_path: Path) -> None:
    """A ``tenants_dir`` file's problems are keyed by the file and quote the value too."""
    (tmp_path / "tenants.d").mkdir()
    (tmp_path / "tenants.d" / "acme.toml").write_text(
        'api = "3.0"\nclient_id = "c"\nclient_secret = "s"\n'
    )
    found = problems(tmp_path, 'tenants_dir = "tenants.d"\n' + TENANT + JSONL)
    label = str(tmp_path / "tenants.d" / "acme.toml")
    assert found[f"{label}: api"] == '"3.0" is not one of "2.0", "1.0"'


def test_quoted_cuts_long_text_and_shows_control_characters() -> None:
    """Text is cut after MAX_SHOWN characters with an ellipsis, escapes are visible, quotes and
    backslashes are escaped; tables and arrays are named, never printed."""
    assert quoted("x" * (MAX_SHOWN + 10)) == '"' + "x" * MAX_SHOWN + '…"'
    assert quoted("a\x1b[2J\r\n\u202e") == r'"a\x1b[2J\r\n\u202e"'
    assert quoted('say "hi" \\ bye') == r'"say \"hi\" \\ bye"'
    assert (quoted(True), quoted(3), quoted(2.5)) == ("true", "3", "2.5")
    assert quoted({"client_secret": "CANARY"}) == "a table"
    assert quoted(["CANARY"]) == "an array"


# Each entry: the configuration, the key whose value holds the canary. Every value is wrong in
# a way that makes a problem at that key, so the test proves the problem hides it.
SECRET_CASES = {
    "tenant client_secret (a number)": (
        '[[tenants]]\nname = "t"\nclient_id = "c"\nclient_secret = 918273645\n' + JSONL,
        "tenants[0].client_secret",
        "918273645",
    ),
    "tenant secret_key (not base64)": (
        '[[tenants]]\nname = "t"\napi = "1.0"\nbase_url = "https://eu-api.mimecast.com"\n'
        'app_id = "a"\napp_key = "k"\naccess_key = "k"\nsecret_key = "not base64 CANARY-sk"\n'
        + JSONL,
        "tenants[0].secret_key",
        "CANARY-sk",
    ),
    "tenant app_key (a number)": (
        '[[tenants]]\nname = "t"\napi = "1.0"\nbase_url = "https://eu-api.mimecast.com"\n'
        'app_id = "a"\napp_key = 564738291\naccess_key = "k"\nsecret_key = "c2s="\n' + JSONL,
        "tenants[0].app_key",
        "564738291",
    ),
    "tenant access_key (a space)": (
        '[[tenants]]\nname = "t"\napi = "1.0"\nbase_url = "https://eu-api.mimecast.com"\n'
        'app_id = "a"\napp_key = "k"\naccess_key = "CANARY access"\nsecret_key = "c2s="\n' + JSONL,
        "tenants[0].access_key",
        "CANARY access",
    ),
    "splunk token (a space)": (
        TENANT + '[[sinks]]\ntype = "splunk_hec"\nurl = "https://s.example"\n'
        'token = "CANARY hec token"\n',
        "sinks[0].token",
        "CANARY hec token",
    ),
    "sentinel client_secret (a number)": (
        TENANT + SENTINEL + "client_secret = 192837465\n",
        "sinks[0].client_secret",
        "192837465",
    ),
    "webhook header value (a line break)": (
        TENANT + '[[sinks]]\ntype = "webhook"\nurl = "https://h.example/x"\n'
        'headers = { Authorization = "Bearer CANARY-hdr\\nX: y" }\n',
        "sinks[0].headers",
        "CANARY-hdr",
    ),
    "webhook header value (a number)": (
        TENANT + '[[sinks]]\ntype = "webhook"\nurl = "https://h.example/x"\n'
        "headers = { Authorization = 135792468 }\n",
        "sinks[0].headers",
        "135792468",
    ),
    "webhook secret (a number)": (
        TENANT + '[[sinks]]\ntype = "webhook"\nurl = "https://h.example/x"\nsecret = 246813579\n',
        "sinks[0].secret",
        "246813579",
    ),
    "webhook url with a token (a space)": (
        TENANT + '[[sinks]]\ntype = "webhook"\nurl = "https://h.example/CANARY-path token"\n',
        "sinks[0].url",
        "CANARY-path",
    ),
    "elasticsearch api_key (a control character)": (
        TENANT + '[[sinks]]\ntype = "elasticsearch"\nurl = "https://e.example"\n'
        'api_key = "CANARY-es\\u0001"\n',
        "sinks[0].api_key",
        "CANARY-es",
    ),
    "kafka password (a number)": (
        TENANT + '[[sinks]]\ntype = "kafka"\nbrokers = ["k.example.com:9093"]\n'
        'security_protocol = "SASL_SSL"\nsasl_mechanism = "PLAIN"\nusername = "u"\n'
        "password = 975318642\n",
        "sinks[0].password",
        "975318642",
    ),
    "syslog key_password (a number)": (
        TENANT + '[[sinks]]\ntype = "syslog"\nhost = "h"\nkey_password = 864213579\n',
        "sinks[0].key_password",
        "864213579",
    ),
    "postgres URL with a password (no database)": (
        'state = "postgresql://u:CANARY-pg@db.example:5432"\n' + TENANT + JSONL,
        "state",
        "CANARY-pg",
    ),
    "postgres URL with a password (a bad port)": (
        'state = "postgresql://u:CANARY-pg@db.example:port/db"\n' + TENANT + JSONL,
        "state",
        "CANARY-pg",
    ),
    "a secret-named value of the wrong type (state)": (
        "state = 123454321\n" + TENANT + JSONL,
        "state",
        "123454321",
    ),
}


@pytest.mark.parametrize(("text", "key", "canary"), SECRET_CASES.values(), ids=SECRET_CASES)
def test_a_wrong_secret_is_never_quoted(tmp_path: Path, text: str, key: str, canary: str) -> None:
    """A problem at a secret's key (or a header, a URL, the state) never shows the value."""
    path = tmp_path / "c.toml"
    path.write_text(text, "utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert key in dict(caught.value.problems), caught.value.problems
    for shown in (str(caught.value), repr(caught.value), repr(caught.value.problems)):
        assert canary not in shown, shown


def test_a_wrong_type_in_a_secret_says_hidden(tmp_path: Path) -> None:
    """A type problem in a secret names the expected type with the value shown as <hidden>."""
    found = problems(
        tmp_path,
        TENANT + SENTINEL + 'client_secret = "s"\nformat = "cef"\n' + "gzip = 5\n",
    )
    assert found["sinks[0].format"] == '"cef" is not one of "native", "ocsf", "ecs"'
    assert found["sinks[0].gzip"] == "5 is not true or false (without quotes)"
    found = problems(tmp_path, TENANT + '[[sinks]]\ntype = "webhook"\nurl = 5\nformat = "ocsf"\n')
    assert found["sinks[0].url"] == f"{HIDDEN} is not a string (in quotes)"
