"""Writes a synthetic production log of a support assistant as chat-completions JSONL (one request + response per
line), for `workbench import --traces chat` and its tests: 10,000 lines by default, with near-duplicate inputs
(~20 %), planted e-mail addresses and phone numbers (~30 % of lines, listed in a sidecar file so a test can check
none survives a scrub), multi-turn requests, two models, two tags, two system prompts, and 1 % malformed lines.

    python examples/traces/generate.py OUT.jsonl [--lines N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SYSTEM = [
    "You are the support assistant of Kettle & Co, an online kitchenware shop. Be brief and friendly.",
    "You are Kettle & Co's billing assistant. Answer questions about payments and refunds only.",
]
MODELS = ["gpt-4o-mini", "gpt-4.1-nano"]
PRODUCTS = ["kettle", "teapot", "toaster", "mug set", "coffee grinder", "milk frother", "tea strainer"]
PROBLEMS = [
    "has not arrived",
    "arrived broken",
    "is the wrong colour",
    "leaks",
    "is missing a lid",
    "was charged twice",
]
ASKS = [
    "Can I get a refund?",
    "When will it arrive?",
    "How do I return it?",
    "Can you send a new one?",
    "What now?",
]
NAMES = ["jane.doe", "sam.lee", "ana.ruiz", "tom.b", "li.wei", "omar.k", "eva.novak"]
DOMAINS = ["example.com", "mail.example.org", "example.net"]
MALFORMED = [
    '{"request": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "cut off',
    '{"request": {"model": "gpt-4o-mini"}, "response": {}}',
    '{"request": {"messages": [{"role": "robot", "content": "beep"}]}}',
    "not json at all",
]


def phone(rng: random.Random) -> str:
    return rng.choice(
        [
            f"415-555-{rng.randint(100, 199):04d}",
            f"(212) 555-{rng.randint(100, 199):04d}",
            f"+44 20 7946 {rng.randint(0, 999):04d}",
            f"07700 900{rng.randint(0, 999):03d}",
        ]
    )


def user_text(rng: random.Random, planted: list[str]) -> str:
    product, order = rng.choice(PRODUCTS), f"KC-{rng.randint(10000, 99999)}"
    text = f"My {product} (order {order}) {rng.choice(PROBLEMS)}. {rng.choice(ASKS)}"
    if rng.random() < 0.3:
        email = f"{rng.choice(NAMES)}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
        number = phone(rng)
        planted += [email, number]
        text += rng.choice([f" Email me at {email}.", f" Call me on {number}.", f" ({email}, {number})"])
    return text


def near_copy(text: str, rng: random.Random) -> str:
    """The same input as a different person would log it: case, spacing or punctuation changed."""
    return rng.choice(
        [text.lower(), text.upper(), text.replace(". ", ".  "), text.rstrip("?") + "??", " " + text]
    )


def record(rng: random.Random, text: str) -> dict:
    system = rng.choice(SYSTEM)
    messages = [{"role": "system", "content": system}]
    if rng.random() < 0.25:  # a conversation: an earlier turn and its answer come first
        messages += [
            {"role": "user", "content": "Hello, I need help with an order."},
            {"role": "assistant", "content": "Of course. What is the problem?"},
        ]
    messages.append({"role": "user", "content": text})
    model = rng.choice(MODELS)
    answer = rng.choice(
        ["I am sorry to hear that.", "Thanks, I will look into it.", "Please send the order number."]
    )
    return {
        "request": {
            "model": model,
            "messages": messages,
            "metadata": {"tags": [rng.choice(["support", "billing"])]},
        },
        "response": {
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
        },
    }


def generate(out: Path, lines: int = 10_000, seed: int = 0) -> dict:
    rng = random.Random(seed)
    planted: list[str] = []
    texts: list[str] = []
    malformed = duplicates = 0
    with out.open("w", encoding="utf-8") as handle:
        for _ in range(lines):
            roll = rng.random()
            if roll < 0.01:
                handle.write(rng.choice(MALFORMED) + "\n")
                malformed += 1
                continue
            if roll < 0.21 and texts:
                text = near_copy(rng.choice(texts), rng)
                duplicates += 1
            else:
                text = user_text(rng, planted)
                texts.append(text)
            handle.write(json.dumps(record(rng, text)) + "\n")
    out.with_suffix(".planted.json").write_text(json.dumps(sorted(set(planted))))
    return {
        "lines": lines,
        "malformed": malformed,
        "near_duplicates": duplicates,
        "planted": len(set(planted)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(generate(args.out, args.lines, args.seed)))


if __name__ == "__main__":
    main()
