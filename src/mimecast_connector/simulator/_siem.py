"""Seeded SIEM receipt events, in the shapes of both API generations (``mta-rejections.md`` §2).

A :class:`ReceiptFactory` owns one :class:`~._generate.Dice`, so the same seed material and the
same sequence of calls give the same events in any process. Each simulated message becomes:

* one API 2.0 receipt event per recipient (§2.1): ``aggregateId`` shared by the message's rows,
  ``processingId`` unique, ``timestamp`` in epoch milliseconds (an integer), ``numberAttachments``
  a string, ``_offset`` counting up on the tenant's one ``_partition``;
* the API 1.0 rows of the same message (§2.2, ``mimecast-api.md`` §9.1): a receipt row per
  event, a process row for a message that was taken in, a delivery row per recipient of an
  accepted message, now and then a ``ttp_url`` row. They share the message's ``aCode``.

The mix is deliberately uneven, with the quirks §2.1 lists, so a consumer meets them in a few
thousand events: ``Acc`` about 90 %, then ``Rej``, ``Hld`` and ``Sdbx``; rejections with the six
Sophos texts and the other KB texts of the rejection log generator (``_generate._REJECTIONS``,
worded with its ``_drift``), ``messageId``/``subject``/``senderEnvelope`` often null on a
rejection, ``rejectionCode`` sometimes ``"0"``, ``virusFound`` repeating ``rejectionInfo``;
``eventType``/``subType`` instead of ``type``/``subtype`` on some rows; ``direction`` ``Inbound``
or ``inbound``; ``spamScore`` a number or a string; ``spamProcessingDetail`` a JSON string,
double-encoded, an object or null. API 1.0 rows are dated in assorted UTC offsets, ``Rcpt`` is a
string or an array, and a delivery row may carry ``RejType``/``RejCode``/``RejInfo`` because the
customer's own server refused the message: a "5.4.1 Recipient address rejected" or even an
"Invalid Recipient"-looking text that must never raise an alert.

Names and addresses come from the same RFC 2606 / RFC 5737 vocabulary as ``_generate.py``.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec

from mimecast_connector.simulator._generate import (  # the generator's shared vocabulary
    _EXTERNAL_DOMAINS,
    _MALICIOUS_URLS,
    _PEOPLE,
    _REJECTIONS,
    Dice,
    Record,
    _drift,
    fake_ip,
    fake_subject,
    weighted,
)
from mimecast_connector.simulator._times import format_offset_time

V1Row = tuple[str, Record]
"""An API 1.0 row with its log kind: ``receipt``, ``process``, ``delivery`` or ``ttp_url``."""


class Receipt(NamedTuple):
    """One receipt event: its time in epoch ms, the API 2.0 event, the API 1.0 rows it brings."""

    ts_ms: int
    event: Record
    v1: tuple[V1Row, ...]


_ACTIONS = weighted(("Acc", 900), ("Rej", 70), ("Hld", 20), ("Sdbx", 10))
_RECIPIENTS_OF_ACCEPTED = weighted((1, 92), (2, 5), (3, 3))
_REJECTION_KINDS = weighted(*(((row[0], row[1]), row[3]) for row in _REJECTIONS))
_V1_OFFSETS = weighted((0, 50), (60, 30), (-300, 10), (330, 10))  # minutes east of UTC
_TLS = (
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256"),
    ("TLSv1.2", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
)
_ATTACHMENTS = weighted((0, 70), (1, 20), (2, 7), (3, 3))
_ATTACHMENT_NAMES = ("invoice.pdf", "agenda.docx", "report.xlsx", "scan.zip", "photo.jpg")
_HOLD_REASONS = ("Spm", "Pol", "Att")
_ROUTES = ("Office365", "Exchange", "Google Workspace")
_SPAM_INFO = (None, None, "[]", "Moderate", "Relaxed")

#: SMTP code by the canonical KB text; every other rejection is a 550 (§1).
_CODES = {
    "IP Temporarily Blacklisted": "451",
    "Greylisting in action, please come back later": "451",
    "Incorrect authentication data": "535",
}

#: Texts a customer's server sends back to Mimecast's delivery (§2.2): not Mimecast rejections.
_DELIVERY_REFUSALS = (
    (
        "Recipient email address is possibly incorrect",
        "550",
        "5.4.1 Recipient address rejected: Access denied. AS(201806281) "
        "[{host}.eop-gbr01.prod.protection.outlook.com]",
    ),
    ("Recipient email address is possibly incorrect", "550", "5.1.1 Invalid Recipient"),
    ("Remote server rejected", "550", "550 Invalid Recipient - user unknown"),
    ("Message size exceeded", "552", "5.3.4 Message size exceeds fixed maximum message size"),
)


def _verdicts(spf: bool, dkim: bool, dmarc: bool) -> dict[str, Any]:
    def verdict(allow: bool, name: str) -> dict[str, Any]:
        return {"allow": allow, "info": f"{name}_{'PASS' if allow else 'FAIL'}"}

    return {
        "spf": verdict(spf, "SPF"),
        "dkim": verdict(dkim, "DKIM"),
        "dmarc": verdict(dmarc, "DMARC"),
        "greyEmail": False,
        "rbl": {"allow": True, "info": ""},
        "managedSender": {"allow": True, "info": "Unknown"},
        "permittedSender": {"allow": True, "info": "None"},
    }


_PASS_DETAIL = msgspec.json.encode(_verdicts(True, True, True)).decode()
_FAIL_DETAIL = msgspec.json.encode(_verdicts(False, False, False)).decode()
_SPF_FAIL_DETAIL = msgspec.json.encode({"spf": {"allow": False, "info": "SPF_FAIL"}}).decode()


def account_id(tenant_name: str) -> str:
    """The tenant's Mimecast account code, e.g. ``C4F2A91``: stable for a name."""
    return (
        "C" + hashlib.sha256(f"mimecast-sim/account/{tenant_name}".encode()).hexdigest()[:6].upper()
    )


