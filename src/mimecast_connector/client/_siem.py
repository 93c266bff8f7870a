"""Mimecast's SIEM feeds, the source of receipt events (``mta-rejections.md`` §2.1, §2.2).

API 2.0: :func:`list_batches` asks ``GET /siem/v1/batch/events/cg?type=receipt`` for a page of
batch files (``pageSize`` counts files) and :func:`stream_batch_file` reads one of them, gzip
NDJSON behind a short-lived presigned link, chunk by chunk: never whole. A link that no longer
works (403, 404, 410) raises :class:`LinkExpired`: list the same page again for fresh links.

API 1.0: :func:`fetch_siem_file` makes one ``POST /api/audit/get-siem-logs`` call, which answers
one file (a zip) and the token of the next in the ``mc-siem-token`` header, or JSON when nothing
is new. The file is spooled to a temporary file (a zip's directory is at its end), so memory
holds none of it; a file over :data:`SIEM_FILE_CAP` on disk, or a JSON answer over the client's
``max_body_bytes`` in memory, is refused (a stream that never ends cannot fill either).

Both go through the tenant's client: its rate limiter, authentication, request ids, redaction
and its table of answers (``_client``); only the presigned download, which must carry no
credentials, goes straight to the link.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import httpx
import msgspec

from mimecast_connector._errors import ApiFailure, UnavailableError, UpstreamFormatError
from mimecast_connector.client._auth import new_request_id
from mimecast_connector.client._client import (
    _FORMAT_VERDICT,
    REQUEST_ID_HEADER,
    MimecastClient,
    _describe_decode_error,
    _ErrorBody,
    _Fail,
    _failures,
    _GiveUp,
    _read_capped,
    is_loopback_host,
)
from mimecast_connector.client._responses import (
    Outcome,
    Verdict,
    classify_status,
    outcome_label,
)

#: The stream the SIEM calls are for, in logs and metrics.
CATEGORY = "receipt"
BATCH_PATH = "/siem/v1/batch/events/cg"
SIEM_LOGS_PATH = "/api/audit/get-siem-logs"
#: The permissions each feed needs, named in a 403's message.
BATCH_ROLE = (
    "Threat and Security Events (SIEM) / Read (and Enhanced Logging must be on for the account)"
)
SIEM_LOGS_ROLE = "Gateway / Tracking / Read"
#: The largest 1.0 SIEM file spooled to disk (a safety limit, not a setting): Mimecast's files
#: hold minutes of one account's logs, compressed; a million receipts zip to tens of MiB.
SIEM_FILE_CAP = 4 * 1024**3
#: Days of SIEM data Mimecast keeps.
REACH_DAYS = 7


class LinkExpired(Exception):
    """A batch file's presigned link no longer works: list the page again."""


@dataclass(frozen=True, slots=True)
class BatchFile:
    """One batch file of a listing. ``key`` (the link's path) names the file across listings;
    the rest of the link (its signature) changes every time."""

    url: str
    key: str
    size: int | None


@dataclass(frozen=True, slots=True)
class BatchListing:
    files: list[BatchFile]
    next: str | None
    caught_up: bool


class _Link(msgspec.Struct):
    url: str
    size: int | str | None = None
    expiry: str | None = None


class _Listing(msgspec.Struct):
    value: list[_Link] = []
    next: str | None = msgspec.field(default=None, name="@nextPage")
    isCaughtUp: bool | str | None = None
    fail: list[_Fail] = []


_LISTING = msgspec.json.Decoder(_Listing)


def _decode_listing(body: bytes) -> tuple[_Listing, list[_Fail]]:
    try:
        listing = _LISTING.decode(body)
    except msgspec.ValidationError as exc:
        raise _GiveUp(_FORMAT_VERDICT, _describe_decode_error(exc, body), []) from None
    except msgspec.DecodeError as exc:
        raise _GiveUp(_FORMAT_VERDICT, _describe_decode_error(exc, body), []) from None
    except RecursionError:
        raise _GiveUp(_FORMAT_VERDICT, "nested too deeply to decode", []) from None
    return listing, listing.fail


