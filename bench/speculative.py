"""Speculative decoding benchmark: prompt-lookup drafting against plain decoding, in one run.

Grounded prompts (copy, extract from or rewrite a given paragraph: what suites mostly run), as a control
open-ended ones (nothing to copy), and the grounded ones again sampled at temperature 0.7 (seeded: speculative
sampling gives the same tokens as plain sampling with the same seed). Two engines share one model, one with
speculation (the default draft length) and one without; they alternate prompt by prompt (paired, so load from
other processes hits both alike). Decode
tokens/s counts the tokens after the first over the time after the first (prefill is the same for both). Every
output must be the same tokens on both engines; the report says whether they were.
Prints a table (stderr) and, with --json, one JSON object on stdout; keeps it in
$WORKBENCH_HOME/bench/speculative.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from bench.common import chat_ids, print_table, save_report

MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 128
SAMPLED_TEMPERATURE = 0.7  # the sampled pass: speculative sampling, seeded
SEED = 1234
PARAGRAPHS = [
    "The Amazon rainforest covers much of the Amazon basin of South America. The basin spans about seven million "
    "square kilometres, of which about five and a half million are covered by the forest. The region includes "
    "territory of nine nations. Most of the forest lies in Brazil, with 60 % of it, followed by Peru with 13 % "
    "and Colombia with 10 %.",
    "Marie Curie was a physicist and chemist who did pioneering research on radioactivity. She was the first woman "
    "to win a Nobel Prize, the first person to win it twice, and the only person to win it in two sciences. She "
    "was born in Warsaw in 1867 and died in France in 1934.",
    "The order was placed on 3 March by Jane Porter of Leeds. It contains two blue kettles at 24 pounds each and "
    "one toaster at 31 pounds. Delivery is expected within five working days, and the customer asked for the "
    "parcel to be left with a neighbour if nobody is at home.",
]
GROUNDED_TASKS = [
    "Copy the following paragraph exactly, word for word.",
    "Extract the sentences of the following paragraph that contain a number, one per line.",
    "Rewrite the following paragraph in the past tense.",
    "Quote the first two sentences of the following paragraph.",
]
OPEN_PROMPTS = [
    "Explain in a few sentences why the sky looks blue during the day and red at sunset.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Give three tips for learning a new language as an adult.",
]


def _decode(engine, ids: list[int], temperature: float = 0.0) -> tuple[list[int], int, float]:
    """(tokens, tokens after the first, seconds after the first) of one request (sampled ones with a fixed seed,
    so both engines must give the same tokens)."""
    from engine.generate import generate
    from engine.sampling import SamplingParams

    params = SamplingParams(
        max_new_tokens=MAX_TOKENS, temperature=temperature, seed=SEED if temperature else None
    )
    request = generate(engine, ids, params)
    elapsed = time.time() - request.first_token_at
    tokens = request.choices[0].token_ids
    return tokens, len(tokens) - 1, elapsed


def measure(plain, fast, prompts: list[list[int]], repeats: int, temperature: float = 0.0) -> dict:
    """Paired passes over the prompts; the ratio of total decode tokens/s per pass, its median over passes."""
    ratios, identical = [], True
    totals = {"plain": [0, 0.0], "fast": [0, 0.0]}
    before = dict(fast.stats)
    for _ in range(repeats):
        passed = {"plain": [0, 0.0], "fast": [0, 0.0]}
        for ids in prompts:
            outputs = {}
            for name, engine in (("plain", plain), ("fast", fast)):
                tokens, count, seconds = _decode(engine, ids, temperature)
                outputs[name] = tokens
                passed[name][0] += count
                passed[name][1] += seconds
            identical &= outputs["plain"] == outputs["fast"]
        ratios.append((passed["fast"][0] / passed["fast"][1]) / (passed["plain"][0] / passed["plain"][1]))
        for name in totals:
            totals[name][0] += passed[name][0]
            totals[name][1] += passed[name][1]
    drafted = fast.stats["draft_tokens"] - before["draft_tokens"]
    accepted = fast.stats["accepted_tokens"] - before["accepted_tokens"]
    return {
        "prompts": len(prompts),
        "plain_tok_s": totals["plain"][0] / totals["plain"][1],
        "fast_tok_s": totals["fast"][0] / totals["fast"][1],
        "speedup": statistics.median(ratios),
        "speedups": ratios,
        "identical": identical,
        "acceptance": accepted / drafted if drafted else None,
    }


def run(method: str, threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from engine.generate import Engine

    fast = Engine.load(MODEL, method, prefix_cache=False)
    plain = Engine(
        fast.model, fast.tokenizer, name=fast.name, method=fast.method, prefix_cache=False, draft_tokens=0
    )
    grounded = [
        chat_ids(fast.tokenizer, [{"role": "user", "content": f"{task}\n\n{p}"}])
        for task in GROUNDED_TASKS
        for p in PARAGRAPHS
    ]
    open_ended = [chat_ids(fast.tokenizer, [{"role": "user", "content": text}]) for text in OPEN_PROMPTS]
    _decode(fast, grounded[0])  # warm-up
    _decode(plain, grounded[0])
    return {
        "method": method,
        "threads": threads,
        "draft_tokens": fast.batch.draft_tokens,
        "max_tokens": MAX_TOKENS,
        "grounded": measure(plain, fast, grounded, repeats),
        "open": measure(plain, fast, open_ended, repeats),
        "sampled": {
            **measure(plain, fast, grounded, repeats, SAMPLED_TEMPERATURE),
            "temperature": SAMPLED_TEMPERATURE,
        },
    }


def print_report(report: dict) -> None:
    rows = []
    for key, label in (
        ("grounded", "grounded (copy / extract / rewrite)"),
        ("open", "open-ended"),
        ("sampled", f"grounded, temperature {SAMPLED_TEMPERATURE}"),
    ):
        r = report[key]
        acceptance = "-" if r["acceptance"] is None else f"{r['acceptance']:.0%}"
        rows.append(
            [
                label,
                r["prompts"],
                f"{r['plain_tok_s']:.1f}",
                f"{r['fast_tok_s']:.1f}",
                f"{r['speedup']:.2f}x",
                acceptance,
                "yes" if r["identical"] else "NO",
            ]
        )
    print(
        f"speculative decoding, {report['method']}, {report['threads']} threads, draft <= {report['draft_tokens']}",
        file=sys.stderr,
    )
    print_table(
        [
            "prompts",
            "n",
            "plain tok/s",
            "speculative tok/s",
            "speedup (median)",
            "draft accepted",
            "identical tokens",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.speculative", description=__doc__)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--method", default=None, help="quantization method (default: the default method)")
    parser.add_argument("--repeats", type=int, default=3, help="paired passes over the prompts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from settings import get_settings

    report = run(args.method or get_settings().default_quant, args.threads, args.repeats)
    print_report(report)
    save_report("speculative", report)
    if args.json:
        print(json.dumps(report))
    return 0 if all(report[key]["identical"] for key in ("grounded", "open", "sampled")) else 1


if __name__ == "__main__":
    sys.exit(main())
