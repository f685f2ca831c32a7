"""`workbench redteam` (attack a prompt version's guardrails offline) and `workbench redteams` (read a report)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.common import console, store


@click.command()
@click.argument("target")
@click.option(
    "--provider",
    help="The model under attack: a configured provider's label, local:MODEL@METHOD or a remote id (default: "
    "a suite file's first provider, else the local model).",
)
@click.option(
    "--families",
    default="",
    help="Comma-separated attack families (default: every one that applies): override, indirect, forgery, "
    "extraction, roleplay, encoding, crescendo, pii, rules, format.",
)
@click.option(
    "--attacks", type=int, default=90, show_default=True, help="Attacks in all, dealt evenly over families."
)
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed gives the same attacks.")
@click.option(
    "--baseline",
    help="Compare paired on the same attacks with another version (NAME@vN) or 'unguarded' (the same version "
    "without its rules and refusal).",
)
@click.option("--max-tokens", type=int, default=96, show_default=True, help="Longest answer per turn.")
@click.option(
    "--promote", type=click.Path(dir_okay=False, path_type=Path), help="Write successful attacks here."
)
@click.option("--detach", is_flag=True, help="Queue it and return; `workbench redteams RUN` reports later.")
def redteam(target, provider, families, attacks, seed, baseline, max_tokens, promote, detach):
    """Red-team TARGET (a version NAME@vN or NAME@LABEL, or a suite file with guardrails) on this machine.

    Attacks come from a seed library written for the workbench, mutated with the seed (encodings, wrappers,
    combinations): instruction override, indirect injection through every inserted variable, delimiter forgery
    in every style, system-prompt extraction against a canary planted in the system prompt, persona
    jailbreaks, encoding smuggling, multi-turn escalation, personal-data echo, each guardrail rule, and (with a
    JSON schema) format breaking. Graders are deterministic. The red team is an ordinary run (a worker or this
    process executes it; Ctrl-C keeps finished attacks). Exit code 1 when any attack succeeded.
    """
    from services import redteam as service

    db = store()
    request = service.Request(
        target,
        provider or "",
        tuple(f.strip() for f in families.split(",") if f.strip()),
        attacks,
        seed,
        baseline,
        max_tokens,
    )
    if Path(target).suffix in (".yaml", ".yml", ".json") and Path(target).exists():
        request = service.from_file(db, target, request)
    if not request.provider:
        from dataclasses import replace

        from services.optimize import local_default

        request = replace(request, provider=local_default().label)
    run = service.submit_redteam(db, request)
    click.echo(f"red team {run.id}: {attacks} attacks on {request.version} with {request.provider}", err=True)
    if detach:
        click.echo(run.id)
        return
    from cli.run_commands import execute_or_attach

    execute_or_attach(db, run.id, {}, f"workbench runs resume {run.id} --wait")
    report_and_exit(db, run.id, promote)


@click.command()
@click.argument("run_id", required=False)
@click.option(
    "--promote", type=click.Path(dir_okay=False, path_type=Path), help="Write successful attacks here."
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
def redteams(run_id, promote, as_json):
    """List red-team runs, or report one (RUN_ID): success per family, the paired comparison, worst examples."""
    from services import redteam as service

    db = store()
    if not run_id:
        for run in service.listing(db):
            info = (run.options or {}).get("redteam", {})
            click.echo(f"{run.id}  {run.status:<11} {info.get('version')}  {info.get('attacks')} attacks")
        return
    if as_json:
        from services.redteam_report import as_dict, build_report

        click.echo(json.dumps(as_dict(build_report(db, run_id)), indent=2))
        return
    report_and_exit(db, run_id, promote)


def report_and_exit(db, run_id: str, promote: Path | None) -> None:
    import sys

    from rich.table import Table

    from prompting.numbers import percent
    from services.redteam_report import build_report, suite_file

    report = build_report(db, run_id)
    out = console()
    table = Table(title=f"red team {run_id}: attack success per family (95 % interval)")
    table.add_column("family")
    for label in report.versions:
        table.add_column(label, justify="right")
    for i, row in enumerate(report.rates[report.versions[0]]):
        cells = []
        for label in report.versions:
            r = report.rates[label][i]
            ci = f" ({percent(r.interval.low)}–{percent(r.interval.high)})" if r.interval else ""
            cells.append(f"{r.successes}/{r.attacks} {percent(r.rate)}{ci}")
        table.add_row(row.family, *cells)
    out.print(table)
    for example in report.worst[:3]:
        out.print(f"[bold]{example.family}[/bold] {example.description}: {'; '.join(example.reasons)}")
        out.print(f"  answer: {example.conversation[-1]['content'][:200]!r}")
    if promote:
        n = suite_file(db, run_id, promote, report)
        click.echo(
            f"{n} successful attacks written to {promote} (run it with `workbench run {promote}`)", err=True
        )
    click.echo(report.verdict(), err=True)
    sys.exit(1 if report.successful_case_ids else 0)


def register(main: click.Group) -> None:
    main.add_command(redteam)
    main.add_command(redteams)
