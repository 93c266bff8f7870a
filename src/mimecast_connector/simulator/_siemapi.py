"""The SIEM endpoints: the API 2.0 batch listing and its presigned files, and API 1.0 files.

``_api.py`` routes, authenticates, rate-limits and takes faults as for the TTP logs (its module
docstring); this module runs the functions, from ``shared/docs/mta-rejections.md`` §2.1, §2.2 and
``mimecast-api.md`` §8.4, §9. Where the docs are silent the choice is written here.

**API 2.0** ``GET /siem/v1/batch/events/cg?type=&dateRangeStartsAt=&dateRangeEndsAt=&pageSize=
&nextPage=`` (bearer token) answers ``{"value":[{"url","size","expiry"}],"@nextPage","isCaughtUp"}``.

* ``type`` is required and must be one of the ten documented types; only ``receipt`` has data
  here, the others list nothing. ``pageSize`` counts files: 1 to 100, default 100, larger values
  are served as 100.
* Dates are UTC days, ``YYYY-MM-DD``, both ends inclusive, and select files by the day they were
  *published*. ``dateRangeStartsAt`` defaults to 7 days before today and may not be earlier
  (400); ``dateRangeEndsAt`` defaults to no end (the listing follows new files). Files are kept
  7 days after publication.
* ``@nextPage`` is a durable, opaque cursor: the query plus the position (publication time,
  sequence) of the last file listed, sealed; it never expires and the same token always lists
  the files after that position, in the same order, with fresh links. It is present on every
  answer (an empty page gives back the same position), ``isCaughtUp`` is true when nothing
  visible follows the page. With ``nextPage`` the other parameters except ``type`` are ignored.
  The cursor is a position in *publication* order, so a batch published late (older events)
  lands after it and is listed on the next page, after ``isCaughtUp`` was true.
* Validation errors are HTTP 400 with a top-level ``error`` object (``mimecast-api.md`` §8.1);
  authentication and role errors keep the gateway's flat ``fail`` (§3.2): 401, and 403
  ``app_forbidden`` without the SIEM role. Without Enhanced Logging the account logs nothing:
  the listing is empty and caught up (not an error: Mimecast has simply no files).
* Each ``url`` points back at the simulator, S3 style:
  ``/siem-files/<opaque file key>?X-Amz-Date=…&X-Amz-Expires=<lifetime>&X-Amz-Signature=…``,
  fetched by GET without credentials. It serves the file as stored: gzip-compressed NDJSON,
  ``Content-Type: application/octet-stream`` and no ``Content-Encoding`` (the client gunzips).
  After the link's lifetime (``Simulator(siem_link_lifetime=...)``, default 15 minutes on the
  simulator's wall clock) it answers 403 with S3's XML ``AccessDenied`` "Request has expired";
  an altered link is 403 ``SignatureDoesNotMatch``; a file past retention 404 ``NoSuchKey``.

**API 1.0** ``POST /api/audit/get-siem-logs`` (HMAC, or a bearer token: the path is served on
both generations like the TTP logs) with ``{"data":[{"type":"MTA","fileFormat":"json",
"compress":true,"token":…}]}`` answers one file per call, the earliest retained one without a
token: ``application/octet-stream``, a zip when ``compress`` is true (the raw JSON member when
false), ``Content-Disposition: attachment; filename="<kind>_<YYYYMMDDHHMMSSmmm>.json"`` (also for
the zip), the next token in ``mc-siem-token``. ``fileFormat`` defaults to ``key_value``, which
the simulator does not produce (a ``fail`` entry says so); ``compress`` defaults to false. When
nothing new exists the answer is ``{"meta":{"status":200},"data":[],"fail":[]}`` with
``isLastToken: true`` and ``mc-siem-token`` repeating the position sent. A token that was not
issued here is a 200 with ``fail`` code ``err_audit_siem_invalid_token`` (§8.1).
"""

from __future__ import annotations

import calendar
import gzip
import hashlib
import hmac
import itertools
import math
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs

import msgspec

from mimecast_connector.simulator import faults
from mimecast_connector.simulator._auth import Scheme
from mimecast_connector.simulator._paging import Sealer
from mimecast_connector.simulator._siemlog import (
    MEMBER_PREFIX,
    START,
    Key,
    SiemFile,
    stream_gzip_ndjson,
    stream_member_json,
    stream_zip,
    unzip_member,
    zip_member,
)
from mimecast_connector.simulator._tenant import SimTenant
from mimecast_connector.simulator._times import day_of, format_iso_ms, parse_day
from mimecast_connector.simulator._wire import (
    Outcome,
    Problem,
    Request,
    encode,
    error,
    fail_page,
    flat,
)

