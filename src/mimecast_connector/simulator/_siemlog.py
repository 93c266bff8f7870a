"""One tenant's SIEM log: the files both API generations serve, and how they are encoded.

Mimecast publishes SIEM data as files, not pages (``mta-rejections.md`` §2.1, §2.2;
``mimecast-api.md`` §8.4, §9). A :class:`SiemLog` holds two feeds built from the same events:

* **API 2.0 batches**: receipt events grouped by the 15 minutes they fall in, a batch covering
  ``(t - 15 min, t]`` and published at ``t``; a busy quarter is split into files of at most
  ``file_size`` events. Each is stored as gzip-compressed NDJSON, one event a line.
* **API 1.0 files**: the same messages as 1.0 rows grouped by 30 minutes, one file per log kind
  (``receipt``, ``process``, ``delivery``, ``ttp_url``) per half hour, so the feed interleaves
  kinds. Each is stored as the zip Mimecast sends for ``compress: true``, whose one member is
  ``{ "type" : "MTA", "data" : [ ... ] }``.

A file is visible from its publication time (on the simulator's wall clock) and kept 7 days.
Feeds are ordered by (publication time, sequence number); the cursors of ``_siemapi.py`` are
positions in that order, and a feed only ever grows at its end past what is visible: a file is
published at the end of its period, unless a file published later than that is already out,
in which case it is published now. So history generated before a consumer starts is spread over
its periods (and ages out after 7 days), while events added for a period a consumer may already
have passed arrive late, at the end of the feed, with their original, earlier timestamps; so do
events published late on purpose (``published``).

The streaming encoders at the bottom write a file of any size in bounded memory (``HugeFile``).
Thread-safe.
"""

from __future__ import annotations

import gzip
import io
import math
import threading
import time
import zipfile
import zlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import msgspec

from mimecast_connector.simulator._generate import Record
from mimecast_connector.simulator._siem import Receipt
from mimecast_connector.simulator._times import day_of

BATCH_SECONDS = 15 * 60
V1_FILE_SECONDS = 30 * 60
RETENTION_SECONDS = 7 * 86_400
V1_KINDS = ("receipt", "process", "delivery", "ttp_url")  # their order within a half hour
MEMBER_PREFIX = b'{ "type" : "MTA", "data" : '
MEMBER_SUFFIX = b" }"

Api = Literal["1.0", "2.0"]
Key = tuple[float, int]
"""A file's place in its feed: (publication time in epoch seconds, sequence number)."""

_encode = msgspec.json.Encoder().encode
START: Key = (-1.0, -1)
"""The position before every file (a cursor holds it, so it must be plain JSON)."""


@dataclass(frozen=True, slots=True)
class SiemFile:
    """One published file: where it sits in its feed, what it holds, its stored bytes.

    ``data`` is gzip-compressed NDJSON for a 2.0 batch and a zip for a 1.0 file.
    """

    seq: int
    published: float
    kind: str
    name: str
    events: int
    data: bytes

    @property
    def key(self) -> Key:
        return (self.published, self.seq)


@dataclass(frozen=True, slots=True)
class SiemFileInfo:
    """What a test may know of a published file (``SimTenant.siem_files``).

    ``name`` is the 1.0 file name (``receipt_20250304100000001.json``) or the 2.0 batch's own;
    ``size`` the bytes a download or a compressed 1.0 answer carries.
    """

    name: str
    kind: str
    published: datetime
    events: int
    size: int


