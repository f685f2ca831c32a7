"""Strategies: how one cell turns a prompt into an answer, from one call to a searched tree.

Each strategy takes a `Prompt` (template + bound variables + delimiter/guardrails), the case's variables, a
provider and decoding parameters, and returns a `StrategyOutput` with the final output, the extracted answer,
the usage summed over every call, and the detail a person needs to see how the answer came about (samples and
votes, the explored tree, the class probabilities). Strategies never touch the store.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prompting import answers, dialogue
from prompting.assertions import extract_answer
from prompting.conversation import is_conversation
from prompting.errors import PromptingError
from prompting.guardrails import Guardrails
from prompting.providers import Completion, Provider, Scored, Usage
from prompting.templates import Template

STRATEGIES = ("single", "self_consistency", "tree_of_thoughts", "generate_knowledge", "verbalizer")


class StrategyError(PromptingError):
    pass


@dataclass
class Prompt:
    """A template with what a version binds: default variable values, delimiter style, guardrails."""

    template: Template
    variables: dict[str, Any] = field(default_factory=dict)
    delimiter: str = "hash"
    guardrails: Guardrails | None = None
    drop_sections: tuple[str, ...] = ()

    def render(
        self, case_vars: dict[str, Any], stage: str | None = None, **extra: Any
    ) -> list[dict[str, str]]:
        return self.template.render(
            {**self.variables, **case_vars, **extra},
            delimiter=self.delimiter,
            guardrails=self.guardrails,
            stage=stage,
            drop_sections=self.drop_sections,
        )


@dataclass
class StrategyOutput:
    output: str
    messages: list[dict[str, str]]
    answer: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    logprobs: list[float] | None = None
    # calls answered from the response cache (their latency was measured by another call)
    cached_calls: int = 0

    @property
    def cached(self) -> bool:
        """Whether any of the cell's calls came from the cache: then its latency is not a measurement of now."""
        return self.cached_calls > 0

    def add(self, completion: Completion) -> Completion:
        """Count a call's usage towards the cell (every strategy sums all the calls it made)."""
        self.usage = self.usage + completion.usage
        self.cached_calls += int(completion.cached)
        return completion

    def add_score(self, scored: Scored) -> float:
        self.usage = self.usage + scored.usage
        return scored.logprob


Call = Callable[[list[dict[str, str]], dict[str, Any]], Completion]


NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen twenty".split()
    )
}
NUMBER_WORDS.update(
    {
        "thirty": 30,
        "forty": 40,
        "fifty": 50,
        "sixty": 60,
        "seventy": 70,
        "eighty": 80,
        "ninety": 90,
        "hundred": 100,
    }
)


def normalise_answer(answer: str | None, numeric: bool = False) -> str | None:
    """What votes compare: trimmed, case-folded, without trailing punctuation or quotes; numbers in one form
    ("7", "7.0", "$7" and, when the answer is a number, "seven" all become "7")."""
    if answer is None:
        return None
    answer = answer.strip().strip(".,;:!?\"'`*").strip()
    number = re.fullmatch(r"\$?(-?[\d,]*\.?\d+)%?", answer)
    if number:
        value = float(number.group(1).replace(",", ""))
        return str(int(value)) if value.is_integer() else str(value)
    if numeric and answer.lower() in NUMBER_WORDS:
        return str(NUMBER_WORDS[answer.lower()])
    return " ".join(answer.lower().split()) or None


def vote(answers: list[str | None]) -> tuple[str | None, float, dict[str, int]]:
    """Majority answer (first seen wins a tie), agreement rate, and counts; unparsed samples count against."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0.0, {}
    first_seen = {a: i for i, a in reversed(list(enumerate(answers)))}
    winner = max(counts, key=lambda a: (counts[a], -first_seen[a]))
    return winner, counts[winner] / len(answers), dict(counts)


def option_value(options: dict, template: Template, name: str, default: float) -> float:
    """A strategy parameter: the run's options first, then the template's recommended strategy, then a default."""
    return options.get(name, template.strategy.get(name, default))


def require_stages(template: Template, stages: list[str], strategy: str) -> None:
    if template.stages[: len(stages)] != stages:
        raise StrategyError(
            f"{strategy} needs a template with {' and '.join(stages)} stages; "
            f"'{template.name}' has {template.stages or 'none'}"
        )


def _settle_vote(out: StrategyOutput, samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The samples' majority answer becomes the answer, and the first sample that gave it the output."""
    winner, agreement, counts = vote([s["answer"] for s in samples])
    out.answer = winner
    out.output = next(
        (s["text"] for s in samples if s["answer"] == winner), samples[0]["text"] if samples else ""
    )
    return {"samples": samples, "votes": counts, "agreement": agreement}


