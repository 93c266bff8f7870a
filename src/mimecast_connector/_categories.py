"""The three Mimecast Targeted Threat Protection logs, described once.

A small shared type: the client, the simulator and the pipeline all name a log by its
:class:`Category` and read its endpoint path, the key of its record list inside ``data[0]``,
the field that holds each record's event time, and the role an API user needs to read it.
Everything here is a fact from ``shared/docs/mimecast-api.md`` §1 and §4 to §7.
"""

from __future__ import annotations

import enum


class Category(enum.StrEnum):
    """One TTP log. The value is the name used in configuration and in alerts."""

    ATTACHMENT = "attachment"
    IMPERSONATION = "impersonation"
    URL = "url"

    @property
    def path(self) -> str:
        """The endpoint, identical on API 1.0 and API 2.0."""
        return f"/api/ttp/{self.value}/get-logs"

    @property
    def list_key(self) -> str:
        """The key of the record list in ``data[0]`` of a response page."""
        return _LIST_KEYS[self]

    @property
    def time_field(self) -> str:
        """The record field that holds the event time."""
        return "eventTime" if self is Category.IMPERSONATION else "date"

    @property
    def role(self) -> str:
        """The Mimecast role permission an API user needs to read this log."""
        return _ROLES[self]

    @classmethod
    def from_path(cls, path: str) -> Category | None:
        """The category served at ``path``, or None if ``path`` is not a TTP log endpoint."""
        return _BY_PATH.get(path)


_LIST_KEYS = {
    Category.ATTACHMENT: "attachmentLogs",
    Category.IMPERSONATION: "impersonationLogs",
    Category.URL: "clickLogs",
}
_ROLES = {
    Category.ATTACHMENT: "Monitoring / Attachment Protection / Read",
    Category.IMPERSONATION: "Monitoring / Impersonation Protection / Read",
    Category.URL: "Monitoring / URL Protection / Read",
}
_BY_PATH = {c.path: c for c in Category}
