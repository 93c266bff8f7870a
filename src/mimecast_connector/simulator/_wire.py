"""What the simulated API reads and writes: one request in, one outcome out, error bodies.

Shared by the TTP pipeline (``_api.py``) and the SIEM endpoints (``_siemapi.py``); the HTTP
server (``_server.py``) turns an :class:`Outcome` into bytes on the wire. Error shapes follow
``shared/docs/mimecast-api.md``: the flat API 2.0 ``fail`` (§3.2), the API 1.0 envelope (§8.1) and
the HTTP 200 whose function failed (§1, §8.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import msgspec

from mimecast_connector._categories import Category
from mimecast_connector.simulator._auth import Scheme

JSON = "application/json"
encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the API sees it; header names lower-case, ``query`` undecoded."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    json: Any = None
    is_json: bool = False
    query: str = ""

    @classmethod
    def build(
        cls, method: str, path: str, headers: Mapping[str, str], body: bytes, query: str = ""
    ) -> Request:
        """A request with its body parsed as JSON once, if it is JSON."""
        try:
            return cls(method, path, headers, body, msgspec.json.decode(body), True, query)
        except msgspec.DecodeError:
            return cls(method, path, headers, body, query=query)


@dataclass(slots=True)
class Outcome:
    """What to answer, plus what the request log should say about it.

    ``stream``, when set, replaces ``body``: the server sends its chunks as they come, with
    chunked transfer encoding, so a huge answer never sits in memory whole.
    """

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    disconnect: bool = False
    tenant: str | None = None
    category: Category | None = None
    stream: Iterable[bytes] | None = None


class Problem(Exception):
    """A function-level failure, answered as a 200 with a ``fail`` entry keyed by ``item``."""

    def __init__(self, code: str, message: str, item: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.item: Mapping[str, Any] = item or {}


def flat(status: int, code: str, message: str) -> Outcome:
    """An API 2.0 error: ``{"fail":[{"code","message"}]}`` (§3.2)."""
    return Outcome(status, encode({"fail": [{"code": code, "message": message}]}))


def v1(status: int, code: str, message: str, retryable: bool = False) -> Outcome:
    """An API 1.0 error: meta status, empty data, ``fail[].errors[]`` (§8.1)."""
    error = {"code": code, "message": message, "retryable": retryable}
    body = {"meta": {"status": status}, "data": [], "fail": [{"errors": [error]}]}
    return Outcome(status, encode(body))


def error(scheme: Scheme, status: int, code: str, message: str, retryable: bool = False) -> Outcome:
    """An HTTP error in the shape the request's API generation uses."""
    if scheme is Scheme.V1:
        return v1(status, code, message, retryable)
    return flat(status, code, message)


def fail_page(problem: Problem, retryable: bool = False) -> Outcome:
    """HTTP 200 whose function failed: ``data: []`` and one keyed ``fail`` entry (§8.1, §12.5)."""
    error = {"code": problem.code, "message": problem.message, "retryable": retryable}
    body = {"meta": {"status": 200}, "data": [], "fail": [{"key": problem.item, "errors": [error]}]}
    return Outcome(200, encode(body))


def method_not_allowed(scheme: Scheme, allow: str = "POST") -> Outcome:
    """405 with the ``Allow`` header naming the one method the path takes."""
    outcome = error(scheme, 405, "err_method_not_allowed", f"Only {allow} is allowed here")
    outcome.headers["Allow"] = allow
    return outcome


def phrase(status: int) -> str:
    """The reason phrase of ``status``, or ``Error`` for a code HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def as_bytes(body: str | bytes) -> bytes:
    """``body`` as bytes, a string UTF-8 encoded."""
    return body.encode() if isinstance(body, str) else body
