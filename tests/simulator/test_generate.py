"""The record generator: coverage of every documented variant, determinism, realism, speed."""

from __future__ import annotations

import ipaddress
import re
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

from mimecast_connector import Category
from mimecast_connector._categories import LOG_CATEGORIES
from mimecast_connector.rules import load_table
from mimecast_connector.simulator import SimTenant, Simulator
from tests.simulator._helpers import NOW

DAY = timedelta(days=1)
START = NOW - DAY
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000")
FAKE_DOMAIN = re.compile(r"(^|\.)example\.(com|net|org)$|^examp1e-corp\.com$")
DOCUMENTATION_NETS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]
ATTACHMENT_FIELDS = {
    "senderAddress", "recipientAddress", "fileName", "fileType", "result", "actionTriggered",
    "date", "details", "route", "messageId", "subject", "fileHash", "definition",
}  # fmt: skip
URL_FIELDS = {
    "userEmailAddress", "fromUserEmailAddress", "url", "ttpDefinition", "subject", "action",
    "adminOverride", "userOverride", "scanResult", "category", "sendingIp",
    "userAwarenessAction", "date", "actions", "route", "creationMethod",
    "emailPartsDescription", "messageId",
}  # fmt: skip
IMPERSONATION_FIELDS = {
    "id", "senderAddress", "recipientAddress", "subject", "definition", "hits", "identifiers",
    "action", "taggedExternal", "taggedMalicious", "senderIpAddress", "eventTime",
    "impersonationResults", "messageId",
}  # fmt: skip
#: The fields of a rejection (mta-rejections.md §2.3).
REJECTION_FIELDS = {
    "id", "created", "description", "info", "type", "fromAddress", "toAddress",
    "toAddressPreCheck", "toAddressPostCheck", "ipAddress", "remoteName", "remoteEhlo",
    "manageRecipient", "spamScore", "detectionLevel",
}  # fmt: skip
#: The texts of Sophos's six alert types (alert-rules.md §4), copied by hand.
SOPHOS_SIX = (
    "IP Temporarily Blacklisted",
    "Submitter failed to authenticate",
    "Anti-Spoofing policy - Inbound not allowed",
    "Invalid Recipient",
    "Exceeding outbound thread limit",
    "Message bounced due to Content Examination Policy",
)
KB_LINK = " - https://community.mimecast.com/docs/DOC-1369#550"
SERVER_ID = re.compile(r" \[[0-9a-f]{8}\.mimecast\.example\]$")


@pytest.fixture(scope="module")
def generated() -> dict[Category, list[dict[str, Any]]]:
    tenant = Simulator(seed=7).add_tenant("acme")
    return {c: tenant.generate(c, count=3000, start=START, end=NOW) for c in LOG_CATEGORIES}


def groups(records: list[dict[str, Any]], *keys: str) -> list[list[dict[str, Any]]]:
    by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_key[tuple(record[k] for k in keys)].append(record)
    return [g for g in by_key.values() if len(g) > 1]


def test_attachment_records_cover_every_variant(generated: dict[Category, list[Any]]) -> None:
    """Attachment logs show all five results, null senders and multi-attachment messages (§5.3)."""
    records = generated[Category.ATTACHMENT]
    assert all(set(r) == ATTACHMENT_FIELDS for r in records)
    assert {r["result"] for r in records} == {"malicious", "safe", "clean", "timeout", "unknown"}
    assert any(r["senderAddress"] == "<>" for r in records)
    assert {"inbound", "outbound", "internal"} <= {r["route"] for r in records}
    assert all("\r\nTime taken: 0 hrs, 0 min, " in r["details"] for r in records)
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["fileHash"]) for r in records)
    assert len({r["fileHash"] for r in records}) == len(records)
    multi = groups(records, "messageId")
    assert multi, "one message with several attachments"
    for group in multi:
        assert len({r["date"] for r in group}) == 1
        assert len({r["fileName"] for r in group}) == len(group)
        assert len({r["fileHash"] for r in group}) == len(group)