async def list_batches(
    client: MimecastClient, *, start: date, token: str | None, page_size: int
) -> BatchListing:
    """One page of receipt batch files from the day ``start`` on, or from ``token``."""
    query: dict[str, Any] = {"type": "receipt", "pageSize": page_size}
    if token:
        # The token is the durable cursor: it carries the range it was first asked with.
        query["nextPage"] = token
    else:
        # No end day: the range stays open, so the cursor follows the files of days to come.
        query["dateRangeStartsAt"] = start.isoformat()
    listing, _ = await client._call(
        BATCH_PATH,
        None,
        b"",
        "application/json",
        decode=_decode_listing,
        authenticated=True,
        method="GET",
        query="?" + urlencode(query),
        role=BATCH_ROLE,
        stream=CATEGORY,
    )
    files = []
    for link in listing.value:
        parts = urlsplit(link.url)
        if parts.scheme != "https" and not (
            parts.scheme == "http" and is_loopback_host(parts.hostname or "")
        ):
            raise UpstreamFormatError(
                "a batch file's link is not an https URL; it was not followed",
                tenant=client.tenant,
                endpoint=BATCH_PATH,
            )
        size = (
            int(link.size)
            if isinstance(link.size, int | str) and str(link.size).isdigit()
            else None
        )
        files.append(BatchFile(link.url, parts.path, size))
    caught_up = listing.isCaughtUp in (True, "true", "True")
    return BatchListing(files, listing.next or None, caught_up)


async def stream_batch_file(client: MimecastClient, file: BatchFile) -> AsyncIterator[bytes]:
    """The file's bytes as they arrive (still gzip). No credentials go to the link."""
    try:
        async with client._http.stream(
            "GET", file.url, headers={"Accept-Encoding": "identity"}
        ) as response:
            status = response.status_code
            if status in (403, 404, 410):
                raise LinkExpired(f"HTTP {status}")
            if status != 200:
                raise UnavailableError(
                    f"downloading a batch file answered HTTP {status}",
                    tenant=client.tenant,
                    endpoint=file.key,
                    status=status,
                )
            async for chunk in response.aiter_raw():
                yield chunk
    except httpx.HTTPError as exc:
        raise UnavailableError(
            f"downloading a batch file failed ({type(exc).__name__}: {exc})",
            tenant=client.tenant,
            endpoint=file.key,
        ) from None


@dataclass(slots=True)
class SiemFile:
    """One API 1.0 SIEM file: its name, log kind, the token of the next, and its bytes (a
    temporary file at position 0; close it when done)."""

    name: str
    kind: str
    next_token: str | None
    body: IO[bytes]


_FILENAME = re.compile(r'filename\*?=(?:UTF-8\'\')?"?([^";]+)"?', re.IGNORECASE)
_KINDS = ("receipt", "process", "delivery", "journal", "ttp_url", "ttp_ap", "ttp_ip", "av", "spam")


def log_kind(name: str) -> str:
    """The log kind a 1.0 SIEM file's name starts with (``receipt_…json`` is ``receipt``)."""
    lowered = name.lower()
    for kind in _KINDS:
        if lowered.startswith(kind):
            return kind
    return lowered.split("_", 1)[0][:20] or "unnamed"