OWN_CONSTRAINTS = (
    "response_format",
    "tools",
    "guided_json",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
)


def own_constraint(params: dict) -> bool:
    """Whether a request already constrains its output (a schema, tools, a grammar): answer grammars stay off."""
    return any(k in params for k in OWN_CONSTRAINTS)


def constrained_answer(
    prompt: Prompt,
    params: dict,
    options: dict,
    numeric: bool = False,
    prefix: str | None = None,
    choices: list[str] | None = None,
) -> dict:
    """The call's parameters with the answer-line grammar (prompting/answers.py), when the caller says the
    provider constrains decoding (`constrain_answers`), the template declares an answer line and the request has
    no constraint of its own."""
    prefix = prefix or prompt.template.answer_prefix
    if not options.get("constrain_answers") or not prefix or own_constraint(params):
        return params
    budget = answers.max_tokens(params, prompt.template.max_tokens)
    grammar = answers.answer_grammar(prefix, budget, numeric, choices)
    return {**params, "max_tokens": budget, "guided_grammar": grammar}


def read_answer(out: StrategyOutput, text: str, pattern: str | None, numeric: bool = False) -> str | None:
    """The answer in `text` (pattern, then the documented fallback); where it came from goes in the detail."""
    found = answers.find_answer(text, pattern, numeric)
    out.detail["answer_source"] = found.source
    return found.answer


def converse(
    out: StrategyOutput, case_vars: dict, call: Call, params: dict, options: dict
) -> Completion | None:
    """A conversation case (prompting/conversation.py): every answered turn is a call with the conversation so
    far; the last answer is the output, the request for it the messages, and the whole conversation, with where
    the answers are, goes in the detail."""

    def ask(messages: list[dict]) -> Completion:
        return out.add(call(messages, params))

    transcript, last = dialogue.transcript_for(case_vars, out.messages, ask, options.get("ask_user"))
    positions = transcript.answer_positions
    out.messages = transcript.messages[: positions[-1]] if positions else transcript.messages
    out.output = transcript.answers[-1] if positions else ""
    out.detail.update(transcript.to_detail())
    return last


def single(prompt: Prompt, case_vars: dict, call: Call, params: dict, options: dict) -> StrategyOutput:
    messages = prompt.render(case_vars)
    out = StrategyOutput(output="", messages=messages)
    numeric = answers.numeric_answer({**prompt.template.defaults, **prompt.variables, **case_vars})
    if is_conversation(case_vars):
        completion = converse(out, case_vars, call, params, options)
    else:
        completion = out.add(call(messages, constrained_answer(prompt, params, options, numeric)))
        out.output = completion.text
    if prompt.template.answer_pattern:
        out.answer = read_answer(out, out.output, prompt.template.answer_pattern, numeric)
    if completion is None:
        return out
    if completion.logprobs:
        out.logprobs = [t["logprob"] for t in completion.logprobs[0]]
        out.detail["tokens"] = completion.logprobs[0]
    if completion.tool_calls and completion.tool_calls[0]:
        out.detail["tool_calls"] = completion.tool_calls[0]
    return out


def self_consistency(
    prompt: Prompt, case_vars: dict, call: Call, params: dict, options: dict
) -> StrategyOutput:
    n = int(option_value(options, prompt.template, "n", 5))
    temperature = float(option_value(options, prompt.template, "temperature", 0.7))
    pattern = options.get("answer_pattern") or prompt.template.answer_pattern
    if not pattern:
        raise StrategyError(
            f"self-consistency needs an answer pattern; template '{prompt.template.name}' has none"
        )
    messages = prompt.render(case_vars)
    out = StrategyOutput(output="", messages=messages)
    numeric = answers.numeric_answer({**prompt.template.defaults, **prompt.variables, **case_vars})
    sampling = constrained_answer(prompt, {**params, "n": n, "temperature": temperature}, options, numeric)
    completion = out.add(call(messages, sampling))
    samples = []
    for text in completion.texts:
        found = answers.find_answer(text, pattern, numeric)
        samples.append(
            {"text": text, "answer": normalise_answer(found.answer, numeric), "source": found.source}
        )
    extracted = sum(1 for s in samples if s["answer"] is not None)
    out.detail = {
        **_settle_vote(out, samples),
        "n": n,
        "temperature": temperature,
        "pattern": pattern,
        "extraction_rate": extracted / len(samples) if samples else 0.0,
        "constrained": "guided_grammar" in sampling,
        "max_tokens": sampling.get("max_tokens"),
    }
    return out


