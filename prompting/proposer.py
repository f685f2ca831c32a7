"""Instruction rewrites from a proposer model, grounded in the cases the starting version got wrong (as APE, OPRO
and GEPA ground theirs). The caller passes training cases only: what the proposer sees is exactly `failures` and
`successes`, nothing else of the suite."""

from __future__ import annotations

import random

from prompting.optimize import FAILURES_SHOWN, OptimizeError, demo_input, instruction_of, parse_proposals
from prompting.providers import Provider, Usage
from prompting.strategies import Prompt
from prompting.templates import load

TEMPERATURE = 0.9
SUCCESSES_SHOWN = 3
REQUESTS = 2  # each shows its own sample of the failures, so proposals differ in what they fix


def propose(
    proposer: Provider, prompt: Prompt, failures: list[dict], successes: list[dict], count: int, seed: int = 0
) -> tuple[list[str], Usage]:
    """Up to `count` new instructions and what asking cost. Each request shows a different sample of the
    failures. Raises OptimizeError naming the proposer when none of its replies is a usable instruction."""
    _, original = instruction_of(prompt)
    template = Prompt(load("optimize_instruction"))
    rng = random.Random(seed)
    replies: list[str] = []
    usage = Usage()
    per_call = -(-count // REQUESTS)
    for _ in range(REQUESTS):
        shown = rng.sample(failures, min(FAILURES_SHOWN, len(failures)))
        right = rng.sample(successes, min(SUCCESSES_SHOWN, len(successes)))
        messages = template.render(
            {
                "instruction": original,
                "failures": shown,
                "successes": [{"input": demo_input(s["vars"]), "output": s["output"]} for s in right],
            }
        )
        completion = proposer.chat(
            messages, n=per_call, temperature=TEMPERATURE, max_tokens=template.template.max_tokens, seed=seed
        )
        replies += completion.texts
        usage = usage + completion.usage
    found = parse_proposals(replies, template.template.answer_pattern, original)
    if not found:
        first = replies[0][:80] if replies else ""
        raise OptimizeError(
            f"proposer {proposer.label} returned no usable instruction in {len(replies)} replies (first: "
            f"{first!r}): choose another proposer (--proposer) or leave instruction rewrites out of the search"
        )
    return found[:count], usage
