"""`workbench export`, `workbench import` and `workbench bench`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bench import BENCHES
from cli.common import gather_vars, store, var_option, vars_file_option
from cli.trace_commands import import_traces, with_trace_options

FORMATS = ["j2", "openai", "openai-request", "promptfoo"]


@click.command("export")
@click.argument("name_or_version")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    required=True,
    help="j2: the template (a version's bound values, delimiter and guardrails in its front matter); "
    "openai: a chat prompt template with {{ name }} placeholders, or the filled messages with --var; "
    "openai-request: a Chat Completions request body; promptfoo: a config `promptfoo eval` runs.",
)
@var_option
@vars_file_option
@click.option(
    "--suite", "suite_name", default=None, help="Tests (and their providers) for --format promptfoo."
)
@click.option(
    "--model", default=None, help="Model of the request body (default: the local model and method)."
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of stdout.",
)
def export(
    name_or_version: str,
    fmt: str,
    var_items: tuple[str, ...],
    vars_file: Path | None,
    suite_name: str | None,
    model: str | None,
    out: Path | None,
) -> None:
    """Export a stored version (NAME@vN, NAME@latest or an id) or a library template (NAME or library:NAME).

    Secrets are never exported: providers carry the name of their key's environment variable.
    """
    from services import exports
    from services.promptfoo_export import export_promptfoo

    db = store()
    values = gather_vars(vars_file, var_items)
    notes: list[str] = []
    if fmt == "j2":
        text, note = exports.export_j2(db, name_or_version)
        notes.append(note)
    elif fmt == "openai":
        text, note = exports.export_openai(db, name_or_version, values)
        notes.append(note)
    elif fmt == "openai-request":
        text = (
            json.dumps(exports.request_body(db, name_or_version, values, model), indent=2, ensure_ascii=False)
            + "\n"
        )
    else:
        text, notes = export_promptfoo(db, name_or_version, suite_name)
    for note in filter(None, notes):
        click.echo(f"note: {note}", err=True)
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Suite name (default: the file name).")
@with_trace_options
def import_(file: Path, name: str | None, trace_format: str | None, **trace_options) -> None:
    """Import a promptfooconfig YAML, CSV or JSONL suite (validated completely first; on any error nothing is
    written), promptfoo's own results (`promptfoo eval -o results.json`) as a run to compare with ours, or, with
    --traces, production logs as a suite of conversation cases (each logged answer kept as the reference output,
    each logged system prompt a version, each production model a provider)."""
    from services import suites
    from services.promptfoo_results import import_results, is_promptfoo_output

    if trace_format:
        import_traces(file, name, trace_format, **trace_options)
        return
    if is_promptfoo_output(file):
        run_id = import_results(store(), file, name)
        click.echo(f"imported promptfoo results as run {run_id}")
        return
    imported = suites.import_file(store(), file, name)
    click.echo(
        f"imported suite {name or file.stem} (id {imported.suite_id}): {imported.cases} tests, "
        f"{len(imported.version_ids)} prompts, {len(imported.provider_ids)} providers"
    )


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("which", type=click.Choice(BENCHES))
@click.pass_context
def bench(ctx: click.Context, which: str) -> None:
    """Benchmarks against the reference, printed as ratios (options: --json, --threads, --repeats ...)."""
    import importlib

    module = importlib.import_module(f"bench.{which}")
    sys.exit(module.main(list(ctx.args)))


def register(main: click.Group) -> None:
    for command in (export, import_, bench):
        main.add_command(command)
