"""`workbench run`, `workbench ape`, `workbench worker` and `workbench plan`."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from cli.common import console, store

STRATEGY_HELP = (
    "single, self_consistency, tree_of_thoughts, generate_knowledge, verbalizer "
    "(parameters from the template's front matter)."
)


def summary_table(groups, title: str):
    from rich.table import Table

    from prompting.numbers import percent

    table = Table(title=title)
    for column in (
        "version",
        "provider",
        "cells",
        "errors",
        "pass rate",
        "mean score",
        "cached",
        "latency ms",
        "tokens in/out",
    ):
        table.add_column(column, justify="left" if column in ("version", "provider") else "right")
    for g in groups:
        s = g.summary
        table.add_row(
            g.version,
            g.provider,
            str(s.cells),
            str(s.errors),
            percent(s.pass_rate, s.scored),
            "–" if s.mean_score is None else f"{s.mean_score:.3f}",
            str(s.cached),
            "–" if s.mean_latency_ms is None else f"{s.mean_latency_ms:.0f}",
            f"{s.tokens_in}/{s.tokens_out}",
        )
    return table


def turn_table(rows: list[dict], title: str):
    """Conversation cases: each turn's pass rate with its 95 % Wilson interval (services.run_view.turn_rows)."""
    from rich.table import Table

    table = Table(title=title)
    for column in rows[0]:
        table.add_column(column, justify="left" if column in ("version", "provider", "turn") else "right")
    for row in rows:
        table.add_row(*row.values())
    return table


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pass {task.fields[passed]} fail {task.fields[failed]} err {task.fields[errors]}"),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=console(), transient=False)


def prepare_run(
    db, suite_file: Path, providers, repeat, strategy, run_id, retry_errored
) -> tuple[str, object]:
    """Validate the suite (and overrides) and return the run id to execute: a new run, or one to resume."""
    from services import runs, suites

    suite = suites.load_file(suite_file, db)
    suites.override(suite, suite_file, providers=providers, strategy=strategy)
    if run_id and runs.exists(db, run_id):
        if retry_errored:
            click.echo(f"retrying {runs.retry_errored(db, run_id)} errored cells of {run_id}", err=True)
        click.echo(f"resuming {run_id}: {runs.stored_cells(db, run_id)} cells already stored", err=True)
        return run_id, suite
    if retry_errored:
        raise click.BadParameter("needs the --run-id of an existing run", param_hint="--retry-errored")
    imported = suites.import_suite(db, suite)
    plan = runs.RunPlan(
        imported.suite_id,
        imported.version_ids,
        imported.provider_ids,
        repeat or suite.repeat,
        suite.strategy,
        suite.params,
        str(suite_file),
        run_id,
    )
    return runs.create(db, plan).id, suite


@click.command()
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
@click.option("--strategy", default=None, help=STRATEGY_HELP)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Exit 0 when every cell was scored and the pass rate reaches this fraction, else 1.",
)
@click.option("--run-id", default=None, help="Resume this run (only missing cells run), or name a new one.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write results as .json, .csv or .html (by extension).",
)
@click.option(
    "--cache",
    "cache",
    type=click.Choice(["reuse", "fresh"]),
    default=None,
    help="reuse (the default for a new run; a resumed run keeps its own): a deterministic request "
    "(temperature 0, beam search or a seed) answered in an earlier run is reused; fresh: every request is made "
    "again. Sampled requests are never reused across runs (only when this run resumes).",
)
@click.option("--no-cache", is_flag=True, help="The same as --cache fresh.")
@click.option("--retry-errored", is_flag=True, help="With --run-id: re-run only the cells that errored.")
@click.option(
    "--baseline",
    default=None,
    metavar="RUN_ID",
    help="Gate on a stored run instead of --threshold: exit 1 only on a significant regression.",
)
@click.option(
    "--max-drop",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="With --baseline: the pass-rate drop tolerated; exit 1 when the 95 % interval of the change lies "
    "wholly below -MAX_DROP.",
)
def run(
    suite_file: Path,
    providers: tuple[str, ...],
    concurrency: int | None,
    repeat: int | None,
    strategy: str | None,
    threshold: float,
    run_id: str | None,
    output: Path | None,
    cache: str | None,
    no_cache: bool,
    retry_errored: bool,
    baseline: str | None,
    max_drop: float,
) -> None:
    """Run a suite (promptfoo-style YAML, CSV or JSONL) over prompts x providers x tests x repeats.

    Results go to the store as they finish. Exit codes: 0 every cell scored and the pass rate >= --threshold
    (or, with --baseline, no significant regression against that run), 1 otherwise, 2 invalid input. Ctrl-C
    stops cleanly and prints the --run-id to resume with.
    """
    from services import reports
    from services import runs as run_service

    if output:
        try:
            reports.check_suffix(output)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--output") from None
    db = store()
    if baseline and not run_service.exists(db, baseline):
        raise click.BadParameter(f"no stored run '{baseline}'", param_hint="--baseline")
    run_id, suite = prepare_run(db, suite_file, providers, repeat, strategy, run_id, retry_errored)
    print_strategies(db, run_id)
    options = {"concurrency": concurrency or suite.max_concurrency or 4}
    if cache or no_cache:
        options["cache"] = "fresh" if no_cache else cache
    execute_or_attach(db, run_id, options, f"workbench run {suite_file} --run-id {run_id}")
    finish(db, run_id, threshold, output, baseline, max_drop)