BATCH_PATH = "/siem/v1/batch/events/cg"
V1_PATH = "/api/audit/get-siem-logs"
FILES_PREFIX = "/siem-files/"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 100
REACH_DAYS = 7
BATCH_TYPES = frozenset(
    {
        "attachment protect", "av", "delivery", "impersonation protect",
        "internal email protect", "journal", "process", "receipt", "spam", "url protect",
    }
)  # fmt: skip
FILE_TYPE = "application/octet-stream"
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head>\n"
    b"<body><h1>Service Unavailable</h1><p>The file could not be retrieved.</p></body></html>\n"
)


class BatchCursor(msgspec.Struct, frozen=True, array_like=True):
    """What a 2.0 ``@nextPage`` token holds: the query and the position after which to list."""

    tenant: str
    type: str
    first_day: int
    last_day: int | None
    published: float
    seq: int


class V1Cursor(msgspec.Struct, frozen=True, array_like=True):
    """What an ``mc-siem-token`` holds: the position of the last file served."""

    tenant: str
    published: float
    seq: int


class FileKey(msgspec.Struct, frozen=True, array_like=True):
    """What the object key of a presigned link names."""

    tenant: str
    seq: int


class SiemEndpoints:
    """The SIEM functions, called by :class:`~._api.Api` once a request is let through.

    Thread-safe: the sealers and the link key are fixed, the tenants' logs have their own locks.
    """

    def __init__(self, *, wall_clock: Callable[[], float], link_lifetime: float) -> None:
        if not link_lifetime >= 1:
            raise ValueError(f"siem_link_lifetime must be >= 1 second, not {link_lifetime}")
        self._wall_clock = wall_clock
        self._lifetime = math.floor(link_lifetime)
        self._cursors = Sealer(BatchCursor)
        self._v1_tokens = Sealer(V1Cursor)
        self._file_keys = Sealer(FileKey)
        self._link_key = secrets.token_bytes(32)
        self._request_ids = itertools.count(1)

    # -- API 2.0: the batch listing -----------------------------------------------------------

    def listing(self, request: Request, tenant: SimTenant, fault: faults.Fault | None) -> Outcome:
        """One page of batch files (see the module docstring)."""
        if not tenant.siem:
            return flat(403, "app_forbidden", "Forbidden to perform the requested operation")
        if isinstance(fault, faults.LateBatch):
            tenant.publish_late_receipts(fault.count, fault.age)
        now = self._wall_clock()
        try:
            cursor, page_size = self._listing_query(request.query, tenant, now)
        except Problem as problem:
            return _siem_error(400, problem.code, problem.message)
        files: list[SiemFile] = []
        more = False
        if tenant.enhanced_logging and cursor.type == "receipt":
            files, more = tenant.siem_log.batches(
                (cursor.published, cursor.seq),
                now=now,
                first_day=cursor.first_day,
                last_day=cursor.last_day,
                limit=page_size,
            )
        if files:
            last = files[-1]
            cursor = msgspec.structs.replace(cursor, published=last.published, seq=last.seq)
        host = request.headers.get("host") or "127.0.0.1"
        body = {
            "value": [self._link(host, tenant, file, now) for file in files],
            "@nextPage": self._cursors.issue(cursor),
            "isCaughtUp": not more,
        }
        return Outcome(200, encode(body))

    def _listing_query(self, query: str, tenant: SimTenant, now: float) -> tuple[BatchCursor, int]:
        params = parse_qs(query, keep_blank_values=True)

        def one(name: str) -> str | None:
            values = params.get(name)
            if not values:
                return None
            if len(values) > 1:
                raise Problem("err_validation_duplicate_parameter", f"{name} is given twice")
            return values[0]

        kind = one("type")
        if kind is None:
            raise Problem("err_validation_type_missing", "type is required, e.g. type=receipt")
        if kind not in BATCH_TYPES:
            known = ", ".join(sorted(BATCH_TYPES))
            raise Problem("err_validation_type_invalid", f"type must be one of: {known}")
        page_size = _page_size(one("pageSize"))
        token = one("nextPage")
        if token:
            cursor = self._cursors.read(token)
            if cursor is None or cursor.tenant != tenant.name or cursor.type != kind:
                raise Problem("err_validation_next_page_invalid", "nextPage is not a valid token")
            return cursor, page_size
        today = day_of(now)
        first_day = _day(one("dateRangeStartsAt"), "dateRangeStartsAt", today - REACH_DAYS)
        if first_day < today - REACH_DAYS:
            raise Problem(
                "err_validation_date_range",
                f"dateRangeStartsAt must be within the last {REACH_DAYS} days",
            )
        raw_end = one("dateRangeEndsAt")
        last_day = None if raw_end is None else _day(raw_end, "dateRangeEndsAt", today)
        if last_day is not None and last_day < first_day:
            raise Problem(
                "err_validation_date_range", "dateRangeEndsAt must not be before dateRangeStartsAt"
            )
        return BatchCursor(tenant.name, kind, first_day, last_day, *START), page_size

    def _link(self, host: str, tenant: SimTenant, file: SiemFile, now: float) -> dict[str, Any]:
        key = self._file_keys.issue(FileKey(tenant.name, file.seq))
        issued = math.floor(now)
        date = time.strftime(_AMZ_DATE, time.gmtime(issued))
        signature = self._sign(key, date, str(self._lifetime))
        url = (
            f"http://{host}{FILES_PREFIX}{key}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Date={date}&X-Amz-Expires={self._lifetime}&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={signature}"
        )
        return {
            "url": url,
            "size": len(file.data),
            "expiry": format_iso_ms(issued + self._lifetime),
        }

    def _sign(self, key: str, date: str, expires: str) -> str:
        message = f"GET\n{key}\n{date}\n{expires}".encode()
        return hmac.new(self._link_key, message, hashlib.sha256).hexdigest()

    # -- API 2.0: the presigned files ---------------------------------------------------------

    def resolve(
        self, request: Request, tenants: Mapping[str, SimTenant]
    ) -> tuple[SimTenant, SiemFile] | Outcome:
        """The tenant and file a presigned link names, or the S3-style error it gets."""
        key = request.path.removeprefix(FILES_PREFIX)
        params = {k: v[0] for k, v in parse_qs(request.query).items() if v}
        date = params.get("X-Amz-Date", "")
        expires = params.get("X-Amz-Expires", "")
        signature = params.get("X-Amz-Signature", "")
        file_key = self._file_keys.read(key)
        if (
            file_key is None
            or not signature
            or not hmac.compare_digest(signature.encode(), self._sign(key, date, expires).encode())
        ):
            return self._s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        issued = calendar.timegm(time.strptime(date, _AMZ_DATE))  # signed, so well formed
        now = self._wall_clock()
        if now > issued + int(expires):
            return self._s3_error(403, "AccessDenied", "Request has expired")
        tenant = tenants.get(file_key.tenant)
        file = None if tenant is None else tenant.siem_log.file(file_key.seq, now=now)
        if tenant is None or file is None:
            return self._s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return tenant, file

    def download(self, tenant: SimTenant, file: SiemFile, fault: faults.Fault | None) -> Outcome:
        """A 2.0 batch file as stored, or as a file fault changes it."""
        if isinstance(fault, faults.ExpiredLink):
            return self._s3_error(403, "AccessDenied", "Request has expired")
        if isinstance(fault, faults.HugeFile):
            chunks = tenant.huge_receipts(fault.rows, file.published, with_v1=False)
            events = ([receipt.event for receipt in chunk] for chunk in chunks)
            return Outcome(200, content_type=FILE_TYPE, stream=stream_gzip_ndjson(events))
        data = file.data
        if isinstance(fault, faults.TruncatedFile):
            if fault.content:
                text = gzip.decompress(data)
                data = gzip.compress(text[: int(len(text) * fault.keep_fraction)], mtime=0)
            else:
                data = data[: int(len(data) * fault.keep_fraction)]
        elif isinstance(fault, faults.NotGzip):
            if fault.body == "html":
                return Outcome(200, _HTML_PAGE, content_type="text/html; charset=utf-8")
            data = gzip.decompress(data)
        return Outcome(200, data, content_type=FILE_TYPE)

    def _s3_error(self, status: int, code: str, message: str) -> Outcome:
        request_id = f"{next(self._request_ids):016X}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return Outcome(status, body.encode(), content_type="application/xml")

    # -- API 1.0: get-siem-logs ---------------------------------------------------------------

    def get_siem_logs(
        self, request: Request, tenant: SimTenant, scheme: Scheme, fault: faults.Fault | None
    ) -> Outcome:
        """The next file of the 1.0 MTA feed, or the JSON "nothing new" answer."""
        if not tenant.siem:
            return error(
                scheme, 403, "app_forbidden", "Forbidden to perform the requested operation"
            )
        if not request.is_json:
            return error(scheme, 400, "err_request_not_json", "The request body is not JSON")
        try:
            item, compress, raw_token = _v1_query(request.json)
        except Problem as problem:
            return fail_page(problem)
        if isinstance(fault, faults.LateBatch):
            tenant.publish_late_receipts(fault.count, fault.age)
        after: Key = START
        if raw_token is not None:
            cursor = self._v1_tokens.read(raw_token)
            if cursor is None or cursor.tenant != tenant.name:
                return fail_page(
                    Problem("err_audit_siem_invalid_token", "The SIEM token is not valid", item)
                )
            after = (cursor.published, cursor.seq)
        now = self._wall_clock()
        file = tenant.siem_log.next_file(after, now=now) if tenant.enhanced_logging else None
        if file is None:
            outcome = Outcome(200, encode({"meta": {"status": 200}, "data": [], "fail": []}))
            outcome.headers["mc-siem-token"] = self._v1_tokens.issue(V1Cursor(tenant.name, *after))
            outcome.headers["isLastToken"] = "true"
            return outcome
        headers = {
            "Content-Disposition": f'attachment; filename="{file.name}"',
            "mc-siem-token": self._v1_tokens.issue(V1Cursor(tenant.name, *file.key)),
        }
        outcome = _v1_file(tenant, file, compress, fault)
        outcome.headers = headers | outcome.headers
        return outcome