class _Feed:
    """Files in (publication time, sequence) order."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.files: list[SiemFile] = []

    def add(self, file: SiemFile) -> None:
        index = bisect_right(self.keys, file.key)
        self.keys.insert(index, file.key)
        self.files.insert(index, file)

    def head(self, now: float) -> float:
        """The publication time of the last file visible at ``now`` (-1 when there is none)."""
        index = bisect_right(self.keys, (now, math.inf))
        return self.keys[index - 1][0] if index else -1.0


class SiemLog:
    """The two SIEM feeds of one tenant. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: dict[Api, _Feed] = {"2.0": _Feed(), "1.0": _Feed()}
        self._by_seq: dict[int, SiemFile] = {}
        self._seq = 0

    def publish(
        self,
        receipts: Sequence[Receipt],
        *,
        now: float,
        published: float | None,
        file_size: int,
    ) -> None:
        """Add ``receipts`` (oldest first) to both feeds.

        A file is published at the end of its period, or ``now`` if a later file is already out
        (see the module docstring), or at ``published`` when given (a late batch).
        """
        if file_size < 1:
            raise ValueError(f"file_size must be >= 1, not {file_size}")
        batches: dict[int, list[Record]] = {}
        v1_files: dict[tuple[int, int], list[Record]] = {}
        for receipt in receipts:
            batches.setdefault(_period_end(receipt.ts_ms, BATCH_SECONDS), []).append(receipt.event)
            half_hour = _period_end(receipt.ts_ms, V1_FILE_SECONDS)
            for kind, row in receipt.v1:
                v1_files.setdefault((half_hour, V1_KINDS.index(kind)), []).append(row)
        with self._lock:
            feed = self._feeds["2.0"]
            for end, events in sorted(batches.items()):
                at = _when(end, feed.head(now), now) if published is None else published
                for part in _parts(events, file_size):
                    self._add(feed, self._batch(at, part))
            feed = self._feeds["1.0"]
            for (end, kind_index), rows in sorted(v1_files.items()):
                at = _when(end, feed.head(now), now) if published is None else published
                for part in _parts(rows, file_size):
                    self._add(feed, self._v1_file(at, V1_KINDS[kind_index], part))

    def batches(
        self, after: Key, *, now: float, first_day: int, last_day: int | None, limit: int
    ) -> tuple[list[SiemFile], bool]:
        """Up to ``limit`` visible 2.0 batches after ``after`` published on a day within
        [first_day, last_day] (None: no end), and whether more follow now."""
        horizon = now - RETENTION_SECONDS
        found: list[SiemFile] = []
        with self._lock:
            feed = self._feeds["2.0"]
            for file in feed.files[bisect_right(feed.keys, after) :]:
                if file.published > now:
                    break
                day = day_of(file.published)
                if last_day is not None and day > last_day:
                    break
                if file.published < horizon or day < first_day:
                    continue
                if len(found) == limit:
                    return found, True
                found.append(file)
        return found, False

    def next_file(self, after: Key, *, now: float) -> SiemFile | None:
        """The first visible, retained 1.0 file after ``after``, if any."""
        horizon = now - RETENTION_SECONDS
        with self._lock:
            feed = self._feeds["1.0"]
            for file in feed.files[bisect_right(feed.keys, after) :]:
                if file.published > now:
                    return None
                if file.published >= horizon:
                    return file
        return None

    def file(self, seq: int, *, now: float) -> SiemFile | None:
        """The visible, retained file with sequence number ``seq``, if there is one."""
        with self._lock:
            file = self._by_seq.get(seq)
        if file is None or not now - RETENTION_SECONDS <= file.published <= now:
            return None
        return file

    def infos(self, api: Api, *, now: float) -> list[SiemFileInfo]:
        """Every visible, retained file of one feed, in feed order."""
        horizon = now - RETENTION_SECONDS
        with self._lock:
            files = [f for f in self._feeds[api].files if horizon <= f.published <= now]
        return [
            SiemFileInfo(
                f.name, f.kind, datetime.fromtimestamp(f.published, UTC), f.events, len(f.data)
            )
            for f in files
        ]

    # -- building files (under the lock: sequence numbers) ------------------------------------

    def _add(self, feed: _Feed, file: SiemFile) -> None:
        feed.add(file)
        self._by_seq[file.seq] = file

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _batch(self, at: float, events: list[Record]) -> SiemFile:
        seq = self._next_seq()
        name = f"receipt_{_stamp(at, seq)}.ndjson.gz"
        return SiemFile(seq, at, "receipt", name, len(events), gzip_ndjson(events))

    def _v1_file(self, at: float, kind: str, rows: list[Record]) -> SiemFile:
        seq = self._next_seq()
        name = f"{kind}_{_stamp(at, seq)}.json"
        return SiemFile(seq, at, kind, name, len(rows), zip_member(name, member_json(rows), at))