async def fetch_siem_file(client: MimecastClient, token: str | None) -> SiemFile | None:
    """One ``get-siem-logs`` call: the next file after ``token`` (None: the earliest kept),
    or None when nothing is new."""
    item: dict[str, Any] = {"type": "MTA", "fileFormat": "json", "compress": True}
    if token:
        item["token"] = token
    body = msgspec.json.encode({"data": [item]})
    waited = await client.limiter.acquire()
    if waited:
        client.observer.waited(waited)
    request_id = new_request_id()
    deadline = client._clock.monotonic() + client.options.retry.deadline
    sent = await client._auth_headers(SIEM_LOGS_PATH, request_id, deadline, CATEGORY)
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/octet-stream, application/json",
        "Accept-Encoding": "identity",
        "x-mc-req-id": request_id,
        **sent,
    }
    spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller
    sending = time.perf_counter()
    status: int | None = None
    try:
        async with (
            client._slots,
            client._http.stream(
                "POST", client.base_url + SIEM_LOGS_PATH, headers=headers, content=body
            ) as response,
        ):
            client.limiter.observe(response.headers)
            status = response.status_code
            request_id = response.headers.get(REQUEST_ID_HEADER) or request_id
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if status != 200 or kind == "application/json":
                try:
                    answer = await _read_capped(
                        status,
                        response.headers,
                        response.aiter_bytes(),
                        response.aclose,
                        client.options.max_body_bytes,
                    )
                except _GiveUp:
                    raise _too_big(client, "its JSON answer", client.options.max_body_bytes,
                                   request_id) from None  # fmt: skip
                _raise_or_nothing(client, status, answer, request_id, sent)
                spool.close()
                client.observer.answered(
                    CATEGORY, outcome_label(status), time.perf_counter() - sending
                )
                return None
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > SIEM_FILE_CAP:
                    raise _too_big(client, "the file", SIEM_FILE_CAP, request_id)
                spool.write(chunk)
            name_match = _FILENAME.search(response.headers.get("content-disposition", ""))
            name = name_match.group(1) if name_match else "unnamed"
            next_token = response.headers.get("mc-siem-token") or None
    except httpx.HTTPError as exc:
        spool.close()
        client.observer.answered(
            CATEGORY, outcome_label(status, exc), time.perf_counter() - sending
        )
        raise UnavailableError(
            f"the get-siem-logs call failed ({type(exc).__name__})",
            tenant=client.tenant,
            endpoint=SIEM_LOGS_PATH,
            request_id=request_id,
        ) from None
    except BaseException:
        spool.close()
        client.observer.answered(CATEGORY, outcome_label(status), time.perf_counter() - sending)
        raise
    client.observer.answered(CATEGORY, outcome_label(status), time.perf_counter() - sending)
    spool.seek(0)
    return SiemFile(name, log_kind(name), next_token, spool)


def _too_big(client: MimecastClient, what: str, cap: int, request_id: str) -> UpstreamFormatError:
    mib = cap // (1024 * 1024)
    return UpstreamFormatError(
        f"get-siem-logs sent {what} past {mib:,} MiB, a safety limit of the connector (not a "
        "setting): nothing of it was used, and the next poll asks again from the same token; "
        "if this persists, report it to the connector's maintainers",
        tenant=client.tenant,
        endpoint=SIEM_LOGS_PATH,
        request_id=request_id,
    )


def _raise_or_nothing(
    client: MimecastClient, status: int, answer: bytes, request_id: str, sent: dict[str, str]
) -> None:
    """A JSON answer: nothing new (return), or Mimecast's failure (raise)."""
    verdict = classify_status(status, None, role=SIEM_LOGS_ROLE)
    if verdict.outcome is Outcome.RECORDS:
        try:
            fail = msgspec.json.decode(answer, type=_ErrorBody).fail
        except msgspec.DecodeError:
            fail = []
        if not fail:
            return
        pairs, _ = _failures(fail)
        said = "; ".join(f"{code}: {message}" for code, message in pairs)
        raise client._error(
            _FAIL, said=said, failures=pairs, path=SIEM_LOGS_PATH, request_id=request_id,
            status=status, sent=sent,
        )  # fmt: skip
    raise client._error(
        verdict,
        said=client._error_detail(answer),
        path=SIEM_LOGS_PATH,
        request_id=request_id,
        status=status,
        sent=sent,
    )


_FAIL = Verdict(Outcome.FAIL, ApiFailure, "Mimecast reported a failure for get-siem-logs")


async def check_feed(client: MimecastClient, api: str) -> None:
    """Read the first page of the tenant's receipt feed (``check``): raises what a poll would."""
    if api == "2.0":
        today = datetime.fromtimestamp(client._clock.time(), UTC).date()
        await list_batches(
            client, start=today - timedelta(days=REACH_DAYS - 1), token=None, page_size=1
        )
        return
    found = await fetch_siem_file(client, None)
    if found is not None:
        found.body.close()
