"""Faults the simulator can inject: one frozen dataclass per way a Mimecast call can go wrong.

This module is public (``from mimecast_connector.simulator import faults``) and is pure data: it
says *what* goes wrong, never how. The request pipeline in ``_api.py`` gives each kind its effect.
Queue a fault with :meth:`Simulator.inject`; it is spent on the next matching request that passes
authentication (or, with ``token_endpoint=True``, on the next ``/oauth/token`` call).

The facts each kind models come from ``shared/docs/mimecast-api.md``: §1 and §8.1 (a 200 with a
``fail`` array), §8.2 (HTTP statuses, 418), §8.3 (429 and the ``X-RateLimit-*`` headers), §3.2
(401 on an expired token) and §4.3 (the paging quirks).

The last five kinds exist only on the SIEM endpoints (``mta-rejections.md`` §2.1, §2.2): a file
cut short, a link that serves something else than gzip, an expired link, a batch published late
and a huge file. They always go to the SIEM requests; the other kinds reach SIEM requests only
when injected with ``siem=...`` (see :meth:`Simulator.inject`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias, get_args

__all__ = [
    "KINDS",
    "SIEM_KINDS",
    "BindingExpired",
    "Disconnect",
    "Echo",
    "EmptyPageWithNext",
    "ExpireToken",
    "ExpiredLink",
    "FailResponse",
    "Fault",
    "HttpStatus",
    "HugeFile",
    "LateBatch",
    "Malformed",
    "NotGzip",
    "NotJson",
    "RateLimited",
    "RepeatNextToken",
    "Slow",
    "Truncate",
    "TruncatedFile",
    "kind_of",
]


@dataclass(frozen=True, slots=True)
class HttpStatus:
    """Answer ``status``; ``body`` defaults to a Mimecast-shaped error JSON (§3.2, §8.1)."""

    status: int = 503
    body: str | bytes | None = None
    headers: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code (100..599), not {self.status}")


@dataclass(frozen=True, slots=True)
class FailResponse:
    """HTTP 200, ``data: []`` and a 1.0-style ``fail`` entry: the function failed (§1, §8.1)."""

    code: str = "err_simulated_failure"
    message: str = "Simulated function failure"
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class RateLimited:
    """One 429; ``X-RateLimit-Reset`` is ms until reset, or an epoch in ms if absolute (§8.3)."""

    reset_ms: int = 1000
    absolute: bool = False

    def __post_init__(self) -> None:
        if self.reset_ms < 0:
            raise ValueError(f"reset_ms must be >= 0, not {self.reset_ms}")


@dataclass(frozen=True, slots=True)
class ExpireToken:
    """The bearer token on this request expires now and stays expired: 401 (§3.2). API 2.0 only."""


@dataclass(frozen=True, slots=True)
class BindingExpired:
    """418 with fail code ``err_xdk_binding_expired`` (§2.4, §8.2). API 1.0 only."""


@dataclass(frozen=True, slots=True)
class Truncate:
    """Send the body cut at ``keep_fraction`` of its length, Content-Length matching the cut."""

    keep_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep_fraction < 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1), not {self.keep_fraction}")


@dataclass(frozen=True, slots=True)
class NotJson:
    """HTTP 200 whose body is an HTML error page, as a proxy or gateway in between might send."""


@dataclass(frozen=True, slots=True)
class Slow:
    """Wait ``seconds`` before answering, then answer normally."""

    seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"seconds must be >= 0, not {self.seconds}")


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection without sending any response."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """The page carries ``count`` extra malformed records, never stored (cycles through 4 kinds).

    The kinds, in order: a required field missing (the event time), a wrong JSON type
    (``hits: "two"`` or ``date: 12345``), an unparseable event time, a record that is not an object.
    """

    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be >= 1, not {self.count}")


@dataclass(frozen=True, slots=True)
class EmptyPageWithNext:
    """A page with no records that still carries a fresh ``next`` token, which continues (§4.3).

    The token is one the client has not sent before in this window, and it yields the page
    that was skipped: a client that stops at an empty page loses the rest of the window.
    """


@dataclass(frozen=True, slots=True)
class RepeatNextToken:
    """The ``next`` token equals the ``pageToken`` the request carried: a loop to detect (§4.3)."""


@dataclass(frozen=True, slots=True)
class Echo:
    """Answer ``status`` with an error whose message quotes the request back, as a careless
    server or proxy might: the body as sent (a token request's form stays percent-encoded),
    then the headers and the body JSON-escaped, with and without ``ensure_ascii``.

    On 200 the quote is a ``fail`` entry (§8.1); otherwise it is the error body of the request's
    API generation (§3.2, §8.1). Used to prove no encoding of a secret reaches a message.
    """

    status: int = 401

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code (100..599), not {self.status}")


@dataclass(frozen=True, slots=True)
class TruncatedFile:
    """The next SIEM file is cut short (``mta-rejections.md`` §2.2, elastic/integrations#5053).

    By default the compressed bytes are cut at ``keep_fraction`` (a gzip or zip that ends
    early). With ``content=True`` the text inside is cut instead and then properly compressed:
    a 2.0 batch whose last line is half an event, or a 1.0 member that stops inside its data
    array; ``keep_fraction=0`` leaves exactly ``{ "type" : "MTA", "data" : ``. Hits a 2.0 file
    download or a 1.0 ``get-siem-logs`` answer that carries a file.
    """

    keep_fraction: float = 0.5
    content: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.keep_fraction < 1.0:
            raise ValueError(f"keep_fraction must be in [0, 1), not {self.keep_fraction}")


@dataclass(frozen=True, slots=True)
class NotGzip:
    """The next SIEM file is not compressed: an HTML error page (``body="html"``), or the file's
    own text uncompressed (``body="text"``: NDJSON on 2.0, the JSON member on 1.0). HTTP 200.
    """

    body: Literal["html", "text"] = "html"


@dataclass(frozen=True, slots=True)
class ExpiredLink:
    """The next 2.0 file download answers 403 "Request has expired", however fresh its link
    (``mta-rejections.md`` §2.1: list again and go on)."""


@dataclass(frozen=True, slots=True)
class LateBatch:
    """Before the next authenticated SIEM request is served, ``count`` receipt events dated in
    the quarter hour that ended ``age`` seconds ago are published: a batch (2.0) and its 1.0
    files that arrive after a consumer has passed their time. They join the feed at its end,
    so a 2.0 ``@nextPage`` cursor that was caught up lists them on its next page, and the 1.0
    token chain serves them next.
    """

    count: int = 20
    age: float = 3600.0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be >= 1, not {self.count}")
        if self.age < 0:
            raise ValueError(f"age must be >= 0 seconds, not {self.age}")


@dataclass(frozen=True, slots=True)
class HugeFile:
    """The next SIEM file holds ``rows`` events, made and sent a chunk at a time with chunked
    transfer encoding, so neither side needs the file in memory (elastic/integrations#16022).

    The events are fresh (never stored) and dated in the quarter hour before the file's
    publication; a 2.0 listing still shows the replaced file's ``size``. On 1.0 the answer is a
    streamed zip (ZIP64, data descriptor) or, with ``compress: false``, streamed JSON.
    """

    rows: int = 1_000_000

    def __post_init__(self) -> None:
        if self.rows < 1:
            raise ValueError(f"rows must be >= 1, not {self.rows}")


Fault: TypeAlias = (
    HttpStatus
    | FailResponse
    | RateLimited
    | ExpireToken
    | BindingExpired
    | Truncate
    | NotJson
    | Slow
    | Disconnect
    | Echo
    | Malformed
    | EmptyPageWithNext
    | RepeatNextToken
    | TruncatedFile
    | NotGzip
    | ExpiredLink
    | LateBatch
    | HugeFile
)

SIEM_KINDS: tuple[type[Fault], ...] = (TruncatedFile, NotGzip, ExpiredLink, LateBatch, HugeFile)
"""The kinds that exist only on the SIEM endpoints."""


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


KINDS: Mapping[str, type[Fault]] = {_snake(cls.__name__): cls for cls in get_args(Fault)}
"""Every fault class by its snake_case kind, the name a scenario file uses (``http_status``…)."""


def kind_of(fault: Fault) -> str:
    """The snake_case kind of ``fault``, e.g. ``"rate_limited"``."""
    return _snake(type(fault).__name__)
