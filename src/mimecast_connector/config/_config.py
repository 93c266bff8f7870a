"""The configuration file: read once at start-up, checked whole, then frozen.

Everything a run needs comes from here; nothing downstream reads the environment. Secrets
(``client_secret``, ``app_key``, ``access_key``, ``secret_key``, a webhook ``secret`` and
header values) may be written three ways: ``env:NAME`` (an environment variable),
``file:PATH`` (a file's content, trailing newline removed) or the value itself. They become
:class:`pydantic.SecretStr` at once and are unwrapped only where they are used.

Every problem in the file is reported at once, each with its key path
(``tenants[0].client_secret: environment variable ACME_SECRET is not set``); an unknown key is
a problem too, since a typo must not silently switch something off.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from mimecast_connector._categories import Category
from mimecast_connector._errors import ConfigError
from mimecast_connector.client import MAX_PAGE_SIZE, check_base_url
from mimecast_connector.rules import load_table

DEFAULT_BASE_URL_V2 = "https://api.services.mimecast.com"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> timedelta:
    """``"30m"`` → 30 minutes. Units: ms, s, m, h, d."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as '60s', '30m', '24h' or '1d'")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class SecretResolver:
    """Reads ``env:`` and ``file:`` references; the environment is passed in, never read."""

    def __init__(self, environ: Mapping[str, str], base_dir: Path) -> None:
        self._environ = environ
        self._base_dir = base_dir

    def resolve(self, value: str) -> str:
        if value.startswith("env:"):
            name = value[4:]
            if not name:
                raise ValueError("'env:' needs the name of an environment variable")
            found = self._environ.get(name)
            if found is None:
                raise ValueError(f"environment variable {name} is not set")
            if not found:
                raise ValueError(f"environment variable {name} is empty")
            return found
        if value.startswith("file:"):
            path = Path(value[5:]).expanduser()
            if not path.is_absolute():
                path = self._base_dir / path
            try:
                text = path.read_text("utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ValueError(f"cannot read file {str(path)!r}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ValueError(f"file {str(path)!r} is not UTF-8 text") from None
            if not text:
                raise ValueError(f"file {str(path)!r} is empty")
            return text
        return value


def _resolver(info: Any) -> SecretResolver:
    context = info.context if info is not None else None
    if not isinstance(context, dict) or "resolver" not in context:
        return SecretResolver({}, Path.cwd())
    resolver: SecretResolver = context["resolver"]
    return resolver


def _duration_text(value: Any) -> Any:
    """A duration written as text (``"60s"``) becomes a timedelta; anything else is left to pydantic."""
    return parse_duration(value) if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _secret(value: Any, info: Any) -> SecretStr | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string: the value, 'env:NAME' or 'file:PATH'")
    return SecretStr(_resolver(info).resolve(value))


def _plain(value: Any, info: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return _resolver(info).resolve(value)


class TenantConfig(_Strict):
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
    categories: tuple[Category, ...] = tuple(Category)
    start: datetime | None = None
    poll_interval: timedelta = timedelta(seconds=60)

    _secret_fields = field_validator(
        "client_secret", "app_key", "access_key", "secret_key", mode="before"
    )(_secret)
    _plain_fields = field_validator("client_id", "app_id", mode="before")(_plain)

    _duration = field_validator("poll_interval", mode="before")(_duration_text)

    @field_validator("poll_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s")
        return value

    @field_validator("start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-11-01T00:00:00Z")
        return value.astimezone(UTC) if value is not None else None

    @field_validator("categories")
    @classmethod
    def _some_categories(cls, value: tuple[Category, ...]) -> tuple[Category, ...]:
        if not value:
            raise ValueError("must name at least one of attachment, impersonation, url")
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


class JsonlSinkConfig(_Strict):
    """Alerts appended to a file, one JSON object a line (``-`` is standard output)."""

    type: Literal["jsonl"]
    path: str
    format: Literal["native", "ocsf"] = "native"


class WebhookSinkConfig(_Strict):
    """Alerts POSTed as a JSON array per batch."""

    type: Literal["webhook"]
    url: str
    format: Literal["native", "ocsf"] = "native"
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    _secret_field = field_validator("secret", mode="before")(_secret)

    @field_validator("headers", mode="before")
    @classmethod
    def _header_secrets(cls, value: Any, info: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for name, raw in value.items():
            try:
                secret = _secret(raw, info)
            except ValueError as exc:
                raise ValueError(f"header {name}: {exc}") from None
            text = secret.get_secret_value() if secret is not None else ""
            for part, what in ((name, "name"), (text, "value")):
                if not part.isascii() or "\r" in part or "\n" in part:
                    raise ValueError(f"header {name}: the {what} must be ASCII on one line")
            out[name] = secret
        return out

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        from mimecast_connector.client import is_loopback_host

        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise ValueError("must be an absolute https URL")
        if parts.scheme == "http" and not is_loopback_host(parts.hostname):
            raise ValueError("must use https (plain http is allowed only for loopback hosts)")
        if parts.username or parts.password:
            raise ValueError("must not carry user:password@; put credentials in `headers`")
        return value

    def secrets(self) -> list[str]:
        """The secret and header values, and the URL itself: services put tokens in its path."""
        values = [self.secret, *self.headers.values()]
        return [self.url, *(v.get_secret_value() for v in values if v is not None)]


SinkConfig = Annotated[JsonlSinkConfig | WebhookSinkConfig, Field(discriminator="type")]


class Config(_Strict):
    """The whole file."""

    state: Path = Path("state/connector.db")
    dead_letter: Path = Path("state/dead-letter.jsonl")
    lookback: timedelta = timedelta(minutes=30)
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE
    mapping: Path | None = None
    tenants: Annotated[list[TenantConfig], Field(min_length=1)]
    sinks: Annotated[list[SinkConfig], Field(min_length=1)]

    _duration = field_validator("lookback", mode="before")(_duration_text)

    @field_validator("lookback")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    def secrets(self) -> list[str]:
        """Every secret in the file, for redaction of anything that leaves the process."""
        out: list[str] = []
        for tenant in self.tenants:
            out.extend(tenant.secrets())
        for sink in self.sinks:
            if isinstance(sink, WebhookSinkConfig):
                out.extend(sink.secrets())
        return out


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, resolve and check ``path``; relative paths in it are relative to its folder.

    ``environ`` is where ``env:`` secrets come from (the caller passes ``os.environ``).
    Raises :class:`ConfigError` listing every problem.
    """
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(
            [("", f"cannot read the configuration {str(path)!r}: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([("", f"the configuration {str(path)!r} is not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [("", f"the configuration {str(path)!r} is not valid TOML: {exc}")]
        ) from None
    base_dir = path.resolve().parent
    resolver = SecretResolver(os.environ if environ is None else environ, base_dir)
    problems = _cross_checks(data) + _mapping_problems(data, base_dir)
    try:
        config = Config.model_validate(data, context={"resolver": resolver})
    except ValidationError as exc:
        raise ConfigError(_problems(exc) + problems) from None
    if problems:
        raise ConfigError(problems)
    anchored = _anchor(config, base_dir)
    files = [("dead_letter", anchored.dead_letter), ("state", anchored.state)] + [
        (f"sinks[{i}].path", Path(s.path))
        for i, s in enumerate(anchored.sinks)
        if isinstance(s, JsonlSinkConfig) and s.path != "-"
    ]
    seen: dict[Path, str] = {}
    clashes = []
    for key, path in files:
        resolved = path.resolve()
        if resolved in seen:
            clashes.append((key, f"is the same file as {seen[resolved]}; each needs its own"))
        seen.setdefault(resolved, key)
    if clashes:
        raise ConfigError(clashes)
    return anchored


def _mapping_problems(data: Mapping[str, Any], base_dir: Path) -> list[tuple[str, str]]:
    """The ATT&CK mapping file's problems, so they are reported with the rest."""
    mapping = data.get("mapping")
    if not isinstance(mapping, str):
        return []
    path = Path(mapping)
    try:
        load_table(path if path.is_absolute() else base_dir / path)
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
    sinks = [
        s.model_copy(update={"path": str(fix(Path(s.path)))})
        if isinstance(s, JsonlSinkConfig) and s.path != "-"
        else s
        for s in config.sinks
    ]
    return config.model_copy(
        update={
            "state": fix(config.state),
            "dead_letter": fix(config.dead_letter),
            "mapping": mapping,
            "sinks": sinks,
        }
    )


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        path = ""
        for part in error["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in {"jsonl", "webhook"} or str(part).startswith("function-"):
                continue  # the discriminator's branch name adds nothing for the reader
            else:
                path += f".{part}" if path else str(part)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        elif error["type"] == "missing":
            message = "is required"
        message = message.removeprefix("Value error, ")
        out.append((path, message))
    return out
