"""The configuration file: read once at start-up, checked whole, then frozen.

Everything a run needs comes from here; nothing downstream reads the environment. Secrets
(``client_secret``, ``app_key``, ``access_key``, ``secret_key``, a webhook ``secret`` and
header values) may be written three ways: ``env:NAME`` (an environment variable),
``file:PATH`` (a file's content, trailing newline removed) or the value itself. They become
:class:`pydantic.SecretStr` at once and are unwrapped only where they are used.

Every problem in the file is reported at once, each with its key path
(``tenants[0].client_secret: environment variable ACME_SECRET is not set``); an unknown key is
a problem too, since a typo must not silently switch something off.

Every value is bounded, so nothing that loads can fail later for ever: durations
(:data:`LOOKBACK_BOUNDS`, :data:`POLL_INTERVAL_BOUNDS`), ``start`` (the epoch to
:data:`START_SKEW` past now), ``file:`` secrets (regular files of at most
:data:`SECRET_FILE_CAP`), webhook headers (what HTTP can carry, not the sink's own), URLs (what
httpx can use) and paths (no NUL; outputs are regular files or absent).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from mimecast_connector._categories import DEFAULT_CATEGORIES, Category
from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import ConfigError
from mimecast_connector._fields import (
    SecretResolver,
    Strict,
    path_text,
    plain,
    secret_str,
    short,
    url_problem,
    visible_ascii,
)
from mimecast_connector._files import kind_problem, read_regular_file, size_text
from mimecast_connector.client import MAX_PAGE_SIZE, check_base_url, is_loopback_host
from mimecast_connector.config._problems import problems as _problems
from mimecast_connector.rules import load_table
from mimecast_connector.sinks import SINK_KINDS, SinkConfig
from mimecast_connector.state._url import shown_url

DEFAULT_BASE_URL_V2 = "https://api.services.mimecast.com"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_EXAMPLES = "a duration such as '60s', '30m', '24h' or '1d'"

#: Inclusive bounds of each duration key. ``lookback`` is re-read on every poll and sizes the
#: dedup table; Mimecast keeps TTP logs about 30 days, and a week covers any late publication.
LOOKBACK_BOUNDS = (timedelta(0), timedelta(days=7))
POLL_INTERVAL_BOUNDS = (timedelta(seconds=1), timedelta(days=1))
#: ``start`` lies in [EPOCH, now + START_SKEW]: a later one would read nothing until then.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START_SKEW = timedelta(minutes=5)
#: The configuration file and the ATT&CK mapping file: regular files of at most this size.
CONFIG_FILE_CAP = 1024 * 1024
#: Tenant files one ``tenants_dir`` may hold.
MAX_TENANT_FILES = 20_000


def _duration_seconds(text: str) -> float:
    """The seconds ``text`` spells (possibly inf for an absurd number), or a ValueError."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{short(text)} is not {_DURATION_EXAMPLES}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_duration(text: str) -> timedelta:
    """``"30m"`` → 30 minutes. Units: ms, s, m, h, d.

    A number no :class:`~datetime.timedelta` can hold is a ValueError, never an OverflowError.
    """
    seconds = _duration_seconds(text)
    if not seconds < timedelta.max.total_seconds():
        raise ValueError(f"{short(text)} is too long a duration")
    return timedelta(seconds=seconds)


def _show(delta: timedelta) -> str:
    """``timedelta(days=7)`` → ``"7d"``: the largest unit that divides it."""
    seconds = delta.total_seconds()
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        if seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds}s"


