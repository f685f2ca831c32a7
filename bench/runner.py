"""Runner benchmark: overhead per cell with an instant provider, bulk result writes, and concurrency against
the local engine (50 cases at concurrency 8 vs 1). Targets: <= 5 ms per cell, 10,000 results <= 2 s, >= 3x."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import print_table, save_report
from prompting.providers import Capabilities, Completion, ProviderSpec, Usage
from prompting.runner import CaseSpec, ProviderHandle, Runner, VersionSpec
from prompting.strategies import Prompt
from prompting.templates import Template


class InstantProvider:
    """Answers at once: what is left of a cell's time is the runner's own overhead."""

    spec = ProviderSpec(label="instant", kind="remote", model="instant", base_url="http://x")
    capabilities = Capabilities()
    label = model_id = "instant"

    def chat(self, messages, **params):
        return Completion(texts=["Paris is the capital."], usage=Usage(10, 5, 0.0, 0.0, 1))


def runner_overhead(cells: int) -> float:
    template = Template.from_source("What is the capital of {{ country }}?", name="q")
    cases = [
        CaseSpec(i, {"country": f"c{i}"}, [{"type": "icontains", "value": "paris"}]) for i in range(cells)
    ]
    runner = Runner(
        [VersionSpec(1, Prompt(template))], [ProviderHandle(1, InstantProvider())], cases, concurrency=4
    )
    sink = []
    start = time.perf_counter()
    runner.run(set(), sink.append)
    return (time.perf_counter() - start) / cells * 1000


def bulk_writes(count: int) -> float:
    from store import Store

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        suite = store.save_suite("s", [{"vars": {"i": i}} for i in range(count)])
        case_ids = [c.id for c in store.suite_cases(suite.id)]
        version = store.save_version("v", "x")
        provider = store.upsert_provider("p", "local", "m")
        run = store.create_run(suite_id=suite.id, version_ids=[version.id], provider_ids=[provider.id])
        start = time.perf_counter()
        for case_id in case_ids:
            store.save_result(
                {
                    "run_id": run.id,
                    "case_id": case_id,
                    "version_id": version.id,
                    "provider_id": provider.id,
                    "output": "Paris",
                    "passed": True,
                    "score": 1.0,
                },
                [{"type": "icontains", "passed": True, "score": 1.0, "reason": "ok"}],
            )
        elapsed = time.perf_counter() - start
        store.dispose()
        return elapsed


def engine_concurrency(cases: int) -> tuple[float, float]:
    from services.engines import engines
    from services.providers import provider_for

    provider = provider_for(ProviderSpec.parse("local:smollm2-135m-instruct"))
    template = Template.from_source("Write one sentence about the number {{ n }}.", name="n")
    specs = [CaseSpec(i, {"n": i}, []) for i in range(cases)]
    provider.chat([{"role": "user", "content": "warm up"}], max_tokens=2)
    timings = []
    for concurrency in (1, 8):
        runner = Runner(
            [VersionSpec(1, Prompt(template))],
            [ProviderHandle(1, provider)],
            specs,
            concurrency=concurrency,
            params={"temperature": 0, "max_tokens": 32, "ignore_eos": True},
        )
        start = time.perf_counter()
        runner.run(set(), lambda r: None)
        timings.append(time.perf_counter() - start)
    engines.stop_all()
    return timings[0], timings[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.runner", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--no-engine", action="store_true", help="Skip the local-engine concurrency part.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    overhead = statistics.median(runner_overhead(500) for _ in range(args.repeats))
    writes = statistics.median(bulk_writes(10_000) for _ in range(args.repeats))
    report = {"overhead_ms_per_cell": overhead, "write_10k_s": writes}
    rows = [
        ["runner overhead per cell", f"{overhead:.2f} ms", "<= 5 ms", f"{5 / overhead:.1f}x headroom"],
        ["write 10,000 results", f"{writes:.2f} s", "<= 2 s", f"{2 / writes:.1f}x headroom"],
    ]
    if not args.no_engine:
        serial, parallel = engine_concurrency(args.cases)
        report.update(
            {
                "cases": args.cases,
                "engine_serial_s": serial,
                "engine_concurrency8_s": parallel,
                "speedup": serial / parallel,
            }
        )
        rows.append(
            [
                f"{args.cases} cases, local engine, conc. 8 vs 1",
                f"{serial:.1f} s -> {parallel:.1f} s",
                ">= 3x",
                f"{serial / parallel:.2f}x",
            ]
        )
    print("\nrunner benchmark (medians)", file=sys.stderr)
    print_table(["measure", "value", "target", "ratio"], rows)
    save_report("runner", report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
