"""Golden tests of the product's rules: filter, alert type, ATT&CK table, severity (``alert-rules.md`` §2-4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimecast_connector import Category, ConfigError
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.records import (
    AttachmentLog,
    ClickLog,
    ImpersonationLog,
    Record,
    RejectionLog,
)
from mimecast_connector.rules import (
    CATEGORY_DEFAULT_TYPE,
    CLEAN_URL,
    DROP_REASONS,
    NOT_MALICIOUS_IMPERSONATION,
    SAFE_ATTACHMENT,
    UNMATCHED_REJECTION,
    AttackTable,
    Technique,
    Typed,
    build_rules,
    load_table,
    split_reason,
    url_alert_type,
)
from mimecast_connector.rules._rules import MAX_UNMATCHED_LABELS

ATT, IMP, URL = Category.ATTACHMENT, Category.IMPERSONATION, Category.URL
REJ = Category.REJECTION
TIME = "2025-03-04T09:12:45+0000"

#: alert-rules.md §4, copied by hand: the data file is checked against the spec, not itself.
SPEC_ROWS = [
    ("Impersonation Attempt", "T1598.003", "Spearphishing Link"),
    ("Unsafe Email Attachment", "T1598.002", "Spearphishing Attachment"),
    ("URL Protection", "T1598.003", "Spearphishing Link"),
    ("Default URL Protection", "T1598.003", "Spearphishing Link"),
    ("IP Temporarily Blacklisted", "TA0001", "Initial Access"),
    ("Submitter failed to authenticate", "T1078", "Valid Accounts"),
    ("Anti-Spoofing policy - Inbound not allowed", "T1598.003", "Spearphishing Link"),
    ("Invalid Recipient", "TA0005", "Defense Evasion"),
    ("Exceeding outbound thread limit", "T1041", "Exfiltration Over C2 Channel"),
    ("Message bounced due to Content Examination Policy", "T1598", "Phishing for Information"),
    ("Default Inbound URL Protect Definition", "T1598.003", "Spearphishing Link"),
]

#: Ours (issue 9): the rows of the rejection texts that are not Sophos's, and MTA Rejection.
OUR_REJECTION_ROWS = [
    ("Virus Signature Detected", "T1566.001", "Spearphishing Attachment"),
    ("SPF Sender Invalid", "T1672", "Email Spoofing"),
    ("DKIM Sender Invalid", "T1672", "Email Spoofing"),
    ("DMARC Sender Invalid", "T1672", "Email Spoofing"),
    ("Sender IP on a Block List", "T1566", "Phishing"),
    ("Envelope Blocked - User Entry", "T1566", "Phishing"),
    ("Envelope Blocked - Policy Entry", "T1566", "Phishing"),
    ("Host Network Not Allowed", "TA0001", "Initial Access"),
    ("Mail Loop Detected", "T1499", "Endpoint Denial of Service"),
    ("TLS Required", "TA0001", "Initial Access"),
    ("Too Many Recipients", "T1566", "Phishing"),
    ("MTA Rejection", "TA0001", "Initial Access"),
]


@pytest.fixture(scope="module")
def table() -> AttackTable:
    return load_table()


def attachment(result: str) -> AttachmentLog:
    return AttachmentLog(date=TIME, result=result)


def impersonation(tagged: bool, action: str | None = "hold") -> ImpersonationLog:
    return ImpersonationLog(id="MTOKEN:x", eventTime=TIME, taggedMalicious=tagged, action=action)


def click(
    scan: str = "malicious",
    *,
    ttp: str | None = "Default Inbound URL Protect Definition",
    creation: str | None = "User Click",
    reason: str | None = None,
    action: str | None = "warn",
) -> ClickLog:
    return ClickLog(
        date=TIME,
        scanResult=scan,
        url="https://x.test/",
        ttpDefinition=ttp,
        creationMethod=creation,
        reason=reason,
        action=action,
    )


def rejected(
    info: str | None = None, description: str | None = None, *, id_: str = "eNpVT1tPx"
) -> RejectionLog:
    return RejectionLog(id=id_, created=TIME, info=info, description=description)


def typed(category: Category, record: Record, table: AttackTable) -> Typed:
    verdict = build_rules(category, table)(record)
    assert isinstance(verdict, Typed), verdict
    return verdict


def write(path: Path, text: str) -> Path:
    path.write_text(text, "utf-8")
    return path


# --- §2.2 safe filter --------------------------------------------------------------------------


def test_drop_reasons_are_the_counted_names() -> None:
    """The drop reasons (counter names users see) are these four texts and no others."""
    assert SAFE_ATTACHMENT == "attachment result safe or clean"
    assert CLEAN_URL == "url scanResult clean"
    assert NOT_MALICIOUS_IMPERSONATION == "impersonation not taggedMalicious"
    assert UNMATCHED_REJECTION == "unmatched rejection"
    assert DROP_REASONS == (
        SAFE_ATTACHMENT,
        CLEAN_URL,
        NOT_MALICIOUS_IMPERSONATION,
        UNMATCHED_REJECTION,
    )


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (SAFE_ATTACHMENT, (SAFE_ATTACHMENT, None)),
        ("unmatched rejection\x1fGreylisting", (UNMATCHED_REJECTION, "Greylisting")),
        ("unmatched rejection\x1f", (UNMATCHED_REJECTION, "")),
    ],
)
def test_split_reason_parts_a_reason_from_its_detail(
    reason: str, expected: tuple[str, str | None]
) -> None:
    """A drop reason carries its detail (a description) after a unit separator, or none."""
    assert split_reason(reason) == expected


@pytest.mark.parametrize("result", ["safe", "SAFE", "Safe", "clean", "CLEAN", "cLeAn"])
def test_safe_or_clean_attachments_are_dropped_in_any_case(result: str, table: AttackTable) -> None:
    """An attachment whose result is safe or clean, in any case, is dropped with its reason."""
    assert build_rules(ATT, table)(attachment(result)) == SAFE_ATTACHMENT


@pytest.mark.parametrize(
    "result",
    ["malicious", "MALICIOUS", "unsafe", "timeout", "unknown", "error", "sandbox-v2-pending"],
)
def test_every_other_attachment_result_is_kept(result: str, table: AttackTable) -> None:
    """Malicious and unknown verdicts (timeout, error, brand-new values) become alerts."""
    verdict = typed(ATT, attachment(result), table)
    assert verdict.alert_type == "Unsafe Email Attachment"


@pytest.mark.parametrize("scan", ["clean", "CLEAN", "Clean"])
def test_clean_urls_are_dropped_in_any_case(scan: str, table: AttackTable) -> None:
    """A click whose scanResult is clean, in any case, is dropped with its reason."""
    assert build_rules(URL, table)(click(scan)) == CLEAN_URL


@pytest.mark.parametrize(
    "scan", ["malicious", "Malicious", "timeout", "error", "unknown", "suspicious"]
)
def test_every_other_url_verdict_is_kept(scan: str, table: AttackTable) -> None:
    """Malicious and unknown scan results become alerts."""
    assert typed(URL, click(scan), table).alert_type == "Default Inbound URL Protect Definition"


def test_impersonation_is_kept_only_when_tagged_malicious(table: AttackTable) -> None:
    """taggedMalicious false is dropped with its reason; true becomes an Impersonation Attempt."""
    rules = build_rules(IMP, table)
    assert rules(impersonation(False)) == NOT_MALICIOUS_IMPERSONATION
    kept = rules(impersonation(True))
    assert isinstance(kept, Typed)
    assert kept.alert_type == "Impersonation Attempt"


# --- §3 alert type -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ttp", "creation", "reason", "expected"),
    [
        pytest.param(None, "User Click", None, "User Click", id="ttp-missing"),
        pytest.param("", "Entry Scan", None, "Entry Scan", id="ttp-empty"),
        pytest.param(None, "Entry Scan", "ignored", "Entry Scan", id="ttp-missing-reason-ignored"),
        pytest.param(None, None, None, "URL Protection", id="both-missing"),
        pytest.param("", "", None, "URL Protection", id="both-empty"),
        pytest.param("", None, "ignored", "URL Protection", id="ttp-empty-creation-missing"),
        pytest.param("Inbound URL 'Aggressive'", "User Click", "Phishing kit", "Phishing kit", id="reason"),
        pytest.param("Inbound URL 'Aggressive'", "User Click", "", "Inbound URL 'Aggressive'", id="reason-empty"),
        pytest.param("Inbound URL 'Aggressive'", "User Click", None, "Inbound URL 'Aggressive'", id="reason-missing"),
    ],
)  # fmt: skip
def test_every_branch_of_the_url_alert_type_rule(
    ttp: str | None, creation: str | None, reason: str | None, expected: str, table: AttackTable
) -> None:
    """URL alertType: creationMethod when ttpDefinition is empty (then URL Protection), else reason or ttpDefinition."""
    record = click(ttp=ttp, creation=creation, reason=reason)
    assert url_alert_type(record) == expected
    assert typed(URL, record, table).alert_type == expected


@pytest.mark.parametrize(
    ("category", "record", "expected"),
    [
        (ATT, attachment("malicious"), "Unsafe Email Attachment"),
        (IMP, impersonation(True), "Impersonation Attempt"),
    ],
)
def test_attachment_and_impersonation_have_one_alert_type(
    category: Category, record: Record, expected: str, table: AttackTable
) -> None:
    """Attachment alerts are Unsafe Email Attachment; impersonation alerts Impersonation Attempt."""
    assert typed(category, record, table).alert_type == expected


# --- rejections (data/rejection-texts.toml) ---------------------------------------------------


@pytest.mark.parametrize(
    ("info", "description", "expected"),
    [
        pytest.param(
            "Invalid Recipient", "Invalid Recipient Address",
            Typed("Invalid Recipient", "TA0005", "Defense Evasion", "low"), id="info",
        ),
        pytest.param(
            "Anti-Spoofing policy - Inbound not allowed", "Virus Signature Detection",
            Typed("Anti-Spoofing policy - Inbound not allowed", "T1598.003", "Spearphishing Link", "high"),
            id="info-before-description",
        ),
        pytest.param(
            "Message contains a virus: Sim.Test.Signature-1", "Virus Signature Detection",
            Typed("Virus Signature Detected", "T1566.001", "Spearphishing Attachment", "high"),
            id="description-when-info-matches-nothing",
        ),
        pytest.param(
            None, "Virus Signature Detection",
            Typed("Virus Signature Detected", "T1566.001", "Spearphishing Attachment", "high"),
            id="description-when-info-is-missing",
        ),
        pytest.param(
            "IP TEMPORARILY BLACKLISTED [0a1b2c3d.mimecast.example]", None,
            Typed("IP Temporarily Blacklisted", "TA0001", "Initial Access", "medium"),
            id="drift-upper-case-and-server-id",
        ),
        pytest.param(
            "submitter failed to authenticate - https://community.mimecast.com/docs/DOC-1369#550",
            "Authentication Failure",
            Typed("Submitter failed to authenticate", "T1078", "Valid Accounts", "high"),
            id="drift-lower-case-and-kb-link",
        ),
    ],
)  # fmt: skip
def test_a_rejection_is_typed_by_its_info_then_its_description(
    info: str | None, description: str | None, expected: Typed, table: AttackTable
) -> None:
    """The phrase found in ``info`` types the alert; ``description`` only when ``info`` has none;
    the alert type's row gives the ATT&CK technique."""
    assert typed(REJ, rejected(info, description), table) == expected


