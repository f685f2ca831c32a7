"""Prompt optimisation, the pure part: how a suite is split so the search cannot fool itself, what a candidate is
(an instruction, demonstrations, a technique, a delimiter style, a dropped part), the prompt each candidate
becomes, and how a proposer's reply becomes instructions.

The protocol (services/optimize.py runs it): proposals and demonstrations come only from the train split,
candidates are selected only on the validation split, and the held-out split is evaluated once, at the end, for
the baseline and the chosen candidate. Nothing here calls a model or stores anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from prompting.delimiters import STYLES
from prompting.errors import PromptingError
from prompting.guardrails import Guardrails
from prompting.strategies import Prompt
from prompting.templates import Template

SPLITS = ("train", "validation", "heldout")
# a third each: the held-out split must be large enough for its interval to mean something
FRACTIONS = (1 / 3, 1 / 3, 1 / 3)
MIN_PER_SPLIT = 5  # fewer cases than this in any split and no comparison on it can tell anything
TECHNIQUES = ("as_is", "zero_shot", "zero_shot_cot", "self_consistency")
TECHNIQUE_NAMES = {
    "as_is": "the version's own template",
    "zero_shot": "zero-shot",
    "zero_shot_cot": "zero-shot chain-of-thought",
    "self_consistency": "self-consistency (5 samples, majority vote)",
}
DEMO_COUNTS = (0, 2, 4)
PARTS = ("instruction", "demos", "technique", "delimiter", "sections")
MAX_INSTRUCTION_CHARS = 600  # a proposal longer than this is not an instruction but a ramble
FAILURES_SHOWN = 5  # failing training cases a proposer sees per request
REASONING_TOKENS = 128  # what a chain-of-thought or self-consistency candidate may write per answer


class OptimizeError(PromptingError):
    pass


# --- splits -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    train: list[int]
    validation: list[int]
    heldout: list[int]

    def to_dict(self) -> dict[str, list[int]]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, list[int]]) -> Split:
        return cls(list(data["train"]), list(data["validation"]), list(data["heldout"]))


def split_cases(cases: list[tuple[int, list[str], str]], seed: int, suite: str = "the suite") -> Split:
    """Cases (id, tags, content key) dealt into train / validation / held-out, a third each, stratified by tags
    (cases with the same tags are shuffled together, then dealt in turn so every split gets its share of each
    stratum). Cases with the same content are dealt as one, so no input seen in train reappears in held-out."""
    needed = MIN_PER_SPLIT * len(SPLITS)
    if len(cases) < needed:
        raise OptimizeError(
            f"{suite} has {len(cases)} cases; optimizing needs at least {needed} ({MIN_PER_SPLIT} each for "
            "train, validation and held-out): add cases to the suite"
        )
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    strata: dict[tuple[str, ...], list[str]] = {}
    for case_id, tags, key in cases:
        if key not in groups:
            strata.setdefault(tuple(sorted(tags)), []).append(key)
        groups.setdefault(key, []).append(case_id)
    dealt: list[list[int]] = [[], [], []]
    turn = int(rng.integers(len(SPLITS)))  # where dealing starts, so leftovers do not always land in train
    for stratum in sorted(strata):
        keys = strata[stratum]
        for i in rng.permutation(len(keys)):
            dealt[turn % len(SPLITS)].extend(groups[keys[i]])
            turn += 1
    return Split(*dealt)  # in dealt order: any leading share of a split mixes the strata


# --- candidates -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One point of the search space; index 0 of `instruction` is the version's own instruction."""

    instruction: int = 0
    technique: str = "as_is"
    demos: int = 0
    delimiter: str = ""  # empty: the version's own
    drop: str = ""  # an ablation label ("-guardrails", "-Context"), empty: nothing dropped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(**{k: data[k] for k in ("instruction", "technique", "demos", "delimiter", "drop")})

    def changes(self, instructions: list[str], base_delimiter: str) -> list[str]:
        """What differs from the starting version, in words; empty for the baseline."""
        out = []
        if self.instruction:
            out.append(f"instruction #{self.instruction}: {shorten(instructions[self.instruction], 70)}")
        if self.technique != "as_is":
            out.append(TECHNIQUE_NAMES[self.technique])
        if self.demos:
            out.append(f"{self.demos} demonstrations")
        if self.delimiter and self.delimiter != base_delimiter:
            out.append(f"{self.delimiter} delimiters")
        if self.drop and (self.technique == "as_is" or self.drop == "-guardrails"):  # see `build`
            out.append(f"without {self.drop.removeprefix('-')}")
        return out


