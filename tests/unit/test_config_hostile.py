"""Hostile configuration values: each is refused at load with its key path, never a traceback or a hang.

Every value here once crashed the loader, hung it, or passed it and then failed every poll or
batch for ever. The bounds tested are the ones the README states.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from mimecast_connector import ConfigError
from mimecast_connector._cli import main
from mimecast_connector.config import Config, WebhookSinkConfig, load_config, parse_duration

TENANT = 'name = "acme"\nclient_id = "cid"\nclient_secret = "s3cret-CANARY-91"\n'
V1_TENANT = (
    'name = "old"\napi = "1.0"\nbase_url = "https://eu-api.mimecast.com"\n'
    'app_key = "k"\nsecret_key = "c2VjcmV0"\n'
)
JSONL = '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'


class FixedClock:
    """A wall clock stopped at one moment; the loader only reads ``time()``."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def time(self) -> float:
        return self.moment.timestamp()

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def config_text(top: str = "", tenant: str = "", sinks: str = JSONL, base: str = TENANT) -> str:
    return f"{top}\n[[tenants]]\n{base}{tenant}\n{sinks}"


def load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "connector.toml"
    path.write_text(text, "utf-8")
    return load_config(path, {}, clock=FixedClock(NOW))


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def webhook(headers: str) -> str:
    return (
        f'[[sinks]]\ntype = "webhook"\nurl = "https://siem.example.net/in"\nheaders = {headers}\n'
    )


