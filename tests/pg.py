"""A fresh PostgreSQL schema per test, on the server these tests need at 127.0.0.1:5432.

``fresh_schema()`` creates ``mc_test_<random hex>`` in the database ``test`` and yields a URL
whose connections put it first on their ``search_path`` (so a store opened with it makes its
tables there and nowhere else); it drops the schema and everything in it afterwards. A server
that cannot be reached fails the test, loudly: these tests are never skipped.
"""

from __future__ import annotations

import contextlib
import secrets
import urllib.parse
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql

HOST, PORT, DATABASE, USER = "127.0.0.1", 5432, "test", "postgres"
#: The server itself, no schema chosen: for setting up and inspecting.
ADMIN_URL = f"postgresql://{USER}@{HOST}:{PORT}/{DATABASE}"


def schema_url(schema: str, *, base: str = ADMIN_URL) -> str:
    """``base`` with ``schema`` as its connections' ``search_path``."""
    return f"{base}?options=-csearch_path%3D{schema}"


def schema_of(url: str) -> str:
    """The schema a :func:`schema_url` URL names."""
    [options] = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["options"]
    assert options.startswith("-csearch_path="), options
    return options.removeprefix("-csearch_path=")


async def admin() -> psycopg.AsyncConnection[tuple[object, ...]]:
    """An autocommit connection to the test database; fails the test if there is no server."""
    try:
        return await psycopg.AsyncConnection.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc)
    pytest.fail(  # outside the except: the message alone, no chained traceback
        f"PostgreSQL must run on {HOST}:{PORT} for these tests (database {DATABASE!r}, user "
        f"{USER!r}, trust authentication), and connecting to it failed: {reason}",
        pytrace=False,
    )


async def tables_in(schema: str) -> set[str]:
    """The names of the tables in ``schema``."""
    async with await admin() as conn:
        rows = await (
            await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
        ).fetchall()
    return {str(name) for (name,) in rows}


@contextlib.asynccontextmanager
async def fresh_schema(prefix: str = "mc_test") -> AsyncIterator[str]:
    """Create an empty schema, yield a URL that uses it, drop it (CASCADE) at the end."""
    schema = f"{prefix}_{secrets.token_hex(6)}"
    async with await admin() as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema_url(schema)
    finally:
        async with await admin() as conn:
            await conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