def generate_knowledge(
    prompt: Prompt, case_vars: dict, call: Call, params: dict, options: dict
) -> StrategyOutput:
    template = prompt.template
    require_stages(template, ["knowledge", "answer"], "generate-knowledge")
    k = int(option_value(options, template, "k", 3))
    temperature = float(option_value(options, template, "temperature", 0.7))
    knowledge_messages = prompt.render(case_vars, stage="knowledge")
    out = StrategyOutput(output="", messages=knowledge_messages)
    facts = out.add(call(knowledge_messages, {**params, "n": k, "temperature": temperature})).texts
    samples = []
    numeric = answers.numeric_answer({**template.defaults, **prompt.variables, **case_vars})
    answering = constrained_answer(prompt, {**params, "temperature": 0.0}, options, numeric)
    for fact in facts:
        answer_messages = prompt.render(case_vars, stage="answer", knowledge=fact)
        text = out.add(call(answer_messages, answering)).text
        found = answers.find_answer(text, template.answer_pattern, numeric)
        samples.append(
            {
                "knowledge": fact,
                "text": text,
                "answer": normalise_answer(found.answer),
                "source": found.source,
            }
        )
    out.detail = {**_settle_vote(out, samples), "k": k}
    return out


def verbalizer(
    prompt: Prompt, case_vars: dict, provider: Provider, params: dict, options: dict
) -> StrategyOutput:
    """Score each class's label words as the answer; calibrated against content-free inputs unless
    `calibrate: false` (see prompting/verbalizer.py)."""
    from prompting.verbalizer import classify

    labels = options.get("labels") or prompt.template.labels
    if not labels:
        raise StrategyError(
            f"the verbalizer needs labels (class -> label words); '{prompt.template.name}' has none"
        )
    calibrate = bool(option_value(options, prompt.template, "calibrate", True))
    out = StrategyOutput(output="", messages=prompt.render(case_vars))
    winner, out.detail, out.usage = classify(prompt, case_vars, provider, labels, calibrate)
    out.output = out.answer = winner
    return out


def ape(
    propose: Callable[[int], list[str]], evaluate: Callable[[str], float], m: int
) -> list[dict[str, Any]]:
    """Automatic prompt engineering: propose m instructions, score each (e.g. pass rate on a suite), rank them."""
    seen, ranking = set(), []
    for instruction in propose(m):
        instruction = instruction.strip()
        if not instruction or instruction in seen:
            continue
        seen.add(instruction)
        ranking.append({"instruction": instruction, "score": evaluate(instruction)})
    return sorted(ranking, key=lambda r: r["score"], reverse=True)


def ape_proposals(
    prompt: Prompt, examples: list[dict], provider: Provider, m: int, temperature: float = 0.9
) -> list[str]:
    """Instructions proposed by the `ape` template from input/output examples (the answer pattern extracts them)."""
    messages = prompt.render({"examples": examples})
    completion = provider.chat(messages, n=m, temperature=temperature, max_tokens=64)
    found = [
        extract_answer(text, prompt.template.answer_pattern) or text.strip().splitlines()[0]
        for text in completion.texts
        if text.strip()
    ]
    return found


def run_strategy(
    name: str, prompt: Prompt, case_vars: dict, provider: Provider, call: Call, params: dict, options: dict
) -> StrategyOutput:
    """Run one strategy. A request without max tokens gets the template's (`max_tokens` in its front matter);
    `options["constrain_answers"]` (the caller knows the provider constrains decoding) enforces answer lines."""
    if prompt.template.max_tokens and not params.get("max_tokens"):
        params = {**params, "max_tokens": prompt.template.max_tokens}
    if name == "single":
        return single(prompt, case_vars, call, params, options)
    if is_conversation(case_vars):
        raise StrategyError(f"a conversation case runs with the single strategy, not '{name}'")
    if name == "self_consistency":
        return self_consistency(prompt, case_vars, call, params, options)
    if name == "tree_of_thoughts":
        from prompting.tree import tree_of_thoughts

        return tree_of_thoughts(prompt, case_vars, call, params, options)
    if name == "generate_knowledge":
        return generate_knowledge(prompt, case_vars, call, params, options)
    if name == "verbalizer":
        return verbalizer(prompt, case_vars, provider, params, options)
    raise StrategyError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}")
