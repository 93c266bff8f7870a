"""What a sink is: a place that takes batches of alerts and says when it has them.

A :class:`Sink` gets a batch with :meth:`Sink.deliver` and acknowledges it by returning; an
exception means *not acknowledged*, and the checkpoint stays where it was. A sink may return a
*position* (the ``jsonl`` sink returns its file size): the runner stores it in the same state
transaction as the checkpoint, and hands it back through :meth:`Sink.committed`, so after a
crash or a failed batch the sink can cut away what it wrote beyond the last commit.

Delivery is one batch at a time per sink, in order: the runner holds one delivery lock from
the first sink's write to the state commit. That is the bounded queue of every sink: one batch
in flight, and a full sink (slow, down) blocks the producers upstream instead of dropping or
buffering without limit. Nothing is ever dropped to make room.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mimecast_connector.alerts import Alert, Format


class Sink(Protocol):
    """A destination for alerts."""

    @property
    def name(self) -> str:
        """A stable name, used as the key of the sink's position in the state store."""
        ...

    @property
    def format(self) -> Format:
        """The output format of this sink."""
        ...

    async def start(self, position: str | None) -> str | None:
        """Open; ``position`` is what was committed last time (None on first use).

        Returns the position to record at once, before anything is written (None if the sink
        has none): on first use that is the baseline a crash in the first batch is cut back to.
        """
        ...

    async def deliver(self, alerts: Sequence[Alert]) -> str | None:
        """Deliver ``alerts`` durably; return the position to commit, or None if there is none."""
        ...

    def committed(self, position: str | None) -> None:
        """The batch that returned ``position`` is committed in the state store."""
        ...

    async def aclose(self) -> None:
        """Release files and connections."""
        ...
