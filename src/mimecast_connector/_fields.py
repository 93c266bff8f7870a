"""Checks shared by every part of the configuration: the strict model base, secrets
(``env:NAME``, ``file:PATH`` or the value), paths, URLs and HTTP header values.

The main file's model (``config``) and each sink's own settings (``sinks``) build on these, so
a secret, a URL or a header is checked one way wherever it is configured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from mimecast_connector._files import read_regular_file

#: ``file:`` secrets come from regular files of at most this many bytes.
SECRET_FILE_CAP = 64 * 1024

#: Webhook headers: at most this many, names and values at most this long; URLs too.
MAX_HEADERS = 64
MAX_HEADER_NAME = 256
MAX_HEADER_VALUE = 8192
MAX_URL = 8192
#: Headers an HTTP sink (or httpx under it) sets itself; a user value would break or forge them.
RESERVED_HEADERS = frozenset(
    {
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "expect",
        "host",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-signature-256",
    }
)
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 section 5.6.2
VISIBLE = re.compile(r"^[!-~]+$")  # visible ASCII, no space


def short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def path_text(value: Any) -> Any:
    """A path with a NUL byte, or an empty one, is refused before any system call sees it."""
    text = str(value) if isinstance(value, str | Path) else None
    if text is not None:
        if not text:
            raise ValueError("must not be empty")
        if "\x00" in text:
            raise ValueError("contains a NUL character")
    return value


def url_problem(value: str) -> str | None:
    """Why httpx could not use ``value`` (never echoing it: webhook URLs carry tokens), or None."""
    if len(value) > MAX_URL:
        return f"is longer than {MAX_URL} characters"
    if any(c.isspace() or not c.isprintable() for c in value):
        return "contains a space or a control character; percent-encode it"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "is not a valid URL (check the brackets around an IPv6 address)"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        return "has a port that is not a number between 1 and 65535"
    try:
        httpx.URL(value)
    except httpx.InvalidURL:
        return "is not a URL an HTTP client can use; check its host and port"
    return None


def visible_ascii(value: str | None, key: str) -> None:
    if value is not None and not VISIBLE.match(value):
        raise ValueError(
            f"must be visible ASCII without spaces (the {key} is sent in an HTTP header); "
            "paste it exactly as Mimecast shows it"
        )


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
            if "\x00" in value:
                raise ValueError("the file: path contains a NUL character")
            try:
                path = Path(value[5:]).expanduser()
            except RuntimeError:  # ~user with no such user, or no home directory
                raise ValueError(
                    f"cannot find the home directory in {value[5:]!r}; write the path in full"
                ) from None
            if not path.is_absolute():
                path = self._base_dir / path
            data = read_regular_file(path, SECRET_FILE_CAP)
            try:
                text = data.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise ValueError(f"file {str(path)!r} is not UTF-8 text") from None
            if not text:
                raise ValueError(f"file {str(path)!r} is empty")
            return text
        return value


def resolver(info: Any) -> SecretResolver:
    context = info.context if info is not None else None
    if not isinstance(context, dict) or "resolver" not in context:
        return SecretResolver({}, Path.cwd())
    resolver: SecretResolver = context["resolver"]
    return resolver


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def secret_str(value: Any, info: Any) -> SecretStr | None:
    if value is None:
        return None
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string: the value, 'env:NAME' or 'file:PATH'")
    return SecretStr(resolver(info).resolve(value))


def plain(value: Any, info: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return resolver(info).resolve(value)


def header_value_problem(text: str) -> str | None:
    """Why HTTP (RFC 9110 field-value) cannot carry ``text``, or None. obs-text is refused."""
    if len(text) > MAX_HEADER_VALUE:
        return f"the value is longer than {MAX_HEADER_VALUE} characters"
    if not text.isascii():
        return "the value must be ASCII (no accented or other non-ASCII characters)"
    if any((c < " " and c != "\t") or c == "\x7f" for c in text):
        return "the value contains a control character (CR, LF, NUL or another)"
    if text != text.strip(" \t"):
        return "the value has leading or trailing whitespace"
    return None


def header_secrets(value: Any, info: Any, reserved: frozenset[str] = RESERVED_HEADERS) -> Any:
    """Each header as HTTP (RFC 9110) can carry it; every problem named at once, no value shown."""
    if not isinstance(value, dict):
        return value
    if len(value) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers, not {len(value)}")
    out: dict[str, Any] = {}
    problems: list[str] = []
    seen: set[str] = set()
    for name, raw in value.items():
        shown = f"header {short(name)}"
        if len(name) > MAX_HEADER_NAME:
            problems.append(f"{shown}: the name is longer than {MAX_HEADER_NAME} characters")
        elif not TOKEN.match(name):
            problems.append(
                f"{shown}: the name must be an HTTP token "
                "(letters, digits and !#$%&'*+-.^_`|~, no spaces or colons)"
            )
        elif name.lower() in reserved:
            problems.append(f"{shown}: is one the sink sets itself; remove it")
        elif name.lower() in seen:
            problems.append(f"{shown}: is given twice (header names ignore case)")
        seen.add(name.lower())
        try:
            secret = secret_str(raw, info)
        except ValueError as exc:
            problems.append(f"{shown}: {exc}")
            continue
        problem = header_value_problem(secret.get_secret_value() if secret else "")
        if problem is not None:
            problems.append(f"{shown}: {problem}")
        out[name] = secret
    if problems:
        raise ValueError("; ".join(problems))
    return out


def http_url(value: str) -> str:
    """``value`` if an HTTP client can use it as a sink's URL: https, or http to loopback only,
    with no ``user:password@`` (credentials belong in secrets); else ValueError saying why."""
    from mimecast_connector.client import is_loopback_host

    problem = url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError("must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https (plain http is allowed only for loopback hosts)")
    if parts.username or parts.password:
        raise ValueError("must not carry user:password@; put credentials in the sink's secrets")
    return value


def tls_verification(value: Any) -> Any:
    """A ``verify_tls`` setting: true, false, or the path of a PEM CA file (checked when used)."""
    if isinstance(value, str):
        path_text(value)
        if value.strip().lower() in ("true", "false"):
            raise ValueError("write true or false without quotes, or give a CA file's path")
    return value


def anchored_path(value: str, base_dir: Path) -> str:
    """``value`` (a path, ``~`` allowed) made absolute against the configuration's folder."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base_dir / path)
