"""Structured-output benchmark: a JSON-extraction suite against the local model, with and without a constraint.

33 cases (three schemas: person, product, event; texts written for this project). For each case the same chat
prompt — the text and the schema, asking for JSON — is decoded greedily twice: free, and constrained to the schema
(what `response_format: {"type": "json_schema"}` does on the server). Reported: the schema-valid rate of each
(a free answer counts if it parses as is or inside a ```json fence), the decode speed of the constrained run vs
an unconstrained run of the very same number of tokens right after it (the median over cases × --repeats of
the paired ratio, so load from other processes hits both sides alike; decode time only, the prefill excluded), and
the time the grammar itself takes per token (mask + advance). Both sides draft (engine/speculative.py: a constrained
row drafts the tokens its grammar forces); a second engine with drafting off decodes each constrained case too, for
the speed without drafts and to check that drafting left every token as it was. Runs in-process, int4, with the
given thread count. `python -m bench structured [--json] [--repeats 3] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from bench.common import chat_ids, fmt, print_table, save_report

MODEL = "smollm2-135m-instruct"
MAX_FREE_TOKENS = 160
MAX_CONSTRAINED_TOKENS = 160
NAME = {"type": "string", "maxLength": 40}
SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {"name": NAME, "age": {"type": "integer", "minimum": 0, "maximum": 120}, "city": NAME},
        "required": ["name", "age", "city"],
        "additionalProperties": False,
    },
    "product": {
        "type": "object",
        "properties": {
            "name": NAME,
            "price": {"type": "number", "minimum": 0},
            "currency": {"enum": ["USD", "EUR", "GBP", "JPY"]},
            "in_stock": {"type": "boolean"},
        },
        "required": ["name", "price", "currency", "in_stock"],
        "additionalProperties": False,
    },
    "event": {
        "type": "object",
        "properties": {
            "title": NAME,
            "date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
            "attendees": {"type": "integer", "minimum": 0},
        },
        "required": ["title", "date", "attendees"],
        "additionalProperties": False,
    },
}
TEXTS = {
    "person": [
        "Maria Lopez, 34, moved to Madrid last spring.",
        "Our new colleague Tom Becker (51) commutes from Hamburg.",
        "Aiko Tanaka is a 27-year-old designer based in Osaka.",
        "At 73, Peter Novak still runs marathons in Prague.",
        "Lena Fischer, aged 19, studies physics in Zurich.",
        "Samir Khan lives in Karachi and turned 42 today.",
        "The author, Olga Ivanova, 60, writes from her flat in Kazan.",
        "Noah Smith (8) won the spelling bee in Denver.",
        "Chen Wei, 45, is a surgeon in Shanghai.",
        "Fatima Zahra, thirty-one, teaches in Rabat.",
        "Lucas Moreau, a 66-year-old baker, has a shop in Lyon.",
    ],
    "product": [
        "The AquaPure bottle costs $19.99 and is in stock.",
        "Sold out: the Nimbus umbrella, EUR 35.",
        "Get the TrailMax boots for 120 pounds; available now.",
        "The ZenKettle is 8900 yen, currently unavailable.",
        "Desk lamp Lumo: USD 42.50, ships today.",
        "Coffee grinder BrewPro at 79 euros, back in stock.",
        "The Pocket Radio sells for GBP 24 but is out of stock.",
        "Yoga mat FlexiFit, $29, in stock.",
        "Headphones Quietude cost 199 dollars and are sold out.",
        "A 3-pack of Ecoline sponges for EUR 4.20, available.",
        "The Samurai knife set costs 15000 JPY and ships now.",
    ],
    "event": [
        "The Spring Gala on 2025-04-12 expects 300 guests.",
        "Hackathon Zero takes place 2024-11-02 with 85 coders.",
        "Join the Book Fair, 2026-09-18, about 1200 visitors.",
        "Team offsite: 2025-01-30, 14 people.",
        "The Jazz Night on 2024-07-06 sold 450 tickets.",
        "Board meeting 2025-03-03, 9 attendees.",
        "Marathon Day is 2025-10-19; 5000 runners registered.",
        "The Science Slam, 2024-12-14, drew 230 people.",
        "Our reunion on 2026-06-27 will have 60 classmates.",
        "Chess open, 2025-08-09, 128 players.",
        "The Film Festival opens 2025-05-21 for 2000 guests.",
    ],
}
CASES = [(kind, text) for kind, texts in TEXTS.items() for text in texts]


def prompt_ids(tokenizer, kind: str, text: str) -> list[int]:
    messages = [
        {
            "role": "system",
            "content": f"Extract the facts as a JSON object matching this schema:\n{json.dumps(SCHEMAS[kind])}",
        },
        {"role": "user", "content": text},
    ]
    return chat_ids(tokenizer, messages)


def schema_valid(text: str, schema: dict) -> bool:
    import jsonschema

    candidates = [text.strip()]
    if "```" in text:
        candidates += [block.removeprefix("json").strip() for block in text.split("```")[1::2]]
    for candidate in candidates:
        try:
            jsonschema.validate(json.loads(candidate), schema)
            return True
        except (ValueError, jsonschema.ValidationError):
            continue
    return False


def decode_rate(engine, ids: list[int], params, grammar=None) -> tuple[int, float, str]:
    """(generated tokens, decode seconds after the first token, text) of one greedy request."""
    from engine.request import Request

    request = engine.submit(Request(ids, params, constraint=grammar))
    while not request.done:
        engine.step()
    end = time.time()  # the engine stamps the first token with time.time()
    choice = request.choices[0]
    return len(choice.token_ids), end - request.first_token_at, choice.text


class GrammarClock:
    """Time spent in the grammar per generated token: computing and applying the mask, and advancing."""

    def __init__(self):
        from engine import constraints

        self.mask: list[float] = []
        self.advance: list[float] = []
        for name in ("mask", "advance"):
            original = getattr(constraints.RowMatcher, name)
            setattr(constraints.RowMatcher, name, self._timed(original, getattr(self, name)))

    @staticmethod
    def _timed(fn, into: list[float]):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                into.append(time.perf_counter() - start)

        return wrapper

    def per_token_us(self) -> tuple[float, float]:
        """(median, mean) µs per token; the mean carries the grammar's first-token set-up (lazy lexer states)."""
        median = statistics.median(self.mask) + statistics.median(self.advance)
        mean = (sum(self.mask) + sum(self.advance)) / max(len(self.advance), 1)
        return 1e6 * median, 1e6 * mean


