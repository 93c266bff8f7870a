"""Sinks: where alerts go. Every kind is found in the registry (:data:`SINK_KINDS`) and passes
one conformance suite (tests/sinks).

Import from here; the modules beside it are private.
"""

from __future__ import annotations

from mimecast_connector.sinks._appendfile import AppendFile
from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._http import Answer, HttpSender, fit, retry_after, url_name
from mimecast_connector.sinks._jsonl import JsonlSink, JsonlSinkConfig

# (_kinds imports every sink module itself, to find their KINDs.)
from mimecast_connector.sinks._kinds import SINK_KINDS, SinkConfig, make_sink, sink_table
from mimecast_connector.sinks._registry import SinkKind, SinkSettings
from mimecast_connector.sinks._webhook import WebhookSink, WebhookSinkConfig, signature

__all__ = [
    "SINK_KINDS",
    "Answer",
    "AppendFile",
    "HttpSender",
    "JsonlSink",
    "JsonlSinkConfig",
    "Sink",
    "SinkConfig",
    "SinkKind",
    "SinkSettings",
    "WebhookSink",
    "WebhookSinkConfig",
    "fit",
    "make_sink",
    "retry_after",
    "signature",
    "sink_table",
    "url_name",
]
