r"""The ``cef`` format: ArcSight Common Event Format, one line per alert.

``CEF:0|Mimecast|Email Security Cloud Gateway|<connector version>|<ATT&CK id>|<alertType>|<severity>|<extension>``

Escaping follows *Implementing ArcSight CEF* (Micro Focus, revision 25): in the header a
backslash is ``\\`` and a pipe ``\|``, and a line break (which the header may not hold) becomes
a space; in the extension a backslash is ``\\``, an equals sign ``\=``, a carriage return
``\r`` and a line feed ``\n``. Nothing else is changed, so every other character, a pipe in the
extension, NUL or U+2028 included, arrives as it was, and no value can end the line or start a
key. The extension ends with ``externalId`` (the alert id): a value taken from a record is
never the last thing on the line, where a receiver might trim its spaces.

The extension keys are ArcSight's standard names; :data:`EXTENSION_KEYS` lists them in the
order written. A value the alert does not have is left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import msgspec

from mimecast_connector.alerts._alert import Alert
from mimecast_connector.alerts._common import PRODUCT, VENDOR, epoch_ms, rejection_text

#: CEF severity (0 to 10) of each alert severity.
SEVERITY = {"low": 3, "medium": 5, "high": 8}

#: ``(key, what it holds)``, in the order written; ``csN`` values follow their ``csNLabel``.
EXTENSION_KEYS = (
    ("rt", "alert time, epoch milliseconds"),
    ("cat", "category: attachment, impersonation, url, rejection or receipt"),
    ("act", "Mimecast's action (TTP logs)"),
    ("suser", "sender address"),
    ("duser", "recipient address"),
    ("src", "sending server, IPv4"),
    ("c6a2", "sending server, IPv6 (c6a2Label=Source IPv6 Address)"),
    ("msg", "subject; for a rejection without one, the refusal in words"),
    ("request", "URL (URL Protection)"),
    ("fname", "attachment file name"),
    ("fileHash", "attachment SHA-256"),
    ("reason", "the refusal: Rejected (<kind>, code <code>): <text> (rejections, receipts)"),
    ("cs1", "cs1Label=threatId: the ATT&CK id"),
    ("cs2", "cs2Label=threatName: the ATT&CK name"),
    ("cs3", "cs3Label=tenant"),
    ("cs4", "cs4Label=messageId"),
    ("cs5", "cs5Label=identifiers: impersonation identifiers, comma-separated"),
    ("cs6", "cs6Label=route: inbound, outbound, internal"),
    ("externalId", "alert id"),
)


def _connector_version() -> str:
    try:
        return version("mimecast-connector")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


_HEADER_SPECIAL = re.compile(r"[\\|\r\n]")
_EXTENSION_SPECIAL = re.compile(r"[\\=\r\n]")


def escape_header(value: str) -> str:
    r"""A header field: ``\`` and ``|`` escaped, CR and LF (not allowed there) made spaces."""
    if _HEADER_SPECIAL.search(value) is None:
        return value
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def escape_value(value: str) -> str:
    r"""An extension value: ``\``, ``=``, CR and LF escaped."""
    if _EXTENSION_SPECIAL.search(value) is None:
        return value
    return value.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


DEVICE_VERSION = _connector_version()
_PREFIX = "CEF:0|{}|{}|{}|".format(*map(escape_header, (VENDOR, PRODUCT, DEVICE_VERSION)))

_encoder = msgspec.json.Encoder()


def cef_line(alert: Alert) -> str:
    """One alert as one CEF line, without the line feed."""
    e = escape_value
    parts = [f"rt={epoch_ms(alert.time)}", f"cat={e(alert.category)}"]
    if alert.action is not None:
        parts.append(f"act={e(alert.action)}")
    if alert.sender is not None:
        parts.append(f"suser={e(alert.sender)}")
    if alert.recipient is not None:
        parts.append(f"duser={e(alert.recipient)}")
    if alert.senderIp is not None:  # an address (``ip_or_none``): nothing to escape
        if ":" in alert.senderIp:
            parts.append(f"c6a2Label=Source IPv6 Address c6a2={alert.senderIp}")
        else:
            parts.append(f"src={alert.senderIp}")
    refusal = (
        rejection_text(alert)
        if alert.rejectionType is not None or alert.rejectionInfo is not None
        else None
    )
    message = alert.subject if alert.subject is not None else refusal
    if message is not None:
        parts.append(f"msg={e(message)}")
    if alert.url is not None:
        parts.append(f"request={e(alert.url)}")
    if alert.fileName is not None:
        parts.append(f"fname={e(alert.fileName)}")
    if alert.fileHash is not None:
        parts.append(f"fileHash={e(alert.fileHash)}")
    if refusal is not None:
        parts.append(f"reason={e(refusal)}")
    parts.append(f"cs1Label=threatId cs1={e(alert.threatId)}")
    parts.append(f"cs2Label=threatName cs2={e(alert.threatName)}")
    parts.append(f"cs3Label=tenant cs3={e(alert.tenant)}")
    if alert.messageId is not None:
        parts.append(f"cs4Label=messageId cs4={e(alert.messageId)}")
    if alert.identifiers is not None:
        parts.append(f"cs5Label=identifiers cs5={e(', '.join(alert.identifiers))}")
    if alert.route is not None:
        parts.append(f"cs6Label=route cs6={e(alert.route)}")
    parts.append(f"externalId={e(alert.id)}")
    header = (
        f"{_PREFIX}{escape_header(alert.threatId)}|{escape_header(alert.alertType)}"
        f"|{SEVERITY[alert.severity]}|"
    )
    return header + " ".join(parts)


def encode_cef_one(alert: Alert) -> bytes:
    """One CEF line, UTF-8, without the line feed."""
    return cef_line(alert).encode("utf-8", "replace")


def encode_cef_lines(alerts: Sequence[Alert]) -> bytes:
    """One CEF line per alert, each ended by a line feed."""
    if not alerts:
        return b""
    return ("\n".join([cef_line(a) for a in alerts]) + "\n").encode("utf-8", "replace")


def encode_cef_array(alerts: Sequence[Alert]) -> bytes:
    """One JSON array of the batch's CEF lines, as strings."""
    return _encoder.encode([cef_line(a) for a in alerts])
