"""`workbench optimize` (search for a better prompt, proven on held-out cases) and `workbench optimizations`."""

from __future__ import annotations

import time

import click

from cli.common import console, store

PARTS_HELP = "instruction, demos, technique, delimiter, sections (default: all)."


@click.command()
@click.argument("suite")
@click.option(
    "--version",
    "version",
    help="The version to start from (NAME@vN or NAME@LABEL); a suite file's first prompt by default.",
)
@click.option(
    "--provider",
    help="The model the prompt is for (local:MODEL@METHOD or a remote id); default: a suite file's first "
    "provider, else the local model.",
)
@click.option("--proposer", help="The model that proposes instruction rewrites (default: the --provider).")
@click.option(
    "--budget-cells",
    type=int,
    help="Stop searching when one more candidate and the held-out evaluation would pass this many cells.",
)
@click.option(
    "--budget-minutes",
    type=float,
    help="Stop searching when the time so far and what is left would pass this (wall-clock).",
)
@click.option(
    "--budget-cost", type=float, help="Stop searching when the estimated cost in USD would pass this."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seeds the split, the proposer and the sampler."
)
@click.option(
    "--parts",
    default=",".join(("instruction", "demos", "technique", "delimiter", "sections")),
    show_default=True,
    help=f"What the search may change: {PARTS_HELP}",
)
@click.option(
    "--keep",
    type=int,
    default=1,
    show_default=True,
    help="Versions saved: the winner (labelled) and the next best.",
)
@click.option("--label", default="optimized", show_default=True, help="The label the winner gets.")
@click.option(
    "--detach", is_flag=True, help="Queue it and return; `workbench optimizations ID` shows it later."
)
def optimize(
    suite,
    version,
    provider,
    proposer,
    budget_cells,
    budget_minutes,
    budget_cost,
    seed,
    parts,
    keep,
    label,
    detach,
):
    """Search for a better prompt on SUITE (a stored suite or a suite file) and prove the gain on cases the
    search never saw.

    The suite is split (seeded, stratified by tags) into train, validation and held-out thirds. Instruction
    rewrites come from the proposer, shown failing train cases only; demonstrations are train cases the model
    answered right; Optuna's TPE sampler picks candidates (instruction, demonstrations, technique, delimiter,
    a dropped part) scored on validation. At the end the held-out third is evaluated once, for the starting
    version and the winner, and the verdict is their paired difference with its 95 % interval. The winner is
    saved as a child version labelled `optimized`.

    The optimisation is a job for `workbench worker` (one is started when none is alive): closing this command
    loses nothing. Without a budget: the starting version and 15 candidates.
    """
    from services import optimize as service
    from services.optimize import Budget
    from services.optimize_requests import request_for

    db = store()
    request = request_for(
        db,
        suite,
        version,
        provider,
        proposer,
        budget=Budget(budget_cells, budget_minutes, budget_cost),
        seed=seed,
        parts=tuple(p.strip() for p in parts.split(",") if p.strip()),
        keep=keep,
        label=label,
    )
    optimization_id = service.submit_optimization(db, request)
    click.echo(f"optimization {optimization_id} queued", err=True)
    if detach:
        click.echo(optimization_id)
        return
    ensure_worker(db)
    try:
        watch(db, optimization_id)
    except KeyboardInterrupt:
        click.echo(
            f"\nstopped watching; {optimization_id} goes on in the worker "
            f"(`workbench optimizations {optimization_id}`)",
            err=True,
        )
        return
    show(db, optimization_id)


def ensure_worker(db) -> None:
    from services.worker import live_workers, spawn_worker

    if not live_workers(db):
        pid = spawn_worker()
        click.echo(f"started `workbench worker` (pid {pid}) for the job", err=True)