def test_url_records_cover_every_variant(generated: dict[Category, list[Any]]) -> None:
    """Click logs show every scan result, internal IPs, empty definitions, both creation methods,
    multi-scanner tag maps, advanced phishing results and several users per URL (§7.3, §12.4)."""
    records = generated[Category.URL]
    assert all(
        URL_FIELDS <= set(r) <= URL_FIELDS | {"tagMap", "advancedPhishingResult"} for r in records
    )
    assert {r["scanResult"] for r in records} == {"malicious", "clean", "timeout"}
    internal = [r for r in records if r["route"] == "internal"]
    assert internal
    assert all(r["sendingIp"] == "Internal IP" for r in internal)
    assert any(r["ttpDefinition"] == "" for r in records)
    assert {r["creationMethod"] for r in records} == {"User Click", "Entry Scan"}
    assert any(len(r.get("tagMap", {})) >= 2 for r in records)
    assert {s for r in records for s in r.get("tagMap", {})} == {
        "UrlReputationScan", "DangerousFileExt", "AdvancedPhishing", "AvScanning",
        "CustomerManagedUrls",
    }  # fmt: skip
    assert any("advancedPhishingResult" in r for r in records)
    assert {r["actions"] for r in records} == {"Allow", "Block", "None", "Browser Isolation"}
    shared = groups(records, "messageId", "url")
    assert any(len({r["userEmailAddress"] for r in g}) > 1 for g in shared)


def test_impersonation_records_cover_every_variant(generated: dict[Category, list[Any]]) -> None:
    """Impersonation logs: both verdicts, hits == len(identifiers), partial results, unique ids."""
    records = generated[Category.IMPERSONATION]
    assert all(set(r) == IMPERSONATION_FIELDS for r in records)
    assert {r["taggedMalicious"] for r in records} == {True, False}
    assert all(r["hits"] == len(r["identifiers"]) >= 1 for r in records)
    assert all(len(set(r["identifiers"])) == len(r["identifiers"]) for r in records)
    items = [i for r in records for i in r["impersonationResults"]]
    assert any(len(i) < 4 for i in items)
    assert any(len(i) == 4 for i in items)
    assert all(r["id"].startswith("MTOKEN:") for r in records)
    assert len({r["id"] for r in records}) == len(records)
    assert {r["action"] for r in records} == {"none", "hold", "bounce"}


def undrift(text: str) -> str:
    """``text`` without the drift of mta-rejections.md §1, written here independently of the
    connector: dashes, spacing, a trailing KB link or server id, case."""
    plain = " ".join(text.replace("\u2013", "-").replace("\u2014", "-").split())
    return SERVER_ID.sub("", plain.removesuffix(KB_LINK)).casefold()


def test_rejection_records_cover_every_variant(generated: dict[Category, list[Any]]) -> None:
    """Rejections have the §2.3 fields, unique ids, ``type`` a number or (now and then) a
    string, missing ``info``, null and ``<>`` senders, and no subject."""
    records = generated[Category.REJECTION]
    assert all(set(r) == REJECTION_FIELDS for r in records)
    assert len({r["id"] for r in records}) == len(records)
    assert all(isinstance(r["id"], str) and r["id"] for r in records)
    types = [r["type"] for r in records]
    assert any(isinstance(t, int) for t in types)
    assert any(isinstance(t, str) for t in types)
    assert all(isinstance(t, int) or t.isdigit() for t in types)
    assert any(r["info"] is None for r in records)
    assert all(isinstance(r["description"], str) and r["description"] for r in records)
    assert {None, "<>"} <= {r["fromAddress"] for r in records}
    assert all(r["manageRecipient"] == "false" for r in records)
    assert all(isinstance(r["spamScore"], int) for r in records)


def test_rejections_carry_the_six_sophos_texts_with_real_drift(
    generated: dict[Category, list[Any]],
) -> None:
    """Each of Sophos's six texts appears verbatim in ``info``; the texts also come drifted as
    real data drifts (en dash, upper and lower case, a KB link, a server id); and the shipped
    phrases type every drifted Sophos text as its own alert type."""
    infos = [r["info"] for r in generated[Category.REJECTION] if r["info"] is not None]
    variants = {six: {i for i in infos if undrift(i) == six.casefold()} for six in SOPHOS_SIX}
    for six, seen in variants.items():
        assert six in seen, six
    drifted = {v for seen in variants.values() for v in seen}
    assert "Anti-Spoofing policy \u2013 Inbound not allowed" in drifted, "en dash"
    assert any(v.isupper() for v in drifted), "upper case"
    assert any(v.islower() for v in drifted), "lower case"
    assert any(v.endswith(KB_LINK) for v in drifted), "KB link"
    assert any(SERVER_ID.search(v) for v in drifted), "bracketed server id"
    texts = load_table().rejections
    for six, seen in variants.items():
        for variant in seen:
            found = texts.classify([variant])
            assert found is not None, variant
            assert found.alert_type == six, variant


