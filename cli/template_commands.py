"""`workbench templates list|show` and `workbench render`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import gather_vars, store, var_option, vars_file_option


@click.group()
def templates() -> None:
    """Browse the technique template library (templates/*.j2)."""


@templates.command("list")
def templates_list() -> None:
    """One line per template: name, technique, description."""
    from prompting.templates import list_templates

    rows = [
        (t.name, t.technique, t.description.splitlines()[0] if t.description else "")
        for t in list_templates()
    ]
    width_name = max(len(r[0]) for r in rows)
    width_tech = max(len(r[1]) for r in rows)
    for name, technique, description in rows:
        click.echo(f"{name:<{width_name}}  {technique:<{width_tech}}  {description}")


@templates.command("show")
@click.argument("name")
def templates_show(name: str) -> None:
    """Show a template's front matter (variables, strategy, stages) and its source."""
    from prompting.templates import load

    template = load(name)
    click.echo(f"name: {template.name}\ntechnique: {template.technique}\ndescription: {template.description}")
    if template.stages:
        click.echo(f"stages: {', '.join(template.stages)}")
    click.echo(f"strategy: {json.dumps(template.strategy)}")
    if template.answer_pattern:
        click.echo(f"answer pattern: {template.answer_pattern}")
    click.echo("variables:")
    for var in template.variables:
        flags = "required" if var.required and var.default is None else f"default {var.default!r}"
        stages = f", stages {'/'.join(var.stages)}" if var.stages else ""
        click.echo(f"  {var.name} ({flags}{stages}): {var.description}")
    click.echo("\n" + template.source.rstrip())


def format_messages_text(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def read_guardrails(path: Path | None):
    if path is None:
        return None
    import yaml

    from prompting.guardrails import Guardrails

    try:
        return Guardrails.from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValueError, AttributeError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--guardrails") from None


@click.command()
@click.argument("name_or_path")
@var_option
@vars_file_option
@click.option(
    "--delimiter",
    type=click.Choice(["hash", "equals", "angle", "xml"]),
    default=None,
    help="Section delimiter style [default: what an exported version bound, else hash].",
)
@click.option("--stage", default=None, help="Stage of a multi-stage template (default: its first).")
@click.option(
    "--guardrails",
    "guardrails_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON or YAML with task, output_format, json_schema, rules, refusal.",
)
@click.option("--fold-system", is_flag=True, help="Fold the system message into the first user message.")
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="json", show_default=True)
def render(
    name_or_path: str,
    var_items: tuple[str, ...],
    vars_file: Path | None,
    delimiter: str,
    stage: str | None,
    guardrails_file: Path | None,
    fold_system: bool,
    fmt: str,
) -> None:
    """Render a library template (by name) or a .j2 file (by path) to OpenAI chat messages."""
    from prompting.templates import render as render_template

    values = gather_vars(vars_file, var_items)
    if "@" in name_or_path and not name_or_path.endswith(
        (".j2", ".txt")
    ):  # a stored version: NAME@vN, NAME@LABEL
        click.echo(format_output(render_stored(name_or_path, values, delimiter, fold_system), fmt))
        return
    messages = render_template(
        name_or_path,
        values,
        delimiter=delimiter,
        stage=stage,
        guardrails=read_guardrails(guardrails_file),
        fold_system=fold_system,
    )
    click.echo(
        json.dumps(messages, indent=2, ensure_ascii=False)
        if fmt == "json"
        else format_messages_text(messages)
    )


def render_stored(ref: str, values: dict, delimiter: str | None, fold_system: bool) -> list[dict[str, str]]:
    from prompting.guardrails import fold_system_into_user
    from services.exports import resolve
    from services.versions import render_version

    messages = render_version(resolve(store(), ref).prompt, values, delimiter)
    return fold_system_into_user(messages) if fold_system else messages


def format_output(messages: list[dict[str, str]], fmt: str) -> str:
    return (
        json.dumps(messages, indent=2, ensure_ascii=False)
        if fmt == "json"
        else format_messages_text(messages)
    )


def register(main: click.Group) -> None:
    main.add_command(templates)
    main.add_command(render)
