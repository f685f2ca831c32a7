"""Trace import against its target: a generated 10,000-line chat-completions log (examples/traces/generate.py:
near-duplicates, planted personal data, 1 % malformed lines) imported into a fresh store in <= 30 s, medians of
three runs, with how many planted values survived the scrub (must be 0).

    python -m bench traces [--lines 10000] [--sample 200] [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.common import save_report
from bench.llama_native import cpu_name

TARGET_S = 30.0


def once(log: Path, sample: int | None, folder: Path, index: int) -> dict:
    from services import traces
    from store import Store

    store = Store(f"sqlite:///{folder / f'bench-{index}.db'}")
    options = traces.ImportOptions("chat", name="production", sample=sample, skip_bad=True)
    report = traces.import_traces(store, log, options)
    planted = json.loads(log.with_suffix(".planted.json").read_text())
    text = json.dumps([c.vars for c in store.suite_cases(report.suite_id)])
    return {
        "seconds": report.elapsed_s,
        "read": report.read,
        "malformed": len(report.bad),
        "duplicates": report.duplicates,
        "kept": report.kept,
        "scrubbed": dict(report.scrubbed),
        "survivors": sum(1 for value in planted if value in text),
    }


def run(lines: int, samples: list[int | None], repeats: int) -> dict:
    from examples.traces.generate import generate

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log = folder / "production.jsonl"
        made = generate(log, lines, seed=0)
        for sample in samples:
            runs = [once(log, sample, folder, len(rows) * repeats + i) for i in range(repeats)]
            rows.append(
                {**runs[0], "sample": sample, "seconds": statistics.median(r["seconds"] for r in runs)}
            )
    return {
        "lines": lines,
        "generated": made,
        "rows": rows,
        "repeats": repeats,
        "cpu": cpu_name(),
        "target_s": TARGET_S,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.traces", description=__doc__)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args.lines, [200, None], args.repeats)
    for row in report["rows"]:
        print(
            f"{args.lines:,} lines, keep {row['sample'] or 'all'}: {row['seconds']:.1f} s (target {TARGET_S:.0f} s), "
            f"{row['kept']} kept, {row['duplicates']} near-duplicates, {row['survivors']} planted values left"
        )
    save_report("traces", report)
    if args.json:
        print(json.dumps(report))
    return 0 if all(r["seconds"] <= TARGET_S and r["survivors"] == 0 for r in report["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
