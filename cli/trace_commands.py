"""`workbench import --traces FORMAT` (production logs to a suite of conversation cases) and
`workbench export-traces SUITE` (a suite back to a chat-completions log)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import store
from services.traces import FORMATS

TRACE_OPTIONS = [
    click.option(
        "--traces",
        "trace_format",
        type=click.Choice(FORMATS),
        default=None,
        help="Read FILE as production traces: chat (chat-completions JSONL: request + response per line), otel "
        "(OpenTelemetry GenAI spans, OTLP JSON) or langfuse (a Langfuse trace/observation export).",
    ),
    click.option(
        "--sample",
        type=click.IntRange(min=1),
        default=None,
        help="Traces: keep N, stratified by model and tag.",
    ),
    click.option(
        "--dedupe/--no-dedupe", default=True, show_default=True, help="Traces: drop near-identical inputs."
    ),
    click.option(
        "--scrub-pii/--no-scrub-pii",
        default=True,
        show_default=True,
        help="Traces: replace e-mail addresses, phone and card numbers.",
    ),
    click.option(
        "--skip-bad",
        is_flag=True,
        help="Traces: skip malformed records (named) instead of importing nothing.",
    ),
    click.option(
        "--version",
        "version_ref",
        default=None,
        help="Traces: the version (NAME@vN) the logged system prompts map to (default: one per prompt).",
    ),
    click.option("--seed", type=int, default=0, show_default=True, help="Traces: the sample's seed."),
]


def with_trace_options(command):
    for option in reversed(TRACE_OPTIONS):
        command = option(command)
    return command


def import_traces(
    file: Path, name: str | None, fmt: str, sample, dedupe, scrub_pii, skip_bad, version_ref, seed
) -> None:
    from services import traces

    options = traces.ImportOptions(
        fmt,
        name=name,
        sample=sample,
        dedupe=dedupe,
        scrub=scrub_pii,
        skip_bad=skip_bad,
        seed=seed,
        version=version_ref,
    )
    report = traces.import_traces(store(), file, options, progress=lambda line: click.echo(line, err=True))
    for bad in report.bad + report.skipped:
        click.echo(f"skipped: {bad}", err=True)
    scrubbed = ", ".join(f"{n} {kind}" for kind, n in sorted(report.scrubbed.items())) or "nothing"
    click.echo(
        f"imported suite {report.suite} (id {report.suite_id}): {report.kept} conversations from {report.read} calls "
        f"({len(report.bad)} malformed skipped, {report.duplicates} near-duplicates removed); scrubbed {scrubbed}; "
        f"versions {', '.join(report.versions) or 'none'}; providers {', '.join(report.providers) or 'none'} "
        f"({report.elapsed_s:.1f} s)"
    )


@click.command("export-traces")
@click.argument("suite")
@click.option(
    "-o",
    "--out",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of stdout.",
)
def export_traces(suite: str, output: Path | None) -> None:
    """Write SUITE's conversation cases as chat-completions JSONL (one request + reference response per line), the
    shape `workbench import --traces chat` reads: an imported log exported again gives back its messages."""
    from services import traces

    lines = [json.dumps(r, ensure_ascii=False) for r in traces.export_records(store(), suite)]
    text = "".join(line + "\n" for line in lines)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(lines)} records to {output}", err=True)
    else:
        click.echo(text, nl=False)


def register(main: click.Group) -> None:
    main.add_command(export_traces)
