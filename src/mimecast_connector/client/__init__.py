"""The Mimecast API client: authentication, pacing, the response table, paging.

Import from here; the modules beside this file are private.
"""

from __future__ import annotations

from mimecast_connector.client._auth import (
    ApiVersion,
    Auth,
    HmacSigner,
    OAuth2ClientCredentials,
    TokenFetcher,
    sign_v1,
)
from mimecast_connector.client._client import (
    MAX_PAGE_SIZE,
    ClientOptions,
    MimecastClient,
    Page,
    check_base_url,
    format_time,
    is_loopback_host,
)
from mimecast_connector.client._http import MAX_IN_FLIGHT, HttpPool
from mimecast_connector.client._ratelimit import RateLimiter, parse_reset
from mimecast_connector.client._responses import (
    Outcome,
    Verdict,
    classify_failures,
    classify_status,
)
from mimecast_connector.client._retry import RetryPolicy

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_PAGE_SIZE",
    "ApiVersion",
    "Auth",
    "ClientOptions",
    "HmacSigner",
    "HttpPool",
    "MimecastClient",
    "OAuth2ClientCredentials",
    "Outcome",
    "Page",
    "RateLimiter",
    "RetryPolicy",
    "TokenFetcher",
    "Verdict",
    "check_base_url",
    "classify_failures",
    "classify_status",
    "format_time",
    "is_loopback_host",
    "parse_reset",
    "sign_v1",
]
