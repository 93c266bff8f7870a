"""The Mimecast logs the connector reads, described once.

A small shared type: the client, the simulator and the pipeline all name a log by its
:class:`Category` and read its endpoint path, the key of its record list inside ``data[0]``,
the field that holds each record's event time, and the role an API user needs to read it.
The three Targeted Threat Protection logs are facts from ``shared/docs/mimecast-api.md`` §1
and §4 to §7; the rejection log from ``shared/docs/mta-rejections.md`` §2.3. Those four are
*logs*, read by time window (:data:`LOG_CATEGORIES`); ``receipt``, the SIEM receipt events
(``mta-rejections.md`` §2.1, §2.2), is a *feed* of batch files read from a marker
(:attr:`Category.is_feed`), on its own endpoints (``client._siem``).
"""

from __future__ import annotations

import enum


class Category(enum.StrEnum):
    """One log. The value is the name used in configuration and in alerts."""

    ATTACHMENT = "attachment"
    IMPERSONATION = "impersonation"
    URL = "url"
    REJECTION = "rejection"
    RECEIPT = "receipt"

    @property
    def is_feed(self) -> bool:
        """A feed of SIEM batch files (``receipt``), not a log read by time window."""
        return self is Category.RECEIPT

    @property
    def path(self) -> str:
        """The endpoint of a log, identical on API 1.0 and API 2.0 (a feed: its 2.0 listing)."""
        return _PATHS[self]

    @property
    def list_key(self) -> str:
        """The key of the record list in ``data[0]`` of a response page."""
        return _LIST_KEYS[self]

    @property
    def time_field(self) -> str:
        """The record field that holds the event time (a receipt's: epoch milliseconds)."""
        return _TIME_FIELDS.get(self, "date")

    @property
    def window_keys(self) -> tuple[str, str]:
        """The request fields of a window's start and end: ``from``/``to`` for the TTP logs,
        ``start``/``end`` for the rejection log."""
        return ("start", "end") if self is Category.REJECTION else ("from", "to")

    @property
    def ordered(self) -> bool:
        """Whether the endpoint takes ``oldestFirst`` (the rejection log documents no order)."""
        return self is not Category.REJECTION

    @property
    def role(self) -> str:
        """The Mimecast role permission an API user needs to read this log."""
        return _ROLES[self]

    @classmethod
    def from_path(cls, path: str) -> Category | None:
        """The log served at ``path``, or None if ``path`` is not a log endpoint."""
        return _BY_PATH.get(path)


#: The logs read by time window, page by page.
LOG_CATEGORIES = (
    Category.ATTACHMENT,
    Category.IMPERSONATION,
    Category.URL,
    Category.REJECTION,
)
#: What a tenant reads when its configuration names no categories (``receipt`` is opt-in: it
#: needs Enhanced Logging and the SIEM role, and carries every message the gateway receives).
DEFAULT_CATEGORIES = (
    Category.ATTACHMENT,
    Category.IMPERSONATION,
    Category.URL,
    Category.REJECTION,
)

_PATHS = {
    Category.ATTACHMENT: "/api/ttp/attachment/get-logs",
    Category.IMPERSONATION: "/api/ttp/impersonation/get-logs",
    Category.URL: "/api/ttp/url/get-logs",
    Category.REJECTION: "/api/gateway/get-rejections",
    Category.RECEIPT: "/siem/v1/batch/events/cg",
}
_LIST_KEYS = {
    Category.ATTACHMENT: "attachmentLogs",
    Category.IMPERSONATION: "impersonationLogs",
    Category.URL: "clickLogs",
    Category.REJECTION: "rejections",
}
_TIME_FIELDS = {
    Category.IMPERSONATION: "eventTime",
    Category.REJECTION: "created",
    Category.RECEIPT: "timestamp",
}
_ROLES = {
    Category.ATTACHMENT: "Monitoring / Attachment Protection / Read",
    Category.IMPERSONATION: "Monitoring / Impersonation Protection / Read",
    Category.URL: "Monitoring / URL Protection / Read",
    Category.REJECTION: "Monitoring / Rejections / Read",
    Category.RECEIPT: "Threat and Security Events (SIEM) / Read (API 2.0; Enhanced Logging on), "
    "Gateway / Tracking / Read (API 1.0)",
}
_BY_PATH = {c.path: c for c in LOG_CATEGORIES}