def within(seconds: float, work: Callable[[], object], unblock: Callable[[], None]) -> object:
    """``work()``'s result or exception, asserting it came back within ``seconds``."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:  # handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    hung = thread.is_alive()
    if hung:
        unblock()
        thread.join(5)
    assert not hung, "the loader hung"
    return outcome[0]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def release(fifo: Path) -> Callable[[], None]:
    """Opens ``fifo`` for writing and closes it, so a reader blocked in open() gets EOF."""

    def go() -> None:
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    return go


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top", "tenant", "key", "says"),
    [
        ('lookback = "99999999999d"', "", "lookback", "at most 7d"),
        ('lookback = "3000000d"', "", "lookback", "at most 7d"),
        ('lookback = "8d"', "", "lookback", "at most 7d"),
        ("lookback = " + '"' + "9" * 400 + 's"', "", "lookback", "at most 7d"),
        ("lookback = true", "", "lookback", "duration"),
        ("lookback = -1", "", "lookback", "not be negative"),
        ("lookback = nan", "", "lookback", "duration"),
        ("lookback = inf", "", "lookback", "at most 7d"),
        ("", 'poll_interval = "99999999999d"\n', "tenants[0].poll_interval", "at most 1d"),
        ("", 'poll_interval = "25h"\n', "tenants[0].poll_interval", "at most 1d"),
        ("", "poll_interval = true\n", "tenants[0].poll_interval", "duration"),
        ("", 'poll_interval = "0s"\n', "tenants[0].poll_interval", "at least 1s"),
    ],
)
def test_durations_out_of_bounds_are_refused_with_their_key(
    top: str, tenant: str, key: str, says: str, tmp_path: Path
) -> None:
    """Every duration key is bounded; a value outside (or not a duration) is one problem at its key."""
    found = problems(tmp_path, config_text(top, tenant))
    assert [p for p, _ in found] == [key], found
    assert says in found[0][1], found


@pytest.mark.parametrize(
    ("lookback", "poll"), [('"0s"', '"1s"'), ('"7d"', '"1d"'), ("600", "30"), ('"168h"', '"1440m"')]
)
def test_durations_at_their_bounds_are_accepted(lookback: str, poll: str, tmp_path: Path) -> None:
    """The stated bounds are inclusive; a bare number is seconds."""
    config = load(tmp_path, config_text(f"lookback = {lookback}", f"poll_interval = {poll}\n"))
    assert timedelta(0) <= config.lookback <= timedelta(days=7)
    assert timedelta(seconds=1) <= config.tenants[0].poll_interval <= timedelta(days=1)


def test_parse_duration_never_overflows() -> None:
    """A duration no timedelta can hold is a ValueError naming the problem, not an OverflowError."""
    for text in ("99999999999d", "9" * 400 + "s", "1" * 5000 + "ms"):
        with pytest.raises(ValueError, match="too long"):
            parse_duration(text)


# --- start -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("1969-12-31T23:59:59Z", "1970-01-01"),
        ("0001-01-01T00:00:00+14:00", "1970-01-01"),
        ("9999-12-31T23:59:59-01:00", "future"),
        ("2026-12-01T12:06:00Z", "future"),
        ("2062-12-01T00:00:00Z", "future"),
        ("99999999999999999", "99999999999999999 is not a date and time"),
        ("true", "true is not a date and time"),
    ],
)
def test_start_out_of_bounds_is_refused(value: str, says: str, tmp_path: Path) -> None:
    """`start` lies between 1970-01-01T00:00:00Z and 5 minutes past now; outside is a problem, never a crash."""
    found = problems(tmp_path, config_text(tenant=f"start = {value}\n"))
    assert [p for p, _ in found] == ["tenants[0].start"], found
    assert says in found[0][1], found


@pytest.mark.parametrize(
    "value", ["1970-01-01T00:00:00Z", "2026-12-01T12:04:59Z", "2026-12-01T13:00:00+01:00"]
)
def test_start_at_its_bounds_is_accepted(value: str, tmp_path: Path) -> None:
    """The epoch itself, and up to 5 minutes of clock skew into the future, are accepted."""
    config = load(tmp_path, config_text(tenant=f"start = {value}\n"))
    start = config.tenants[0].start
    assert start is not None
    assert start.tzinfo == UTC


# --- other values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top", "says"),
    [
        ("page_size = true", "integer"),
        ("page_size = 100.0", "integer"),
        ("page_size = " + "9" * 5000, "too long"),
        ("x = " + "[" * 5000 + "]" * 5000, "nested"),
    ],
)
def test_hostile_top_level_values_are_problems_not_tracebacks(
    top: str, says: str, tmp_path: Path
) -> None:
    """Booleans as numbers, integers too long to convert and deep nesting are each a clear problem."""
    found = problems(tmp_path, config_text(top))
    assert any(says in m for _, m in found), found


def test_the_config_file_must_be_a_regular_file_of_at_most_1_mib(tmp_path: Path) -> None:
    """/dev/zero, a directory and a 1 MiB + 1 byte file are refused without reading them whole."""
    big = tmp_path / "big.toml"
    big.write_text("#" * (1024 * 1024 + 1))
    for path, says in (
        (Path("/dev/zero"), "character device"),
        (tmp_path, "directory"),
        (big, "larger than 1 MiB"),
    ):
        with pytest.raises(ConfigError) as caught:
            load_config(path, {})
        assert says in caught.value.problems[0][1], caught.value.problems


def test_a_fifo_as_the_config_file_is_refused_without_hanging(fifo: Path) -> None:
    """A named pipe given as the configuration does not block the loader."""
    outcome = within(5, lambda: load_config(fifo, {}), release(fifo))
    assert isinstance(outcome, ConfigError), outcome
    assert "FIFO" in outcome.problems[0][1]


# --- file: secrets ------------------------------------------------------------------------------


def test_a_fifo_as_a_file_secret_is_refused_without_hanging(fifo: Path, tmp_path: Path) -> None:
    """`file:` naming a named pipe is refused at once with its key path instead of blocking."""
    text = config_text(base=TENANT.replace('"s3cret-CANARY-91"', f'"file:{fifo}"'))
    outcome = within(5, lambda: load(tmp_path, text), release(fifo))
    assert isinstance(outcome, ConfigError), outcome
    assert outcome.problems[0][0] == "tenants[0].client_secret"
    assert "FIFO" in outcome.problems[0][1]


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("/dev/zero", "character device"),
        ("{tmp}", "directory"),
        ("{tmp}/big", "larger than 64 KiB"),
        ("{tmp}/a\\u0000b", "NUL"),
    ],
)
def test_file_secrets_come_only_from_small_regular_files(
    target: str, says: str, tmp_path: Path
) -> None:
    """`file:` reads a regular file of at most 64 KiB; anything else is a problem at the key."""
    (tmp_path / "big").write_bytes(b"x" * (64 * 1024 + 1))
    ref = "file:" + target.format(tmp=tmp_path)
    found = problems(tmp_path, config_text(base=TENANT.replace('"s3cret-CANARY-91"', f'"{ref}"')))
    assert [p for p, _ in found] == ["tenants[0].client_secret"], found
    assert says in found[0][1], found


def test_a_file_secret_of_exactly_64_kib_is_read(tmp_path: Path) -> None:
    """The cap is inclusive and the trailing newline is still removed."""
    (tmp_path / "key").write_bytes(b"k" * (64 * 1024 - 1) + b"\n")
    config = load(tmp_path, config_text(base=TENANT.replace('"s3cret-CANARY-91"', '"file:key"')))
    secret = config.tenants[0].client_secret
    assert secret is not None
    assert secret.get_secret_value() == "k" * (64 * 1024 - 1)


# --- webhook headers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ('{ Authorization = "Bearer a\\u0000b" }', "control character"),
        ('{ Authorization = "Bearer a\\r\\nX-Evil: 1" }', "control character"),
        ('{ Authorization = "Bearer a\\u007f" }', "control character"),
        ('{ Authorization = "Bearer t\\u00f6k" }', "ASCII"),
        ('{ Authorization = " Bearer abc" }', "whitespace"),
        ('{ Authorization = "Bearer abc\\t" }', "whitespace"),
        ('{ "X Token" = "abc" }', "token"),
        ('{ "X-Token:" = "abc" }', "token"),
        ('{ "" = "abc" }', "token"),
        ('{ "X-\\u00e9" = "abc" }', "token"),
        ('{ "Content-Length" = "3" }', "sets itself"),
        ('{ "content-type" = "text/plain" }', "sets itself"),
        ('{ "X-Signature-256" = "sha256=00" }', "sets itself"),
        ('{ Host = "evil.example" }', "sets itself"),
        ('{ "Transfer-Encoding" = "chunked" }', "sets itself"),
        ('{ "X-Token" = "a", "x-token" = "b" }', "twice"),
        ('{ "X-Token" = "' + "a" * 8193 + '" }', "8192"),
        ('{ "X-' + "a" * 255 + '" = "v" }', "longer than 256"),
    ],
)
def test_header_names_and_values_http_cannot_carry_are_refused(
    headers: str, says: str, tmp_path: Path
) -> None:
    """RFC 9110: names are tokens, values visible ASCII with inner spaces/tabs; the sink's own headers are not overridable."""
    found = problems(tmp_path, config_text(sinks=webhook(headers)))
    assert [p for p, _ in found] == ["sinks[0].headers"], found
    assert says in found[0][1], found


