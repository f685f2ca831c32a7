"""`workbench runs list|show|compare|resume|cancel`: stored runs."""

from __future__ import annotations

import json

import click

from cli.common import store
from cli.run_commands import execute_or_attach


@click.group()
def runs() -> None:
    """Stored runs: list, show one, compare two."""


@runs.command("list")
def runs_list() -> None:
    """Every run, newest first: id, status, created, cells, pass rate."""
    from prompting.numbers import percent
    from services import runs as run_service

    db = store()
    all_runs = run_service.listing(db)
    width = max((len(r.id) for r in all_runs), default=0)
    for row in all_runs:
        total = run_service.overall(db, row.id)
        click.echo(
            f"{row.id:<{width}}  {row.status:<11}  {row.created_at:%Y-%m-%d %H:%M}  {total.cells:>5} cells  "
            f"pass {percent(total.pass_rate, total.scored):>4}  {row.description}"
        )


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object with a results list, on stdout.")
def runs_show(run_id: str, as_json: bool) -> None:
    """A run with every result: case, version, provider, repeat, output, pass, score, error."""
    from services import reports
    from services.runs import strategy_text

    payload = reports.payload(store(), run_id)
    if as_json:
        click.echo(json.dumps(payload, ensure_ascii=False, default=str))
        return
    click.echo(f"run {payload['id']}  status {payload['status']}")
    for label, strategy in payload["strategies"].items():
        click.echo(f"strategy for {label}: {strategy_text(strategy)}")
    for group in payload["groups"]:
        click.echo(f"{group['version']} × {group['provider']}: {describe_stats(group)}")
    for judge in payload["agreement"]:
        click.echo(describe_agreement(judge))
    for r in payload["results"]:
        mark = "ERROR" if r["error"] else ("PASS" if r["pass"] else "FAIL")
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        text = (r["error"] or r["output"] or "").replace("\n", " ")
        click.echo(
            f"[{mark}] case {r['case_id']} {r['case']!r} {r['version']} {r['provider']} #{r['repeat']} "
            f"score {score}: {text[:100]}"
        )


def describe_stats(group: dict) -> str:
    """One line: pass rate and mean score with their 95 % intervals over cases, errors, pass@k, flaky cases."""
    from prompting.numbers import percent, percent_interval, score, score_interval
    from prompting.stats import Interval

    stats = group["stats"]
    n = stats["cases"]
    if not n:
        return f"no scored cell ({group['errors']} errored)"
    pass_ci, score_ci = (
        None if ci is None else Interval(*ci) for ci in (stats["pass_rate_ci"], stats["mean_score_ci"])
    )
    text = (
        f"pass rate {percent(stats['pass_rate'], n)} ({percent_interval(pass_ci, n)}) over {n} cases, "
        f"mean score {score(stats['mean_score'])}" + (f" ({score_interval(score_ci)})" if score_ci else "")
    )
    if group["errors"]:
        text += f", {group['errors']} errored cells apart"
    for name, values in (("pass@", stats["pass_at_k"]), ("pass^", stats["pass_hat_k"])):
        text += "".join(f", {name}{k} {percent(v, n)}" for k, v in values.items() if int(k) > 1)
    if stats["flaky_cases"]:
        text += f", {stats['flaky_cases']} flaky case(s)"
    return text


def describe_agreement(judge: dict) -> str:
    """How an automatic judge agrees with the reviewers' ratings on the same cells (or why κ is undefined)."""
    matrix = ", ".join(f"{k} {v}" for k, v in judge["matrix"].items())
    return f"{judge['assertion']} vs reviewers: {judge['text']}; {matrix}"


@runs.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option(
    "--json", "as_json", is_flag=True, help="The headline, the per-case rows and the warnings as JSON."
)
def runs_compare(run_a: str, run_b: str, as_json: bool) -> None:
    """Run B against run A over the cases they share, as the Compare page does: the runs may differ in provider,
    quantization or version. Cells pair on the case (and on the version or provider only where a run holds
    several). Prints each case that changed, the totals, and a verdict from a paired test (exact McNemar, or a
    sign-flip test over cases when they repeat) with a bootstrap interval and the smallest difference the suite
    detects."""
    from prompting.numbers import percent, points
    from services import compare as compare_service

    result = compare_service.compare_runs(store(), run_a, run_b)
    if as_json:
        click.echo(json.dumps(compare_service.comparison_dict(result), ensure_ascii=False))
        return
    p = result.paired
    click.echo(f"A: {result.a.label}\nB: {result.b.label}\nmatched on {result.matched_on}: {p.cases} shared")
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    for row in result.rows:
        if row.change != "unchanged":
            change = "" if row.delta is None else f" ({points(row.delta, p.cases)} points)"
            click.echo(f"  {row.change:<10} {row.case}: {percent(row.a)} -> {percent(row.b)}{change}")
    unchanged = p.cases - len(p.improved) - len(p.regressed)
    click.echo(
        f"pass rate {percent(p.rate_a, p.cases)} -> {percent(p.rate_b, p.cases)} "
        f"({points(p.delta, p.cases)} points); improved {len(p.improved)}, regressed {len(p.regressed)}, "
        f"unchanged {unchanged}; only in A {len(p.only_a)}, only in B {len(p.only_b)}"
    )
    click.echo(f"verdict: {p.verdict}")
    click.echo(f"test: {p.test}, p = {p.p_value:.3g}")
    for turn in result.turns:
        t = turn.paired
        click.echo(
            f"{turn.label}: {percent(t.rate_a, t.cases)} -> {percent(t.rate_b, t.cases)} "
            f"({points(t.delta, t.cases)} points over {t.cases} cases), p = {t.p_value:.3g}: {t.verdict}"
        )


@runs.command("resume")
@click.argument("run_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Follow its progress until it ends.")
def runs_resume(run_id: str, wait: bool) -> None:
    """Queue a cancelled or interrupted run's missing cells again (a worker, or this process, runs them)."""
    from services import runs as run_service

    db = store()
    pending = run_service.resume(db, run_id)
    click.echo(f"{run_id}: {pending} cells queued", err=True)
    if wait and pending:
        execute_or_attach(db, run_id, {}, f"workbench runs resume {run_id} --wait")


@runs.command("cancel")
@click.argument("run_id")
def runs_cancel(run_id: str) -> None:
    """Stop a run: no new cell starts; cells in flight finish and are kept; `runs resume` continues it."""
    from services import runs as run_service

    run_service.cancel(store(), run_id)
    click.echo(f"{run_id}: cancelled")


def register(main: click.Group) -> None:
    main.add_command(runs)