@pytest.mark.parametrize(
    ("info", "description", "reason"),
    [
        ("Greylisting in action", "Greylisting", "unmatched rejection\x1fGreylisting"),
        (None, "  Message   Size\tLimit ", "unmatched rejection\x1fMessage Size Limit"),
        ("Message rejected as spam", None, "unmatched rejection\x1f(no description)"),
        ("Message rejected as spam", "", "unmatched rejection\x1f(no description)"),
        (None, None, "unmatched rejection\x1f(no description)"),
        ("x", "D" * 200, "unmatched rejection\x1f" + "D" * 80),
    ],
)
def test_an_unmatched_rejection_is_dropped_with_its_description(
    info: str | None, description: str | None, reason: str, table: AttackTable
) -> None:
    """No phrase in either text: dropped as unmatched, the description (whitespace collapsed,
    cut to 80 characters) after a unit separator so the counters can name it."""
    dropped = build_rules(REJ, table)(rejected(info, description))
    assert dropped == reason
    assert isinstance(dropped, str)
    assert split_reason(dropped)[0] == UNMATCHED_REJECTION


def test_unmatched_descriptions_are_named_up_to_a_bound_then_other(table: AttackTable) -> None:
    """One stream's rules name at most MAX_UNMATCHED_LABELS descriptions; later new ones are
    "(other)", while the ones already named keep their names."""
    assert MAX_UNMATCHED_LABELS == 64
    rules = build_rules(REJ, table)
    names = [f"Description {n}" for n in range(MAX_UNMATCHED_LABELS)]
    for name in names:
        assert rules(rejected("no phrase here", name)) == f"{UNMATCHED_REJECTION}\x1f{name}"
    other = f"{UNMATCHED_REJECTION}\x1f(other)"
    assert rules(rejected("no phrase here", "One Too Many")) == other
    assert rules(rejected("something else", "And Another")) == other
    assert rules(rejected("no phrase here", names[0])) == f"{UNMATCHED_REJECTION}\x1f{names[0]}"
    assert rules(rejected("another text", names[-1])) == f"{UNMATCHED_REJECTION}\x1f{names[-1]}"
    # A matched text is typed as ever once the bound is reached.
    matched = rules(rejected("Invalid Recipient"))
    assert isinstance(matched, Typed)
    assert matched.alert_type == "Invalid Recipient"
    # The bound is per stream: fresh rules name a new description again.
    fresh = build_rules(REJ, table)
    assert fresh(rejected("no phrase here", "One Too Many")) == (
        f"{UNMATCHED_REJECTION}\x1fOne Too Many"
    )


