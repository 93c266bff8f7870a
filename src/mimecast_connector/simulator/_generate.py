"""Seeded, realistic TTP log records: the simulator's only source of invented content.

A :class:`RecordFactory` owns one ``random.Random`` seeded from a string, so the same seed material
and the same sequence of calls give the same records in any process; its docstring says how it
stays fast. Every field and variant comes from ``shared/docs/mimecast-api.md``: attachment records
§5.3 and §12.2, impersonation records §6.3 and §12.3, URL (click) records §7.3 and §12.4. The mix
is deliberately uneven, so that the rare shapes a connector must survive turn up in a few thousand
records:

* attachment ``result`` malicious / safe / clean / timeout / unknown; null sender ``<>``; several
  attachments of one message (same ``messageId`` and ``date``, different file name and hash);
* URL ``scanResult`` malicious / clean and a rare ``timeout``; ``sendingIp`` ``Internal IP`` on the
  internal route; an empty ``ttpDefinition`` now and then; ``creationMethod`` ``User Click`` and
  ``Entry Scan``; ``tagMap`` with one to three scanners; ``advancedPhishingResult``; several users
  clicking the same URL of the same message;
* impersonation ``taggedMalicious`` true and false, ``hits == len(identifiers)``, result items with
  some keys missing, and a unique ``MTOKEN:`` id;
* subjects with accents, CJK, emoji and right-to-left scripts;
* rejections (``mta-rejections.md`` §2.3) with the six texts of Sophos's alert types, other
  texts of Mimecast's KB and texts no phrase matches, worded with the drift real data has (case,
  en and em dashes, doubled spaces, a trailing link to Mimecast's KB or a bracketed server id,
  a missing ``info``), ``type`` now and then a string, a null or ``<>`` sender.

Domains are names under example.com / example.net / example.org (RFC 2606), plus the one
look-alike ``examp1e-corp.com`` of the spec's own example; IP addresses come from the
documentation ranges (RFC 5737, RFC 3849). Nothing here touches the network.
"""

from __future__ import annotations

import base64
import itertools
import random
from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeAlias

from mimecast_connector._categories import LOG_CATEGORIES, Category
from mimecast_connector.simulator._times import format_time

Record: TypeAlias = dict[str, Any]
Timed: TypeAlias = tuple[int, Record]
"""A record with its event time in epoch seconds."""

_PEOPLE = (
    "a.khan", "m.ortiz", "r.singh", "dana.lee", "j.okafor", "s.nakamura", "l.rossi", "p.nowak",
    "e.haddad", "t.nguyen", "k.andersen", "f.dubois", "c.mendes", "y.cohen", "o.petrov",
    "h.schmidt", "n.osei", "i.sato", "b.gallagher", "z.wang", "finance", "payroll", "it-helpdesk",
    "ops", "hr", "reception", "ceo", "legal",
)  # fmt: skip
_DISPLAY_NAMES = (
    "Dana Lee",
    "Akira Sato",
    "Laura Rossi",
    "Omar Haddad",
    "Grace Okafor",
    "CFO Office",
)
_EXTERNAL_DOMAINS = (
    "invoices.example.net", "parcel-notify.example.net", "mail.example.org", "lists.example.org",
    "docs-share.example.net", "secure-login.example.org", "payroll-update.example.net",
    "partner.example.org", "vendor-portal.example.net", "news.example.org",
)  # fmt: skip
# Look-alikes of the tenants' example.com domains; all but the first stay under example.* names.
_LOOKALIKE_DOMAINS = (
    "examp1e-corp.com",
    "exarnple.example.net",
    "example-c0rp.example.org",
    "examp1e.example.com",
)
_IP_PREFIXES = ("192.0.2", "198.51.100", "203.0.113")
_DICTIONARY_WORDS = ("who", "wire transfer", "urgent", "gift cards", "bank details", "invoice")

