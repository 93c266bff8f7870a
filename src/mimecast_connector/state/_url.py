"""A PostgreSQL URL as messages may show it (no psycopg import: the config uses it too)."""

from __future__ import annotations

import urllib.parse


def shown_url(url: str) -> str:
    """``url`` without its password or query (which may hold one): fit for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    user = f"{urllib.parse.unquote(parts.username)}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"
