"""Which ATT&CK tactic each technique of the mapping table sits under, for the heat map.

The mapping table (``rules._mapping``, ``data/attack-mapping.toml``) gives each alertType a
``threatId``: a technique (``T1566``), a sub-technique (``T1598.003``) or, for a few rejection
types, a tactic itself (``TA0001``). The table names no tactic for a technique, so this one
does, for the techniques the default table uses (MITRE ATT&CK Enterprise v18); a
sub-technique takes its parent's tactics; a technique of a user's table not listed here is
shown under "Other". A technique of several tactics (Valid Accounts) is shown under each.
"""

from __future__ import annotations

#: The Enterprise tactics, in ATT&CK's order (the heat map's columns).
TACTICS: dict[str, str] = {
    "TA0043": "Reconnaissance",
    "TA0042": "Resource Development",
    "TA0001": "Initial Access",
    "TA0002": "Execution",
    "TA0003": "Persistence",
    "TA0004": "Privilege Escalation",
    "TA0005": "Defense Evasion",
    "TA0006": "Credential Access",
    "TA0007": "Discovery",
    "TA0008": "Lateral Movement",
    "TA0009": "Collection",
    "TA0011": "Command and Control",
    "TA0010": "Exfiltration",
    "TA0040": "Impact",
}
#: The column of a technique this module does not know.
OTHER = "Other"

#: Technique (without a sub-technique's suffix) -> its tactics.
_TECHNIQUE_TACTICS: dict[str, tuple[str, ...]] = {
    "T1598": ("TA0043",),  # Phishing for Information
    "T1566": ("TA0001",),  # Phishing
    "T1078": ("TA0001", "TA0003", "TA0004", "TA0005"),  # Valid Accounts
    "T1672": ("TA0005",),  # Email Spoofing
    "T1041": ("TA0010",),  # Exfiltration Over C2 Channel
    "T1499": ("TA0040",),  # Endpoint Denial of Service
    "T1204": ("TA0002",),  # User Execution
    "T1534": ("TA0008",),  # Internal Spearphishing
    "T1114": ("TA0009",),  # Email Collection
    "T1586": ("TA0042",),  # Compromise Accounts
}


def tactics_of(threat_id: str) -> tuple[str, ...]:
    """The tactic ids ``threat_id`` is shown under (itself for a tactic), or ``(OTHER,)``."""
    if threat_id in TACTICS:
        return (threat_id,)
    return _TECHNIQUE_TACTICS.get(threat_id.partition(".")[0], (OTHER,))
