"""Statistics benchmark: comparing two stored runs of 10,000 cells each (paired by case, exact McNemar, BCa
bootstrap intervals with 2,000 resamples for Δ pass rate and Δ mean score). Target: <= 2 s."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from bench.common import print_table, save_report


def two_runs(store, cells: int) -> tuple[str, str]:
    """A suite of `cells` cases and two runs of it, written in bulk (this measures the comparison, not writes)."""
    from store.models import Result

    suite = store.save_suite("s", [{"vars": {"i": i}} for i in range(cells)])
    case_ids = [c.id for c in store.suite_cases(suite.id)]
    version, provider = store.save_version("v", "x"), store.upsert_provider("p", "local", "m")
    rng = np.random.default_rng(0)
    ids = []
    for chance in (0.70, 0.72):
        run = store.create_run(suite_id=suite.id, version_ids=[version.id], provider_ids=[provider.id])
        passed = rng.random(cells) < chance
        rows = [
            {
                "run_id": run.id,
                "case_id": c,
                "version_id": version.id,
                "provider_id": provider.id,
                "repeat_index": 0,
                "passed": bool(p),
                "score": float(p),
                "messages": [],
                "detail": {},
                "tokens_in": 0,
                "tokens_out": 0,
                "latency_ms": 0.0,
                "cost": 0.0,
                "cached": False,
            }
            for c, p in zip(case_ids, passed, strict=True)
        ]
        with store.sql.begin() as conn:
            conn.execute(insert(Result.__table__), rows)
        ids.append(run.id)
    return ids[0], ids[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.stats", description=__doc__)
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from services.compare import compare_runs
    from store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'stats.db'}")
        run_a, run_b = two_runs(store, args.cells)
        timings = []
        for seed in range(args.repeats):
            start = time.perf_counter()
            result = compare_runs(store, run_a, run_b, seed=seed)
            timings.append(time.perf_counter() - start)
        store.dispose()
    seconds = statistics.median(timings)
    report = {"cells": args.cells, "compare_s": seconds, "verdict": result.verdict}
    print("\nstatistics benchmark (median)", file=sys.stderr)
    print_table(
        ["measure", "value", "target", "ratio"],
        [
            [
                f"compare two runs of {args.cells:,} cells (2,000 resamples)",
                f"{seconds:.2f} s",
                "<= 2 s",
                f"{2 / seconds:.1f}x headroom",
            ]
        ],
    )
    save_report("stats", report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
