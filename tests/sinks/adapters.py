"""The conformance suite's adapters: how the suite builds each kind of sink and reads back what
it delivered.

Each kind of sink has a module ``tests/sinks/adapter_<type>.py`` defining ``ADAPTERS``, a dict
from ``<type>`` or ``<type>-<variant>`` to a factory ``(request, tmp_path) -> Adapter``;
:func:`collected` gathers them all, and a test holds them to the sink registry.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mimecast_connector.alerts import Format
from mimecast_connector.sinks import Sink

AdapterFactory = Callable[[pytest.FixtureRequest, Path], "Adapter"]


class Adapter:
    """Builds one kind of sink and reads back, in arrival order, what it delivered."""

    #: Secret values the kind is configured with; none may show in its name or repr.
    secrets: tuple[str, ...] = ()
    #: The formats the conformance suite checks this kind in (each must round-trip).
    formats: tuple[Format, ...] = ("native", "ocsf", "ecs", "cef")

    #: Faults this kind's destination can be made to show (see :meth:`inject`); the suite
    #: skips, saying so, a fault a kind's destination cannot have (a local file is never "busy").
    faults: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.opened: list[Sink] = []

    def inject(self, fault: str) -> None:
        """From the next request on, the destination shows ``fault``, for as long as the sink's
        retries last (the adapter's sinks retry a bounded few times on a clock that does not
        wait): ``busy`` answers back-pressure (429 or 5xx) twice, then is well again; ``down``
        does not answer at all (a dropped connection), for every try of one delivery;
        ``refuse`` refuses for good (a 4xx that is not 408/429, a bad credential)."""
        raise NotImplementedError

    def make(self, format: Format) -> Sink:
        raise NotImplementedError

    def units(self) -> list[bytes]:
        """What arrived, one unit per line written (jsonl) or per request body (webhook)."""
        raise NotImplementedError

    def decoded(self) -> list[Any]:
        """Every alert delivered, in order: decoded from JSON, or a CEF line as text."""
        return [decode_unit(unit) for unit in self.units()]

    async def open(self, format: Format = "native", position: str | None = None) -> Sink:
        sink = self.make(format)
        self.opened.append(sink)
        await sink.start(position)
        return sink


def decode_unit(unit: bytes) -> Any:
    """One delivered document: a CEF line as its text, anything else as JSON."""
    if unit.startswith(b"CEF:"):
        return unit.decode("utf-8").rstrip("\n")
    return json.loads(unit)


def collected() -> dict[str, AdapterFactory]:
    """Every ``ADAPTERS`` of every ``adapter_*.py`` beside this module."""
    found: dict[str, AdapterFactory] = {}
    for path in sorted(Path(__file__).parent.glob("adapter_*.py")):
        module = importlib.import_module(f"tests.sinks.{path.stem}")
        for name, factory in module.ADAPTERS.items():
            assert name not in found, f"adapter {name!r} is defined twice"
            found[name] = factory
    return found
