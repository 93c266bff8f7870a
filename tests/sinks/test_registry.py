"""The sink registry: what it finds, and what is derived from it (the configuration's
``[[sinks]]`` union, the factory, the README's table)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from mimecast_connector import ConfigError
from mimecast_connector.config import load_config
from mimecast_connector.sinks import SINK_KINDS, JsonlSink, WebhookSink, make_sink, sink_table

README = Path(__file__).parents[2] / "README.md"


def test_every_sink_module_is_found() -> None:
    """The registry finds each kind by looking in the package (today's two, at the least)."""
    assert {"jsonl", "webhook"} <= set(SINK_KINDS)


@pytest.mark.parametrize("kind", sorted(SINK_KINDS))
def test_each_kind_declares_its_own_type_and_a_guarantee(kind: str) -> None:
    """A kind's settings model takes exactly its own ``type``, and it states what a crash can
    cause (the README table is made of these)."""
    found = SINK_KINDS[kind]
    annotation = found.settings.model_fields["type"].annotation
    assert typing.get_args(annotation) == (kind,)
    assert found.protocol
    assert found.acknowledged
    assert found.guarantee
    assert found.tested_against, "say what the tests deliver to: the real server or a fake"
    assert "maybe" not in found.guarantee.lower()


def test_the_readme_table_is_the_registry() -> None:
    """The README's sink table is the one the registry makes, row for row."""
    text = README.read_text("utf-8")
    begin, end = "<!-- sinks:begin -->\n", "\n<!-- sinks:end -->"
    assert begin in text, "the README has lost its sink table markers"
    assert end in text, "the README has lost its sink table markers"
    assert text[text.index(begin) + len(begin) : text.index(end)] == sink_table()


def test_the_configuration_union_and_the_factory_come_from_the_registry(tmp_path: Path) -> None:
    """A ``[[sinks]]`` table is read as its kind's settings and built by its kind's factory;
    an unknown ``type`` names the kinds there are."""
    config = tmp_path / "c.toml"
    config.write_text(
        '[[tenants]]\nname = "t"\nclient_id = "i"\nclient_secret = "s"\n'
        '[[sinks]]\ntype = "jsonl"\npath = "out.jsonl"\n'
        '[[sinks]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n'
    )
    loaded = load_config(config, environ={})
    built = [make_sink(s) for s in loaded.sinks]
    assert [type(s) for s in built] == [JsonlSink, WebhookSink]
    config.write_text(config.read_text().replace('type = "jsonl"', 'type = "carrier-pigeon"'))
    with pytest.raises(ConfigError) as caught:
        load_config(config, environ={})
    for kind in SINK_KINDS:
        assert f'"{kind}"' in str(caught.value)