def print_strategies(db, run_id: str) -> None:
    """Which strategy each prompt runs with (its template's declared one unless overridden)."""
    from services import runs

    for label, strategy in runs.strategies_of(runs.get(db, run_id)).items():
        click.echo(f"strategy for {label}: {runs.strategy_text(strategy)}", err=True)


def execute_or_attach(db, run_id: str, options: dict, resume_command: str) -> None:
    """With a `workbench worker` alive, queue the run for it and watch; otherwise run it in this process (on
    Ctrl-C, `resume_command` is how to go on)."""
    from services import runs, worker
    from services.worker import Interrupted, live_workers

    with progress_bar() as bar:
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

        workers = live_workers(db)
        try:
            with interrupt_sets(threading.Event()) as stop:
                if workers:
                    runs.resume(db, run_id, **options)
                    watch(db, run_id, on_progress, stop=stop)
                else:
                    worker.execute(db, run_id, progress=on_progress, stop=stop, **options)
        except (KeyboardInterrupt, Interrupted):
            bar.stop()
            # plain echo, not rich: the command must stay on one line to be copied
            if workers:
                click.echo(
                    f"\ndetached; the run continues in worker {workers[0].id}. Cancel it with:\n"
                    f"  workbench runs cancel {run_id}",
                    err=True,
                )
            else:
                click.echo(
                    f"\ninterrupted; finished cells are stored. Resume with:\n  {resume_command}", err=True
                )
            sys.exit(130)


@contextmanager
def interrupt_sets(stop: threading.Event) -> Iterator[threading.Event]:
    """Ctrl-C sets `stop` as well as raising KeyboardInterrupt. Python drops an exception raised while a
    finaliser runs (a garbage-collected connection, say), so a Ctrl-C landing there would be lost and the run
    would go on to the end; with the event set, the runner stops claiming cells and raises Interrupted."""

    def interrupt(signum, frame):
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def watch(db, run_id: str, on_progress, poll_s: float = 0.5, stop: threading.Event | None = None) -> None:
    """Follow a run that a worker executes until it is no longer queued or running (or `stop` is set)."""
    from services import runs

    stop = stop or threading.Event()
    while True:
        on_progress(runs.progress(db, run_id))
        if not runs.is_active(runs.get(db, run_id)):
            return
        if stop.wait(poll_s):
            raise KeyboardInterrupt


