"""How every ``soko`` command prints: a table for people, ``--format json`` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)


def emit_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], fmt: str) -> None:
    """A list of records: one table row each, or a JSON array."""
    if fmt == "json":
        click.echo(json.dumps([dict(r) for r in rows], indent=2, default=str))
        return
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(column.replace("_", " ").title())
    for row in rows:
        table.add_row(*(display(row.get(c)) for c in columns))
    Console(file=sys.stdout, soft_wrap=True).print(table)


def emit_record(record: Mapping[str, Any], fmt: str) -> None:
    """One record: a Field/Value table (as openstack-client shows), or a JSON object."""
    if fmt == "json":
        click.echo(json.dumps(dict(record), indent=2, default=str))
        return
    table = Table()
    table.add_column("Field")
    table.add_column("Value")
    for key, value in record.items():
        table.add_row(key, display(value))
    Console(file=sys.stdout, soft_wrap=True).print(table)


def display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)
