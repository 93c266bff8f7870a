"""The ``mimecast-connector`` command line: one click group, one function a command.

This is the outermost room: it parses arguments, builds the objects the other rooms need and
turns their errors into messages and exit statuses. Nothing else in the package imports it.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mimecast-connector")
def main() -> None:
    """Mimecast TTP alerts, typed and mapped to MITRE ATT&CK."""
