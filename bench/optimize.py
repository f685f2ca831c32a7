"""`bench optimize`: `workbench optimize` on the three shipped suites (examples/optimize/) with the local default
model as target and proposer: the held-out gain with its 95 % interval and p, the validation-vs-held-out gap
(winner's curse) and the budget used, per suite. `--null-seeds N` adds the null control: the same optimiser on
the sentiment suite with its expected labels shuffled among the cases, where no candidate can really be better,
so the held-out interval should cover 0 in about 19 of 20 seeds. Its budget is in cells, so it does the same
work however busy the machine is.

It is a benchmark, not a test: minutes per suite on 2 cores. `--db` keeps the optimisations in a database of
your choosing; a completed optimisation of the same suite, seed and budget found there is reported, not re-run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from bench.common import save_report

SUITES = ("sentiment", "arithmetic", "extraction")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "optimize"


def open_db(url: str | None):
    from store import Store

    return Store(url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-optimize-')}/bench.db")


def reusable(store, suite: str, seed: int, budget: dict, version_id: int | None = None) -> str | None:
    """A completed optimisation of this suite with the same seed and budget (and starting version, when given),
    if the database holds one."""
    for row in store.list_optimizations():
        same = row.settings.get("seed") == seed and row.settings.get("budget") == budget
        same = same and version_id in (None, row.version_id)
        if row.status == "completed" and same and store.get_suite(row.suite_id).name == suite:
            return row.id
    return None


def optimize(store, suite_file: Path, minutes: float, seed: int, suite_name: str | None = None) -> str:
    """Submit (or find) and drive one optimisation in this process; its id."""
    from services.optimize import Budget, submit_optimization
    from services.optimize_requests import request_for
    from services.worker import Worker

    request = request_for(
        store, suite_name or str(suite_file), None, None, None, budget=Budget(minutes=minutes), seed=seed
    )
    found = reusable(store, str(request.suite), seed, request.budget.__dict__)
    if found:
        return found
    optimization_id = submit_optimization(store, request)
    with Worker(store) as worker:
        worker.drain()
    return optimization_id


def row_of(store, optimization_id: str) -> dict:
    row = store.get_optimization(optimization_id)
    if row.status != "completed":
        raise SystemExit(f"{optimization_id} ended {row.status}: {row.error}")
    report = row.report
    held = report["heldout"]
    return {
        "suite": store.get_suite(row.suite_id).name,
        "optimization": row.id,
        "cases": sum(report["split"].values()),
        "heldout_cases": held["cases"],
        "baseline": held["baseline"],
        "winner": held.get("winner"),
        "delta": held.get("delta"),
        "delta_ci": held.get("delta_ci"),
        "p_value": held.get("p_value"),
        "validation_gain": report["validation"]["gain"],
        "gap": report["gap"],
        "chosen": report["chosen"],
        "changes": winner_changes(store, row),
        "candidates": sum(1 for t in row.state["trials"] if "repeat_of" not in t),
        "pruned": sum(1 for t in row.state["trials"] if t.get("pruned")),
        "cells": report["spent"]["cells"],
        "minutes": report["spent"]["minutes"],
        "verdict": report["verdict"],
    }


def winner_changes(store, row) -> str:
    """What the winner changed, in today's words (from its stored candidate, not the report's stored text)."""
    from prompting.optimize import Candidate, Space

    space = Space.from_dict(row.state["space"])
    candidate = Candidate.from_dict(row.report["winner"]["candidate"])
    return (
        "; ".join(candidate.changes(space.instructions, store.get_version(row.version_id).delimiter))
        or "nothing"
    )


def shuffled_suite(store, seed: int) -> str:
    """The sentiment suite with its cases' assertions shuffled among them (seeded): labels carry no signal. It
    decodes as the sentiment suite does (its params)."""
    from services.suites import import_file

    imported = import_file(store, EXAMPLES / "sentiment.yaml")
    cases = store.suite_cases(imported.suite_id)
    assertions = [c.assertions for c in cases]
    random.Random(seed).shuffle(assertions)
    name = f"sentiment-null-{seed}"
    try:
        store.get_suite(name)
    except Exception:
        rows = [{"vars": c.vars, "assertions": a, "tags": []} for c, a in zip(cases, assertions, strict=True)]
        config = {"params": store.get_suite(imported.suite_id).config.get("params") or {}}
        store.save_suite(
            name, rows, description="sentiment with its labels shuffled (null control)", config=config
        )
    return name


NULL_EXAMPLES = [  # written here, not taken from the suite
    {"input": "The zipper jammed on the first day.", "output": "negative"},
    {"input": "Lovely colour and it fits perfectly.", "output": "positive"},
    {"input": "The box contains two cables.", "output": "neutral"},
]


def null_start(store) -> int:
    """The null control's starting version: few-shot, already answering in one label word. With shuffled labels
    a prompt can only be right by chance, and one that answers in the labels' form already is: no candidate can
    truly beat it. (The sentiment draft would not do: it fails every case on form, so answering in form at all
    would be a real gain of a third of the cases even against random labels.)"""
    from services.versions import save

    values = {
        "instruction": "Classify the sentiment of the review. Answer with one word: positive, negative or neutral.",
        "examples": NULL_EXAMPLES,
        "examples_as": "turns",
    }
    return save(store, "few_shot", values, "hash", None, note="bench optimize: the null control's start").id


def run(args) -> dict:
    store = open_db(args.db)
    rows = []
    for suite in args.suites:
        path = EXAMPLES / f"{suite}.yaml"
        print(f"optimizing {suite} (budget {args.minutes:g} minutes)…", file=sys.stderr)
        rows.append({**row_of(store, optimize(store, path, args.minutes, args.seed)), "suite": suite})
        print(f"  {rows[-1]['verdict']}", file=sys.stderr)
    null = []
    if args.null_seeds:
        version = null_start(store)
        for seed in range(args.null_seeds):
            name = shuffled_suite(store, seed)
            from services.optimize import Budget, Request, local_default, submit_optimization
            from services.worker import Worker

            budget = Budget(cells=args.null_cells)
            found = reusable(store, name, seed, budget.__dict__, version)
            if not found:
                request = Request(name, version, local_default(), None, budget, seed)
                found = submit_optimization(store, request)
                with Worker(store) as worker:
                    worker.drain()
            null.append(row_of(store, found))
            print(f"  null seed {seed}: {null[-1]['verdict']}", file=sys.stderr)
    from bench.llama_native import cpu_name

    return {
        "cpu": cpu_name(),
        "minutes_budget": args.minutes,
        "seed": args.seed,
        "suites": rows,
        "null": null,
        "null_cells": args.null_cells,
    }


def merged(report: dict) -> dict:
    """This run's rows over the last report's: suites run now replace theirs, the others stay."""
    from settings import get_settings

    path = get_settings().home_dir / "bench" / "optimize.json"
    if not path.is_file():
        return report
    last = json.loads(path.read_text())
    ran = {r["suite"] for r in report["suites"]}
    rows = [r for r in last.get("suites", []) if r["suite"] not in ran] + report["suites"]
    order = {name: i for i, name in enumerate(SUITES)}
    rows.sort(key=lambda r: order.get(r["suite"].split("-")[0], len(order)))
    null = report["null"] or last.get("null", [])
    return {
        **report,
        "suites": rows,
        "null": null,
        "null_cells": report["null_cells"] if report["null"] else last.get("null_cells"),
    }


def covers_zero(row: dict) -> bool:
    ci = row["delta_ci"]
    return not row["chosen"] or ci is None or ci[0] <= 0 <= ci[1]


def print_report(report: dict) -> None:
    for row in report["suites"]:
        gap = "–" if row["gap"] is None else f"{row['gap'] * 100:+.0f}"
        print(
            f"{row['suite']}: {row['verdict']} (validation gain {row['validation_gain'] * 100:+.0f}, gap {gap}; "
            f"{row['cells']} cells, {row['minutes']:.1f} min)"
        )
    if report["null"]:
        covered = sum(covers_zero(r) for r in report["null"])
        print(f"null control: the held-out interval covers 0 in {covered} of {len(report['null'])} seeds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.optimize", description=__doc__)
    parser.add_argument("--suites", nargs="*", default=list(SUITES), choices=SUITES)
    parser.add_argument("--minutes", type=float, default=20.0, help="budget per suite (wall-clock minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--null-seeds", type=int, default=0, help="seeds of the shuffled-label null control")
    parser.add_argument(
        "--null-cells",
        type=int,
        default=240,
        help="budget per null-control seed, in cells (a fixed amount of work)",
    )
    parser.add_argument("--db", help="database URL to keep (and reuse) the optimisations in")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the last report's rows for suites (and a null control) not run now",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args)
    if args.merge:
        report = merged(report)
    print_report(report)
    save_report("optimize", report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
