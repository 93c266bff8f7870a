"""Durable state: checkpoints, delivered ids, counters and sink positions.

Import from here; the module beside it is private.
"""

from __future__ import annotations

from mimecast_connector.state._store import (
    SCHEMA_VERSION,
    Commit,
    StateStore,
    StreamState,
    WriterLock,
)

__all__ = ["SCHEMA_VERSION", "Commit", "StateStore", "StreamState", "WriterLock"]