def test_keep_unmatched_rejections_makes_them_low_mta_rejections(table: AttackTable) -> None:
    """With ``keep_unmatched_rejections`` an unmatched rejection is an MTA Rejection of low
    severity (its own ATT&CK row); a matched one is typed by its phrase as before."""
    rules = build_rules(REJ, table, keep_unmatched_rejections=True)
    assert rules(rejected("Greylisting in action", "Greylisting")) == Typed(
        "MTA Rejection", "TA0001", "Initial Access", "low"
    )
    assert rules(rejected(None, None)) == Typed("MTA Rejection", "TA0001", "Initial Access", "low")
    assert rules(rejected("Invalid Recipient", "Invalid Recipient Address")) == Typed(
        "Invalid Recipient", "TA0005", "Defense Evasion", "low"
    )
    assert CATEGORY_DEFAULT_TYPE[REJ] == "MTA Rejection"


def test_keep_unmatched_rejections_changes_no_other_category(table: AttackTable) -> None:
    """The option is about rejections: a safe attachment is still dropped with it set."""
    rules = build_rules(ATT, table, keep_unmatched_rejections=True)
    assert rules(attachment("safe")) == SAFE_ATTACHMENT


# --- §4 ATT&CK table ---------------------------------------------------------------------------


def test_default_table_has_exactly_the_spec_rows_and_ours(table: AttackTable) -> None:
    """The shipped table holds the eleven §4 rows and our rejection rows, nothing else, checked against ATT&CK v18."""
    expected = SPEC_ROWS + OUR_REJECTION_ROWS
    assert set(table.rows) == {alert_type.casefold() for alert_type, _, _ in expected}
    for alert_type, threat_id, threat_name in OUR_REJECTION_ROWS:
        assert table.rows[alert_type.casefold()] == Technique(threat_id, threat_name)
    assert table.attack_version == "v18"