def _bounded_duration(low: timedelta, high: timedelta) -> Callable[[Any], timedelta]:
    """A before-validator: text (``"60s"``) or a number of seconds, within ``[low, high]``."""
    wanted = f"must be {_DURATION_EXAMPLES}, between {_show(low)} and {_show(high)}"

    def check(value: Any) -> timedelta:
        if isinstance(value, timedelta):
            seconds = value.total_seconds()
        elif isinstance(value, str):
            seconds = _duration_seconds(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            raise ValueError(wanted)
        if math.isnan(seconds):
            raise ValueError(wanted)
        if seconds < 0 and low == timedelta(0):
            raise ValueError("must not be negative")
        if seconds < low.total_seconds():
            raise ValueError(f"must be at least {_show(low)}")
        if seconds > high.total_seconds():
            raise ValueError(f"must be at most {_show(high)}")
        return timedelta(seconds=seconds)

    return check


class TenantConfig(Strict):
    """One Mimecast account."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
    api: Literal["2.0", "1.0"] = "2.0"
    base_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    app_id: str | None = None
    app_key: SecretStr | None = None
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    keep_unmatched_rejections: StrictBool = False
    start: datetime | None = None
    poll_interval: timedelta = timedelta(seconds=60)

    _secret_fields = field_validator(
        "client_secret", "app_key", "access_key", "secret_key", mode="before"
    )(secret_str)
    _plain_fields = field_validator("client_id", "app_id", mode="before")(plain)

    _duration = field_validator("poll_interval", mode="before")(
        _bounded_duration(*POLL_INTERVAL_BOUNDS)
    )

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-01T00:00:00Z")
        # Compared before converting: astimezone() overflows at the ends of the calendar.
        if value < EPOCH:
            raise ValueError("must not be before 1970-01-01T00:00:00Z")
        now = _now(info)
        if value > now + START_SKEW:
            raise ValueError(
                f"is in the future (now is {now:%Y-%m-%dT%H:%M:%SZ}): nothing would be read "
                "until then; set a past time, or leave it out for 24 h before the first poll"
            )
        return value.astimezone(UTC)

    @field_validator("app_id", "access_key")
    @classmethod
    def _header_safe(cls, value: str | SecretStr | None, info: ValidationInfo) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        visible_ascii(text, str(info.field_name))
        return value

    @field_validator("categories")
    @classmethod
    def _some_categories(cls, value: tuple[Category, ...]) -> tuple[Category, ...]:
        if not value:
            raise ValueError(f"must name at least one of {', '.join(Category)}")
        if len(set(value)) != len(value):
            raise ValueError("names a category twice")
        return value

    @field_validator("secret_key")
    @classmethod
    def _base64(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                base64.b64decode(value.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    "is not base64: paste the Secret Key exactly as Mimecast shows it"
                ) from None
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        try:
            return check_base_url(value)
        except ConfigError as exc:
            raise ValueError("; ".join(msg for _, msg in exc.problems)) from None

    @property
    def url(self) -> str:
        """The API host to call."""
        return self.base_url or DEFAULT_BASE_URL_V2

    def secrets(self) -> list[str]:
        """Every secret value of this tenant, for redaction (the secret key decoded, too)."""
        values = (self.client_secret, self.app_key, self.access_key, self.secret_key)
        out = [v.get_secret_value() for v in values if v is not None]
        if self.secret_key is not None:
            decoded = base64.b64decode(self.secret_key.get_secret_value()).decode("utf-8", "ignore")
            if decoded.isprintable():
                out.append(decoded)
        return out


#: URL schemes that select the PostgreSQL state store (and with it, fleet mode).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class PostgresState(Strict):
    """``state = "postgresql://…"``: the PostgreSQL state store, shared by a fleet of workers.
    The URL may carry a password: it is a secret, and ``str()`` shows it without one."""

    url: SecretStr

    def __str__(self) -> str:
        return shown_url(self.url.get_secret_value())

    def secrets(self) -> list[str]:
        """The URL, and its password as written and as decoded (alone, so that a message
        quoting only it is redacted too), wherever the URL gives it (user info or query)."""
        url = self.url.get_secret_value()
        out = [url]
        raw = urlsplit(url).password
        if raw:
            out.append(raw)
        decoded = _conninfo(url).get("password")
        if decoded:
            out.append(decoded)
        return list(dict.fromkeys(out))


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def _conninfo(url: str) -> dict[str, str]:
    """libpq's own reading of ``url`` (psycopg imported only for a PostgreSQL state)."""
    from psycopg.conninfo import conninfo_to_dict  # lazy: psycopg only for PostgreSQL

    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def _state(value: Any) -> Any:
    """A PostgreSQL URL becomes :class:`PostgresState`; anything without a URL scheme is a
    file path. Messages never quote the URL: it may hold a password."""
    if not isinstance(value, str) or not _SCHEME.match(value):
        return path_text(value)
    form = "postgresql://user:password@host:5432/database"
    if not value.startswith(POSTGRES_SCHEMES):
        raise ValueError(
            f"is neither a file path nor a PostgreSQL URL: write {form} (the scheme in "
            "lowercase, nothing added to it), or a path without a scheme"
        )
    if "\x00" in value or any(c.isspace() for c in value):
        raise ValueError("a PostgreSQL URL must not contain spaces or NUL characters")
    netloc = urlsplit(value).netloc
    if netloc.count("@") > 1:
        raise ValueError(
            "the PostgreSQL URL has more than one '@' before its host: write an '@' in the "
            "user name or password as %40"
        )
    try:
        _ = urlsplit(value).port  # raises on a port that is not a number
        parts = _conninfo(value)
    except Exception:  # libpq's message may quote the password: never passed on
        raise ValueError(
            f"is not a valid PostgreSQL URL ({form}): check the port and the "
            "percent-encoding of the user name, password and options (% must be written %25)"
        ) from None
    if not parts.get("dbname"):
        raise ValueError(f"names no database: {form}")
    return PostgresState(url=SecretStr(value))


class Config(Strict):
    """The whole file."""

    state: Path | PostgresState = Path("state/connector.db")
    dead_letter: Path = Path("state/dead-letter.jsonl")
    lookback: timedelta = timedelta(minutes=30)
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, strict=True)] = MAX_PAGE_SIZE
    mapping: Path | None = None
    tenants_dir: Path | None = None
    #: Where ``run`` serves /metrics, /healthz and /readyz (``host:port``); None: nowhere.
    metrics: str | None = None
    #: The bearer token /metrics and /readyz require; required off loopback.
    metrics_token: Annotated[SecretStr | None, Field(validate_default=True)] = None
    tenants: Annotated[list[TenantConfig], Field(min_length=1)]
    sinks: Annotated[list[SinkConfig], Field(min_length=1)]

    _duration = field_validator("lookback", mode="before")(_bounded_duration(*LOOKBACK_BOUNDS))
    _paths = field_validator("dead_letter", "mapping", "tenants_dir", mode="before")(path_text)
    _state_field = field_validator("state", mode="before")(_state)
    _metrics_token = field_validator("metrics_token", mode="before")(secret_str)

    @field_validator("metrics")
    @classmethod
    def _metrics_address(cls, value: str | None) -> str | None:
        if value is not None:
            listen_address(value)  # a ValueError says what is wrong
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_guarded(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        address = info.data.get("metrics")
        if value is None:
            if isinstance(address, str) and not is_loopback_host(listen_address(address)[0]):
                raise ValueError(
                    f"is required when metrics listens on {address!r}, which is not a "
                    'loopback address: set metrics_token ("env:NAME" or "file:PATH", '
                    f"at least {MIN_TOKEN} characters) so that only your scraper reads it, or "
                    'listen on loopback (metrics = "127.0.0.1:9464")'
                )
            return value
        if len(value.get_secret_value()) < MIN_TOKEN:
            raise ValueError(f"must be at least {MIN_TOKEN} characters long")
        return value

    #: The file each tenant read from ``tenants_dir`` came from, by tenant name.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def sources(self) -> Mapping[str, str]:
        """The ``tenants_dir`` file each tenant came from (tenants of the main file: none)."""
        return self._sources

    def secrets(self) -> list[str]:
        """Every secret in the file, for redaction of anything that leaves the process."""
        out: list[str] = []
        for tenant in self.tenants:
            out.extend(tenant.secrets())
        for sink in self.sinks:
            out.extend(sink.secrets())
        if isinstance(self.state, PostgresState):
            out.extend(self.state.secrets())
        if self.metrics_token is not None:
            out.append(self.metrics_token.get_secret_value())
        return out

    @property
    def state_target(self) -> Path | str:
        """What ``state.open_store`` takes: the SQLite file, or the PostgreSQL URL."""
        return self.state if isinstance(self.state, Path) else self.state.url.get_secret_value()

    @property
    def fleet(self) -> bool:
        """True when the state is PostgreSQL: this process is one worker of a fleet that
        shares its tenants' streams with every other worker on the same database."""
        return isinstance(self.state, PostgresState)


#: The shortest ``metrics_token`` accepted.
MIN_TOKEN = 16


def listen_address(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"``, ``"localhost:9464"`` or ``"0.0.0.0:9464"`` as
    (host, port); port 0 is any free port. A ValueError says what is wrong."""
    host, colon, port = value.rpartition(":")
    wanted = (
        'must be host:port, the host an IP address or localhost, e.g. "127.0.0.1:9464" '
        'or "[::1]:9464"'
    )
    if not colon or not port.isdigit() or not host:
        raise ValueError(wanted)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if ":" not in host:
            raise ValueError(wanted)
    elif ":" in host:
        raise ValueError(f"{wanted} (an IPv6 address goes in brackets)")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(wanted) from None
    number = int(port)
    if number > 65535:
        raise ValueError("has a port above 65535")
    return host, number


def _now(info: Any) -> datetime:
    context = info.context if info is not None else None
    if isinstance(context, dict) and isinstance(context.get("now"), datetime):
        now: datetime = context["now"]
        return now
    return datetime.now(UTC)


def _read_toml(path: Path) -> dict[str, Any]:
    """The parsed configuration file, or one ConfigError saying why it cannot be read."""
    shown = f"the configuration {str(path)!r}"
    try:
        text = read_regular_file(path, CONFIG_FILE_CAP, "the configuration").decode("utf-8")
        return tomllib.loads(text)
    except UnicodeDecodeError:
        raise ConfigError([("", f"{shown} is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("", f"{shown} is not valid TOML: {exc}")]) from None
    except RecursionError:
        raise ConfigError([("", f"{shown} is nested too deeply to read")]) from None
    except ValueError as exc:  # our reader's refusals, and integers too long to convert
        message = str(exc)
        if "integer string conversion" in message:
            message = f"{shown} holds an integer too long to read"
        raise ConfigError([("", message)]) from None


def load_config(
    path: Path, environ: Mapping[str, str] | None = None, *, clock: Clock | None = None
) -> Config:
    """Read, resolve and check ``path``; relative paths in it are relative to its folder.

    ``environ`` is where ``env:`` secrets come from (the caller passes ``os.environ``);
    ``clock`` tells the present, against which ``start`` is checked.
    Raises :class:`ConfigError` listing every problem (a ``tenants_dir`` file's with its name).
    """
    config, broken = _load(path, environ, clock, lenient=False)
    assert not broken
    return config


@dataclass(frozen=True, slots=True)
class Reloaded:
    """A configuration read again for a running connector (``reload_config``).

    ``broken`` names the ``tenants_dir`` files that could not be used, each with its problems:
    their tenants are left out of ``config``, and the running connector keeps what it had.
    """

    config: Config
    broken: Mapping[str, list[tuple[str, str]]]


def reload_config(path: Path, environ: Mapping[str, str] | None = None) -> Reloaded:
    """Like :func:`load_config`, but a broken ``tenants_dir`` file is set aside, not fatal:
    one customer's bad file must not stop a fleet's reload. A problem in the main file still
    raises :class:`ConfigError`."""
    config, broken = _load(path, environ, None, lenient=True)
    return Reloaded(config, broken)


@dataclass(frozen=True, slots=True)
class _TenantFile:
    """One ``tenants_dir`` file: its name, its table (None if unreadable) and why not."""

    label: str
    table: dict[str, Any] | None
    unreadable: list[str]


def _tenant_files(
    data: dict[str, Any], base_dir: Path
) -> tuple[list[_TenantFile], list[tuple[str, str]]]:
    """The tenant files of ``tenants_dir`` (one ``*.toml`` file each, in name order), and the
    problems of the folder itself. A file's tenant is named after the file unless it says."""
    folder_text = data.get("tenants_dir")
    if not isinstance(folder_text, str) or not folder_text or "\x00" in folder_text:
        return [], []  # absent, or the field's own validator reports it
    folder = Path(folder_text).expanduser()
    folder = folder if folder.is_absolute() else base_dir / folder
    if not folder.is_dir():
        return [], [("tenants_dir", f"{str(folder)!r} is not a folder")]
    files = sorted(folder.glob("*.toml"))
    if len(files) > MAX_TENANT_FILES:
        return [], [("tenants_dir", f"holds more than {MAX_TENANT_FILES} tenant files")]
    tables: list[_TenantFile] = []
    for file in files:
        try:
            table = _read_toml(file)
        except ConfigError as exc:
            tables.append(_TenantFile(str(file), None, [m for _, m in exc.problems]))
            continue
        table.setdefault("name", file.stem)
        tables.append(_TenantFile(str(file), table, []))
    return tables, []


def _load(
    path: Path, environ: Mapping[str, str] | None, clock: Clock | None, *, lenient: bool
) -> tuple[Config, dict[str, list[tuple[str, str]]]]:
    data = _read_toml(path)
    base_dir = path.resolve().parent
    resolver = SecretResolver(os.environ if environ is None else environ, base_dir)
    now = datetime.fromtimestamp((clock or SystemClock()).time(), UTC)
    context = {"resolver": resolver, "now": now}
    tables, folder_problems = _tenant_files(data, base_dir)
    main = data.get("tenants", [])
    sources: list[str | None] = [None] * (len(main) if isinstance(main, list) else 0)
    broken: dict[str, list[tuple[str, str]]] = {}
    if tables:
        if not isinstance(main, list):
            main = []
        for file in tables:
            problems = _tenant_file_problems(file, context)
            if problems and (lenient or file.table is None):
                broken[file.label] = problems
                continue
            main.append(file.table)
            sources.append(file.label)
        data["tenants"] = main
    problems = folder_problems + _cross_checks(data) + _mapping_problems(data, base_dir)
    if not lenient:  # unreadable files, with their names (lenient: set aside in ``broken``)
        problems += [(label, m) for label, found in broken.items() for _, m in found]
        broken = {}
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigError(_relabel(_problems(exc, Config) + problems, sources)) from None
    if problems:
        raise ConfigError(_relabel(problems, sources))
    anchored = _anchor(config, base_dir)
    anchored._sources.update(
        {t.name: label for t, label in zip(anchored.tenants, sources, strict=True) if label}
    )
    if anchored.fleet:
        # Named at the sink's local file when it has one (the thing a fleet cannot share).
        local = [
            (f"sinks[{i}].{next(iter(dict(s.local_files())), 'type')}", refusal)
            for i, s in enumerate(anchored.sinks)
            if (refusal := SINK_KINDS[s.type].fleet_refusal) is not None
        ]
        if local:
            raise ConfigError(local)
    state_file = [("state", anchored.state)] if isinstance(anchored.state, Path) else []
    files = [("dead_letter", anchored.dead_letter), *state_file] + [
        (f"sinks[{i}].{key}", path)
        for i, s in enumerate(anchored.sinks)
        for key, path in s.local_files()
    ]
    seen: dict[Path, str] = {}
    clashes = []
    for key, path in files:
        try:
            kind = kind_problem(os.stat(path).st_mode)
        except OSError:
            kind = None  # absent (created on start) or unreachable (reported when opened)
        if kind is not None:
            hint = ' (use "-" for standard output)' if key.startswith("sinks") else ""
            clashes.append((key, f"{kind}{hint}"))
            continue
        resolved = path.resolve()
        if resolved in seen:
            clashes.append((key, f"is the same file as {seen[resolved]}; each needs its own"))
        seen.setdefault(resolved, key)
    if clashes:
        raise ConfigError(clashes)
    return anchored, broken


def _tenant_file_problems(file: _TenantFile, context: dict[str, Any]) -> list[tuple[str, str]]:
    """One ``tenants_dir`` file's own problems (as a tenant table), keys relative to it."""
    table = file.table
    if table is None:
        return [("", message) for message in file.unreadable]
    problems = _cross_checks({"tenants": [table]})
    try:
        TenantConfig.model_validate(table, context=context)
    except ValidationError as exc:
        problems = _problems(exc, TenantConfig) + problems
    return [(key.removeprefix("tenants[0]").lstrip("."), message) for key, message in problems]


def _relabel(problems: list[tuple[str, str]], sources: list[str | None]) -> list[tuple[str, str]]:
    """Problems of ``tenants[i]`` read from a ``tenants_dir`` file, keyed by that file."""
    out = []
    for key, message in problems:
        match = re.match(r"tenants\[(\d+)\]\.?", key)
        if match is not None and int(match.group(1)) < len(sources):
            label = sources[int(match.group(1))]
            if label is not None:
                rest = key[match.end() :]
                key = f"{label}: {rest}" if rest else label
        out.append((key, message))
    return out


def _mapping_problems(data: Mapping[str, Any], base_dir: Path) -> list[tuple[str, str]]:
    """The ATT&CK mapping file's problems, so they are reported with the rest."""
    mapping = data.get("mapping")
    if not isinstance(mapping, str) or not mapping or "\x00" in mapping:
        return []  # the field's own validator reports these
    path = Path(mapping)
    path = path if path.is_absolute() else base_dir / path
    # load_table reads the file itself: check first that reading cannot hang or run away.
    try:
        found = os.stat(path)
    except OSError:
        found = None  # load_table names the reason
    if found is not None:
        kind = kind_problem(found.st_mode)
        if kind is not None:
            return [("mapping", kind)]
        if found.st_size > CONFIG_FILE_CAP:
            return [("mapping", f"is larger than {size_text(CONFIG_FILE_CAP)}")]
    try:
        load_table(path)
    except ConfigError as exc:
        return exc.problems
    return []


_NEEDED = {
    "2.0": ("client_id", "client_secret"),
    "1.0": ("app_id", "app_key", "access_key", "secret_key", "base_url"),
}


def _cross_checks(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Checks that span keys, run on the raw file so they are reported with every other problem."""
    tenants = data.get("tenants")
    if not isinstance(tenants, list):
        return []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, tenant in enumerate(tenants):
        if not isinstance(tenant, dict):
            continue
        api = tenant.get("api", "2.0")
        for key in _NEEDED.get(api, ()):
            if tenant.get(key) is None:
                hint = (
                    " (the regional host, e.g. https://eu-api.mimecast.com)"
                    if key == "base_url"
                    else ""
                )
                problems.append((f"tenants[{index}].{key}", f"is required for API {api}{hint}"))
        tenant_name = tenant.get("name")
        if isinstance(tenant_name, str):
            if tenant_name in seen:
                problems.append(
                    (f"tenants[{index}].name", f"{tenant_name!r} is used by another tenant")
                )
            seen.add(tenant_name)
    return problems


def _anchor(config: Config, base_dir: Path) -> Config:
    def fix(p: Path) -> Path:
        return p if p.is_absolute() else base_dir / p

    mapping = fix(config.mapping) if config.mapping is not None else None
    sinks = [s.anchored(base_dir) for s in config.sinks]
    return config.model_copy(
        update={
            "state": fix(config.state) if isinstance(config.state, Path) else config.state,
            "dead_letter": fix(config.dead_letter),
            "mapping": mapping,
            "sinks": sinks,
        }
    )
