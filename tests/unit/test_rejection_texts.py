"""Rejection texts to alert types: the shipped phrases, normalisation, order, a user's phrases."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import pytest

from mimecast_connector import Category, ConfigError
from mimecast_connector.rules import RejectionTexts, load_table, normalise

#: The six Sophos alert types (alert-rules.md §4), copied by hand.
SOPHOS_SIX = [
    "IP Temporarily Blacklisted",
    "Submitter failed to authenticate",
    "Anti-Spoofing policy - Inbound not allowed",
    "Invalid Recipient",
    "Exceeding outbound thread limit",
    "Message bounced due to Content Examination Policy",
]


@pytest.fixture(scope="module")
def texts() -> RejectionTexts:
    return load_table().rejections


def shipped_rows() -> list[dict[str, str]]:
    text = resources.files("mimecast_connector").joinpath("data/rejection-texts.toml")
    rows: list[dict[str, str]] = tomllib.loads(text.read_text("utf-8"))["phrases"]
    return rows


@pytest.mark.parametrize("row", shipped_rows(), ids=lambda row: row["phrase"])
def test_every_shipped_phrase_gives_its_own_row(row: dict[str, str], texts: RejectionTexts) -> None:
    """Each phrase of the data file, as written there, is typed by its own row (no earlier phrase shadows it), and its alertType has an ATT&CK row."""
    found = texts.classify([row["phrase"]])
    assert found is not None
    assert (found.alert_type, found.severity, found.origin) == (
        row["alertType"],
        row["severity"],
        row["origin"],
    )
    assert load_table().rows[found.alert_type.casefold()]


def test_the_first_rows_are_the_six_sophos_types_verbatim(texts: RejectionTexts) -> None:
    """The first six phrases are Sophos's six names, each its own alertType; every other row is marked ours."""
    first = texts.types[:6]
    assert [t.alert_type for t in first] == SOPHOS_SIX
    assert [t.phrase for t in first] == [name.lower() for name in SOPHOS_SIX]
    assert {t.origin for t in first} == {"sophos"}
    assert {t.origin for t in texts.types[6:]} == {"ours"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Anti-Spoofing policy - Inbound not allowed",
            "anti-spoofing policy - inbound not allowed",
        ),
        (
            "Anti\u2013Spoofing policy \u2013 Inbound not allowed",
            "anti-spoofing policy - inbound not allowed",
        ),
        (
            "ANTI-SPOOFING POLICY \u2014 INBOUND NOT ALLOWED",
            "anti-spoofing policy - inbound not allowed",
        ),
        ("  Envelope   blocked\t-\nUser Entry ", "envelope blocked - user entry"),
        (
            "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550",
            "invalid recipient",
        ),
        ("Invalid Recipient [eu-smtp-inbound-1.mimecast.com]", "invalid recipient"),
        (
            "Invalid Recipient - https://community.mimecast.com/docs/DOC-1369#550 [AbC-123]",
            "invalid recipient",
        ),
        ("Invalid Recipient [AbC-123] - http://www.mimecast.com/x", "invalid recipient"),
        # Only a link to Mimecast goes, and only at the end.
        (
            "Invalid Recipient - https://example.com/why",
            "invalid recipient - https://example.com/why",
        ),
        ("See [this] Invalid Recipient", "see [this] invalid recipient"),
        ("", ""),
    ],
    ids=[
        "as-is",
        "en-dashes",
        "em-dash-upper",
        "whitespace",
        "mimecast-link",
        "bracketed-id",
        "link-then-id",
        "id-then-link",
        "other-link-kept",
        "inner-brackets-kept",
        "empty",
    ],
)
def test_normalise_takes_away_the_drift(text: str, expected: str) -> None:
    """Case, dashes, spacing and a trailing Mimecast link or bracketed id are normalised away; nothing else."""
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "alert_type"),
    [
        (
            "550 Anti\u2013Spoofing Policy \u2014 Inbound NOT allowed",
            "Anti-Spoofing policy - Inbound not allowed",
        ),
        (
            "451 IP temporarily blacklisted - https://community.mimecast.com/docs/DOC-1369#451",
            "IP Temporarily Blacklisted",
        ),
        ("Invalid Recipient Address", "Invalid Recipient"),
        ("535 Incorrect authentication data", "Submitter failed to authenticate"),
        ("Rejected: IP found in RBL", "Sender IP on a Block List"),
        ("DMARC Sender Invalid - envelope rejected", "DMARC Sender Invalid"),
        ("Envelope blocked \u2013 User Entry", "Envelope Blocked - User Entry"),
    ],
)
def test_a_text_with_drift_finds_its_type(
    text: str, alert_type: str, texts: RejectionTexts
) -> None:
    """Real-world spellings (codes before, dashes, case, suffixes, longer texts) find their alertType."""
    found = texts.classify([text])
    assert found is not None
    assert found.alert_type == alert_type