def finish(
    db, run_id: str, threshold: float, output: Path | None, baseline: str | None = None, max_drop: float = 0.0
) -> None:
    """Print the summary table and the verdict line, write the report, exit 0 or 1."""
    from prompting.numbers import percent
    from services import reports, run_view, runs

    out = console()
    out.print(summary_table(runs.summary(db, run_id), f"run {run_id}"))
    turns = run_view.turn_rows(db, run_id)
    if turns:
        out.print(turn_table(turns, "conversation cases, per turn"))
    if output:
        reports.write(db, run_id, output)
        out.print(f"results written to {output}")
    total = runs.overall(db, run_id)
    errored = f"; {total.errors} errored cells have no verdict (--retry-errored)" if total.errors else ""
    if total.cached:
        policy = runs.cache_policy_text(db, run_id)
        click.echo(
            f"{total.cached} of {total.cells} cells were answered from the cache ({policy}); "
            "their latency is left out of the latency figures",
            err=True,
        )
    if baseline:
        gate(db, baseline, run_id, max_drop, total)
    click.echo(
        f"pass rate {percent(total.pass_rate, total.scored)} ({total.passed} of {total.scored} scored cells"
        f"{errored}; threshold {threshold:.0%}) - run id {run_id}",
        err=True,
    )
    sys.exit(0 if total.meets(threshold) else 1)


def gate(db, baseline: str, run_id: str, max_drop: float, total) -> None:
    """The noise-aware gate: exit 1 only when the run is significantly worse than the baseline by more than
    max_drop (the upper end of the 95 % interval of the change lies below -max_drop)."""
    from prompting.stats import regression
    from services.compare import compare_runs

    result = compare_runs(db, baseline, run_id).paired
    failed = regression(result, max_drop)
    errored = f"; {total.errors} errored cells left out" if total.errors else ""
    click.echo(
        f"against {baseline} ({result.cases} shared cases, {result.test}): {result.verdict}{errored}",
        err=True,
    )
    click.echo(
        f"gate: {'FAIL' if failed else 'pass'} (tolerated drop {max_drop * 100:.0f} pts) - run id {run_id}",
        err=True,
    )
    sys.exit(1 if failed else 0)


@click.command()
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
    from services import techniques

    for rank, item in enumerate(techniques.ape(suite_file, count, provider_id), start=1):
        click.echo(f"{rank}. {item['score']:.0%}  {item['instruction']}")


@click.command()
@click.option(
    "--poll",
    type=click.FloatRange(0.05, 60),
    default=0.5,
    show_default=True,
    help="Seconds between looks at the queue when it is empty.",
)
def worker(poll: float) -> None:
    """Execute queued runs (from the pages, `workbench run` and other terminals) until stopped with Ctrl-C.

    Several workers may share one PostgreSQL database: they claim cells with row locks, so no cell runs twice.
    A run left by a killed worker is resumed at the next worker start with only its missing cells.
    """
    from services import database_label
    from services.engines import engines
    from services.worker import Worker

    def stop(signum, frame):  # `kill`/`make run`'s Ctrl-C: leave like Ctrl-C, releasing claims and engines
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    db = store()
    with Worker(db) as job_loop:
        click.echo(f"workbench worker {job_loop.id} ready (database {database_label()})", err=True)
        try:
            job_loop.serve_forever(poll, on_idle=engines.reap)
        except KeyboardInterrupt:
            click.echo("worker stopped; its unfinished cells are back in the queue", err=True)


@click.command()
@click.option(
    "--detect",
    type=click.FloatRange(0.001, 0.999),
    required=True,
    help="The pass-rate change to detect, as a fraction (0.10 = 10 points).",
)
@click.option(
    "--baseline-rate",
    type=click.FloatRange(0.001, 0.999),
    default=0.7,
    show_default=True,
    help="The pass rate you expect today.",
)
@click.option("--power", type=click.FloatRange(0.5, 0.99), default=0.8, show_default=True)
def plan(detect: float, baseline_rate: float, power: float) -> None:
    """How many cases a suite needs to detect a given change in pass rate (two-sided, 5 % level)."""
    from prompting.stats import cases_needed

    try:
        n = cases_needed(detect, baseline_rate, power)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--detect") from None
    click.echo(
        f"{n} cases detect a change of {detect * 100:.0f} points from {baseline_rate:.0%} with {power:.0%} power "
        "(independent outcomes; comparing two runs of the same cases usually needs fewer)"
    )


def register(main: click.Group) -> None:
    for command in (run, ape, worker, plan):
        main.add_command(command)
