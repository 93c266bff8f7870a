"""The output formats, one registry: :data:`FORMATS`.

Each format lives in its own module and gives three encoders, built once:

* ``one``: one alert's document, without a line feed (a syslog message, a queue record);
* ``lines``: a batch as one document a line, each ended by a line feed (files, stdout);
* ``array``: a batch as one JSON array (a webhook body). For ``cef`` that is an array of the
  CEF lines as JSON strings.

``native`` (``_native``) is the alert as it is; ``ocsf`` (``_ocsf``) an OCSF Detection Finding
with the Security Control profile; ``ecs`` (``_ecs``) an Elastic Common Schema document;
``cef`` (``_cef``) an ArcSight CEF line. :data:`LINE_ENCODERS`, :data:`ARRAY_ENCODERS` and
:data:`ONE_ENCODERS` are views of the registry by format name.

A new format: a module with its three encoders, a row in :data:`FORMATS` and its name in
:data:`Format` (a test holds the two equal).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from mimecast_connector.alerts._alert import Alert
from mimecast_connector.alerts._cef import encode_cef_array, encode_cef_lines, encode_cef_one
from mimecast_connector.alerts._ecs import (
    ECS_VERSION,
    encode_ecs_array,
    encode_ecs_lines,
    encode_ecs_one,
)
from mimecast_connector.alerts._native import (
    encode_native_array,
    encode_native_lines,
    encode_native_one,
)
from mimecast_connector.alerts._ocsf import (
    OCSF_VERSION,
    encode_ocsf_array,
    encode_ocsf_lines,
    encode_ocsf_one,
)

Format = Literal["native", "ocsf", "ecs", "cef"]
"""A format's name, as configuration spells it (the keys of :data:`FORMATS`)."""

BatchEncoder = Callable[[Sequence[Alert]], bytes]
OneEncoder = Callable[[Alert], bytes]


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """One output format and its encoders."""

    name: Format
    description: str
    #: One alert's document, without a trailing line feed.
    one: OneEncoder
    #: A batch, one document a line, each line ended by a line feed.
    lines: BatchEncoder
    #: A batch as one JSON array (``application/json``).
    array: BatchEncoder
    #: The media type of one document (what ``one`` writes); ``array`` is always JSON.
    media_type: str


FORMATS: dict[Format, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat(
            "native",
            "The alert as JSON, keys in a fixed order, with the record as Mimecast sent it.",
            encode_native_one,
            encode_native_lines,
            encode_native_array,
            "application/json",
        ),
        OutputFormat(
            "ocsf",
            f"An OCSF {OCSF_VERSION} Detection Finding with the Security Control profile.",
            encode_ocsf_one,
            encode_ocsf_lines,
            encode_ocsf_array,
            "application/json",
        ),
        OutputFormat(
            "ecs",
            f"An Elastic Common Schema {ECS_VERSION} document (event.kind alert).",
            encode_ecs_one,
            encode_ecs_lines,
            encode_ecs_array,
            "application/json",
        ),
        OutputFormat(
            "cef",
            "An ArcSight CEF:0 line; as an array, a JSON array of the lines as strings.",
            encode_cef_one,
            encode_cef_lines,
            encode_cef_array,
            "text/plain; charset=utf-8",
        ),
    )
}

LINE_ENCODERS: dict[Format, BatchEncoder] = {name: f.lines for name, f in FORMATS.items()}
ARRAY_ENCODERS: dict[Format, BatchEncoder] = {name: f.array for name, f in FORMATS.items()}
ONE_ENCODERS: dict[Format, OneEncoder] = {name: f.one for name, f in FORMATS.items()}