@pytest.mark.parametrize(("alert_type", "threat_id", "threat_name"), SPEC_ROWS)
def test_every_default_row_matches_the_spec(
    alert_type: str, threat_id: str, threat_name: str, table: AttackTable
) -> None:
    """Each §4 row looks up to its threatId and threatName, in every category, and via a URL alert."""
    for category in LOG_CATEGORIES:
        assert table.lookup(alert_type, category) == Technique(threat_id, threat_name)
    verdict = typed(URL, click(ttp=alert_type), table)
    assert (verdict.alert_type, verdict.threat_id, verdict.threat_name) == (
        alert_type,
        threat_id,
        threat_name,
    )


@pytest.mark.parametrize(
    "spelling",
    ["  Submitter failed to authenticate", "SUBMITTER FAILED TO AUTHENTICATE\t", "submitter Failed to Authenticate \n"],
)  # fmt: skip
def test_lookup_trims_and_case_folds(spelling: str, table: AttackTable) -> None:
    """Lookups ignore surrounding whitespace and case: they find the row, not the category default."""
    assert table.lookup(spelling, URL) == Technique("T1078", "Valid Accounts")
    verdict = typed(URL, click(ttp=spelling), table)
    assert (verdict.threat_id, verdict.alert_type) == ("T1078", spelling)


