"""mimecast-connector: Mimecast Targeted Threat Protection alerts for security operations.

The public surface is what ``__all__`` lists; every other module is private. The client lives
in :mod:`mimecast_connector.client`, the simulator in :mod:`mimecast_connector.simulator`.
"""

from __future__ import annotations

from mimecast_connector._categories import Category
from mimecast_connector._clock import Clock, SystemClock
from mimecast_connector._errors import (
    ApiError,
    ApiFailure,
    AuthError,
    BindingExpiredError,
    ConfigError,
    ConnectorError,
    ForbiddenError,
    InternalError,
    PaginationError,
    RateLimitedError,
    UnavailableError,
    UnexpectedResponseError,
    UpstreamFormatError,
)

__all__ = [
    "ApiError",
    "ApiFailure",
    "AuthError",
    "BindingExpiredError",
    "Category",
    "Clock",
    "ConfigError",
    "ConnectorError",
    "ForbiddenError",
    "InternalError",
    "PaginationError",
    "RateLimitedError",
    "SystemClock",
    "UnavailableError",
    "UnexpectedResponseError",
    "UpstreamFormatError",
]