def test_every_bad_header_is_reported_at_once_without_its_value(tmp_path: Path) -> None:
    """Two bad headers are both named in one problem; the secret values never appear."""
    found = problems(
        tmp_path,
        config_text(
            sinks=webhook('{ "A B" = "v-CANARY-1", Authorization = "Bearer v-CANARY-2\\u0000" }')
        ),
    )
    assert len(found) == 1
    assert "A B" in found[0][1]
    assert "Authorization" in found[0][1]
    assert "CANARY" not in str(found)


def test_a_header_from_a_file_is_checked_like_a_literal(tmp_path: Path) -> None:
    """A `file:` header value with a NUL byte is refused at load, not at every batch."""
    (tmp_path / "token").write_bytes(b"Bearer abc\x00def\n")
    found = problems(tmp_path, config_text(sinks=webhook('{ Authorization = "file:token" }')))
    assert [p for p, _ in found] == ["sinks[0].headers"]
    assert "control character" in found[0][1]


def test_too_many_headers_are_refused(tmp_path: Path) -> None:
    """At most 64 headers: a bounded request."""
    many = ", ".join(f'"X-H{i}" = "v"' for i in range(65))
    found = problems(tmp_path, config_text(sinks=webhook("{ " + many + " }")))
    assert [p for p, _ in found] == ["sinks[0].headers"]
    assert "at most 64" in found[0][1]


def test_ordinary_headers_are_accepted(tmp_path: Path) -> None:
    """Tokens with punctuation, values with inner spaces and tabs, an empty value, and User-Agent load."""
    config = load(
        tmp_path,
        config_text(
            sinks=webhook(
                '{ Authorization = "Splunk a b\\tc", "X-Tenant_ID.v2~" = "", "User-Agent" = "me/1" }'
            )
        ),
    )
    sink = config.sinks[0]
    assert isinstance(sink, WebhookSinkConfig)
    assert sorted(sink.headers) == ["Authorization", "User-Agent", "X-Tenant_ID.v2~"]


# --- values that become HTTP headers or URLs ------------------------------------------------------


@pytest.mark.parametrize(
    ("tenant", "key"),
    [
        ('app_id = "app\\r\\nX: 1"\naccess_key = "ak"\n', "tenants[0].app_id"),
        ('app_id = "app"\naccess_key = "ak\\u0000"\n', "tenants[0].access_key"),
        ('app_id = "app"\naccess_key = "a k"\n', "tenants[0].access_key"),
        ('app_id = "app\\u00e9"\naccess_key = "ak"\n', "tenants[0].app_id"),
    ],
)
def test_api_1_values_sent_as_headers_must_be_visible_ascii(
    tenant: str, key: str, tmp_path: Path
) -> None:
    """app_id and access_key travel in headers: a control character, space or non-ASCII is refused at load."""
    found = problems(tmp_path, config_text(tenant=tenant, base=V1_TENANT))
    assert [p for p, _ in found] == [key], found
    assert "visible ASCII" in found[0][1]