DISTINCT_DEFAULTS = """
[[rows]]
alertType = "Unsafe Email Attachment"
threatId = "T1566.001"
threatName = "Spearphishing Attachment"

[[rows]]
alertType = "Impersonation Attempt"
threatId = "T1656"
threatName = "Impersonation"

[[rows]]
alertType = "URL Protection"
threatId = "T1566.002"
threatName = "Spearphishing Link"

[[rows]]
alertType = "MTA Rejection"
threatId = "T1566"
threatName = "Phishing"
"""


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        (ATT, Technique("T1566.001", "Spearphishing Attachment")),
        (IMP, Technique("T1656", "Impersonation")),
        (URL, Technique("T1566.002", "Spearphishing Link")),
        (REJ, Technique("T1566", "Phishing")),
    ],
)
def test_an_unknown_alert_type_takes_its_category_default_row(
    category: Category, expected: Technique, tmp_path: Path
) -> None:
    """An alertType not in the table gets the row of its category's default (made distinct here)."""
    table = load_table(write(tmp_path / "m.toml", DISTINCT_DEFAULTS))
    assert CATEGORY_DEFAULT_TYPE[category].casefold() in table.rows
    assert table.lookup("A Type Nobody Has Seen", category) == expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            click(ttp="Inbound URL 'Aggressive'"),
            Typed("Inbound URL 'Aggressive'", "T1566.002", "Spearphishing Link", "high"),
        ),
        (
            click(ttp="", creation="Entry Scan"),
            Typed("Entry Scan", "T1566.002", "Spearphishing Link", "medium"),
        ),
    ],
)
def test_an_unknown_url_alert_type_keeps_its_own_name(
    record: ClickLog, expected: Typed, tmp_path: Path
) -> None:
    """A URL alert of an unknown type carries its own alertType with the URL Protection row."""
    table = load_table(write(tmp_path / "m.toml", DISTINCT_DEFAULTS))
    assert typed(URL, record, table) == expected


def test_attachment_and_impersonation_rows_come_from_the_table(tmp_path: Path) -> None:
    """Overriding a category's default row changes that category's alerts (nothing is hard-coded)."""
    table = load_table(write(tmp_path / "m.toml", DISTINCT_DEFAULTS))
    assert typed(ATT, attachment("malicious"), table).threat_id == "T1566.001"
    assert typed(IMP, impersonation(True), table).threat_id == "T1656"


# --- severity (the table in _rules.py's docstring) ---------------------------------------------


