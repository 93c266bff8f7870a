"""The receipt feed's reader against a scripted SIEM: where it lists from and what it commits."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import zipfile
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from mimecast_connector.client._siem import BatchFile, BatchListing, LinkExpired
from mimecast_connector.rules import load_table
from mimecast_connector.runner import _feed
from mimecast_connector.runner._chain import Handled
from mimecast_connector.runner._feed import FeedReader, Marker
from mimecast_connector.runner._receipt_chain import ReceiptChain

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def line(n: int) -> bytes:
    return json.dumps({"processingId": f"p{n}", "timestamp": 1_764_580_000_000 + n,
                       "action": "Acc"}).encode()  # fmt: skip


class Scripted:
    """Listings by token and files by key; a download may answer 403 once, or always."""

    def __init__(self, pages: dict[str | None, BatchListing], files: dict[str, int]) -> None:
        self.pages = pages
        self.files = files
        self.listed: list[str | None] = []
        self.expire: set[str] = set()
        self.gone: set[str] = set()

    async def list_batches(self, client: Any, *, start: date, token: str | None,
                           page_size: int) -> BatchListing:  # fmt: skip
        self.listed.append(token)
        return self.pages[token]

    async def stream(self, client: Any, file: BatchFile) -> AsyncIterator[bytes]:
        if file.key in self.gone:
            raise LinkExpired("HTTP 404")
        if file.key in self.expire:
            self.expire.discard(file.key)
            raise LinkExpired("HTTP 403")
        body = gzip.compress(b"\n".join(line(n) for n in range(self.files[file.key])))
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]


def listing(*keys: str, following: str | None, caught_up: bool) -> BatchListing:
    return BatchListing([BatchFile(f"https://s3.example/{k}?sig=x", k, None) for k in keys],
                        following, caught_up)  # fmt: skip


async def read(
    script: Scripted, marker: Marker, api: str = "2.0", committed: list[Marker] | None = None
) -> tuple[Marker, list[Marker]]:
    committed = [] if committed is None else committed
    pending: deque[asyncio.Future[dict[str, int]]] = deque()

    async def submit(handled: Handled, reached: Marker, cursor: datetime | None) -> Any:
        committed.append(Marker.parse(reached.text()))
        done: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        done.set_result({})
        return done

    async def drain() -> None:
        pending.clear()

    reader = FeedReader(
        tenant="acme", api=api, client=None, chain=ReceiptChain("acme", api, load_table()),  # type: ignore[arg-type]
        submit=submit, pending=pending, drain=drain, now=NOW, first_day=NOW.date(),
    )  # fmt: skip
    return await reader.read(marker), committed


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Scripted:
    scripted = Scripted(
        {
            "T1": listing("/a", "/b", following="T2", caught_up=False),
            "T2": listing("/c", following="T2", caught_up=True),
        },
        {"/a": 2500, "/b": 1200, "/c": 10},
    )
    monkeypatch.setattr(_feed, "list_batches", scripted.list_batches)
    monkeypatch.setattr(_feed, "stream_batch_file", scripted.stream)
    return scripted


async def test_a_marker_inside_a_file_resumes_at_its_line(script: Scripted) -> None:
    """From (T1, /a, 2000): /a's last 500 lines, then /b, then the next page; caught up."""
    end, committed = await read(script, Marker("T1", "/a", 2000))
    assert script.listed == ["T1", "T2"]
    assert [(m.file, m.line, m.done) for m in committed if m.file == "/a"] == [("/a", 2500, True)]
    assert [(m.file, m.line, m.done) for m in committed if m.file == "/b"] == [
        ("/b", 1000, False),
        ("/b", 1200, True),
    ]
    assert (end.token, end.caught_up) == ("T2", True)


async def test_a_link_that_expires_first_lists_the_same_page_again(script: Scripted) -> None:
    """The first download of the poll answers 403: the page of the stored token is listed
    again (not the feed's start), and the file resumes at the stored line."""
    script.expire.add("/b")
    end, committed = await read(script, Marker("T1", "/a", 2500, done=True))
    assert script.listed == ["T1", "T1", "T2"]
    assert all(m.token in ("T1", "T2") for m in committed)
    assert [(m.file, m.line) for m in committed if m.file == "/b"] == [("/b", 1000), ("/b", 1200)]
    assert end.caught_up


async def test_a_file_gone_from_the_listing_reads_the_page_from_its_start(
    script: Scripted,
) -> None:
    """The stored file is not in its page any more: the page is read whole (ids suppress what
    was delivered), nothing is skipped."""
    _, committed = await read(script, Marker("T1", "/gone", 700))
    assert list(dict.fromkeys(m.file for m in committed if m.done)) == ["/a", "/b", "/c"]


def siem_zip(rows: int, *, damage: bool = False) -> bytes:
    document = json.dumps({"type": "MTA", "data": [{"datetime": "2021-10-19T07:06:40+0100",
                                                      "Act": "Acc", "n": n} for n in range(rows)]})  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("receipt_1.json", document)
    data = bytearray(buffer.getvalue())
    if damage:
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
    return bytes(data)


@pytest.mark.parametrize("damage", [False, True])
async def test_a_damaged_1_0_zip_is_dead_lettered_and_the_chain_goes_on(damage: bool) -> None:
    """A zip damaged inside its deflate data (bad CRC, bad block) becomes one dead letter;
    an intact one is read to its end."""
    committed: list[tuple[Marker, Handled]] = []

    async def submit(handled: Handled, reached: Marker, cursor: datetime | None) -> Any:
        committed.append((reached, handled))
        done: asyncio.Future[dict[str, int]] = asyncio.get_running_loop().create_future()
        done.set_result({})
        return done

    async def drain() -> None:
        return None

    reader = FeedReader(
        tenant="acme", api="1.0", client=None, chain=ReceiptChain("acme", "1.0", load_table()),  # type: ignore[arg-type]
        submit=submit, pending=deque(), drain=drain, now=NOW, first_day=NOW.date(),
    )  # fmt: skip
    rows = await reader._siem_file(
        Marker("T"), "receipt_1.json", "receipt", io.BytesIO(siem_zip(5000, damage=damage))
    )
    dead = [line for _, h in committed for _, line in h.dead]
    assert committed[-1][0].done
    if damage:
        assert len(dead) == 1
        assert b"could not be read to its end" in dead[0]
    else:
        assert (rows, dead) == (5000, [])
        assert sum(sum(h.skipped.values()) for _, h in committed) == 5000


async def test_a_file_whose_links_always_fail_is_dead_lettered_after_three_polls(
    script: Scripted,
) -> None:
    """/b answers 404 whatever the listing: two polls fail saying so (the count kept in the
    marker), the third dead-letters /b and reads on to the end of the feed."""
    from mimecast_connector import UnavailableError

    script.gone.add("/b")
    stored = Marker("T1", "/a", 2500, done=True)
    for poll in (1, 2):
        committed: list[Marker] = []
        with pytest.raises(UnavailableError, match="after 3 such polls the file is dead-lettered"):
            await read(script, stored, committed=committed)
        stored = committed[-1]
        assert (stored.stuck, stored.stuck_polls, stored.file) == ("/b", poll, "/a")
    end, committed = await read(script, stored)
    assert ("/b", True) in [(m.file, m.done) for m in committed]
    assert (end.token, end.caught_up) == ("T2", True)
    assert "/c" in [m.file for m in committed]
