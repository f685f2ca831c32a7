"""What the subcommands share: exit codes, --var parsing, the store, the console."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

EXIT_INVALID = 2


def parse_var(item: str) -> tuple[str, Any]:
    """`key=value`; a value that starts with [ or { is read as JSON so lists of examples can be passed."""
    if "=" not in item:
        raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--var")
    key, value = item.split("=", 1)
    if value[:1] in "[{":
        try:
            return key, json.loads(value)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"{key}: invalid JSON ({exc})", param_hint="--var") from None
    return key, value


def read_vars_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{path}, line {exc.lineno}: {exc.msg}", param_hint="--vars-file") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a JSON object of variables", param_hint="--vars-file")
    return data


def gather_vars(vars_file: Path | None, var_items: tuple[str, ...]) -> dict[str, Any]:
    values: dict[str, Any] = read_vars_file(vars_file) if vars_file else {}
    values.update(dict(parse_var(item) for item in var_items))
    return values


def store():
    from services import open_store

    return open_store()


def console():
    from rich.console import Console

    return Console(stderr=True)


var_option = click.option(
    "--var",
    "var_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="A variable (repeatable); JSON for [..] or {..}.",
)
vars_file_option = click.option(
    "--vars-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON object of variables.",
)