_ASCII_SUBJECTS = (
    "Remittance advice {n}", "Invoice INV-{n} overdue", "Q{q} agenda", "Delivery attempt failed",
    "Your mailbox is almost full", "Urgent wire today", "Shared document: contract_{n}",
    "Password expires in 2 days", "Updated bank details", "Meeting notes", "Purchase order {n}",
    "Re: payment status", "Tool", "Weekly report", "Action required: verify your account",
)  # fmt: skip
_UNICODE_SUBJECTS = (
    "Facture impayée – échéance aujourd’hui",  # noqa: RUF001 - accents and typographic dashes
    "Überweisung: Bestätigung erforderlich",
    "Confirmación de pago pendiente nº {n}",
    "請求書の確認をお願いします",  # CJK
    "您的邮箱即将过期",
    "📦 Delivery attempt failed",  # emoji
    "🔒 Password expires today ⚠️",
    "فاتورة مستحقة الدفع",  # right-to-left
    "חשבונית לתשלום מיידי",
    "Счёт на оплату №{n}",
)

_FILES: tuple[tuple[str, str], ...] = (
    ("Remittance_{n}.xlsm", "application/vnd.ms-excel.sheet.macroEnabled.12"),
    ("invoice_{n}.pdf", "application/pdf"),
    ("agenda.pdf", "application/pdf"),
    ("Q{q}_report.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("statement.rtf", "text/rtf"),
    ("scan_{n}.zip", "application/zip"),
    ("contract_draft.docx",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("payment_{n}.html", "text/html"),
    ("setup.iso", "application/x-iso9660-image"),
    ("Résumé_Zoë.pdf", "application/pdf"),
)  # fmt: skip
_ACTIONS_TRIGGERED = ("none", "none, none", "user release, none")

#: Rejection log rows: (description, info, type number, weight). The first six carry the texts
#: of Sophos's six alert types; then other KB texts; the last ones match no phrase of the
#: shipped table (``Virus Signature Detection`` is found in the description, not the info).
_REJECTIONS = (
    ("Connection Limit Exceeded", "IP Temporarily Blacklisted", 14020, 4),
    ("Authentication Failure", "Submitter failed to authenticate", 14031, 2),
    ("Anti-Spoofing Lockout", "Anti-Spoofing policy - Inbound not allowed", 14040, 4),
    ("Invalid Recipient Address", "Invalid Recipient", 14012, 10),
    ("Thread Limit", "Exceeding outbound thread limit", 14050, 1),
    ("Content Examination Policy", "Message bounced due to Content Examination Policy", 14060, 3),
    ("Authentication Failure", "Incorrect authentication data", 14032, 1),
    ("Virus Signature Detection", "Message contains a virus: Sim.Test.Signature-1", 14030, 3),
    ("SPF Sender Invalid", "SPF Sender Invalid - envelope rejected", 14070, 2),
    ("DKIM Sender Invalid", "DKIM Sender Invalid - envelope rejected", 14071, 1),
    ("DMARC Sender Invalid", "DMARC Sender Invalid - envelope rejected", 14072, 2),
    ("IP Found In RBL", "Access denied, IP address found on RBL", 14080, 3),
    ("Manual Envelope Rejection", "Envelope blocked - User Entry", 14090, 3),
    ("Policy Envelope Rejection", "Envelope blocked - Policy Entry", 14091, 1),
    ("Host Network Not Allowed", "Host network not allowed", 14100, 1),
    ("Mail Loop", "Mail loop detected", 14110, 1),
    ("TLS Required", "This route requires TLS", 14120, 1),
    ("Too Many Recipients", "Too many recipients", 14130, 1),
    ("Greylisting", "Greylisting in action, please come back later", 14001, 5),
    ("Message Size Limit", "Message exceeds the maximum size limit", 14140, 2),
    ("Spam Signature Detection", "Message rejected as spam", 14150, 3),
)
_KB_LINK = " - https://community.mimecast.com/docs/DOC-1369#550"
_DETECTION_LEVELS = ("not_initiated", "relaxed", "moderate", "aggressive")

_MALICIOUS_URLS = (
    "https://parcel-notify.example.net/track/{n}",
    "https://secure-login.example.org/o365/verify?session={n}",
    "http://docs-share.example.net/view/{n}/invoice.exe",
    "https://examp1e-corp.com/payroll/update",
    "https://downloads.example.org/tool_{n}.exe",
)
_CLEAN_URLS = (
    "https://www.example.com/news/{n}",
    "https://partner.example.org/catalogue",
    "https://search.example.net/?q=quarterly+report",
    "https://www.example.org/events/{n}",
)
_MALICIOUS_CATEGORIES = ("Phishing & Fraud", "Compromised", "Dangerous file extension")
_CLEAN_CATEGORIES = (
    "Business", "Search Engines & Portals", "Entertainment", "Fashion & Beauty", "Unknown",
)  # fmt: skip
_TTP_DEFINITIONS = (
    "Default Inbound URL Protect Definition",
    "Default URL Protection Definition",
    "Inbound URL 'Aggressive'",
)
_SCANNERS = (
    "UrlReputationScan", "DangerousFileExt", "AdvancedPhishing", "AvScanning",
    "CustomerManagedUrls",
)  # fmt: skip
_IDENTIFIERS = (
    "internal_user_name", "similar_internal_domain", "targeted_threat_dictionary",
    "newly_observed_domain", "reply_address_mismatch", "custom_external_domain",
    "mimecast_external_domain", "advanced_similar_internal_domain", "custom_name_list",
)  # fmt: skip
_RESULT_KEYS = (
    "impersonationDomainSource",
    "similarDomain",
    "stringSimilarToDomain",
    "checkerResult",
)


Weighted: TypeAlias = tuple[tuple[Any, ...], tuple[float, ...], float]


def weighted(*pairs: tuple[Any, float]) -> Weighted:
    """A table for :meth:`Dice.weighted`: values, cumulative weights, total."""
    values = tuple(v for v, _ in pairs)
    cumulative = tuple(itertools.accumulate(w for _, w in pairs))
    return values, cumulative, cumulative[-1]


_ATTACHMENT_ROUTES = weighted(("inbound", 80), ("internal", 10), ("outbound", 8), ("external", 2))
_ATTACHMENT_RESULTS = weighted(
    ("safe", 42), ("malicious", 28), ("clean", 14), ("timeout", 8), ("unknown", 8)
)
_ATTACHMENTS_PER_MESSAGE = weighted((1, 75), (2, 17), (3, 8))
_IDENTIFIERS_PER_MESSAGE = weighted((1, 55), (2, 35), (3, 10))
_URL_ROUTES = weighted(("inbound", 85), ("internal", 10), ("outbound", 5))
_SCAN_RESULTS = weighted(("clean", 62), ("malicious", 35), ("timeout", 3))
_SCANNERS_PER_CLICK = weighted((1, 50), (2, 35), (3, 15))
_EMAIL_PARTS = weighted((("Body",), 80), (("Attachment",), 12), (("Body", "Attachment"), 8))
_CLICKS_PER_URL = weighted((1, 70), (2, 15), (3, 10), (4, 5))
_AWARENESS = weighted(("N/A", 80), ("NA", 10), ("Continue", 10))
_MALICIOUS_ACTIONS = ("Block", "Block", "Browser Isolation")
_REJECTION_KINDS = weighted(*((row[:3], row[3]) for row in _REJECTIONS))


class Dice:
    """Fast draws from one ``random.Random``: ``choice``/``choices`` cost several times more."""

    __slots__ = ("bits", "rng", "uniform")

    def __init__(self, seed_material: str) -> None:
        self.rng = random.Random(seed_material)
        self.uniform = self.rng.random
        self.bits = self.rng.getrandbits

    def pick(self, values: Sequence[Any]) -> Any:
        return values[int(self.uniform() * len(values))]

    def between(self, lo: int, hi: int) -> int:
        return lo + int(self.uniform() * (hi - lo + 1))

    def chance(self, probability: float) -> bool:
        return self.uniform() < probability

    def weighted(self, table: Weighted) -> Any:
        values, cumulative, total = table
        return values[bisect_right(cumulative, self.uniform() * total)]

    def distinct(self, values: Sequence[Any], count: int) -> list[Any]:
        chosen: list[Any] = []
        while len(chosen) < count:
            value = self.pick(values)
            if value not in chosen:
                chosen.append(value)
        return chosen


class Shape(NamedTuple):
    """One message's worth of records, minus what must be fresh on every copy.

    ``offsets`` are seconds after the message time (clicks come later; attachments share it).
    """

    records: tuple[Record, ...]
    offsets: tuple[int, ...]
    host: str


_POOL_SIZE = 2048


class RecordFactory:
    """Makes records for one tenant from one seeded random stream.

    Building a realistic message costs tens of random draws, so the factory builds up to
    ``_POOL_SIZE`` message *shapes* lazily and stamps a fresh copy of a random one for every
    message: new event time, ``messageId``, ``fileHash`` and impersonation ``id``, and nested
    lists and maps copied, so no two returned records share a mutable value. ``domain`` is the
    tenant's own mail domain. Not thread-safe: each stream gets its own factory.
    """

    def __init__(self, seed_material: str, domain: str) -> None:
        self._dice = Dice(seed_material)
        self._domain = domain
        self._pools: dict[Category, list[Shape | None]] = {
            c: [None] * _POOL_SIZE for c in LOG_CATEGORIES
        }
        self._builders: dict[Category, Callable[[], Shape]] = {
            Category.ATTACHMENT: self._attachment_shape,
            Category.IMPERSONATION: self._impersonation_shape,
            Category.URL: self._url_shape,
            Category.REJECTION: self._rejection_shape,
        }
        self._stampers: dict[Category, Callable[[Record, str, str], Record]] = {
            Category.ATTACHMENT: self._stamp_attachment,
            Category.IMPERSONATION: self._stamp_impersonation,
            Category.URL: _stamp_url,
            Category.REJECTION: self._stamp_rejection,
        }

    def make(self, category: Category, count: int, lo: int, hi: int) -> list[Timed]:
        """``count`` records dated in whole epoch seconds within [lo, hi], oldest first.

        Each comes with its event time, so nobody has to parse it back.
        """
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        if lo > hi:
            raise ValueError("the start of the date range is after its end")
        pool, build, stamp = (
            self._pools[category],
            self._builders[category],
            self._stampers[category],
        )
        uniform, bits = self._dice.uniform, self._dice.bits
        span = hi - lo + 1
        out: list[Timed] = []
        while len(out) < count:
            index = int(uniform() * _POOL_SIZE)
            shape = pool[index]
            if shape is None:
                shape = pool[index] = build()
            ts = lo + int(uniform() * span)
            message_id = f"<{bits(80):020x}@{shape.host}>"
            for prototype, offset in zip(shape.records, shape.offsets, strict=True):
                at = min(hi, ts + offset)
                out.append((at, stamp(prototype, format_time(at), message_id)))
        del out[count:]
        out.sort(key=_time_of)
        return out

    # -- stamping: what is fresh on every record ----------------------------------------------

    def _stamp_attachment(self, prototype: Record, date: str, message_id: str) -> Record:
        record = prototype.copy()  # every value is a string: a shallow copy is a full copy
        record["date"] = date
        record["messageId"] = message_id
        record["fileHash"] = f"{self._dice.bits(256):064x}"
        return record

    def _stamp_impersonation(self, prototype: Record, date: str, message_id: str) -> Record:
        record = prototype.copy()
        record["id"] = (
            "MTOKEN:eNq" + base64.urlsafe_b64encode(self._dice.bits(264).to_bytes(33)).decode()
        )
        record["identifiers"] = prototype["identifiers"].copy()
        record["eventTime"] = date
        record["impersonationResults"] = [r.copy() for r in prototype["impersonationResults"]]
        record["messageId"] = message_id
        return record

    def _stamp_rejection(self, prototype: Record, date: str, message_id: str) -> Record:
        record = prototype.copy()  # flat: every value is a string, number or None
        record["id"] = "eNpVT1tP" + base64.urlsafe_b64encode(
            self._dice.bits(192).to_bytes(24)
        ).decode().rstrip("=")
        record["created"] = date
        return record

    # -- shared pieces ------------------------------------------------------------------------

    def _person(self) -> str:
        return f"{self._dice.pick(_PEOPLE)}@{self._domain}"

    def _external(self) -> str:
        pick = self._dice.pick
        return f"{pick(_PEOPLE)}@{pick(_EXTERNAL_DOMAINS)}"

    def _ip(self) -> str:
        return fake_ip(self._dice)

    def _subject(self) -> str:
        return fake_subject(self._dice)

    # -- attachment (§5.3) --------------------------------------------------------------------

    def _attachment_shape(self) -> Shape:
        dice = self._dice
        route = dice.weighted(_ATTACHMENT_ROUTES)
        if route in ("internal", "outbound"):
            sender = self._person()
        else:
            sender = "<>" if dice.chance(0.05) else self._external()
        recipient = self._external() if route == "outbound" else self._person()
        subject = self._subject()
        records = []
        for name, mime in dice.distinct(_FILES, dice.weighted(_ATTACHMENTS_PER_MESSAGE)):
            result = dice.weighted(_ATTACHMENT_RESULTS)
            records.append(
                {
                    "senderAddress": sender,
                    "recipientAddress": recipient,
                    "fileName": name.format(n=dice.between(100, 9999), q=dice.between(1, 4)),
                    "fileType": mime,
                    "result": result,
                    "actionTriggered": dice.pick(_ACTIONS_TRIGGERED),
                    "date": "",
                    "details": f"{result.capitalize():<20}\r\n"
                    f"Time taken: 0 hrs, 0 min, {dice.between(1, 59)} sec",
                    "route": route,
                    "messageId": "",
                    "subject": subject,
                    "fileHash": "",
                    "definition": _attachment_definition(route, result, dice),
                }
            )
        host = sender.rpartition("@")[2] or "mail.example.net"
        return Shape(tuple(records), (0,) * len(records), host)

    # -- impersonation (§6.3) -----------------------------------------------------------------

    def _impersonation_shape(self) -> Shape:
        dice = self._dice
        identifiers = dice.distinct(_IDENTIFIERS, dice.weighted(_IDENTIFIERS_PER_MESSAGE))
        hits = len(identifiers)
        malicious = dice.chance(0.85 if hits >= 2 else 0.3)
        if hits == 1:
            definition, action = "IP - 1 hit (Tag email)", "none"
        elif dice.chance(0.7):
            definition, action = "IP - 2 hits (Hold for Review / User Hold)", "hold"
        else:
            definition, action = "Default Impersonation Definition", "bounce"
        lookalike = dice.pick(_LOOKALIKE_DOMAINS)
        ip = f"2001:db8::{dice.bits(16):x}" if dice.chance(0.05) else self._ip()
        record = {
            "id": "",
            "senderAddress": f"{dice.pick(_PEOPLE)}@{lookalike}",
            "recipientAddress": self._person(),
            "subject": self._subject(),
            "definition": definition,
            "hits": hits,
            "identifiers": identifiers,
            "action": action,
            "taggedExternal": dice.chance(0.9),
            "taggedMalicious": malicious,
            "senderIpAddress": ip,
            "eventTime": "",
            "impersonationResults": [self._impersonation_result(i, lookalike) for i in identifiers],
            "messageId": "",
        }
        return Shape((record,), (0,), f"mail.{lookalike}")

    def _impersonation_result(self, identifier: str, lookalike: str) -> Record:
        dice = self._dice
        if identifier in ("internal_user_name", "custom_name_list"):
            name = dice.pick(_DISPLAY_NAMES)
            local = name.lower().replace(" ", ".")
            similar, string = f"{name} <{local}@{self._domain}>", name
        elif identifier == "targeted_threat_dictionary":
            similar, string = "", dice.pick(_DICTIONARY_WORDS)
        else:
            similar, string = self._domain, lookalike
        item: Record = {
            "impersonationDomainSource": identifier,
            "similarDomain": similar,
            "stringSimilarToDomain": string,
            "checkerResult": "hit",
        }
        if dice.chance(0.2):  # §6.3: some keys are missing on some items
            del item[dice.pick(_RESULT_KEYS[1:])]
        return item

    # -- URL clicks (§7.3) --------------------------------------------------------------------

    def _url_shape(self) -> Shape:
        dice = self._dice
        route = dice.weighted(_URL_ROUTES)
        scan = dice.weighted(_SCAN_RESULTS)
        bad = scan != "clean"
        url = dice.pick(_MALICIOUS_URLS if bad else _CLEAN_URLS).format(n=dice.between(1, 99999))
        sender = self._external() if route == "inbound" else self._person()
        if route == "internal":
            sending_ip, definition = "Internal IP", "Default Internal URL Protect Definition"
        else:
            sending_ip, definition = self._ip(), dice.pick(_TTP_DEFINITIONS)
        if dice.chance(0.06):  # the Sophos rule for an empty ttpDefinition (§12.4)
            definition = ""
        category = dice.pick(_MALICIOUS_CATEGORIES if scan == "malicious" else _CLEAN_CATEGORIES)
        subject = self._subject()
        extras: Record = {}
        if bad:
            scanners = dice.distinct(_SCANNERS, dice.weighted(_SCANNERS_PER_CLICK))
            extras["tagMap"] = {s: _tag_evidence(s, url) for s in scanners}
            if "AdvancedPhishing" in scanners:
                extras["advancedPhishingResult"] = {
                    "CredentialTheftBrands": ["Contoso"],
                    "CredentialTheftEvidence": ["Login form", "Brand logo"],
                    "CredentialTheftTags": ["credential-theft"],
                }
        parts = dice.weighted(_EMAIL_PARTS)
        clicks = dice.weighted(_CLICKS_PER_URL)
        records, offsets = [], []
        for _ in range(clicks):
            entry = clicks == 1 and dice.chance(0.25)
            if scan == "clean":
                action, actions = "allow", "Allow"
            else:
                action = "warn" if dice.chance(0.5) else "block"
                actions = "None" if entry else dice.pick(_MALICIOUS_ACTIONS)
            offsets.append(0 if dice.chance(0.3) else dice.between(1, 90))
            records.append(
                {
                    "userEmailAddress": self._person(),
                    "fromUserEmailAddress": sender,
                    "url": url,
                    "ttpDefinition": definition,
                    "subject": subject,
                    "action": action,
                    "adminOverride": "N/A",
                    "userOverride": "None",
                    "scanResult": scan,
                    "category": category,
                    "sendingIp": sending_ip,
                    "userAwarenessAction": dice.weighted(_AWARENESS),
                    "date": "",
                    "actions": actions,
                    "route": route,
                    "creationMethod": "Entry Scan" if entry else "User Click",
                    "emailPartsDescription": list(parts),
                    "messageId": "",
                    **extras,
                }
            )
        return Shape(tuple(records), tuple(offsets), sender.rpartition("@")[2])

    # -- rejections (mta-rejections.md §2.3) ----------------------------------------------------

    def _rejection_shape(self) -> Shape:
        dice = self._dice
        description, info, number = dice.weighted(_REJECTION_KINDS)
        recipient = self._person()
        host = dice.pick(_EXTERNAL_DOMAINS)
        if description == "Invalid Recipient Address":  # a directory harvest guesses names
            recipient = f"{dice.pick(_PEOPLE)}{dice.between(1, 99)}@{self._domain}"
        roll = dice.uniform()
        sender: str | None = f"{dice.pick(_PEOPLE)}@{host}"
        if roll < 0.04:
            sender = None
        elif roll < 0.08:
            sender = "<>"
        record: Record = {
            "id": "",
            "created": "",
            "description": description,
            "info": None if dice.chance(0.04) else _drift(info, dice),
            "type": str(number) if dice.chance(0.05) else number,
            "fromAddress": sender,
            "toAddress": recipient,
            "toAddressPreCheck": recipient,
            "toAddressPostCheck": "" if dice.chance(0.5) else recipient,
            "ipAddress": self._ip(),
            "remoteName": f"mx.{host}",
            "remoteEhlo": f"mx.{host}",
            "manageRecipient": "false",
            "spamScore": dice.between(0, 20),
            "detectionLevel": dice.pick(_DETECTION_LEVELS),
        }
        return Shape((record,), (0,), host)


def _drift(text: str, dice: Dice) -> str:
    """``text`` as real rejections word it now and then (``mta-rejections.md`` §1)."""
    roll = dice.uniform()
    if roll < 0.55:
        return text
    if roll < 0.62:
        return text.lower()
    if roll < 0.67:
        return text.upper()
    if roll < 0.74:
        return text.replace(" - ", " \u2013 ")  # en dash, as the KB writes it
    if roll < 0.78:
        return text.replace(" - ", " \u2014 ")  # em dash
    if roll < 0.86:
        return text + _KB_LINK
    if roll < 0.93:
        return f"{text} [{dice.bits(32):08x}.mimecast.example]"
    return text.replace(" ", "  ", 1) + "  "


def fake_ip(dice: Dice) -> str:
    """An address of the documentation ranges (RFC 5737)."""
    return f"{dice.pick(_IP_PREFIXES)}.{dice.between(1, 254)}"


def fake_subject(dice: Dice) -> str:
    """A subject: mostly ASCII, one in five in other scripts, accents or emoji."""
    pool = _UNICODE_SUBJECTS if dice.chance(0.2) else _ASCII_SUBJECTS
    template: str = dice.pick(pool)
    return template.format(n=dice.between(1000, 99999), q=dice.between(1, 4))


def _stamp_url(prototype: Record, date: str, message_id: str) -> Record:
    record = prototype.copy()
    record["date"] = date
    record["messageId"] = message_id
    record["emailPartsDescription"] = prototype["emailPartsDescription"].copy()
    if "tagMap" in prototype:
        record["tagMap"] = _copy_evidence(prototype["tagMap"])
    if "advancedPhishingResult" in prototype:
        record["advancedPhishingResult"] = {
            k: v.copy() for k, v in prototype["advancedPhishingResult"].items()
        }
    return record


def _copy_evidence(tag_map: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
    return {scanner: {k: v.copy() for k, v in tags.items()} for scanner, tags in tag_map.items()}


def _time_of(timed: Timed) -> int:
    return timed[0]


def _attachment_definition(route: str, result: str, dice: Dice) -> str:
    if route == "internal":
        return "Default Internal Attachment Protect Definition"
    if route == "outbound":
        return "Default Outbound Attachment Protect Definition"
    if result in ("safe", "clean") and dice.chance(0.4):
        return "Inbound - Safe file with On-Demand Sandbox"
    return "Default Inbound Attachment Protect Definition"


def _tag_evidence(scanner: str, url: str) -> dict[str, list[str]]:
    """The ``tagMap`` value one scanner leaves, shaped as in §7.3."""
    if scanner == "UrlReputationScan":
        return {
            "Status": ["CustomerAll", "VerdictBlock"],
            "Type": ["Phishing"],
            "Url": [url],
            "UrlBlock": [f"ORIGINAL:{url} (Blocked as PHISHING)"],
        }
    if scanner == "DangerousFileExt":
        return {
            "Status": ["CustomerSpecific", "VerdictBlock"],
            "Inspect:FileExts": ["exe"],
            "Inspect:MimeTypes": ["application/x-msdownload"],
            "ContentCheck:DangerousExtsUrlFileDownload": ["exe"],
        }
    if scanner == "AdvancedPhishing":
        return {
            "CredentialTheftEvidence": ["Login form"],
            "CredentialTheftTags": ["credential-theft"],
        }
    if scanner == "AvScanning":
        return {
            "ContentCheck:AvSignatureName": ["Sim.Test.Signature-1"],
            "ScannerInfo:CategoryTrigger": ["Malware"],
        }
    return {"ManagedUrlEntry": [url], "Blocklisted": ["true"], "Status": ["CustomerSpecific"]}


def malformed(template: Record, category: Category, index: int) -> object:
    """The ``index``-th malformed variant of a valid ``template`` record (cycle of four).

    0: the event time is missing; 1: a field has the wrong JSON type; 2: the event time does not
    parse; 3: not an object at all. Used by the ``Malformed`` fault; never stored.
    """
    kind = index % 4
    if kind == 3:
        return "not a record"
    record = dict(template)
    field = category.time_field
    if kind == 0:
        del record[field]
    elif kind == 1 and category is Category.IMPERSONATION:
        record["hits"] = "two"
    elif kind == 1:
        record[field] = 12345
    else:
        record[field] = "2025-13-45T99:00:00+0000"
    return record


def tenant_domain(name: str) -> str:
    """The tenant's own mail domain, e.g. ``acme.example.com``."""
    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"{slug or 'tenant'}.example.com"


_LIVE_MIX = weighted(
    (Category.ATTACHMENT, 2),
    (Category.IMPERSONATION, 1),
    (Category.URL, 5),
    (Category.REJECTION, 2),
)


def pick_category(dice: Dice) -> Category:
    """A category for the next live record; URL clicks are the busiest log."""
    category: Category = dice.weighted(_LIVE_MIX)
    return category