@pytest.mark.parametrize(
    ("category", "record", "severity"),
    [
        (ATT, attachment("malicious"), "high"),
        (ATT, attachment("Malicious"), "high"),
        (ATT, attachment("unsafe"), "high"),
        (ATT, attachment("timeout"), "medium"),
        (ATT, attachment("error"), "medium"),
        (ATT, attachment("unknown"), "medium"),
        (ATT, attachment("brand-new"), "medium"),
        (URL, click("malicious", creation="User Click", action="warn"), "high"),
        (URL, click("malicious", creation="user click", action="allow"), "high"),
        (URL, click("malicious", creation="User Click", action=None), "high"),
        (URL, click("malicious", creation="User Click", action="block"), "medium"),
        (URL, click("malicious", creation="User Click", action="BLOCK"), "medium"),
        (URL, click("malicious", creation="Entry Scan", action="warn"), "medium"),
        (URL, click("malicious", creation=None, action="warn"), "medium"),
        (URL, click("timeout", creation="User Click", action="warn"), "low"),
        (URL, click("error", creation="User Click", action="allow"), "low"),
        (URL, click("unknown", creation="Entry Scan", action="block"), "low"),
        (IMP, impersonation(True, action="none"), "high"),
        (IMP, impersonation(True, action="None"), "high"),
        (IMP, impersonation(True, action=""), "high"),
        (IMP, impersonation(True, action=None), "high"),
        (IMP, impersonation(True, action="hold"), "medium"),
        (IMP, impersonation(True, action="bounce"), "medium"),
        (IMP, impersonation(True, action="delete"), "medium"),
    ],
)
def test_severity_table(
    category: Category, record: Record, severity: str, table: AttackTable
) -> None:
    """Severity follows the documented table of verdict and action, per category."""
    assert typed(category, record, table).severity == severity


# --- the user's mapping file -------------------------------------------------------------------


def test_a_user_file_overrides_and_adds_rows(tmp_path: Path) -> None:
    """A user row replaces the default of the same alertType (any case) and a new row is added."""
    user = write(
        tmp_path / "mapping.toml",
        """
attack_version = "v19"

[[rows]]
alertType = "  unsafe EMAIL attachment "
threatId = "T1566.001"
threatName = " Spearphishing Attachment "

[[rows]]
alertType = "Inbound URL 'Aggressive'"
threatId = "T1566.002"
threatName = "Spearphishing Link"
""",
    )
    table = load_table(user)
    assert table.attack_version == "v19"
    assert len(table.rows) == len(SPEC_ROWS) + len(OUR_REJECTION_ROWS) + 1
    assert table.lookup("Unsafe Email Attachment", ATT) == Technique(
        "T1566.001", "Spearphishing Attachment"
    )
    assert table.lookup("inbound url 'aggressive'", URL) == Technique(
        "T1566.002", "Spearphishing Link"
    )
    assert table.lookup("Invalid Recipient", URL) == Technique("TA0005", "Defense Evasion")
    assert typed(ATT, attachment("malicious"), table).threat_id == "T1566.001"


def test_a_user_file_cannot_remove_rows(tmp_path: Path) -> None:
    """A user file with no rows leaves every default row in place (merging only adds or replaces)."""
    table = load_table(write(tmp_path / "m.toml", "rows = []\n"))
    assert table == load_table()


def test_every_mapping_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Bad IDs, empty names, unknown keys and a repeated alertType all come back in one ConfigError."""
    user = write(
        tmp_path / "m.toml",
        """
colour = "blue"

[[rows]]
alertType = "One"
threatId = "T15"
threatName = "x"

[[rows]]
alertType = "Two"
threatId = "TA01"
threatName = "x"

[[rows]]
alertType = "Three"
threatId = "t1598.003"
threatName = "x"

[[rows]]
alertType = "Four"
threatId = "T1078"
threatName = ""

[[rows]]
alertType = "Five"
threatId = "T1078"
threatName = "x"
tactic = "TA0001"

[[rows]]
alertType = " one "
threatId = "T1078"
threatName = "x"

[[rows]]
alertType = ""
threatId = "T1078"
threatName = "x"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_table(user)
    id_problem = "must be an ATT&CK id like TA0001, T1078 or T1598.003"
    assert caught.value.problems == [
        ("mapping.colour", "unknown key"),
        ("mapping.rows[0].threatId", id_problem),
        ("mapping.rows[1].threatId", id_problem),
        ("mapping.rows[2].threatId", id_problem),
        ("mapping.rows[3].threatName", "must be a non-empty string"),
        ("mapping.rows[4].tactic", "unknown key"),
        ("mapping.rows[5].alertType", "' one ' appears twice in this file"),
        ("mapping.rows[6].alertType", "must be a non-empty string"),
    ]
    assert "mapping.rows[2].threatId" in str(caught.value)


