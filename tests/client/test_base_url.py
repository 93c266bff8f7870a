"""Unit tests of base URL checking and of the request time format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mimecast_connector import ConfigError
from mimecast_connector.client import check_base_url, format_time


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.services.mimecast.com", "https://api.services.mimecast.com"),
        ("https://us-api.services.mimecast.com/", "https://us-api.services.mimecast.com"),
        ("https://eu-api.mimecast.com", "https://eu-api.mimecast.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.9.9.9:1", "http://127.9.9.9:1"),
        ("http://localhost:9000/", "http://localhost:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_accepts_https_anywhere_and_http_on_loopback(url: str, expected: str) -> None:
    """HTTPS hosts and loopback HTTP hosts are accepted, normalised without a trailing slash."""
    assert check_base_url(url) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.services.mimecast.com", "must use https"),
        ("http://10.0.0.5", "must use https"),
        ("http://127.0.0.1.evil.example", "must use https"),
        ("ftp://api.services.mimecast.com", "absolute URL"),
        ("api.services.mimecast.com", "absolute URL"),
        ("https://api.services.mimecast.com/api", "host only"),
        ("https://user:pw@api.services.mimecast.com", "user info"),
    ],
)
def test_refuses_plain_http_elsewhere_and_paths(url: str, problem: str) -> None:
    """Plain HTTP off loopback, other schemes, paths and user info are config errors naming the key."""
    with pytest.raises(ConfigError) as caught:
        check_base_url(url, key="tenants[0].base_url")
    assert problem in str(caught.value)
    assert "tenants[0].base_url" in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_format_time_is_utc_with_plus0000() -> None:
    """Request times are written YYYY-MM-DDTHH:MM:SS+0000 in UTC, whatever the input zone."""
    moment = datetime(2026, 11, 29, 18, 30, 5, 999_000, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2026-11-29T16:30:05+0000"
    assert format_time(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05+0000"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2026, 1, 2, 3, 4, 5))
