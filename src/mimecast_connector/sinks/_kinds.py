"""The sink registry: every kind of sink, found by looking, not by a list kept by hand.

Every private module of this package that defines ``KIND`` (a
:class:`~._registry.SinkKind`) is a kind of sink. This module imports each module of the
package to find them, naming none; the sink modules never import it (only ``_registry``), so
there is no cycle.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from mimecast_connector.sinks._base import Sink
from mimecast_connector.sinks._registry import SinkKind, SinkSettings


def _discover() -> dict[str, SinkKind]:
    kinds: dict[str, SinkKind] = {}
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        found = getattr(importlib.import_module(f"{__package__}.{module.name}"), "KIND", None)
        if isinstance(found, SinkKind):
            if found.type in kinds:
                raise RuntimeError(f"two sink modules declare type {found.type!r}")
            kinds[found.type] = found
    return dict(sorted(kinds.items(), key=lambda item: (item[1].order, item[0])))


#: Every kind of sink, in README order.
SINK_KINDS: dict[str, SinkKind] = _discover()

if TYPE_CHECKING:
    SinkConfig = SinkSettings
else:
    #: A ``[[sinks]]`` table: the settings of the kind its ``type`` names.
    SinkConfig = Annotated[
        Union[tuple(kind.settings for kind in SINK_KINDS.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]


def make_sink(settings: SinkSettings) -> Sink:
    """The sink these settings describe."""
    return SINK_KINDS[settings.type].build(settings)


def sink_table() -> str:
    """The README's table of sinks, as Markdown, from the registry."""
    rows = [
        "| `type` | protocol | acknowledged when | a crash can cause | tested against |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| `{k.type}` | {k.protocol} | {k.acknowledged} | {k.guarantee} | {k.tested_against} |"
        for k in SINK_KINDS.values()
    ]
    return "\n".join(rows)