@dataclass
class Space:
    """The choices each part of a candidate has (a part switched off has one choice: the version's own)."""

    instructions: list[str]
    techniques: list[str] = field(default_factory=lambda: ["as_is"])
    demo_counts: list[int] = field(default_factory=lambda: [0])
    delimiters: list[str] = field(default_factory=lambda: [""])
    drops: list[str] = field(default_factory=lambda: [""])

    @property
    def size(self) -> int:
        return (
            len(self.instructions)
            * len(self.techniques)
            * len(self.demo_counts)
            * len(self.delimiters)
            * len(self.drops)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Space:
        return cls(**data)


def opening_candidates(space: Space, shows_demos: bool) -> list[Candidate]:
    """The candidates tried right after the start, before the sampler models anything: the start with one part
    changed each (the most demonstrations, the first rewrite, plain zero-shot over the suite's inputs, the next
    delimiter style), then the demonstrations and the rewrite together. Like Optuna's enqueued trials, known
    single moves anchor a search that can afford few candidates. Demonstrations go in through plain zero-shot
    (few-shot) when the version's own template has no `examples` variable to show them (`shows_demos`)."""
    base = Candidate(delimiter=space.delimiters[0], drop=space.drops[0])
    few_shot = (
        base if shows_demos or "zero_shot" not in space.techniques else replace(base, technique="zero_shot")
    )
    most = max(space.demo_counts)
    moves = []
    if most and (shows_demos or few_shot != base):
        moves.append(replace(few_shot, demos=most))
    if len(space.instructions) > 1:
        moves.append(replace(base, instruction=1))
    if "zero_shot" in space.techniques:
        moves.append(replace(base, technique="zero_shot"))
    if len(space.delimiters) > 1:
        moves.append(replace(base, delimiter=space.delimiters[1]))
    if moves and moves[0].demos and len(space.instructions) > 1:
        moves.append(replace(moves[0], instruction=1))
    return moves


def instruction_of(prompt: Prompt) -> tuple[str, str]:
    """(where the version's instruction lives, its text): its bound `instruction` variable, else the guardrails'
    task definition. A version with neither has nothing for rewrites to change."""
    if isinstance(prompt.variables.get("instruction"), str) and prompt.variables["instruction"].strip():
        return "variable", prompt.variables["instruction"]
    if prompt.guardrails is not None and prompt.guardrails.task.strip():
        return "guardrails", prompt.guardrails.task
    return "", ""


def search_space(
    prompt: Prompt,
    parts: set[str],
    proposals: list[str],
    demo_pool: int,
    input_vars: list[str],
    ablations: list[str],
) -> Space:
    """The space a search explores: only the parts asked for, and only the choices this version allows."""
    unknown = parts - set(PARTS)
    if unknown:
        raise OptimizeError(f"unknown search part(s) {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
    _, original = instruction_of(prompt)
    space = Space([original, *proposals] if "instruction" in parts else [original])
    if "technique" in parts and input_vars:
        space.techniques = list(TECHNIQUES)
    if "demos" in parts and demo_pool:
        space.demo_counts = [k for k in DEMO_COUNTS if k <= demo_pool] or [0]
    if "delimiter" in parts:
        space.delimiters = ["", *(s for s in STYLES if s != prompt.delimiter)]
    if "sections" in parts:
        space.drops = ["", *ablations]
    return space


def generated_source(name: str, technique: str, input_vars: list[str], base: Template) -> str:
    """A technique's template over the suite's own input variables: the instruction as the system message, the
    demonstrations as earlier turns, each input in its own section."""
    strategy: dict[str, Any] = {"name": "single"}
    meta: dict[str, Any] = {"name": name, "technique": TECHNIQUE_NAMES[technique]}
    suffix, prefix = "", None
    if technique == "zero_shot_cot":
        prefix, meta["max_tokens"] = "Answer:", REASONING_TOKENS
        suffix = (
            'Let\'s think step by step. Then write the final answer on its own line as "Answer: <answer>".'
        )
    elif technique == "self_consistency":
        prefix, meta["max_tokens"] = "Final answer:", REASONING_TOKENS
        strategy = {"name": "self_consistency", "n": 5, "temperature": 0.7}
        suffix = 'Reason step by step, then end with the line "Final answer: <answer>".'
    elif base.answer_pattern and technique == "zero_shot":
        meta["answer_pattern"] = base.answer_pattern
    if prefix:
        meta["answer_pattern"] = rf"(?im)^\s*{re.escape(prefix.rstrip(':'))}\s*:\s*(.+?)\s*$"
        meta["answer_prefix"] = prefix
    meta["strategy"] = strategy
    meta["description"] = (
        f"Written by workbench optimize: {TECHNIQUE_NAMES[technique]} over the suite's inputs."
    )
    meta["variables"] = [
        {"name": "instruction", "required": False, "default": ""},
        {"name": "examples", "type": "list", "required": False, "default": []},
        *({"name": v} for v in input_vars),
    ]
    meta["sections"] = [section_title(v) for v in input_vars]
    shown = "{{ ex.output }}" if not prefix else f"{prefix} {{{{ ex.output }}}}"
    sections = "\n".join(
        f'{{% section "{section_title(v)}" %}}\n{{{{ {{}}.{v} }}}}\n{{% endsection %}}' for v in input_vars
    )
    lines = [
        "{#---",
        json.dumps(meta, ensure_ascii=False, indent=1),
        "---#}",
        '{% if instruction %}{% message "system" %}\n{{ instruction }}\n{% endmessage %}{% endif %}',
        "{% for ex in examples %}",
        '{% message "user" %}\n' + sections.replace("{}.", "ex.vars.") + "\n{% endmessage %}",
        '{% message "assistant" %}\n' + shown + "\n{% endmessage %}",
        "{% endfor %}",
        '{% message "user" %}\n' + sections.replace("{}.", "") + (f"\n{suffix}" if suffix else ""),
        "{% endmessage %}",
    ]
    return "\n".join(lines) + "\n"


def section_title(variable: str) -> str:
    return variable.replace("_", " ").strip().capitalize() or "Input"


@dataclass
class Built:
    """What a candidate becomes: the fields of a stored version, and its lineage."""

    source: str
    variables: dict[str, Any]
    delimiter: str
    guardrails: dict[str, Any] | None
    drop_sections: list[str]
    lineage: dict[str, Any]
    # request fields the version carries (stored in its options, they win over the run's): a reasoning
    # technique's room to reason, which a suite's short max_tokens for direct answers would cut off
    params: dict[str, Any] = field(default_factory=dict)

    def prompt(self, name: str) -> Prompt:
        template = Template.from_source(self.source, name=name)
        guardrails = Guardrails.from_dict(self.guardrails) if self.guardrails else None
        return Prompt(template, dict(self.variables), self.delimiter, guardrails, tuple(self.drop_sections))


def build(
    base: Prompt, name: str, candidate: Candidate, space: Space, demos: list[dict], input_vars: list[str]
) -> Built:
    """The version a candidate stands for. Demonstrations are {vars, output} pairs from the train split."""
    where, _ = instruction_of(base)
    instruction = space.instructions[candidate.instruction]
    guardrails = base.guardrails.to_dict() if base.guardrails else None
    if where == "guardrails" and guardrails is not None:
        guardrails = {**guardrails, "task": instruction}
    chosen = demos[: candidate.demos]
    drop = list(base.drop_sections)
    if candidate.technique == "as_is":
        source, variables = base.template.source, dict(base.variables)
        if where == "variable":
            variables["instruction"] = instruction
        if chosen and shows_demos(base.template):
            variables["examples"] = [{"input": demo_input(d["vars"]), "output": d["output"]} for d in chosen]
        if candidate.drop.startswith("-") and candidate.drop != "-guardrails":
            drop.append(candidate.drop[1:])
    else:
        source = generated_source(name, candidate.technique, input_vars, base.template)
        variables = {"instruction": instruction if where == "variable" else "", "examples": chosen}
    if candidate.drop == "-guardrails":
        guardrails = None
    lineage = {
        **candidate.to_dict(),
        "instruction_text": instruction,
        "demo_cases": [d["case_id"] for d in chosen],
    }
    params = (
        {"max_tokens": REASONING_TOKENS}
        if candidate.technique in ("zero_shot_cot", "self_consistency")
        else {}
    )
    return Built(source, variables, candidate.delimiter or base.delimiter, guardrails, drop, lineage, params)


def shows_demos(template: Template) -> bool:
    """Whether a template shows demonstrations the way candidates give them: an `examples` variable of
    {input, output} pairs (as few_shot's); other shapes (chain_of_thought's question/reasoning/answer) are left
    as the version binds them."""
    variable = next((v for v in template.variables if v.name == "examples"), None)
    if variable is None:
        return False
    sample = variable.example if isinstance(variable.example, list) else []
    return not sample or all(isinstance(e, dict) and set(e) == {"input", "output"} for e in sample)


def demo_input(case_vars: dict[str, Any]) -> str:
    """A case's inputs as one text (its only variable's value, or `name: value` lines)."""
    if len(case_vars) == 1:
        return str(next(iter(case_vars.values())))
    return "\n".join(f"{k}: {v}" for k, v in case_vars.items())


def expected_output(case_assertions: list[dict[str, Any]], expected: str | None) -> str | None:
    """What a right answer to a case looks like, when the case says: its expected value, else the value of its
    first equality-like assertion, else the object a JSON assertion's schema pins down (every property a const
    or an enum)."""
    if expected not in (None, ""):
        return str(expected)
    for assertion in case_assertions:
        kind, value = str(assertion.get("type", "")), assertion.get("value")
        if kind in ("equals", "answer-equals", "icontains", "contains", "starts-with") and value not in (
            None,
            "",
        ):
            return str(value)
        if kind in ("is-json", "contains-json") and isinstance(value, dict):
            pinned = pinned_object(value)
            if pinned is not None:
                return json.dumps(pinned, ensure_ascii=False)
    return None


def pinned_object(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The one object a schema allows, when each of its properties is a const or an enum (its first value)."""
    properties = schema.get("properties")
    if schema.get("type") != "object" or not isinstance(properties, dict) or not properties:
        return None
    out = {}
    for name, rule in properties.items():
        if isinstance(rule, dict) and "const" in rule:
            out[name] = rule["const"]
        elif isinstance(rule, dict) and isinstance(rule.get("enum"), list) and rule["enum"]:
            out[name] = rule["enum"][0]
        else:
            return None
    return out


# --- proposals ------------------------------------------------------------------------------------------------


def parse_proposals(texts: list[str], pattern: str | None, original: str) -> list[str]:
    """Instructions from a proposer's replies: the `Instruction:` line (else the first line), one line, stripped
    of quotes; empty, overlong, duplicate and unchanged ones dropped."""
    from prompting.assertions import extract_answer

    found: list[str] = []
    for text in texts:
        line = extract_answer(text, pattern) or next((ln for ln in text.splitlines() if ln.strip()), "")
        line = line.strip().strip("\"'`").strip()
        if len(line) < 8 or len(line) > MAX_INSTRUCTION_CHARS or not re.search(r"[A-Za-z]{3}", line):
            continue
        if line.lower() == original.strip().lower() or line in found:
            continue
        found.append(line)
    return found


def shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the verdict ------------------------------------------------------------------------------------------


def verdict_text(delta: float | None, low: float | None, high: float | None, cases: int, chosen: bool) -> str:
    """The plain-language headline: "+12 points on 30 unseen cases (95 % interval +4 to +20)", or that no
    candidate beat the baseline on unseen cases."""
    if not chosen:
        return f"no candidate beat the baseline on the validation cases; the baseline stays ({cases} held-out cases)"
    if delta is None:
        return "the held-out evaluation has no scored case"
    from prompting.numbers import points as signed

    points = f"{signed(delta, cases)} points on {cases} unseen cases"
    if low is None or high is None:
        return f"{points}: too few cases for an interval"
    interval = f"95 % interval {signed(low, cases)} to {signed(high, cases)}"
    if low > 0:
        return f"{points} ({interval}): the gain holds on cases the search never saw"
    if high < 0:
        return (
            f"the chosen candidate is worse by {signed(-delta, cases).lstrip('+')} points on {cases} unseen cases "
            f"({interval})"
        )
    return f"no candidate beat the baseline on unseen cases: {points}, {interval}, which covers no change"
