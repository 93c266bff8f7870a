"""The chain for SIEM receipt events: most rows skipped cheaply, rejections typed.

A receipt feed carries every message the gateway received, nearly all of them accepted. Only
rejections become alerts (``mta-rejections.md`` §2.1, §2.2), so a row's action is read from its
bytes first, with one regular-expression search and no decode: a row whose action is not
``Rej`` is counted (``dropped: accepted``, ``dropped: held``, ...) and forgotten. A row whose
action cannot be read that way (a key spelled otherwise, escapes, not JSON) goes the slow way:
decoded in full and format-checked like every rejection, so nothing is skipped unseen.

A rejection's texts (2.0: ``rejectionInfo``, then ``virusFound``, then ``receiptErrors``; 1.0:
``RejInfo``, then ``Error``) are typed by the rejection phrases (``rules.rejection_classifier``).
Its identity: Mimecast's ``processingId`` on API 2.0; a hash of the row as served on API 1.0
(whose rows have no id). Skipped rows get no id: the feed's cursor (page token, file, line) is
exact, so no skipped row is read twice.

API 1.0 files are of one log kind each, named by the file: rows of ``delivery`` files (where a
refusal is the customer's own server's, never an alert) and ``process`` files are skipped and
counted by kind without being read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Literal

import msgspec

from mimecast_connector.alerts import Alert
from mimecast_connector.alerts._alert import ip_or_none
from mimecast_connector.records import format_utc, stamp
from mimecast_connector.records._models import decode_failure
from mimecast_connector.rules import AttackTable, Typed, rejection_classifier
from mimecast_connector.runner._chain import DeadLetter, Handled, _dead_id

CATEGORY = "receipt"
Api = Literal["2.0", "1.0"]

#: The first action-like key of a row, and its value: ``"action":"Acc"`` (2.0 batch files),
#: ``"subtype"``/``"subType"`` (the stream endpoint's spelling), ``"Act"`` (1.0).
_ACTION = re.compile(rb'"(?:action|subtype|subType|Act)"\s*:\s*"([A-Za-z ]{1,20})"')
_NAMES = {b"acc": "accepted", b"hld": "held", b"hold": "held", b"bnc": "bounced"}
_REJECTION = frozenset({b"rej", b"rejected", b"reject"})
MAX_ACTION_LABELS = 32


class ReceiptEvent(msgspec.Struct, gc=False):
    """One API 2.0 receipt event (``mta-rejections.md`` §2.1): the fields a rejection alert
    reads. Numbers may arrive as strings; ``timestamp`` is epoch milliseconds."""

    processingId: str
    timestamp: int | str
    action: str | None = None
    subtype: str | None = None
    subType: str | None = None
    senderEnvelope: str | None = None
    senderHeader: str | None = None
    senderIp: str | None = None
    recipients: str | list[str] | None = None
    messageId: str | None = None
    subject: str | None = None
    rejectionType: str | None = None
    rejectionCode: str | int | None = None
    rejectionInfo: str | None = None
    receiptErrors: str | None = None
    virusFound: str | None = None


class SiemRow(msgspec.Struct, gc=False):
    """One API 1.0 receipt row (``mta-rejections.md`` §2.2)."""

    datetime: str
    Act: str | None = None
    IP: str | None = None
    Sender: str | None = None
    Rcpt: str | list[str] | None = None
    MsgId: str | None = None
    Subject: str | None = None
    RejType: str | None = None
    RejCode: str | int | None = None
    RejInfo: str | None = None
    Error: str | None = None


_encoder = msgspec.json.Encoder()
_DECODE_2 = msgspec.json.Decoder(ReceiptEvent).decode
_DECODE_1 = msgspec.json.Decoder(SiemRow).decode


class ReceiptChain:
    """Receipt rows of one tenant to alerts. ``api`` says which feed's rows these are."""

    def __init__(
        self,
        tenant: str,
        api: Api,
        table: AttackTable,
        *,
        keep_unmatched_rejections: bool = False,
    ) -> None:
        self.tenant = tenant
        self.api = api
        self._classify = rejection_classifier(
            table, keep_unmatched_rejections=keep_unmatched_rejections
        )
        self._prefix = f"{tenant}\x1f{CATEGORY}\x1f".encode()
        self._labels: dict[bytes, str] = {}
        self._now = 0.0
        self._row: Callable[[bytes, Handled], None] = self._row_2 if api == "2.0" else self._row_1

    def process(self, lines: list[bytes], now: float, *, kind: str = "receipt") -> Handled:
        """Handle the rows of one piece of a file. ``kind`` is an API 1.0 file's log kind
        (from its name); rows of a kind other than ``receipt`` are skipped and counted.
        ``now`` stands in as the time of a row whose own time is unreadable."""
        out = Handled()
        self._now = now
        skipped = out.skipped
        if kind != "receipt":
            skipped[f"{kind} row"] = len(lines)
            return out
        search, labels, row = _ACTION.search, self._labels, self._row
        for line in lines:
            found = search(line)
            # The key found must be the row's own: with a "{" before it, it may be a nested
            # object's (spamProcessingDetail sometimes is one), and a rejection must never be
            # skipped on such a guess: the row is read whole instead.
            if found is not None and line.find(b"{", 1, found.start()) == -1:
                action = found.group(1)
                if action != b"Rej":
                    label = labels.get(action)
                    if label is None:
                        label = self._label(action)
                    if label:
                        skipped[label] = skipped.get(label, 0) + 1
                        continue
            row(line, out)
        return out

    def _label(self, action: bytes) -> str:
        """The drop reason of a row of ``action``; "" for a rejection, however spelled."""
        folded = action.strip().lower()
        if folded in _REJECTION:
            label = ""
        else:
            label = _NAMES.get(folded) or f"action {folded.decode('ascii')}"
            if len(self._labels) >= MAX_ACTION_LABELS:
                label = "action (other)"
        self._labels[action] = label
        return label

    # -- one row the slow way: decode, check, type ------------------------------------------

    def _row_2(self, line: bytes, out: Handled) -> None:
        try:
            event = _DECODE_2(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            self._dead(line, out, decode_failure(exc, line))
            return
        seconds = _epoch_seconds(event.timestamp)
        if seconds is None:
            shown = str(event.timestamp)[:64]
            self._dead(line, out, f"$.timestamp: not epoch milliseconds: {shown!r}")
            return
        if self._skip(event.action or event.subtype or event.subType, out):
            return
        verdict = self._classify(
            (event.rejectionInfo, event.virusFound, event.receiptErrors), event.rejectionType
        )
        id_ = self._id(b"%d\x1f%b" % (int(seconds), _encoder.encode(event.processingId)))
        out.ids.append((id_, seconds))
        if isinstance(verdict, str):
            out.dropped.append((id_, verdict))
            return
        out.alerts.append(
            self._alert(
                id_, verdict, seconds, line,
                event.senderEnvelope or event.senderHeader, event.recipients, event.subject,
                event.messageId, event.senderIp, event.rejectionType, event.rejectionCode,
                event.rejectionInfo,
            )
        )  # fmt: skip

    def _row_1(self, line: bytes, out: Handled) -> None:
        try:
            row = _DECODE_1(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            self._dead(line, out, decode_failure(exc, line))
            return
        found = stamp(row.datetime)
        if found is None:
            shown = row.datetime[:64]
            self._dead(line, out, f"$.datetime: not a valid time with a UTC offset: {shown!r}")
            return
        if self._skip(row.Act, out):
            return
        seconds = found[0]
        verdict = self._classify((row.RejInfo, row.Error), row.RejType)
        # A 1.0 row has no id: the row itself, as served, is its identity.
        id_ = self._id(b"%d\x1f%b" % (int(seconds), blake2b(line, digest_size=16).digest()))
        out.ids.append((id_, seconds))
        if isinstance(verdict, str):
            out.dropped.append((id_, verdict))
            return
        out.alerts.append(
            self._alert(
                id_, verdict, seconds, line, row.Sender, row.Rcpt, row.Subject, row.MsgId,
                row.IP, row.RejType, row.RejCode, row.RejInfo,
            )
        )  # fmt: skip

    def _skip(self, action: str | None, out: Handled) -> bool:
        """Count a row that is not a rejection and say so; False for a rejection."""
        label = self._label((action or "none").encode("utf-8", "replace")[:20])
        if label:
            out.skipped[label] = out.skipped.get(label, 0) + 1
        return bool(label)

    def _id(self, key: bytes) -> str:
        return blake2b(b"%b%b\x1f0" % (self._prefix, key), digest_size=16).hexdigest()

    def _dead(self, line: bytes, out: Handled, reason: str) -> None:
        raw = msgspec.Raw(line)
        dead_id = _dead_id(self.tenant, CATEGORY, raw)
        text: msgspec.Raw | str = raw
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
        else:
            try:
                msgspec.json.decode(line)
            except msgspec.DecodeError:
                text = line.decode("utf-8")  # kept as text: the dead-letter line stays JSON
        encoded = _encoder.encode(DeadLetter(self.tenant, CATEGORY, reason, text)) + b"\n"
        out.dead.append((dead_id, encoded))
        out.ids.append((dead_id, self._now))

    def _alert(
        self,
        id_: str,
        typed: Typed,
        seconds: float,
        line: bytes,
        sender: str | None,
        recipients: str | list[str] | None,
        subject: str | None,
        message_id: str | None,
        ip: str | None,
        rejection_type: str | None,
        code: str | int | None,
        info: str | None,
    ) -> Alert:
        recipient = ", ".join(recipients) if isinstance(recipients, list) else recipients
        return Alert(
            id_, self.tenant, CATEGORY, typed.alert_type, typed.threat_id, typed.threat_name,
            format_utc(datetime.fromtimestamp(seconds, UTC)), typed.severity, sender,
            recipient or None, subject, message_id, None, None, None, None, None, None,
            ip_or_none(ip), rejection_type, None if code is None else str(code), info,
            msgspec.Raw(line),
        )  # fmt: skip


def _epoch_seconds(value: int | str) -> float | None:
    """Epoch milliseconds (an integer, or its digits as a string) as seconds; None if not."""
    if isinstance(value, str):
        if not value.strip().isdigit():
            return None
        value = int(value)
    if not 0 <= value < 253_402_300_800_000:  # up to 9999-12-31
        return None
    return value / 1000