def partition_of(tenant_name: str) -> int:
    """The one ``_partition`` the tenant's events come from (0 to 99)."""
    return hashlib.sha256(f"mimecast-sim/partition/{tenant_name}".encode()).digest()[0] % 100


class ReceiptFactory:
    """Makes receipt events for one tenant from one seeded random stream. Not thread-safe.

    ``domain`` is the tenant's mail domain, ``account`` its account code, ``partition`` the
    ``_partition`` its events carry; ``_offset`` counts up over every event the factory makes.
    """

    def __init__(self, seed_material: str, domain: str, account: str, partition: int) -> None:
        self._dice = Dice(seed_material)
        self._domain = domain
        self._account = account
        self._partition = partition
        self._offset = self._dice.between(10_000, 90_000)

    def make(self, count: int, lo_ms: int, hi_ms: int) -> list[Receipt]:
        """``count`` events dated within [lo_ms, hi_ms] (epoch ms), oldest first, with 1.0 rows."""
        if count < 0:
            raise ValueError(f"count must be >= 0, not {count}")
        if lo_ms > hi_ms:
            raise ValueError("the start of the date range is after its end")
        uniform, span = self._dice.uniform, hi_ms - lo_ms + 1
        out: list[Receipt] = []
        while len(out) < count:
            out += self._message(lo_ms + int(uniform() * span), hi_ms, with_v1=True)
        del out[count:]
        out.sort(key=_ts_of)
        for receipt in out:
            receipt.event["_offset"] = self._next_offset()
        return out

    def stream(
        self, count: int, lo_ms: int, hi_ms: int, *, with_v1: bool, chunk: int = 1000
    ) -> Iterator[list[Receipt]]:
        """``count`` events spread evenly over [lo_ms, hi_ms], made ``chunk`` at a time.

        Nothing is kept between chunks, so a caller that writes each chunk out and drops it
        stays within a chunk's memory whatever ``count`` is (the ``HugeFile`` fault).
        """
        step = (hi_ms - lo_ms) / max(1, count)
        made = 0
        while made < count:
            batch: list[Receipt] = []
            while len(batch) < chunk and made + len(batch) < count:
                at = lo_ms + int((made + len(batch)) * step)
                batch += self._message(at, hi_ms, with_v1=with_v1)
            del batch[count - made :]
            for receipt in batch:
                receipt.event["_offset"] = self._next_offset()
            made += len(batch)
            yield batch

    def _next_offset(self) -> int:
        self._offset += 1
        return self._offset

    # -- one message --------------------------------------------------------------------------

    def _message(self, ts: int, hi_ms: int, *, with_v1: bool) -> list[Receipt]:
        dice = self._dice
        action: str = dice.weighted(_ACTIONS)
        facts = self._rejection() if action == "Rej" else self._accepted(action)
        rows = dice.weighted(_RECIPIENTS_OF_ACCEPTED) if action == "Acc" else 1
        recipients = [facts["recipient"]] + [self._person() for _ in range(rows - 1)]
        aggregate = f"{self._token(12)}_{ts // 1000}"
        a_code = self._token(16) if dice.chance(0.5) else str(uuid.UUID(int=dice.bits(128)))
        offset = dice.weighted(_V1_OFFSETS)
        out = []
        for index, recipient in enumerate(recipients):
            at = min(hi_ms, ts + index * dice.between(0, 3))
            event = self._event(at, action, aggregate, facts, recipient)
            v1: tuple[V1Row, ...] = ()
            if with_v1:
                v1 = self._v1_rows(at, action, a_code, offset, facts, recipient, first=index == 0)
            out.append(Receipt(at, event, v1))
        return out

    def _accepted(self, action: str) -> dict[str, Any]:
        dice = self._dice
        host = dice.pick(_EXTERNAL_DOMAINS)
        sender = "<>" if dice.chance(0.03) else f"{dice.pick(_PEOPLE)}@{host}"
        header = sender if sender != "<>" and dice.chance(0.8) else f"{dice.pick(_PEOPLE)}@{host}"
        held = action != "Acc"
        tls = None if dice.chance(0.05) else dice.pick(_TLS)
        score = dice.between(25, 40) if held else dice.between(0, 12)
        return {
            "sender": sender,
            "header": header,
            "host": host,
            "ip": self._ip(),
            "recipient": self._person(),
            "message_id": f"<{dice.bits(80):020x}@{host}>",
            "subject": self._subject(),
            "rejection": (None, None, None),
            "errors": None,
            "virus": None,
            "score": score,
            "spam_info": dice.pick(_SPAM_INFO),
            "detail": _FAIL_DETAIL if held and dice.chance(0.3) else _PASS_DETAIL,
            "tls": tls,
            "attachments": dice.weighted(_ATTACHMENTS),
        }

    def _rejection(self) -> dict[str, Any]:
        dice = self._dice
        rejection_type, text = dice.weighted(_REJECTION_KINDS)
        code = "0" if dice.chance(0.08) else _CODES.get(text, "550")
        info = None if dice.chance(0.02) else _drift(text, dice)
        host = dice.pick(_EXTERNAL_DOMAINS)
        recipient = self._person()
        if rejection_type == "Invalid Recipient Address":  # a directory harvest guesses names
            recipient = f"{dice.pick(_PEOPLE)}{dice.between(1, 99)}@{self._domain}"
        before_data = dice.chance(0.8)  # refused before DATA: no message id, no subject
        if rejection_type == "Virus Signature Detection":
            virus = info if dice.chance(0.5) else "Sim.Test.Signature-1"
        else:
            virus = info if dice.chance(0.3) else None
        if rejection_type == "Anti-Spoofing Lockout":
            detail: str | None = _SPF_FAIL_DETAIL
        else:
            detail = None if dice.chance(0.5) else dice.pick((_PASS_DETAIL, _FAIL_DETAIL))
        return {
            "sender": None if dice.chance(0.45) else f"{dice.pick(_PEOPLE)}@{host}",
            "header": None if before_data or dice.chance(0.5) else f"{dice.pick(_PEOPLE)}@{host}",
            "host": host,
            "ip": self._ip(),
            "recipient": recipient,
            "message_id": None if before_data else f"<{dice.bits(80):020x}@{host}>",
            "subject": None if before_data else self._subject(),
            "rejection": (rejection_type, code, info),
            "errors": None if dice.chance(0.85) else f"{code} {text}",
            "virus": virus,
            "score": None if dice.chance(0.6) else dice.between(0, 20),
            "spam_info": None,
            "detail": detail,
            "tls": dice.pick(_TLS) if dice.chance(0.7) else None,
            "attachments": 0,
        }

    # -- API 2.0 ------------------------------------------------------------------------------

    def _event(
        self, ts: int, action: str, aggregate: str, facts: dict[str, Any], recipient: str
    ) -> Record:
        dice = self._dice
        stream_spelling = dice.chance(0.05)  # the stream endpoint's and the doc sample's keys
        rejection_type, code, info = facts["rejection"]
        score = facts["score"]
        tls = facts["tls"]
        event: Record = {
            "aggregateId": aggregate,
            "processingId": f"{self._token(21)}_{ts // 1000}",
            "accountId": self._account,
            "timestamp": ts,
            "action": action,
            ("subType" if stream_spelling else "subtype"): action,
            ("eventType" if stream_spelling else "type"): "receipt",
            "direction": "inbound" if dice.chance(0.25) else "Inbound",
            "senderEnvelope": facts["sender"],
            "senderHeader": facts["header"],
            "senderIp": facts["ip"],
            "recipients": recipient,
            "messageId": facts["message_id"],
            "subject": facts["subject"],
            "rejectionType": rejection_type,
            "rejectionCode": code,
            "rejectionInfo": info,
            "receiptErrors": facts["errors"],
            "virusFound": facts["virus"],
            "spamScore": str(score) if score is not None and dice.chance(0.4) else score,
            "spamInfo": facts["spam_info"],
            "spamProcessingDetail": self._detail(facts["detail"]),
            "tlsVersion": tls[0] if tls else None,
            "tlsCipher": tls[1] if tls else None,
            "numberAttachments": str(facts["attachments"]),
            "_offset": 0,  # set in time order by the caller
            "_partition": self._partition,
        }
        return event

    def _detail(self, detail: str | None) -> Any:
        """``spamProcessingDetail``: a JSON string mostly, else double-encoded or an object."""
        if detail is None:
            return None
        roll = self._dice.uniform()
        if roll < 0.8:
            return detail
        if roll < 0.9:
            return msgspec.json.encode(detail).decode()
        return msgspec.json.decode(detail)

    # -- API 1.0 ------------------------------------------------------------------------------

    def _v1_rows(
        self,
        ts: int,
        action: str,
        a_code: str,
        offset: int,
        facts: dict[str, Any],
        recipient: str,
        *,
        first: bool,
    ) -> tuple[V1Row, ...]:
        dice = self._dice
        seconds = ts / 1000
        rows: list[V1Row] = [
            ("receipt", self._v1_receipt(seconds, action, a_code, offset, facts, recipient))
        ]
        if action != "Rej" and first:
            rows.append(("process", self._v1_process(seconds + 1, action, a_code, offset, facts)))
        if action == "Acc":
            rows.append(
                ("delivery", self._v1_delivery(seconds + 2, a_code, offset, facts, recipient))
            )
            if first and dice.chance(0.02):
                rows.append(("ttp_url", self._v1_ttp_url(seconds + 60, offset, facts, recipient)))
        return tuple(rows)

    def _v1_receipt(
        self,
        seconds: float,
        action: str,
        a_code: str,
        offset: int,
        facts: dict[str, Any],
        recipient: str,
    ) -> Record:
        dice = self._dice
        rejection_type, code, info = facts["rejection"]
        tls = facts["tls"]
        row: Record = {
            "acc": self._account,
            "datetime": format_offset_time(seconds, offset),
            "aCode": a_code,
            "Act": action,
            "IP": facts["ip"],
            "Dir": "Inbound",
            "Sender": facts["sender"] or "<>",
            "Rcpt": [recipient] if dice.chance(0.15) else recipient,
            "headerFrom": facts["header"],
            "MsgId": facts["message_id"],
            "Subject": facts["subject"],
        }
        if rejection_type is not None:
            row |= {"RejType": rejection_type, "RejCode": code, "RejInfo": info}
        if facts["errors"] is not None:
            row["Error"] = facts["errors"]
        if facts["score"] is not None:
            row["SpamScore"] = facts["score"]
            row["SpamInfo"] = facts["spam_info"]
        if facts["detail"] is not None:
            row["SpamProcessingDetail"] = facts["detail"]
        if tls is not None:
            row["TlsVer"], row["Cphr"] = tls
        return row

    def _v1_process(
        self, seconds: float, action: str, a_code: str, offset: int, facts: dict[str, Any]
    ) -> Record:
        dice = self._dice
        count = facts["attachments"]
        names = [dice.pick(_ATTACHMENT_NAMES) for _ in range(count)]
        row: Record = {
            "acc": self._account,
            "datetime": format_offset_time(seconds, offset),
            "aCode": a_code,
            "Act": "Acc" if action == "Acc" else "Hld",
            "AttCnt": count,
            "AttNames": ", ".join(f'"{n}"' for n in names) if names else None,
            "AttSize": count * dice.between(10_000, 900_000),
            "MsgId": facts["message_id"],
            "MsgSize": dice.between(2_000, 200_000),
            "Sender": facts["sender"],
            "Subject": facts["subject"],
        }
        if action != "Acc":
            row["Hld"] = dice.pick(_HOLD_REASONS)
        return row

    def _v1_delivery(
        self, seconds: float, a_code: str, offset: int, facts: dict[str, Any], recipient: str
    ) -> Record:
        dice = self._dice
        tls = facts["tls"]
        refused = dice.chance(0.05)  # the customer's own server said no (§2.2)
        row: Record = {
            "acc": self._account,
            "datetime": format_offset_time(seconds, offset),
            "aCode": a_code,
            "Delivered": not refused,
            "IP": self._ip(),
            "AttCnt": facts["attachments"],
            "Dir": "Inbound",
            "ReceiptAck": None
            if refused
            else f"250 2.6.0 {facts['message_id']} Queued mail for delivery",
            "MsgId": facts["message_id"],
            "Subject": facts["subject"],
            "Latency": dice.between(200, 5000),
            "Sender": facts["sender"],
            "Rcpt": recipient,
            "AttSize": 0,
            "Attempt": 1,
            "Snt": dice.between(100, 200_000),
            "UseTls": "No" if tls is None else "Yes",
            "Route": dice.pick(_ROUTES),
        }
        if tls is not None:
            row["TlsVer"], row["Cphr"] = tls
        if refused:
            rej_type, code, text = dice.pick(_DELIVERY_REFUSALS)
            row |= {
                "RejType": rej_type,
                "RejCode": code,
                "RejInfo": text.format(host=f"LO2GBR01FT{dice.between(10, 99):03d}"),
            }
        return row

    def _v1_ttp_url(
        self, seconds: float, offset: int, facts: dict[str, Any], recipient: str
    ) -> Record:
        dice = self._dice
        url: str = dice.pick(_MALICIOUS_URLS).format(n=dice.between(1, 99999))
        return {
            "acc": self._account,
            "reason": "malicious",
            "subject": facts["subject"],
            "msgid": facts["message_id"],
            "url": url,
            "datetime": format_offset_time(seconds, offset),
            "route": "inbound",
            "sourceIp": facts["ip"],
            "sender": facts["sender"],
            "recipient": recipient,
            "action": "Block",
            "urlCategory": "Phishing & Fraud",
            "credentialTheft": None,
            "senderDomain": facts["host"],
        }

    # -- shared pieces ------------------------------------------------------------------------

    def _token(self, size: int) -> str:
        raw = self._dice.bits(size * 8).to_bytes(size)
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _person(self) -> str:
        return f"{self._dice.pick(_PEOPLE)}@{self._domain}"

    def _ip(self) -> str:
        return fake_ip(self._dice)

    def _subject(self) -> str:
        return fake_subject(self._dice)


def _ts_of(receipt: Receipt) -> int:
    return receipt.ts_ms
