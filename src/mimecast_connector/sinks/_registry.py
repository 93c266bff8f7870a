"""What a kind of sink declares to the registry (:mod:`._kinds` finds them all).

A kind of sink is one private module of this package that defines ``KIND``, a
:class:`SinkKind`: its ``type`` (the ``type =`` of a ``[[sinks]]`` table), its settings model
(a :class:`SinkSettings`, strict, secrets as ``SecretStr``), the factory that builds the sink
from those settings, and what its guarantee is, stated for the README. The configuration's
``[[sinks]]`` union, :func:`make_sink`, the README's sink table and the conformance suite are
all derived from :data:`~._kinds.SINK_KINDS`, so adding a sink touches its own module and its tests.

A sink module imports what it needs when the sink is built, not at import: every module here
is imported at start-up, whichever sinks are configured.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from mimecast_connector._fields import Strict
from mimecast_connector.sinks._base import Sink


class SinkSettings(Strict):
    """What every kind's settings model is: a strict, frozen pydantic model with ``type``."""

    type: str

    def secrets(self) -> list[str]:
        """Every secret value of these settings, for redaction (URLs that may carry tokens too)."""
        return []

    def local_files(self) -> list[tuple[str, Path]]:
        """Files on this machine the sink writes, as (key, path), to check they are distinct."""
        return []

    def anchored(self, base_dir: Path) -> Self:
        """These settings with relative paths made relative to the configuration's folder."""
        return self


@dataclass(frozen=True)
class SinkKind:
    """One kind of sink, as the registry knows it."""

    type: str
    settings: builtins.type[SinkSettings]
    build: Callable[[Any], Sink]
    #: What it speaks, in a few words (README table).
    protocol: str
    #: When a batch counts as acknowledged, so the checkpoint may move.
    acknowledged: str
    #: What a crash can cause: exactly once, or at least once with stable ids.
    guarantee: str
    #: Position in the README table (smaller first).
    order: int
    #: Why this kind cannot serve a fleet of workers (None: it can).
    fleet_refusal: str | None = None
    #: What the tests deliver to: the real server, or a receiver of the documented protocol.
    tested_against: str = ""
