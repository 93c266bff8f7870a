"""SIEM receipt events (issue 9): batch files read line by line. Import from here."""

from __future__ import annotations

from mimecast_connector.receipts._files import MAX_RECORD, BadFile, GzipLines, JsonArrayItems

__all__ = ["MAX_RECORD", "BadFile", "GzipLines", "JsonArrayItems"]
