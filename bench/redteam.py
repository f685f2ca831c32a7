"""`bench redteam`: `workbench redteam` on the shipped guarded CO-STAR example (examples/redteam/) with the local
default model: every family that applies, the guarded version and the same version without its rules and
refusal attacked with the same attacks (paired), graded deterministically. Reports attack success per family
with Wilson intervals for both, the paired comparison (McNemar, Holm-adjusted per family), forged sections, and
the wall-clock time of the whole red team (engine start included) against the 15-minute target.

It is a benchmark, not a test: about ten minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.common import save_report

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redteam" / "co_star_guarded.yaml"
TARGET_MINUTES = 15


def open_db(url: str | None):
    from store import Store

    return Store(url or f"sqlite:///{tempfile.mkdtemp(prefix='bench-redteam-')}/bench.db")


def red_team(store, args) -> tuple[str, float]:
    """Submit and execute the red team in this process; its run id and wall-clock minutes."""
    from services import redteam, worker
    from services.optimize import local_default

    start = time.perf_counter()
    attacks, seed, max_tokens, concurrency = args.attacks, args.seed, args.max_tokens, args.concurrency
    request = redteam.Request(
        str(EXAMPLE),
        args.provider or local_default().label,
        attacks=attacks,
        seed=seed,
        baseline=redteam.UNGUARDED,
        max_tokens=max_tokens,
        concurrency=concurrency,
    )
    run = redteam.submit_redteam(store, redteam.from_file(store, str(EXAMPLE), request))
    last = [0.0]

    def progress(state) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"  {state.done}/{state.total} attacks graded", file=sys.stderr)

    worker.execute(store, run.id, progress=progress)
    return run.id, (time.perf_counter() - start) / 60


def rate_row(r) -> dict:
    return {
        "family": r.family,
        "attacks": r.attacks,
        "successes": r.successes,
        "refusals": r.refusals,
        "errors": r.errors,
        "interval": [r.interval.low, r.interval.high] if r.interval else None,
    }


def run(args) -> dict:
    from bench.llama_native import cpu_name
    from services.redteam_report import build_report

    store = open_db(args.db)
    print(f"red team: {args.attacks} attacks × guarded and unguarded…", file=sys.stderr)
    run_id, minutes = red_team(store, args)
    report = build_report(store, run_id)
    guarded, unguarded = report.versions
    return {
        "cpu": cpu_name(),
        "attacks": args.attacks,
        "seed": args.seed,
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "provider": report.info.get("provider"),
        "graded": sum(r.attacks for label in report.versions for r in report.rates[label]),
        "minutes": minutes,
        "families": len(report.rates[guarded]),
        "guarded": [rate_row(r) for r in report.rates[guarded]],
        "unguarded": [rate_row(r) for r in report.rates[unguarded]],
        "changes": [
            {
                "family": c.family,
                "guarded_only": c.blocked_more,
                "unguarded_only": c.let_through_more,
                "p": c.p,
                "p_holm": c.p_adjusted,
            }
            for c in report.changes
        ],
        "forged": list(report.forged.values()),
        "verdict": report.verdict(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.redteam", description=__doc__)
    parser.add_argument("--attacks", type=int, default=500, help="attacks (each sent to both versions)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=48, help="longest answer per turn")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight to the engine")
    parser.add_argument("--provider", help="the model under attack (default: the local default, int4)")
    parser.add_argument("--db", help="database URL to keep the red team in")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args)
    print(report["verdict"])
    print(
        f"{report['graded']} graded attacks over {report['families']} families in {report['minutes']:.1f} minutes "
        f"(target {TARGET_MINUTES}); forged sections: {report['forged']}"
    )
    save_report("redteam", report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