@pytest.mark.parametrize("threat_id", ["TA0001", "T1078", "T1598.003", "T1566.001"])
def test_valid_attack_ids_are_accepted(threat_id: str, tmp_path: Path) -> None:
    """Tactic, technique and sub-technique IDs of the documented shapes load."""
    text = f'[[rows]]\nalertType = "X"\nthreatId = "{threat_id}"\nthreatName = "Y"\n'
    assert load_table(write(tmp_path / "m.toml", text)).lookup("x", URL).threat_id == threat_id


@pytest.mark.parametrize(
    "threat_id", ["T15", "TA01", "t1598.003", "T1598.3", "TA0001.001", " T1078", "T10780"]
)
def test_malformed_attack_ids_are_refused(threat_id: str, tmp_path: Path) -> None:
    """IDs that are not TA####, T#### or T####.### are refused with the row's key path."""
    text = f'[[rows]]\nalertType = "X"\nthreatId = "{threat_id}"\nthreatName = "Y"\n'
    with pytest.raises(ConfigError) as caught:
        load_table(write(tmp_path / "m.toml", text))
    assert [path for path, _ in caught.value.problems] == ["mapping.rows[0].threatId"]


def test_an_unreadable_mapping_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing file, a folder, or a file that is not TOML is reported under ``mapping``."""
    for path, problem in [
        (tmp_path / "absent.toml", "cannot read"),
        (tmp_path, "cannot read"),
        (write(tmp_path / "bad.toml", "[[rows]\n"), "is not valid TOML"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_table(path)
        assert len(caught.value.problems) == 1
        key, message = caught.value.problems[0]
        assert key == "mapping"
        assert problem in message
        assert str(path) in message


def test_a_mapping_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """A mapping file in Latin-1 is a ConfigError under ``mapping``, not a crash."""
    path = tmp_path / "m.toml"
    path.write_bytes(b'[[rows]]\nalertType = "caf\xe9"\nthreatId = "T1078"\nthreatName = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_table(path)
    assert caught.value.problems[0][0] == "mapping"


def test_rows_of_the_wrong_type_are_reported_with_the_other_problems(tmp_path: Path) -> None:
    """``rows = 3`` and an unknown key are both reported, not only the first one met."""
    with pytest.raises(ConfigError) as caught:
        load_table(write(tmp_path / "m.toml", "colour = 1\nattack_version = 19\nrows = 3\n"))
    assert [path for path, _ in caught.value.problems] == [
        "mapping.colour",
        "mapping.attack_version",
        "mapping.rows",
    ]


def test_a_row_with_a_bad_alert_type_still_reports_its_other_problems(tmp_path: Path) -> None:
    """An empty alertType, a bad threatId and an empty threatName in one row are three problems."""
    text = '[[rows]]\nalertType = ""\nthreatId = "T15"\nthreatName = ""\n'
    with pytest.raises(ConfigError) as caught:
        load_table(write(tmp_path / "m.toml", text))
    assert [path for path, _ in caught.value.problems] == [
        "mapping.rows[0].alertType",
        "mapping.rows[0].threatId",
        "mapping.rows[0].threatName",
    ]


def test_a_repeated_alert_type_is_reported_even_after_a_broken_row(tmp_path: Path) -> None:
    """The second row of an alertType is a problem even when the first row has a problem too."""
    text = (
        '[[rows]]\nalertType = "A"\nthreatId = 5\nthreatName = "x"\n'
        '[[rows]]\nalertType = "a"\nthreatId = "T1078"\nthreatName = "x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_table(write(tmp_path / "m.toml", text))
    assert [path for path, _ in caught.value.problems] == [
        "mapping.rows[0].threatId",
        "mapping.rows[1].alertType",
    ]
