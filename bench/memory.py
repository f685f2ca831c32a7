"""Engine memory benchmark: the paged KV cache, prefix caching and the KV dtype, measured in one run.

- Prefix caching: a suite-shaped load (one 1,000-token shared prefix, 50 different 30-token inputs, one
  generated token each), time to first token with and without the prefix cache. The two engines share one
  model and alternate request by request (paired), so load from other processes hits both alike.
- Peak KV memory: 16 concurrent requests of mixed lengths (100 to 4,000 tokens); at the step where the pool
  holds the most blocks, those blocks' bytes against the bytes of the tokens actually in cache then, and against
  what a cache that grows every row to the longest sequence would hold.
- KV dtype: perplexity on engine/data/perplexity.txt and bytes per token for fp32, bf16 and int8 KV.
Prints a table (stderr) and, with --json, one JSON object on stdout; keeps it in $WORKBENCH_HOME/bench/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time

from bench.common import fmt, print_table, save_report

MODEL = "smollm2-135m-instruct"
PREFIX_TOKENS, SUITE_CASES, CASE_TOKENS = 1000, 50, 30
CONCURRENT, SHORTEST, LONGEST = 16, 100, 4000


def _model(method: str, threads: int):
    import torch

    torch.set_num_threads(threads)
    from engine.generate import Engine

    return Engine.load(MODEL, method, max_batch=CONCURRENT, prefix_cache=False)


def _text_ids(engine, count: int, seed: int) -> list[int]:
    from engine.generate import CALIBRATION_TEXT, PERPLEXITY_TEXT

    text = PERPLEXITY_TEXT.read_text(encoding="utf-8") + CALIBRATION_TEXT.read_text(encoding="utf-8")
    ids = engine.tokenizer(text)["input_ids"]
    rng = random.Random(seed)
    start = rng.randrange(len(ids))
    return [ids[(start + i) % len(ids)] for i in range(count)]


def prefix_ttft(base) -> dict:
    """Median time to first token of the suite's cases with and without prefix caching (paired, alternating)."""
    from engine.generate import Engine, Request
    from engine.sampling import SamplingParams

    cached = Engine(base.model, base.tokenizer, name=base.name, method=base.method)
    plain = Engine(base.model, base.tokenizer, name=base.name, method=base.method, prefix_cache=False)
    prefix = _text_ids(base, PREFIX_TOKENS, seed=1)
    times: dict[str, list[float]] = {"cached": [], "plain": []}
    for case in range(SUITE_CASES + 1):
        prompt = prefix + _text_ids(base, CASE_TOKENS, seed=100 + case)
        for name, engine in (("cached", cached), ("plain", plain)):
            start = time.perf_counter()
            request = engine.submit(Request(prompt, SamplingParams(max_new_tokens=1, temperature=0)))
            while request.first_token_at is None and not request.done:
                engine.step()
            if case:  # case 0 fills the cache: it is the suite's first request, paid once
                times[name].append(time.perf_counter() - start)
            engine.run()
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "cases": SUITE_CASES,
        "prefix_tokens": PREFIX_TOKENS,
        "ttft_cached_s": median["cached"],
        "ttft_plain_s": median["plain"],
        "ttft_ratio": median["plain"] / median["cached"],
        "hit_tokens": cached.blocks.stats["hit_tokens"],
    }


def peak_memory(base) -> dict:
    """Blocks held at the peak against the tokens in cache at that moment (16 mixed-length requests)."""
    from engine.generate import Engine, Request
    from engine.sampling import SamplingParams

    engine = Engine(base.model, base.tokenizer, name=base.name, method=base.method, max_batch=CONCURRENT)
    rng = random.Random(7)
    lengths = [rng.randrange(SHORTEST, LONGEST + 1) for _ in range(CONCURRENT)]
    for i, length in enumerate(lengths):
        params = SamplingParams(max_new_tokens=8, temperature=0, ignore_eos=True)
        engine.submit(Request(_text_ids(base, length, seed=200 + i), params))
    peak = (0, 0, 0, 0)  # blocks used, tokens in cache, longest sequence, sequences
    while engine.has_work():
        engine.step()
        live = [s.cache_length for s in engine.batch.rows]
        if engine.prefill is not None and engine.prefill.table.blocks:
            live.append(len(engine.prefill.ids))  # its blocks are all allocated when it starts
        if engine.blocks.used() > peak[0]:
            peak = (engine.blocks.used(), sum(live), max(live, default=0), len(live))
    per_token = engine.pool.bytes_per_token()
    blocks, tokens, longest, rows = peak
    return {
        "requests": CONCURRENT,
        "lengths": lengths,
        "peak_kv_bytes": blocks * engine.pool.block_bytes(),
        "tokens_bytes": tokens * per_token,
        "peak_ratio": blocks * engine.pool.block_size / max(tokens, 1),
        "grow_to_longest_ratio": rows * longest / max(tokens, 1),
    }


def kv_dtypes(base) -> list[dict]:
    from engine.generate import PERPLEXITY_TEXT, Engine, perplexity

    ids = base.tokenizer(PERPLEXITY_TEXT.read_text(encoding="utf-8"))["input_ids"]
    rows = []
    for kv in ("fp32", "bf16", "int8"):
        engine = Engine(base.model, base.tokenizer, name=base.name, method=base.method, kv_dtype=kv)
        rows.append(
            {
                "kv_dtype": kv,
                "kv_bytes_per_token": engine.pool.bytes_per_token(),
                "ppl": perplexity(engine, ids),
            }
        )
    for row in rows:
        row["ppl_delta_pct"] = (row["ppl"] / rows[0]["ppl"] - 1) * 100
        row["bytes_ratio"] = rows[0]["kv_bytes_per_token"] / row["kv_bytes_per_token"]
    return rows


def print_report(report: dict) -> None:
    p, m = report["prefix"], report["peak"]
    print(f"\nmemory benchmark: {MODEL}@{report['method']}, {report['threads']} threads", file=sys.stderr)
    print_table(
        ["measure", "value", "target"],
        [
            [
                f"TTFT, {SUITE_CASES} cases after a {PREFIX_TOKENS}-token shared prefix: no cache / cache",
                f"{p['ttft_plain_s'] * 1000:.0f} / {p['ttft_cached_s'] * 1000:.0f} ms = {p['ttft_ratio']:.1f}x",
                ">= 5x",
            ],
            [
                f"peak KV of {m['requests']} requests of {SHORTEST}-{LONGEST} tokens / their tokens' bytes",
                f"{m['peak_ratio']:.3f}x ({m['peak_kv_bytes'] / 1e6:.0f} MB)",
                "<= 1.2x",
            ],
            ["the same, had every row grown to the longest", f"{m['grow_to_longest_ratio']:.2f}x", "-"],
        ],
    )
    print_table(
        ["KV dtype", "bytes/token", "vs fp32", "ppl", "ppl delta %"],
        [
            [
                r["kv_dtype"],
                r["kv_bytes_per_token"],
                f"{r['bytes_ratio']:.2f}x smaller",
                fmt(r["ppl"], ".3f"),
                fmt(r["ppl_delta_pct"], "+.2f"),
            ]
            for r in report["kv"]
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.memory", description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--method", default=None, help="quantization method (default: the default method)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from settings import get_settings

    method = args.method or get_settings().default_quant
    base = _model(method, args.threads)
    report = {
        "method": method,
        "threads": args.threads,
        "prefix": prefix_ttft(base),
        "peak": peak_memory(base),
        "kv": kv_dtypes(base),
    }
    print_report(report)
    save_report("memory", report)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
