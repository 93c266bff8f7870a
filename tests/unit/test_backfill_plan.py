"""Backfill's pure parts: the range it may read, its request as text, the quota gate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mimecast_connector._categories import Category
from mimecast_connector.runner._backfill import (
    Backfill,
    Gate,
    lane_of,
    plan,
    read_requests,
    request_folder,
)
from tests.fakes import FakeClock

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def test_a_range_ends_a_second_before_the_live_stream_began() -> None:
    """The live stream began reading at B: a backfill asked to go past it stops at B - 1 s, and says so."""
    began = NOW - 2 * DAY
    made = plan(
        "acme",
        Category.URL,
        NOW - 20 * DAY,
        NOW,
        began=began,
        configured_start=None,
        has_cursor=True,
        now=NOW,
    )
    assert made.job is not None
    assert (made.job.start, made.job.end) == (NOW - 20 * DAY, began - timedelta(seconds=1))
    assert any("stops at" in note for note in made.notes)


def test_without_to_a_range_ends_where_the_live_stream_began() -> None:
    began = NOW - 2 * DAY
    made = plan(
        "acme",
        Category.URL,
        NOW - 5 * DAY,
        None,
        began=began,
        configured_start=None,
        has_cursor=True,
        now=NOW,
    )
    assert made.job is not None
    assert made.job.end == began - timedelta(seconds=1)
    assert made.notes == ()


def test_a_stream_never_polled_begins_at_its_start_or_now() -> None:
    """A new tenant: the backfill reads up to its configured start (or now), where its first live window will begin."""
    start = NOW - 3 * DAY
    with_start = plan(
        "acme", Category.ATTACHMENT, NOW - 10 * DAY, None,
        began=None, configured_start=start, has_cursor=False, now=NOW,
    )  # fmt: skip
    assert with_start.job is not None
    assert with_start.job.end == start - timedelta(seconds=1)
    without = plan(
        "acme", Category.ATTACHMENT, NOW - 10 * DAY, None,
        began=None, configured_start=None, has_cursor=False, now=NOW,
    )  # fmt: skip
    assert without.job is not None
    assert without.job.end == NOW - timedelta(seconds=1)


def test_an_old_stream_whose_beginning_is_unknown_needs_to() -> None:
    """A stream polled by a release that did not record where it began: without --to nothing is read, and the note says what to give."""
    made = plan(
        "acme", Category.URL, NOW - 10 * DAY, None,
        began=None, configured_start=None, has_cursor=True, now=NOW,
    )  # fmt: skip
    assert made.job is None
    assert any("give --to" in note for note in made.notes)
    given = plan(
        "acme", Category.URL, NOW - 10 * DAY, NOW - 5 * DAY,
        began=None, configured_start=None, has_cursor=True, now=NOW,
    )  # fmt: skip
    assert given.job is not None
    assert given.job.end == NOW - 5 * DAY


def test_asking_for_more_than_mimecast_keeps_says_so_before_it_starts() -> None:
    """TTP logs are kept about 30 days, rejections 7: a longer range is read (Mimecast may have more) but a note says what is probably gone."""
    ttp = plan(
        "acme", Category.IMPERSONATION, NOW - 45 * DAY, None,
        began=NOW, configured_start=None, has_cursor=True, now=NOW,
    )  # fmt: skip
    assert any("about 30 days" in note for note in ttp.notes)
    rejection = plan(
        "acme", Category.REJECTION, NOW - 10 * DAY, None,
        began=NOW, configured_start=None, has_cursor=True, now=NOW,
    )  # fmt: skip
    assert any("about 7 days" in note for note in rejection.notes)
    recent = plan(
        "acme", Category.REJECTION, NOW - 5 * DAY, None,
        began=NOW, configured_start=None, has_cursor=True, now=NOW,
    )  # fmt: skip
    assert recent.notes == ()


def test_a_range_wholly_after_the_beginning_reads_nothing() -> None:
    made = plan(
        "acme", Category.URL, NOW - DAY, NOW,
        began=NOW - 2 * DAY, configured_start=None, has_cursor=True, now=NOW,
    )  # fmt: skip
    assert made.job is None
    assert any("nothing before" in note for note in made.notes)


def test_a_request_round_trips_as_text_and_a_damaged_one_is_not_guessed_at(
    tmp_path: Path,
) -> None:
    job = Backfill("acme", Category.URL, NOW - 5 * DAY, NOW - DAY, 0.25)
    assert Backfill.parse(job.marker()) == (job, False)
    assert Backfill.parse(job.marker(done=True)) == (job, True)
    for broken in ("", "{", '{"tenant": "acme"}', job.marker().replace("0.25", "7")):
        assert Backfill.parse(broken) is None
    folder = request_folder(tmp_path / "state.db")
    assert folder == tmp_path / "state.db.backfill"
    folder.mkdir()
    (folder / "a.json").write_text(job.marker())
    (folder / "b.json").write_text("not json")
    jobs, bad = read_requests(folder)
    assert jobs == [job]
    assert [p.name for p, _ in bad] == ["b.json"]
    assert lane_of(Category.URL) == "url@backfill"


def test_covered_follows_the_cursor_through_the_range() -> None:
    job = Backfill("acme", Category.URL, NOW - 4 * DAY, NOW)
    assert job.covered(None) == 0.0
    assert job.covered(NOW - 3 * DAY) == pytest.approx(0.25)
    assert job.covered(NOW + DAY) == 1.0


async def test_the_gate_leaves_the_live_share_of_the_quota() -> None:
    """With half the quota for the backfill, a call waits while Remaining is at or under half the Limit, and calls are paced at half the refill rate."""
    clock = FakeClock()
    quota: list[tuple[int | None, int | None, float]] = [(None, None, 0.0)]
    gate = Gate(0.5, lambda: quota[0], clock)
    await gate.wait()  # nothing known: the first call goes and teaches the limiter
    assert clock.sleeps == []
    quota[0] = (80, 100, 0.1)
    await gate.wait()
    assert clock.sleeps == []
    await gate.wait()  # paced: one call every 0.1 / 0.5 s
    assert clock.sleeps == [pytest.approx(0.2)]
    quota[0] = (50, 100, 0.1)  # at the live share's edge: wait for one call to come back

    def refill() -> tuple[int | None, int | None, float]:
        remaining = 50 if len(clock.sleeps) < 4 else 60
        return remaining, 100, 0.1

    gate = Gate(0.5, refill, clock)
    before = len(clock.sleeps)
    await gate.wait()
    assert len(clock.sleeps) - before >= 3
    assert gate.waited == pytest.approx(sum(clock.sleeps[before:]))