def test_subjects_use_many_scripts(generated: dict[Category, list[Any]]) -> None:
    """Subjects include accented Latin, CJK, emoji and right-to-left text (rejections have none)."""
    with_subjects = [c for c in LOG_CATEGORIES if c is not Category.REJECTION]
    text = "".join(r["subject"] for c in with_subjects for r in generated[c])
    assert re.search(r"[À-ÿ]", text), "accents"
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", text), "CJK"
    assert re.search(r"[\U0001F300-\U0001FAFF]", text), "emoji"
    assert re.search(r"[\u0590-\u08ff]", text), "right-to-left"


def test_dates_addresses_and_ips_are_well_formed_and_fake(
    generated: dict[Category, list[Any]],
) -> None:
    """Times are ``+0000`` strings inside the range; domains are example ones; IPs documentation."""
    for category, records in generated.items():
        for record in records:
            moment = record[category.time_field]
            assert TIME.fullmatch(moment)
            assert (
                START.strftime("%Y-%m-%dT%H:%M:%S+0000")
                <= moment
                <= NOW.strftime("%Y-%m-%dT%H:%M:%S+0000")
            )
            for field in (
                "senderAddress",
                "recipientAddress",
                "userEmailAddress",
                "fromUserEmailAddress",
                "fromAddress",
                "toAddress",
            ):
                address = record.get(field, "x@example.com")
                if address is None:  # a rejection's sender may be null
                    assert (category, field) == (Category.REJECTION, "fromAddress")
                    continue
                assert address == "<>" or FAKE_DOMAIN.search(address.rpartition("@")[2]), address
            for field in ("senderIpAddress", "sendingIp", "ipAddress"):
                ip = record.get(field, "Internal IP")
                assert ip == "Internal IP" or any(
                    ipaddress.ip_address(ip) in net for net in DOCUMENTATION_NETS
                ), ip


def test_same_seed_and_calls_give_the_same_records() -> None:
    """Two simulators with one seed and one sequence of calls generate identical records."""

    def run(seed: int) -> list[list[Any]]:
        tenant = Simulator(seed=seed).add_tenant("acme")
        return [
            tenant.generate(c, count=200, start=START, end=NOW)
            for c in (*LOG_CATEGORIES, Category.URL)
        ]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other
    assert first[2] != first[-1], "a second call continues the stream instead of repeating it"


def test_tenants_with_one_seed_get_different_records(sim: Simulator) -> None:
    """Records depend on the tenant too: two tenants do not serve the same data."""
    a, b = sim.add_tenant("a"), sim.add_tenant("b")
    assert a.generate(Category.URL, count=50, start=START, end=NOW) != b.generate(
        Category.URL, count=50, start=START, end=NOW
    )


def test_returned_records_share_no_mutable_values(acme: SimTenant) -> None:
    """Changing one returned record (even a nested list) changes no other record."""
    records = acme.generate(Category.IMPERSONATION, count=500, start=START, end=NOW)
    snapshot = [repr(r) for r in records[1:]]
    records[0]["identifiers"].append("changed")
    records[0]["impersonationResults"][0]["checkerResult"] = "changed"
    assert [repr(r) for r in records[1:]] == snapshot
    assert "changed" not in repr(acme.records(Category.IMPERSONATION))


def test_generate_validates_its_arguments(acme: SimTenant) -> None:
    """A naive datetime, an inverted range and a negative count are refused."""
    with pytest.raises(ValueError, match="time zone"):
        acme.generate(Category.URL, count=1, start=START.replace(tzinfo=None), end=NOW)
    with pytest.raises(ValueError, match="after"):
        acme.generate(Category.URL, count=1, start=NOW, end=START)
    with pytest.raises(ValueError, match="count"):
        acme.generate(Category.URL, count=-1, start=START, end=NOW)


def test_generating_100k_records_is_fast(acme: SimTenant) -> None:
    """100,000 records are generated and stored in well under five seconds."""
    started = time.perf_counter()
    records = acme.generate(Category.URL, count=100_000, start=START, end=NOW)
    elapsed = time.perf_counter() - started
    assert len(records) == 100_000
    assert elapsed < 5.0, f"{elapsed:.2f} s"
