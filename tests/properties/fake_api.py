"""An in-memory Mimecast TTP log API behind an ``httpx.MockTransport``, for the property tests.

It serves ``POST /oauth/token`` and the three ``/api/ttp/<category>/get-logs`` endpoints from
lists the test fills, with Mimecast's paging: ``from``/``to`` inclusive, ``oldestFirst``,
``pageSize`` and a ``pageToken`` that is the offset of the next record. Records are kept as raw
JSON bytes with the event time the *server* files them under, so a test can serve records whose
own time field is hostile. Everything is synchronous with the test's event loop: no sockets.

A server that misbehaves the ways a real one might: ``order`` serves each window ``"asked"``
(as ``oldestFirst`` says), ``"newest"`` first whatever was asked, or ``"shuffled"`` (a fixed
shuffle per window, so its pages agree); ``ignore_window`` serves every record whatever
``from``/``to`` say.

Two hooks let a test interrupt a run at an exact request: :attr:`FakeMimecast.on_request` is
called with the running number of every log request, and may return an awaitable to wait on
(a gate that never opens, while the test cancels the run); :attr:`FakeMimecast.body_override`
answers a log request with any bytes or stream instead of a page.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import httpx

from mimecast_connector import Category

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def parse_window_time(text: str) -> float:
    """A ``from``/``to`` value (``YYYY-MM-DDTHH:MM:SS+0000``) as epoch seconds."""
    return datetime.strptime(text, _TIME_FORMAT).timestamp()


@dataclass(slots=True)
class Served:
    """One stored record: its raw JSON, the time the server files it under, and its order."""

    raw: bytes
    epoch: float
    seq: int


@dataclass(slots=True)
class LogRequest:
    """One log request as received: category, window, page size and token."""

    category: Category
    start: float
    end: float
    page_size: int
    token: str | None


Order = Literal["asked", "newest", "shuffled"]
BodyOverride = Callable[[Category], "bytes | AsyncIterator[bytes] | None"]


@dataclass
class FakeMimecast:
    """The fake API. ``records`` per category; ``requests`` logs every log request."""

    records: dict[Category, list[Served]] = field(
        default_factory=lambda: {category: [] for category in Category}
    )
    requests: list[LogRequest] = field(default_factory=list)
    token_requests: int = 0
    on_request: Callable[[int], Awaitable[None] | None] | None = None
    body_override: BodyOverride | None = None
    order: Order = "asked"
    ignore_window: bool = False
    _seq: int = 0

    def add(self, category: Category, raw: bytes, epoch: float) -> None:
        """Make ``raw`` visible from now on, filed under ``epoch``."""
        self._seq += 1
        self.records[category].append(Served(raw, epoch, self._seq))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            self.token_requests += 1
            return httpx.Response(
                200,
                json={"access_token": "fake-token", "token_type": "Bearer", "expires_in": 1800},
            )
        category = Category.from_path(request.url.path)
        if category is None or request.method != "POST":
            return httpx.Response(404, json={"fail": [{"code": "not_found", "message": "no"}]})
        if request.headers.get("authorization") != "Bearer fake-token":
            return httpx.Response(401, json={"fail": [{"code": "unauthorized", "message": "no"}]})
        body = json.loads(await request.aread())
        pagination = body["meta"]["pagination"]
        window = body["data"][0]
        first, last = category.window_keys
        logged = LogRequest(
            category,
            parse_window_time(window[first]),
            parse_window_time(window[last]),
            int(pagination["pageSize"]),
            pagination.get("pageToken"),
        )
        self.requests.append(logged)
        if self.on_request is not None:
            waiting = self.on_request(len(self.requests))
            if waiting is not None:
                await waiting
        if self.body_override is not None:
            override = self.body_override(category)
            if override is not None:
                return httpx.Response(200, content=override)
        return httpx.Response(
            200, content=self.page(category, logged, oldest_first=window.get("oldestFirst", False))
        )

    def page(self, category: Category, request: LogRequest, *, oldest_first: bool) -> bytes:
        """The page Mimecast would send: ``{"meta":...,"data":[{"<listKey>":[...]}],"fail":[]}``."""
        inside = [
            r
            for r in self.records[category]
            if self.ignore_window or request.start <= r.epoch <= request.end
        ]
        newest_first = self.order == "newest" or (self.order == "asked" and not oldest_first)
        inside.sort(key=lambda r: (r.epoch, r.seq), reverse=newest_first)
        if self.order == "shuffled":
            random.Random(f"{request.start}:{request.end}:{len(inside)}").shuffle(inside)
        offset = int(request.token or 0)
        chosen = inside[offset : offset + request.page_size]
        pagination: dict[str, object] = {"pageSize": request.page_size, "totalCount": len(inside)}
        if offset + request.page_size < len(inside):
            pagination["next"] = str(offset + request.page_size)
        meta = json.dumps({"status": 200, "pagination": pagination}).encode()
        records = b",".join(r.raw for r in chosen)
        return (
            b'{"meta":'
            + meta
            + b',"data":[{"'
            + category.list_key.encode()
            + b'":['
            + records
            + b']}],"fail":[]}'
        )