def watch(db, optimization_id: str, poll_s: float = 1.0) -> None:
    """One line per change of phase or candidate count until the optimisation ends."""
    from prompting.numbers import percent
    from services import optimize as service

    last = None
    while True:
        state = service.progress(db, optimization_id)
        line = f"{state['phase_text']}: {state['candidates']} candidates, best on validation {percent(state['best'])}"
        if state["run"]:
            line += f" · cells {state['run']['done']}/{state['run']['total']}"
        if line != last:
            click.echo(line, err=True)
            last = line
        if state["status"] not in ("queued", "running"):
            return
        time.sleep(poll_s)


def show(db, optimization_id: str) -> None:
    """The report: the verdict first, then held-out, validation, the gap, the leaderboard, the budget."""
    from rich.table import Table

    from prompting.numbers import DASH, percent, points
    from services import optimize as service

    row = service.get(db, optimization_id)
    click.echo(service.describe(db, row))
    if row.status == "failed":
        raise click.ClickException(f"optimization failed: {row.error}")
    if not row.report:
        click.echo(f"{row.status}: {service.progress(db, optimization_id)['phase_text']}")
        return
    report = row.report
    held, val = report["heldout"], report["validation"]
    click.echo(f"\n{report['verdict']}\n")

    def rate(value, ci) -> str:
        return f"{percent(value)} ({percent(ci[0])}–{percent(ci[1])})" if ci else percent(value)

    table = Table(title="held-out (evaluated once, at the end)")
    for column in ("", "baseline", "winner", "change"):
        table.add_column(column)
    n = held["cases"]
    change = DASH if held.get("delta") is None else f"{points(held['delta'], n)} points"
    if held.get("delta_ci"):
        low, high = held["delta_ci"]
        change += f" ({points(low, n)} to {points(high, n)}), p = {held['p_value']:.3g}"
    table.add_row(
        f"{held['cases']} cases",
        rate(held["baseline"], held["baseline_ci"]),
        rate(held.get("winner"), held.get("winner_ci")) if report["chosen"] else DASH,
        change,
    )
    console().print(table)
    gap = DASH if report["gap"] is None else f"{points(report['gap'], n)} points"
    click.echo(
        f"validation: baseline {rate(val['baseline']['rate'], val['baseline']['ci'])}, "
        f"winner {rate(val['winner']['rate'], val['winner']['ci'])}; validation gain minus held-out gain "
        f"(winner's curse): {gap}"
    )
    board = Table(title=f"candidates on validation ({report['trials']} tried; {report['stopped']})")
    for column in ("#", "what changed", "validation", "errors", "tokens", "cost"):
        board.add_column(column)
    for entry in report["leaderboard"][:10]:
        board.add_row(
            str(entry["index"]),
            entry["changes"],
            rate(entry["rate"], entry["ci"]),
            str(entry["errors"]),
            str(entry["tokens"]),
            f"${entry['cost']:.4f}",
        )
    console().print(board)
    spent = report["spent"]
    click.echo(f"spent: {spent['cells']} cells, ${spent['cost']:.4f}, {spent['minutes']:.1f} minutes")
    if report.get("saved"):
        click.echo(f"saved: {', '.join(report['saved'])} (the first labelled {row.settings.get('label')})")


@click.command()
@click.argument("optimization_id", required=False)
@click.option(
    "--cancel", is_flag=True, help="Stop it (the evaluation in flight is cancelled; nothing is saved)."
)
@click.option(
    "--json", "as_json", is_flag=True, help="The report as JSON (for CI): verdict, held-out, leaderboard."
)
def optimizations(optimization_id, cancel, as_json):
    """List optimisations, or show one's report (OPTIMIZATION_ID), or cancel it."""
    import json

    from services import optimize as service

    db = store()
    if optimization_id is None:
        for row in service.listing(db):
            click.echo(service.describe(db, row))
        return
    if cancel:
        service.cancel(db, optimization_id)
        click.echo(f"{optimization_id} cancelled")
        return
    if as_json:
        row = service.get(db, optimization_id)
        click.echo(json.dumps({"id": row.id, "status": row.status, "error": row.error, "report": row.report}))
        return
    show(db, optimization_id)


def register(main: click.Group) -> None:
    for command in (optimize, optimizations):
        main.add_command(command)
