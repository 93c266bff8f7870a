"""Golden files of the OCSF format, one per category (reviewed by hand when written)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from mimecast_connector import Category
from mimecast_connector.alerts import LINE_ENCODERS
from mimecast_connector.rules import load_table
from mimecast_connector.runner import Chain
from tests.unit import samples

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(
    ("category", "record"),
    [
        (Category.ATTACHMENT, samples.ATTACHMENT_LINE),
        (Category.IMPERSONATION, samples.IMPERSONATION_LINE),
        (Category.URL, samples.URL_CLICK_LINE),
    ],
    ids=lambda v: v.value if isinstance(v, Category) else "",
)
def test_ocsf_output_matches_its_golden_file(category: Category, record: bytes) -> None:
    """The OCSF line of each §12 sample equals its golden file, key for key."""
    handled = Chain("acme", category, load_table()).process([msgspec.Raw(record)], 0.0)
    got = json.loads(LINE_ENCODERS["ocsf"](handled.alerts))
    want = json.loads((GOLDEN / f"ocsf-{category.value}.json").read_text("utf-8"))
    assert got == want
    assert list(got) == list(want)
