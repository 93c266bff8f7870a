"""The configuration: loaded and checked once at the edge, then frozen.

Import from here; the module beside it is private.
"""

from __future__ import annotations

from mimecast_connector._fields import SecretResolver
from mimecast_connector.config._config import (
    DEFAULT_BASE_URL_V2,
    Config,
    PostgresState,
    Reloaded,
    TenantConfig,
    load_config,
    parse_duration,
    reload_config,
)
from mimecast_connector.sinks import JsonlSinkConfig, SinkConfig, WebhookSinkConfig

__all__ = [
    "DEFAULT_BASE_URL_V2",
    "Config",
    "JsonlSinkConfig",
    "PostgresState",
    "Reloaded",
    "SecretResolver",
    "SinkConfig",
    "TenantConfig",
    "WebhookSinkConfig",
    "load_config",
    "parse_duration",
    "reload_config",
]
