"""One poll of a receipt stream: SIEM batch files read from a marker, piece by piece.

The receipt feed has no time window. Its position is a *marker* (``Store.marker``), committed
with every piece in the same transaction as the piece's ids and counters:

* API 2.0: the listing's page token, the file reached (the path of its link, which names it
  across listings), how many of its lines are handled, and whether it is done;
* API 1.0: the ``mc-siem-token`` of the file being read and how many of its rows are handled.

A poll lists from the marker's token, skips the files done and the lines handled, and reads on:
each file streamed and cut into pieces of :data:`PIECE` lines, each piece through the receipt
chain and the committer like a page of a TTP log. A restart (kill -9 anywhere) resumes at the
last committed piece; what a piece delivered before its commit is suppressed by id. A link that
expired mid-file is listed again (same token, fresh links) and the file resumed where it was; a
file that is not gzip or is cut short is dead-lettered whole, with its name and reason, and the
feed goes on with the next. Memory holds one chunk of a file and the pieces in flight, however
large the file.
"""

from __future__ import annotations

import asyncio
import json
import math
import zipfile
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from hashlib import blake2b
from typing import IO

import msgspec
import structlog

from mimecast_connector._errors import UnavailableError
from mimecast_connector.client import MimecastClient
from mimecast_connector.client._siem import (
    REACH_DAYS,
    BatchFile,
    LinkExpired,
    fetch_siem_file,
    list_batches,
    stream_batch_file,
)
from mimecast_connector.receipts import BadFile, GzipLines, JsonArrayItems
from mimecast_connector.runner._chain import DeadLetter, Handled
from mimecast_connector.runner._receipt_chain import CATEGORY, ReceiptChain

_log = structlog.get_logger("mimecast_connector.runner")

#: Lines of a batch file handled, and committed, together.
PIECE = 1000
#: Batch files listed per request (Mimecast's ``pageSize`` counts files).
FILES_PER_LISTING = 10
#: Listings, or API 1.0 files, read in one poll at most: a deep backlog is read over several
#: polls, so that the tenant's other streams and the schedule's fairness are kept.
MAX_STEPS_PER_POLL = 20
#: Times one file's links may be listed afresh in one poll before the poll fails.
MAX_RELISTS = 2
#: Polls in a row in which one file's links kept expiring before that file is dead-lettered (an
#: object deleted, or its access denied, for good) so that the feed goes on past it.
STUCK_POLLS = 3
_READ = 64 * 1024
_encoder = msgspec.json.Encoder()