@pytest.mark.parametrize(
    ("where", "value", "key"),
    [
        ("tenant", "https://eu-api.mimecast.com:99999", "tenants[0].base_url"),
        ("tenant", "https://eu-api.mime\\u0000cast.com", "tenants[0].base_url"),
        ("tenant", "https://eu-api.mimecast.com:abc", "tenants[0].base_url"),
        ("sink", "https://siem.example.net:99999/in", "sinks[0].url"),
        ("sink", "https://siem.example.net/in\\u0000", "sinks[0].url"),
        ("sink", "https://siem.example.net/a b", "sinks[0].url"),
        ("sink", "https://[::1/in", "sinks[0].url"),
        ("sink", "https://siem.example.net/" + "a" * 8192, "sinks[0].url"),
    ],
)
def test_urls_httpx_cannot_use_are_refused(
    where: str, value: str, key: str, tmp_path: Path
) -> None:
    """A port out of range, a control character, a space or a huge URL is a problem at load, not at every poll."""
    if where == "tenant":
        text = config_text(tenant=f'base_url = "{value}"\n')
    else:
        text = config_text(sinks=f'[[sinks]]\ntype = "webhook"\nurl = "{value}"\n')
    found = problems(tmp_path, text)
    assert [p for p, _ in found] == [key], found


# --- paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top", "sinks", "key"),
    [
        ('state = "a\\u0000b"', JSONL, "state"),
        ('dead_letter = "a\\u0000b"', JSONL, "dead_letter"),
        ('mapping = "a\\u0000b"', JSONL, "mapping"),
        ("", '[[sinks]]\ntype = "jsonl"\npath = "a\\u0000b"\n', "sinks[0].path"),
        ('state = ""', JSONL, "state"),
        ("", '[[sinks]]\ntype = "jsonl"\npath = ""\n', "sinks[0].path"),
    ],
)
def test_paths_with_a_nul_byte_or_empty_are_refused(
    top: str, sinks: str, key: str, tmp_path: Path
) -> None:
    """A path no system call accepts is a problem at its key, not a ValueError from resolve()."""
    found = problems(tmp_path, config_text(top, sinks=sinks))
    assert key in [p for p, _ in found], found


def test_outputs_that_are_not_regular_files_are_refused(fifo: Path, tmp_path: Path) -> None:
    """state, dead_letter and jsonl paths naming a directory, device or FIFO are refused at load."""
    (tmp_path / "adir").mkdir()
    found = problems(
        tmp_path,
        config_text(
            f'state = "adir"\ndead_letter = "{fifo}"',
            sinks='[[sinks]]\ntype = "jsonl"\npath = "/dev/zero"\n',
        ),
    )
    assert dict(found).keys() == {"state", "dead_letter", "sinks[0].path"}, found
    assert "directory" in dict(found)["state"]
    assert "FIFO" in dict(found)["dead_letter"]
    assert "character device" in dict(found)["sinks[0].path"]


def test_a_fifo_as_the_mapping_file_is_refused_without_hanging(fifo: Path, tmp_path: Path) -> None:
    """`mapping` naming a named pipe is refused instead of blocking the loader."""
    text = config_text(f'mapping = "{fifo}"')
    outcome = within(5, lambda: load(tmp_path, text), release(fifo))
    assert isinstance(outcome, ConfigError), outcome
    assert ("mapping", "is a FIFO; it must be a regular file") in outcome.problems


# --- through the command line -------------------------------------------------------------------


@pytest.mark.parametrize(
    "top", ['lookback = "99999999999d"', "page_size = " + "9" * 5000, "x = " + "[" * 5000]
)
def test_the_cli_exits_2_with_the_problem_never_a_traceback(top: str, tmp_path: Path) -> None:
    """`run --once` on a hostile value prints the problem and exits 2; no exception escapes."""
    path = tmp_path / "c.toml"
    path.write_text(config_text(top), "utf-8")
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--once"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    assert "problem(s) in the configuration" in result.output
    assert "Traceback" not in result.output


def test_a_file_secret_under_an_unknown_home_is_a_problem(tmp_path: Path) -> None:
    """`file:~nobody/x` (a user without a home) is a problem at the key, not a RuntimeError."""
    ref = "file:~nobody-such-user-42/secret"
    found = problems(tmp_path, config_text(base=TENANT.replace('"s3cret-CANARY-91"', f'"{ref}"')))
    assert [p for p, _ in found] == ["tenants[0].client_secret"], found
    assert "home directory" in found[0][1]