def _v1_file(
    tenant: SimTenant, file: SiemFile, compress: bool, fault: faults.Fault | None
) -> Outcome:
    """The bytes of one 1.0 answer, as stored or as a file fault changes them."""
    if isinstance(fault, faults.HugeFile):
        name = f"receipt_{file.name.partition('_')[2]}"  # the huge file is always a receipt file
        chunks = tenant.huge_receipts(fault.rows, file.published, with_v1=True)
        rows = ([receipt.v1[0][1] for receipt in chunk] for chunk in chunks)
        parts: Iterator[bytes] = stream_member_json(rows)
        outcome = Outcome(
            200,
            content_type=FILE_TYPE,
            stream=stream_zip(name, file.published, parts) if compress else parts,
        )
        outcome.headers["Content-Disposition"] = f'attachment; filename="{name}"'
        return outcome
    if isinstance(fault, faults.NotGzip) and fault.body == "html":
        return Outcome(200, _HTML_PAGE, content_type="text/html; charset=utf-8")
    member = unzip_member(file.data)
    if isinstance(fault, faults.TruncatedFile) and fault.content:
        data_part = member[len(MEMBER_PREFIX) :]
        member = MEMBER_PREFIX + data_part[: int(len(data_part) * fault.keep_fraction)]
    if isinstance(fault, faults.NotGzip) or not compress:
        data = member
    elif isinstance(fault, faults.TruncatedFile) and fault.content:
        data = zip_member(file.name, member, file.published)
    else:
        data = file.data
    if isinstance(fault, faults.TruncatedFile) and not fault.content:
        data = data[: int(len(data) * fault.keep_fraction)]
    return Outcome(200, data, content_type=FILE_TYPE)


