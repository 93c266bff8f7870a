"""The `run --once` summary: a row per stream for small runs, totals and failures for large ones."""

from __future__ import annotations

import io

from rich.console import Console

from mimecast_connector import Category
from mimecast_connector._commands import FAILURES_SHOWN, TABLE_ROWS, summarize
from mimecast_connector._errors import UnavailableError
from mimecast_connector.runner import StreamResult


def results(count: int, failed: int) -> list[StreamResult]:
    out = []
    for n in range(count):
        r = StreamResult(f"tenant-{n}", Category.URL, alerts=2, pages=1, counts={"duplicates": 1})
        if n < failed:
            r.error = UnavailableError("down", tenant=r.tenant, endpoint="/x")
            r.message = f"tenant-{n} is down"
        out.append(r)
    return out


def printed(rows: list[StreamResult]) -> tuple[int, str]:
    buffer = io.StringIO()
    status = summarize(rows, Console(file=buffer, width=200, color_system=None))
    return status, buffer.getvalue()


def test_a_small_run_gets_a_row_per_stream() -> None:
    """Up to TABLE_ROWS streams: one table row each, every one named, exit 0 when none failed."""
    status, text = printed(results(TABLE_ROWS, 0))
    assert status == 0
    assert all(f"tenant-{n} " in text for n in range(TABLE_ROWS))


def test_a_large_run_is_summed_up_and_lists_only_its_failures() -> None:
    """3,000 streams, 3 failed: one totals line, the three failures with their messages, no row per stream, exit 1."""
    status, text = printed(results(3000, 3))
    assert status == 1
    assert "3000 streams, 2997 ok, 3 failed; 3000 pages, 6000 new alerts, 3000 duplicates" in text
    assert [f"tenant-{n} is down" in text for n in range(4)] == [True, True, True, False]
    assert "tenant-2999" not in text
    assert len(text.splitlines()) == 4


def test_many_failures_are_capped_with_a_count_of_the_rest() -> None:
    """200 failed streams: FAILURES_SHOWN are printed, then how many more and where to see them."""
    status, text = printed(results(500, 200))
    assert status == 1
    assert f"tenant-{FAILURES_SHOWN - 1} is down" in text
    assert f"tenant-{FAILURES_SHOWN} is down" not in text
    assert f"and {200 - FAILURES_SHOWN} more failed streams" in text
