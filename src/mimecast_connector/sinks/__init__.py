"""Sinks: where alerts go. Every sink passes one conformance suite (tests/sinks).

Import from here; the modules beside it are private.
"""

from __future__ import annotations

from mimecast_connector.sinks._appendfile import AppendFile
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._jsonl import JsonlSink
from mimecast_connector.sinks._webhook import WebhookSink, retry_after, signature

__all__ = ["AppendFile", "JsonlSink", "Sink", "WebhookSink", "retry_after", "signature"]