def _v1_query(body: Any) -> tuple[dict[str, Any], bool, str | None]:
    """The item, ``compress`` and ``token`` of a get-siem-logs body (§2.2)."""
    if not isinstance(body, dict):
        raise Problem("err_validation_invalid_request", "The body must be a JSON object")
    data = body.get("data")
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        raise Problem("err_validation_invalid_request", "data must hold exactly one object")
    item: dict[str, Any] = data[0]
    if item.get("type") != "MTA":
        raise Problem("err_validation_invalid_value", "type must be MTA", item)
    file_format = item.get("fileFormat", "key_value")
    if file_format != "json":
        raise Problem(
            "err_simulator_unsupported_format",
            f"The simulator serves fileFormat json only, not {file_format!r}",
            item,
        )
    compress = item.get("compress", False)
    if not isinstance(compress, bool):
        raise Problem("err_validation_invalid_value", "compress must be a boolean", item)
    token = item.get("token")
    if token is not None and not isinstance(token, str):
        raise Problem("err_audit_siem_invalid_token", "The SIEM token is not valid", item)
    return item, compress, token or None


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise Problem("err_validation_page_size", "pageSize must be a whole number") from None
    if size < 1:
        raise Problem("err_validation_page_size", "pageSize must be at least 1")
    return min(size, MAX_PAGE_SIZE)


def _day(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    day = parse_day(raw)
    if day is None:
        raise Problem("err_validation_date_format", f"{name} must be a date, YYYY-MM-DD")
    return day


def _siem_error(status: int, code: str, message: str) -> Outcome:
    """A SIEM function error: a top-level ``error`` object (``mimecast-api.md`` §8.1)."""
    return Outcome(status, encode({"error": {"code": code, "message": message}}))