def _when(end: int, head: float, now: float) -> float:
    """When a file for the period ending at ``end`` is published: then, or now if late."""
    return float(end) if end >= head else now


def _period_end(ts_ms: int, seconds: int) -> int:
    """The end (epoch seconds) of the period ``(end - seconds, end]`` holding ``ts_ms``."""
    width = seconds * 1000
    return -(-ts_ms // width) * seconds


def _parts(items: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _stamp(at: float, seq: int) -> str:
    """``YYYYMMDDHHMMSSmmm`` as in real 1.0 file names; the sequence stands in for the ms."""
    return f"{time.strftime('%Y%m%d%H%M%S', time.gmtime(at))}{seq % 1000:03d}"


# -- encoders ---------------------------------------------------------------------------------


def ndjson(events: Iterable[Record]) -> bytes:
    """One JSON object a line, each line ending ``\\n``."""
    return b"".join(_encode(event) + b"\n" for event in events)


def gzip_ndjson(events: Iterable[Record]) -> bytes:
    """A 2.0 batch file's bytes; ``mtime`` 0 keeps them reproducible."""
    return gzip.compress(ndjson(events), mtime=0)


def member_json(rows: Iterable[Record]) -> bytes:
    """A 1.0 file's JSON: ``{ "type" : "MTA", "data" : [ ... ] }``."""
    return MEMBER_PREFIX + b"[" + b",".join(_encode(row) for row in rows) + b"]" + MEMBER_SUFFIX


def zip_member(name: str, member: bytes, at: float) -> bytes:
    """A zip with one deflated member ``name`` dated ``at`` (reproducible)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_zip_info(name, at), member)
    return buffer.getvalue()


def unzip_member(data: bytes) -> bytes:
    """The one member of a zip built by :func:`zip_member`."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(archive.namelist()[0])


def _zip_info(name: str, at: float) -> zipfile.ZipInfo:
    moment = time.gmtime(max(at, 315_532_800))  # zip dates start in 1980
    info = zipfile.ZipInfo(name, date_time=moment[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def stream_gzip_ndjson(chunks: Iterable[Iterable[Record]]) -> Iterator[bytes]:
    """gzip-compressed NDJSON written one chunk of events at a time (bounded memory)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: a gzip header and trailer
    for chunk in chunks:
        if out := compressor.compress(ndjson(chunk)):
            yield out
    yield compressor.flush()


def stream_member_json(chunks: Iterable[Iterable[Record]]) -> Iterator[bytes]:
    """A 1.0 file's JSON written one chunk of rows at a time."""
    yield MEMBER_PREFIX + b"["
    first = True
    for chunk in chunks:
        encoded = b",".join(_encode(row) for row in chunk)
        if encoded:
            yield encoded if first else b"," + encoded
            first = False
    yield b"]" + MEMBER_SUFFIX


def stream_zip(name: str, at: float, parts: Iterable[bytes]) -> Iterator[bytes]:
    """A zip whose one member ``name`` is written from ``parts`` as they come (bounded memory).

    The zip goes to a sink that cannot seek, so ``zipfile`` writes sizes and CRC after the
    data (a data descriptor) and a ZIP64 member, as a streaming zip writer must.
    """
    sink = _Sink()
    with zipfile.ZipFile(sink, "w") as archive:
        with archive.open(_zip_info(name, at), "w", force_zip64=True) as member:
            for part in parts:
                member.write(part)
                if out := sink.drain():
                    yield out
        if out := sink.drain():
            yield out
    yield sink.drain()


class _Sink(io.RawIOBase):
    """A write-only, unseekable byte sink drained by the streaming zip writer."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out