@pytest.mark.parametrize(
    "text",
    [
        "Invalid Recipients",  # a longer word: not the phrase
        "uninvalid recipient",
        "Accepted [rbl-check-7]",  # the phrase only inside a trailing server id
        "Message accepted",
        "",
    ],
)
def test_a_phrase_counts_only_word_bounded_and_outside_the_trailers(
    text: str, texts: RejectionTexts
) -> None:
    """A phrase inside a longer word, or only in the trailing bracketed id, is not found."""
    assert texts.classify([text]) is None


def test_fields_are_tried_in_the_order_given(texts: RejectionTexts) -> None:
    """The first field (in precedence order) in which a phrase is found decides; empty and missing fields are skipped."""
    found = texts.classify([None, "", "Mail loop detected"])
    assert found is not None
    assert found.alert_type == "Mail Loop Detected"
    found = texts.classify(["Too many recipients", "Invalid Recipient"])
    assert found is not None
    assert found.alert_type == "Too Many Recipients"
    found = texts.classify(["no phrase here", "Invalid Recipient"])
    assert found is not None
    assert found.alert_type == "Invalid Recipient"
    assert texts.classify([]) is None


def test_within_one_text_the_earlier_row_wins(texts: RejectionTexts) -> None:
    """A text holding two phrases takes the row that comes first in the table."""
    found = texts.classify(["Invalid Recipient; IP found in RBL"])
    assert found is not None
    assert found.alert_type == "Invalid Recipient"


def write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


def test_a_users_phrases_come_first_and_may_replace_a_shipped_one(tmp_path: Path) -> None:
    """[[rejections]] rows of the mapping file are tried before the shipped ones (severity defaults to medium); one equal to a shipped phrase replaces it."""
    user = write(
        tmp_path / "mapping.toml",
        """
[[rows]]
alertType = "Directory Harvest"
threatId = "T1589.002"
threatName = "Email Addresses"

[[rejections]]
phrase = "Invalid recipient address"
alertType = "Directory Harvest"

[[rejections]]
phrase = "MAIL LOOP detected"
alertType = "Mail Loop Detected"
severity = "high"
""",
    )
    texts = load_table(user).rejections
    found = texts.classify(["Invalid Recipient Address"])
    assert found is not None
    assert (found.alert_type, found.severity, found.origin) == (
        "Directory Harvest",
        "medium",
        "user",
    )
    loop = texts.classify(["Mail loop detected"])
    assert loop is not None
    assert (loop.severity, loop.origin) == ("high", "user")
    assert [t.phrase for t in texts.types].count("mail loop detected") == 1
    # A plain "Invalid Recipient" still takes the shipped row.
    plain = texts.classify(["Invalid Recipient"])
    assert plain is not None
    assert plain.alert_type == "Invalid Recipient"


def test_a_users_bad_phrases_are_all_reported_with_their_key_paths(tmp_path: Path) -> None:
    """Empty phrase, missing alertType, bad severity, an unknown key, a repeated phrase and an alertType without an ATT&CK row are each named."""
    user = write(
        tmp_path / "mapping.toml",
        """
[[rejections]]
phrase = "  "
alertType = "Invalid Recipient"

[[rejections]]
phrase = "relay denied"

[[rejections]]
phrase = "greylisted"
alertType = "Invalid Recipient"
severity = "critical"
colour = "red"

[[rejections]]
phrase = "Relay  Denied"
alertType = "Invalid Recipient"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_table(user)
    where = {path for path, _ in caught.value.problems}
    assert where == {
        "mapping.rejections[0].phrase",
        "mapping.rejections[1].alertType",
        "mapping.rejections[2].severity",
        "mapping.rejections[2].colour",
        "mapping.rejections[3].phrase",
    }
    unmapped = write(
        tmp_path / "unmapped.toml",
        '[[rejections]]\nphrase = "relay denied"\nalertType = "Relay Denied"\n',
    )
    with pytest.raises(ConfigError) as caught:
        load_table(unmapped)
    [(path, message)] = caught.value.problems
    assert path == "mapping.rejections"
    assert "'Relay Denied'" in message
    assert "[[rows]]" in message


def test_the_readme_phrase_table_is_the_shipped_table() -> None:
    """The README's phrase table lists every shipped phrase, in order, with the alertType,
    severity, ATT&CK row and origin the package ships (so the documentation cannot drift)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text("utf-8")
    lines = readme[readme.index("| phrase | alertType") :].splitlines()[2:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    rows = rows[: next((i for i, r in enumerate(lines) if not r.startswith("|")), len(rows))]
    table = load_table()
    shipped = [
        [
            t.phrase,
            t.alert_type,
            t.severity,
            "{0.threat_id} {0.threat_name}".format(table.lookup(t.alert_type, Category.REJECTION)),
            t.origin,
        ]
        for t in table.rejections.types
    ]
    documented = [[normalise(r[0]), r[1], r[2], r[3], r[4].lower()] for r in rows]
    assert documented == shipped
