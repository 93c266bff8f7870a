"""Golden files of the OCSF format, one per category (reviewed by hand when written)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.alerts import LINE_ENCODERS
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain
from tests.unit import samples

GOLDEN = Path(__file__).parent / "golden"


#: One sample record of each category: the §12 samples and the rejection of mta-rejections.md §2.3.
CASES = [
    (Category.ATTACHMENT, samples.ATTACHMENT_LINE),
    (Category.IMPERSONATION, samples.IMPERSONATION_LINE),
    (Category.URL, samples.URL_CLICK_LINE),
    (Category.REJECTION, samples.REJECTION_LINE),
]


def test_every_category_has_a_golden_file() -> None:
    """No category is left without an OCSF golden file (a new one must add its own)."""
    assert [category for category, _ in CASES] == list(LOG_CATEGORIES)
    for category in LOG_CATEGORIES:
        assert (GOLDEN / f"ocsf-{category.value}.json").is_file()


@pytest.mark.parametrize(
    ("category", "record"), CASES, ids=lambda v: v.value if isinstance(v, Category) else ""
)
def test_ocsf_output_matches_its_golden_file(category: Category, record: bytes) -> None:
    """The OCSF line of each §12 sample (and the §2.3 rejection) equals its golden file, key for key."""
    handled = Chain("acme", category, load_table()).process([msgspec.Raw(record)], 0.0)
    got = json.loads(LINE_ENCODERS["ocsf"](handled.alerts))
    want = json.loads((GOLDEN / f"ocsf-{category.value}.json").read_text("utf-8"))
    assert got == want
    assert list(got) == list(want)