@dataclass(slots=True)
class Marker:
    """Where the feed is. ``line`` counts the lines (2.0) or rows (1.0) of ``file`` handled."""

    token: str | None = None
    file: str | None = None
    line: int = 0
    done: bool = False
    caught_up: bool = False
    #: A file whose links kept expiring, and in how many polls (see :data:`STUCK_POLLS`).
    stuck: str | None = None
    stuck_polls: int = 0

    @classmethod
    def parse(cls, text: str | None) -> Marker:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls(
                data.get("token"),
                data.get("file"),
                int(data.get("line", 0)),
                bool(data.get("done", False)),
                bool(data.get("caught_up", False)),
                data.get("stuck"),
                int(data.get("stuck_polls", 0)),
            )
        except (ValueError, TypeError, AttributeError):
            _log.warning("receipt_marker_unreadable", detail="starting the feed again")
            return cls()

    def text(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


#: ``submit(handled, marker, cursor)``: hand one piece to the committer; its commit's future.
Submit = Callable[[Handled, Marker, "datetime | None"], Awaitable["asyncio.Future[dict[str, int]]"]]


class FeedReader:
    """One receipt poll of one tenant (``api`` says which feed)."""

    def __init__(
        self,
        *,
        tenant: str,
        api: str,
        client: MimecastClient,
        chain: ReceiptChain,
        submit: Submit,
        pending: deque[asyncio.Future[dict[str, int]]],
        drain: Callable[[], Awaitable[None]],
        now: datetime,
        first_day: date,
    ) -> None:
        self.tenant = tenant
        self.api = api
        self._client = client
        self._chain = chain
        self._submit = submit
        self._pending = pending
        self._drain = drain
        self._now = now
        self._first_day = first_day
        self.newest = -math.inf
        #: The marker of the last piece handed to the committer.
        self._reached = Marker()
        #: The key of the batch file being read.
        self._expiring: str | None = None

    async def read(self, marker: Marker) -> Marker:
        """Read from ``marker`` on, for at most :data:`MAX_STEPS_PER_POLL` steps; the marker
        reached (every piece up to it handed to the committer)."""
        self._reached = marker
        if self.api == "2.0":
            return await self._batches(marker)
        return await self._siem_files(marker)

    # -- API 2.0 -----------------------------------------------------------------------------

    async def _batches(self, marker: Marker) -> Marker:
        today = self._now.date()
        start = max(self._first_day, today - timedelta(days=REACH_DAYS - 1))
        relists = 0
        steps = 0
        while steps < MAX_STEPS_PER_POLL:
            steps += 1
            listing = await list_batches(
                self._client, start=start, token=marker.token, page_size=FILES_PER_LISTING
            )
            keys = [f.key for f in listing.files]
            index = 0
            if marker.file is not None and marker.file in keys:
                index = keys.index(marker.file)
                if marker.done:
                    index += 1
            elif marker.file is not None:
                # The file is not in this listing any more: read the page from its start (what
                # was delivered is suppressed by id).
                marker = Marker(marker.token)
            try:
                for file in listing.files[index:]:
                    skip = marker.line if marker.file == file.key and not marker.done else 0
                    marker = await self._batch_file(marker.token, file, skip)
            except LinkExpired as expired:
                marker = self._reached  # the file, and the lines of it handed over
                relists += 1
                if relists <= MAX_RELISTS:
                    _log.info(
                        "batch_link_expired",
                        tenant=self.tenant,
                        category=CATEGORY,
                        file=self._expiring,
                    )
                    continue  # list the same page again: fresh links, resume where it was
                marker = await self._stuck(marker, str(expired))
                relists = 0
                continue
            following = listing.next
            caught_up = listing.caught_up or not following
            if following and following != marker.token:
                marker = Marker(following, caught_up=caught_up)
            else:
                marker.caught_up = caught_up
            await self._piece(Handled(), marker)
            if caught_up:
                break
        return marker

    async def _stuck(self, marker: Marker, why: str) -> Marker:
        """A file's fresh links expired again and again: count the poll; at the
        :data:`STUCK_POLLS`-th, dead-letter the file and go on; before, fail the poll."""
        key = self._expiring or ""
        polls = marker.stuck_polls + 1 if marker.stuck == key else 1
        name = key.rsplit("/", 1)[-1] or key
        if polls >= STUCK_POLLS:
            line = marker.line if marker.file == key else 0
            reason = (
                f"its links answered {why} in {polls} polls in a row: the file is gone or "
                "refused for good"
            )
            return await self._bad_file(Marker(marker.token, key, line, done=True), name, reason)
        counted = Marker(
            marker.token, marker.file, marker.line, marker.done, marker.caught_up, key, polls
        )
        await self._piece(Handled(), counted)
        raise UnavailableError(
            f"the links of batch file {name!r} kept expiring before it could be read ({why}); "
            f"the next poll tries again, and after {STUCK_POLLS} such polls the file is "
            "dead-lettered and the feed goes on",
            tenant=self.tenant,
            endpoint=key,
        )

    async def _batch_file(self, token: str | None, file: BatchFile, skip: int) -> Marker:
        self._expiring = file.key
        reader = GzipLines()
        seen = 0
        piece: list[bytes] = []
        name = file.key.rsplit("/", 1)[-1] or file.key
        try:
            async for chunk in stream_batch_file(self._client, file):
                for line in reader.feed(chunk):
                    seen += 1
                    if seen <= skip:
                        continue
                    piece.append(line)
                    if len(piece) >= PIECE:
                        await self._lines(piece, Marker(token, file.key, seen))
                        piece = []
            for line in reader.end():
                seen += 1
                if seen > skip:
                    piece.append(line)
        except BadFile as bad:
            if piece:
                await self._lines(piece, Marker(token, file.key, seen))
            return await self._bad_file(Marker(token, file.key, seen, done=True), name, str(bad))
        except LinkExpired:
            if piece:
                await self._lines(piece, Marker(token, file.key, seen))
            raise
        done = Marker(token, file.key, seen, done=True)
        await self._lines(piece, done)
        return done

    # -- API 1.0 -----------------------------------------------------------------------------

    async def _siem_files(self, marker: Marker) -> Marker:
        for _ in range(MAX_STEPS_PER_POLL):
            found = await fetch_siem_file(self._client, marker.token)
            if found is None:
                marker.caught_up = True
                await self._piece(Handled(), marker)
                break
            with found.body:
                reached = await self._siem_file(marker, found.name, found.kind, found.body)
            following = found.next_token
            if not following or following == marker.token:
                # No way on from here: keep the marker (the file is done) and ask again later.
                marker = Marker(marker.token, found.name, reached, done=True, caught_up=True)
                await self._piece(Handled(), marker)
                break
            marker = Marker(following)
            await self._piece(Handled(), marker)
        return marker

    async def _siem_file(self, marker: Marker, name: str, kind: str, body: IO[bytes]) -> int:
        """Read one 1.0 file from the rows ``marker`` says are handled; rows handled in all."""
        if kind not in _KNOWN_KINDS:
            _log.warning(
                "siem_file_kind_unknown",
                tenant=self.tenant,
                category=CATEGORY,
                file=name,
                detail="its rows are counted, not read: the file name does not say which log",
            )
        skip = marker.line if marker.file in (None, name) else 0
        seen = 0
        piece: list[bytes] = []
        try:
            for chunk in _rows(body):
                if chunk is None:  # a chunk of the file read: let other streams and commits run
                    await asyncio.sleep(0)
                    continue
                for row in chunk:
                    seen += 1
                    if seen <= skip:
                        continue
                    piece.append(row)
                    if len(piece) >= PIECE:
                        await self._lines(piece, Marker(marker.token, name, seen), kind)
                        piece = []
        except BadFile as bad:
            if piece:
                await self._lines(piece, Marker(marker.token, name, seen), kind)
            await self._bad_file(Marker(marker.token, name, seen, done=True), name, str(bad))
            return seen
        await self._lines(piece, Marker(marker.token, name, seen, done=True), kind)
        return seen

    # -- pieces ------------------------------------------------------------------------------

    async def _lines(self, lines: list[bytes], marker: Marker, kind: str = "receipt") -> None:
        handled = self._chain.process(lines, self._now.timestamp(), kind=kind)
        await self._piece(handled, marker)

    async def _piece(self, handled: Handled, marker: Marker) -> None:
        newest = max((when for _, when in handled.ids), default=-math.inf)
        cursor = None
        if newest > self.newest and newest != self._now.timestamp():
            self.newest = newest
            cursor = datetime.fromtimestamp(newest, UTC)
        self._pending.append(await self._submit(handled, marker, cursor))
        self._reached = marker
        await self._drain()

    async def _bad_file(self, marker: Marker, name: str, reason: str) -> Marker:
        """Dead-letter a whole file with its name and reason; the feed goes on after it."""
        _log.warning(
            "batch_file_dead_lettered",
            tenant=self.tenant,
            category=CATEGORY,
            file=name,
            reason=reason,
        )
        raw = {"file": name, "line": marker.line}
        why = (
            f"batch file {name!r} could not be read to its end ({reason}); its first "
            f"{marker.line} lines were handled, the rest is dead-lettered"
        )
        dead_id = blake2b(
            f"{self.tenant}\x1f{CATEGORY}\x1f{marker.token}\x1f{marker.file}".encode(),
            digest_size=16,
            person=b"dead-file",
        ).hexdigest()
        line = _encoder.encode(
            DeadLetter(self.tenant, CATEGORY, why, msgspec.Raw(_encoder.encode(raw)))
        )
        handled = Handled(dead=[(dead_id, line + b"\n")], ids=[(dead_id, self._now.timestamp())])
        await self._piece(handled, marker)
        return marker


def _members(body: IO[bytes]) -> Iterator[IO[bytes]]:
    """The JSON documents of a 1.0 SIEM file, one at a time: the members of its zip, or the
    file itself when it is not a zip (``compress`` false)."""
    head = body.read(4)
    body.seek(0)
    if head != b"PK\x03\x04":
        yield body
        return
    with zipfile.ZipFile(body) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                with archive.open(info) as member:
                    yield member


def _rows(body: IO[bytes]) -> Iterator[list[bytes] | None]:
    """The rows of a 1.0 SIEM file, a chunk's worth at a time, and None after each chunk read.

    Whatever keeps the file from being read to its end becomes :class:`BadFile`, with why: a
    damaged zip (bad CRC, damaged deflate data), an encrypted member or an unknown compression
    method, a cut JSON document; the token chain then goes on past the file.
    """
    try:
        for member in _members(body):
            items = JsonArrayItems()
            while chunk := member.read(_READ):
                yield items.feed(chunk)
                yield None
            items.end()
    except BadFile:
        raise
    except zipfile.BadZipFile as exc:
        raise BadFile(f"not a zip file, or a damaged one: {exc}") from None
    except (zlib.error, EOFError) as exc:
        raise BadFile(f"damaged compressed data: {exc}") from None
    except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression method
        raise BadFile(f"a zip member that cannot be read: {exc}") from None
    except OSError as exc:
        raise BadFile(f"the file could not be read: {exc}") from None


#: The 1.0 log kinds the connector knows by name (``client._siem.log_kind``).
_KNOWN_KINDS = frozenset(
    {"receipt", "process", "delivery", "journal", "ttp_url", "ttp_ap", "ttp_ip", "av", "spam"}
)