def run(threads: int, repeats: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from engine.constraints import ConstraintSpec
    from engine.generate import Engine
    from engine.sampling import SamplingParams

    engine = Engine.load(MODEL, "int4")
    # the same quantized model, drafting off
    no_drafts = Engine(engine.model, engine.tokenizer, name=engine.name, method=engine.method, draft_tokens=0)
    clock = GrammarClock()
    ids = [prompt_ids(engine.tokenizer, kind, text) for kind, text in CASES]
    specs = {kind: ConstraintSpec("json", schema, "bench") for kind, schema in SCHEMAS.items()}
    grammars = {kind: engine.constrain(spec) for kind, spec in specs.items()}
    plain_grammars = {kind: no_drafts.constrain(spec) for kind, spec in specs.items()}
    free = [
        decode_rate(engine, p, SamplingParams(max_new_tokens=MAX_FREE_TOKENS, temperature=0))[2] for p in ids
    ]
    print(f"  free answers decoded ({len(CASES)} cases)", file=sys.stderr, flush=True)
    free_valid = sum(schema_valid(text, SCHEMAS[kind]) for text, (kind, _) in zip(free, CASES, strict=True))
    ratios, rates, constrained_valid, lengths = [], {"constrained": [], "free": [], "no_drafts": []}, 0, []
    identical = True
    for repeat in range(repeats):
        for (kind, _), p in zip(CASES, ids, strict=True):
            params = SamplingParams(max_new_tokens=MAX_CONSTRAINED_TOKENS, temperature=0)
            n, seconds, text = decode_rate(engine, p, params, grammars[kind])
            plain_n, plain_seconds, plain_text = decode_rate(no_drafts, p, params, plain_grammars[kind])
            identical &= (plain_n, plain_text) == (n, text)
            rates["no_drafts"].append((plain_n - 1) / plain_seconds)
            if repeat == 0:
                constrained_valid += schema_valid(text, SCHEMAS[kind])
                lengths.append(n)
            # the same number of tokens, unconstrained (EOS ignored so the length matches exactly), right after
            same = SamplingParams(max_new_tokens=n, min_tokens=n, ignore_eos=True, temperature=0)
            m, free_seconds, _ = decode_rate(engine, p, same)
            rates["constrained"].append((n - 1) / seconds)
            rates["free"].append((m - 1) / free_seconds)
            # Paired per case, so a burst of load from other processes hits both sides of a ratio alike.
            ratios.append(rates["constrained"][-1] / rates["free"][-1])
        print(f"  pass {repeat + 1}/{repeats} done", file=sys.stderr, flush=True)
    constrained_tps = statistics.median(rates["constrained"])
    free_tps = statistics.median(rates["free"])
    return {
        "cases": len(CASES),
        "schema_valid_free": free_valid / len(CASES),
        "schema_valid_constrained": constrained_valid / len(CASES),
        "mean_constrained_tokens": statistics.mean(lengths),
        "decode_tps_unconstrained": free_tps,
        "decode_tps_constrained": constrained_tps,
        "decode_tps_constrained_no_drafts": statistics.median(rates["no_drafts"]),
        "identical_without_drafts": identical,
        "kinds": list(SCHEMAS),
        "decode_overhead": 1 - statistics.median(ratios),
        "grammar_us_per_token_median": clock.per_token_us()[0],
        "grammar_us_per_token_mean": clock.per_token_us()[1],
        "threads": threads,
        "repeats": repeats,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench structured")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    report = run(args.threads, args.repeats)
    print_table(
        [
            "cases",
            "valid free",
            "valid constrained",
            "decode tok/s free",
            "constrained",
            "overhead",
            "constrained, no drafts",
            "identical",
            "grammar µs/token median / mean",
        ],
        [
            [
                report["cases"],
                fmt(100 * report["schema_valid_free"], ".0f") + " %",
                fmt(100 * report["schema_valid_constrained"], ".0f") + " %",
                fmt(report["decode_tps_unconstrained"]),
                fmt(report["decode_tps_constrained"]),
                fmt(100 * report["decode_overhead"], ".1f") + " %",
                fmt(report["decode_tps_constrained_no_drafts"]),
                "yes" if report["identical_without_drafts"] else "NO",
                f"{report['grammar_us_per_token_median']:.0f} / {report['grammar_us_per_token_mean']:.0f}",
            ]
        ],
    )
    save_report("structured", report)
    if args.json:
        print(json.dumps(report))
    return 0 if report["schema_valid_constrained"] == 1.0 and report["identical_without_drafts"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
