"""Tree-of-thoughts: a breadth-limited search over proposed next steps, each scored by the model, with the raw
text of every call kept and the reason the search stopped (an answer, the depth, no proposals, the call budget).
Ties at the cut are kept (up to twice the breadth); answer lines are enforced where the provider constrains."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from prompting import answers
from prompting.assertions import extract_answer
from prompting.strategies import (
    Call,
    Prompt,
    StrategyOutput,
    constrained_answer,
    option_value,
    own_constraint,
    read_answer,
    require_stages,
)

TIE_RULE = "ties at the cut are kept, up to twice the breadth; then the earlier proposal"


@dataclass(frozen=True)
class Limits:
    breadth: int  # nodes kept per level
    depth: int  # levels of proposals
    proposals: int  # next steps asked of each node
    calls: int  # the most model calls a search makes before it stops


def _value_of(text: str, values: dict[str, float]) -> float:
    """sure/likely/impossible (the template's `values`) or a 1-10 rating, read from the last line mentioning one."""
    for line in reversed(text.strip().lower().splitlines()):
        for word, value in values.items():
            if re.search(rf"\b{re.escape(word)}\b", line):
                return float(value)
        number = re.search(r"\b(10|[1-9])(?:\s*/\s*10)?\b", line)
        if number:
            return int(number.group(1)) / 10.0
    return 0.0


@dataclass
class Search:
    """A tree-of-thoughts search in progress: every node (with the raw model text that made or scored it), the
    calls spent, and why it stopped."""

    prompt: Prompt
    case_vars: dict
    call: Call
    params: dict
    options: dict
    out: StrategyOutput
    nodes: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    stopped: str = ""

    def run(self, limits: Limits, values: dict[str, float], numeric: bool) -> tuple[dict, str | None, str]:
        """Level by level from the root: (the best node, an answer if one was proposed, its text)."""
        root = {
            "id": 0,
            "parent": None,
            "depth": 0,
            "state": "",
            "value": None,
            "kept": True,
            "why": "the problem",
        }
        self.nodes.append(root)
        frontier = [root]
        for level in range(1, limits.depth + 1):
            candidates = []
            for node in frontier:
                children, answer = self.propose(node, level, limits.proposals, numeric)
                candidates += children
                if answer is not None:
                    self.stopped = f"answer proposed at level {level}"
                    return frontier[0], answer, node["proposal_text"]
            if not candidates:
                self.stopped = f"no next step proposed at level {level}"
                return frontier[0], None, ""
            for child in candidates:
                self.evaluate(child, values)
            frontier = select(candidates, limits.breadth) or frontier
            if self.calls >= limits.calls:
                self.stopped = f"call budget spent ({self.calls} of {limits.calls} calls) at level {level}"
                return frontier[0], None, ""
        self.stopped = f"depth {limits.depth} reached"
        return frontier[0], None, ""

    def ask(self, messages: list[dict[str, str]], params: dict) -> str:
        self.calls += 1
        return self.out.add(self.call(messages, params)).text

    def propose(self, node: dict, level: int, proposals: int, numeric: bool) -> tuple[list[dict], str | None]:
        """One propose call on `node`: its children (proposed steps) or an answer."""
        template = self.prompt.template
        messages = self.prompt.render(
            self.case_vars, stage="propose", state=node["state"], proposals=proposals
        )
        params = {**self.params, "temperature": self.params.get("temperature", 0.0)}
        prefix = template.answer_prefix or "Answer:"
        if self.options.get("constrain_answers") and not own_constraint(params):
            params["guided_grammar"] = answers.steps_grammar(proposals, prefix, numeric)
        node["proposal_text"] = text = self.ask(messages, params)
        found = extract_answer(text, template.answer_pattern)
        steps = [line.strip()[2:].strip() for line in text.splitlines() if line.strip().startswith("- ")]
        children = []
        for step in steps[:proposals]:
            child = {
                "id": len(self.nodes),
                "parent": node["id"],
                "depth": level,
                "step": step,
                "value": None,
                "state": f"{node['state']}\n{step}".strip(),
                "kept": False,
                "why": "",
            }
            self.nodes.append(child)
            children.append(child)
        return children, found

    def evaluate(self, child: dict, values: dict[str, float]) -> None:
        messages = self.prompt.render(self.case_vars, stage="evaluate", candidate=child["state"])
        prefix = self.prompt.template.meta.get("verdict_prefix", "Verdict:")
        params = constrained_answer(
            self.prompt,
            {**self.params, "temperature": 0.0},
            self.options,
            prefix=prefix,
            choices=list(values),
        )
        child["evaluation_text"] = text = self.ask(messages, params)
        child["value"] = _value_of(text, values)

    def finish(self, node: dict, numeric: bool) -> tuple[str | None, str]:
        """Ask for the answer from the best path found (the final line is enforced where it can be)."""
        template = self.prompt.template
        messages = self.prompt.render(self.case_vars, stage="answer", state=node["state"])
        prefix = template.answer_prefix or "Answer:"
        params = constrained_answer(
            self.prompt, {**self.params, "temperature": 0.0}, self.options, numeric, prefix
        )
        node["answer_text"] = text = self.ask(messages, params)
        return read_answer(self.out, text, template.answer_pattern, numeric), text


def select(candidates: list[dict], breadth: int) -> list[dict]:
    """The frontier: the `breadth` best-scored candidates, and every candidate tied with the last of them (up
    to twice the breadth; beyond that the earlier proposal wins). Each candidate says why it was kept or pruned."""
    ranked = sorted(candidates, key=lambda c: -c["value"])  # stable: equal scores keep proposal order
    if not ranked:
        return []
    cut = ranked[min(breadth, len(ranked)) - 1]["value"]
    kept = []
    for rank, child in enumerate(ranked):
        if rank < breadth:
            child["why"] = f"kept: rank {rank + 1} of {len(ranked)} (score {child['value']:.1f})"
        elif child["value"] == cut and rank < 2 * breadth:
            child["why"] = f"kept: tied with the last kept at score {cut:.1f}"
        elif child["value"] == cut:
            child["why"] = f"pruned: tied at {cut:.1f} beyond twice the breadth; earlier proposals win"
        else:
            child["why"] = f"pruned: score {child['value']:.1f} below the cut at {cut:.1f}"
        child["kept"] = child["why"].startswith("kept")
        if child["kept"]:
            kept.append(child)
    return kept


def tree_of_thoughts(
    prompt: Prompt, case_vars: dict, call: Call, params: dict, options: dict
) -> StrategyOutput:
    """Breadth-limited search: each level proposes next steps from the kept nodes, scores them, keeps the best;
    it stops at an answer, at the depth, when nothing is proposed, or when the call budget is spent, and then
    asks the best path for its answer. The detail says why it stopped and keeps every call's raw text."""
    template = prompt.template
    require_stages(template, ["propose", "evaluate"], "tree-of-thoughts")
    limits = Limits(
        breadth=int(option_value(options, template, "breadth", 2)),
        depth=int(option_value(options, template, "depth", 3)),
        proposals=int(option_value(options, template, "proposals", 3)),
        calls=int(option_value(options, template, "max_calls", 40)),
    )
    out = StrategyOutput(
        output="", messages=prompt.render(case_vars, stage="propose", state="", proposals=limits.proposals)
    )
    search = Search(prompt, case_vars, call, params, options, out)
    numeric = answers.numeric_answer({**template.defaults, **prompt.variables, **case_vars})
    values = template.meta.get("values") or {"sure": 1.0, "likely": 0.5, "impossible": 0.0}
    best, answer, text = search.run(limits, values, numeric)
    if answer is None:
        answer, text = search.finish(best, numeric)
        search.stopped += "; the best path was asked for its answer"
    out.answer, out.output = answer, text or best["state"]
    out.detail.update(
        {
            "tree": search.nodes,
            "breadth": limits.breadth,
            "depth": limits.depth,
            "proposals": limits.proposals,
            "best_state": best["state"],
            "stopped": search.stopped,
            "calls": search.calls,
            "ties": TIE_RULE,
        }
    )
    return out
