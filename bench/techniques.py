"""Every example suite (examples/*.yaml) on the default model: the strategy each prompt ran with, and its pass
rate with the 95 % interval over cases. `python -m bench techniques`; the README's technique table is rendered
from the report by `python -m bench.readme`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from bench.common import print_table, save_report

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [
    "co_star",
    "few_shot",
    "chain_of_thought",
    "zero_shot_cot",
    "self_consistency",
    "generate_knowledge",
    "tree_of_thoughts",
    "verbalizer",
    "ape",
    "capitals",
]


def measure(name: str) -> dict:
    from services import compare, open_store, runs, suites, worker

    store = open_store()
    path = ROOT / "examples" / f"{name}.yaml"
    suite = suites.load_file(path)
    imported = suites.import_suite(store, suite)
    plan = runs.RunPlan(
        imported.suite_id,
        imported.version_ids,
        imported.provider_ids,
        suite.repeat,
        suite.strategy,
        suite.params,
        f"bench: {name}",
    )
    run = runs.create(store, plan)
    worker.execute(store, run.id, concurrency=4)
    total = runs.overall(store, run.id)
    stats = list(compare.run_group_stats(store, run.id).values())[0]
    strategies = store.get_run(run.id).options["strategies"]
    return {
        "example": name,
        "strategy": "; ".join(runs.strategy_text(s) for s in strategies.values()),
        "cases": total.cells,
        "passed": total.passed,
        "errors": total.errors,
        "pass_rate": total.pass_rate,
        "ci": [stats.pass_ci.low, stats.pass_ci.high] if stats.pass_ci else None,
        "latency_ms": total.mean_latency_ms,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.techniques", description=__doc__)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from settings import get_settings

    # a fresh data folder (an empty response cache: every call is real), but this machine's models and kernels
    os.environ["WORKBENCH_MODELS"] = str(get_settings().models_dir)
    os.environ["WORKBENCH_HOME"] = tempfile.mkdtemp(prefix="workbench-techniques-")
    from services.engines import engines

    try:
        rows = [measure(name) for name in EXAMPLES]
    finally:
        engines.stop_all()
    print("\ntechnique examples on the default model", file=sys.stderr)
    print_table(
        ["example", "strategy", "passed", "pass rate"],
        [
            [r["example"], r["strategy"], f"{r['passed']}/{r['cases']}", f"{(r['pass_rate'] or 0):.0%}"]
            for r in rows
        ],
    )
    os.environ.pop("WORKBENCH_HOME")
    os.environ.pop("WORKBENCH_MODELS")
    save_report("techniques", {"results": rows})
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
