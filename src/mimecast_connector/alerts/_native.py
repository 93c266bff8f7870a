"""The ``native`` format: the :class:`Alert` struct as it is, as JSON.

Keys in the struct's field order; null where a category has no value; ``raw`` is written back
as the exact bytes Mimecast sent.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from mimecast_connector.alerts._alert import Alert

_encoder = msgspec.json.Encoder()


def encode_native_one(alert: Alert) -> bytes:
    """One alert as one JSON object."""
    return _encoder.encode(alert)


def encode_native_lines(alerts: Sequence[Alert]) -> bytes:
    """One JSON object a line."""
    return _encoder.encode_lines(alerts)


def encode_native_array(alerts: Sequence[Alert]) -> bytes:
    """One JSON array of the batch."""
    return _encoder.encode(list(alerts))
